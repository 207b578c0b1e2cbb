//! Moving a profile's phones to another profile (of another meta-base too): the dry run's
//! per-phone diff of effective settings first, then Apply, through the same core call as
//! gRPC's MigrateBaseSettings (`telephony:sitesmanagedphones:edit`).

use axum::extract::{Path, RawForm, State};
use dialtone_auth::Permission;
use dialtone_proto::config::v1::{
    MigrateBaseSettingsRequest, MigrationOutcome, PhoneFilter, SettingChangeKind,
};
use maud::{Markup, html};

use super::{Console, Ctx, Problem, context::allow, form, layout, phones};

/// Phones a preview lists (the counts cover them all).
pub const SHOWN: usize = 500;

/// Phones an Apply from the console may move: the ones its preview listed, sent back with
/// it (a larger migration runs with `dialtonectl base-settings migrate`).
pub const MAX_APPLY: usize = 2_000;

/// The migrate form: `to`, and for Apply the previewed phones' `ids`.
#[derive(Debug, Default)]
pub struct MigrateForm {
    csrf: String,
    to: String,
    apply: bool,
    ids: Vec<String>,
}

impl MigrateForm {
    /// From the form's body (`ids` repeats).
    pub fn parse(body: &[u8]) -> Self {
        let mut f = MigrateForm::default();
        for (k, v) in form_urlencoded::parse(body) {
            match k.as_ref() {
                "_csrf" => f.csrf = v.into_owned(),
                "to" => f.to = v.into_owned(),
                "apply" => f.apply = v == "1",
                "ids" => f.ids.push(v.into_owned()),
                _ => {}
            }
        }
        f
    }
}

/// The migrate form of profile `from` (on its page), for a token that may edit phones.
pub fn form_of(ctx: &Ctx, from: &str, targets: &[(String, String)]) -> Markup {
    let others: Vec<(String, String)> = targets
        .iter()
        .filter(|(id, _)| id != from)
        .cloned()
        .collect();
    html! {
        @if ctx.can_edit && !others.is_empty() {
            form class="card" method="post" action={ "/base-settings/" (from) "/migrate" } {
                h2 { "Move its phones to another profile" }
                (form::csrf(ctx))
                (form::select("Target profile", "to", &others, "", None))
                button type="submit" { "Preview the changes" }
            }
        }
    }
}

fn kind_name(k: i32) -> &'static str {
    match SettingChangeKind::try_from(k).unwrap_or_default() {
        SettingChangeKind::Defaulted => "defaulted",
        SettingChangeKind::Dropped => "dropped",
        _ => "changed",
    }
}

fn outcome_name(o: i32) -> &'static str {
    match MigrationOutcome::try_from(o).unwrap_or_default() {
        MigrationOutcome::Moved => "moved",
        MigrationOutcome::Unchanged => "unchanged",
        _ => "failed",
    }
}

/// `POST /base-settings/{id}/migrate`: the dry run (or, with `apply`, the move).
pub async fn migrate(
    State(c): State<Console>,
    ctx: Ctx,
    Path(from): Path<String>,
    RawForm(body): RawForm,
) -> Result<Markup, Problem> {
    let f = MigrateForm::parse(&body);
    ctx.check_csrf(&f.csrf)?;
    allow(&c, &ctx, Permission::Edit)?;
    let apply = f.apply;
    if apply && (f.ids.is_empty() || f.ids.len() > MAX_APPLY) {
        return Err(Problem::new(400, "apply the phones a preview listed"));
    }
    // A preview reads the profile's phones now; Apply moves exactly the phones it showed,
    // not ones added since.
    let r = c
        .api
        .core()
        .migrate_base_settings(MigrateBaseSettingsRequest {
            filter: (!apply).then(|| PhoneFilter {
                base_settings_id: from.clone(),
                ..Default::default()
            }),
            phone_ids: if apply { f.ids.clone() } else { Vec::new() },
            to_base_settings_id: f.to.clone(),
            dry_run: !apply,
        })
        .await;
    if apply {
        c.record(
            &ctx,
            "migrate phones",
            &format!("{from} -> {}", f.to),
            &r.as_ref()
                .map_or_else(|e| e.to_string(), |m| format!("{} phones", m.phones.len())),
        );
    }
    let r = r?;
    let count = |o: MigrationOutcome| r.phones.iter().filter(|p| p.outcome == o as i32).count();
    let (_, bases) = phones::choices(&c).await?;
    let name_of = |id: &str| {
        bases
            .iter()
            .find(|(i, _)| i == id)
            .map_or(id.to_owned(), |(_, n)| n.clone())
    };
    let title = if apply {
        "Migration done"
    } else {
        "Migration preview"
    };
    Ok(layout::page(
        Some(&ctx),
        title,
        "/base-settings",
        html! {
            p role="status" {
                (r.phones.len()) " phones of " strong { (name_of(&from)) } " to " strong { (name_of(&f.to)) } ": "
                (count(MigrationOutcome::Moved)) @if apply { " moved, " } @else { " would move, " }
                (count(MigrationOutcome::Unchanged)) " unchanged, " (count(MigrationOutcome::Failed)) " failed."
            }
            @if !apply && count(MigrationOutcome::Moved) > MAX_APPLY {
                p class="help" { "More than " (MAX_APPLY) " phones move: apply with " code { "dialtonectl base-settings migrate" } "." }
            } @else if !apply && count(MigrationOutcome::Moved) > 0 {
                form method="post" action={ "/base-settings/" (from) "/migrate" } class="card" {
                    (form::csrf(&ctx))
                    input type="hidden" name="to" value=(f.to);
                    input type="hidden" name="apply" value="1";
                    @for p in r.phones.iter().filter(|p| p.outcome == MigrationOutcome::Moved as i32) {
                        input type="hidden" name="ids" value=(p.phone_id);
                    }
                    p { "Nothing has changed yet. Apply writes these phones' new profile; each is told to fetch its configuration again." }
                    button type="submit" class="primary" data-confirm="Move these phones to the new profile?" { "Apply" }
                }
            }
            @for p in r.phones.iter().take(SHOWN) {
                section class="card" aria-label={ "Phone " (p.phone_name) } {
                    h2 { a href={ "/phones/" (p.phone_id) } { (p.phone_name) } " " small { (outcome_name(p.outcome)) } }
                    @if !p.reason.is_empty() { p class="error" { (p.reason) } }
                    @if !p.changes.is_empty() {
                        table {
                            thead { tr { th scope="col" { "Setting" } th scope="col" { "Before" } th scope="col" { "After" } th scope="col" { "Why" } } }
                            tbody { @for ch in &p.changes { tr { td { code { (ch.path) } } td { code { (layout::setting_value(&ch.path, &ch.before)) } } td { code { (layout::setting_value(&ch.path, &ch.after)) } } td { (kind_name(ch.kind)) } } } }
                        }
                    }
                }
            }
            @if r.phones.len() > SHOWN { p class="help" { "The first " (SHOWN) " phones are shown; " code { "dialtonectl base-settings migrate --dry-run" } " lists them all." } }
            p { a href={ "/base-settings/" (from) } { "Back to the profile" } }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_proto::config::v1 as pb;

    #[test]
    fn apply_carries_the_previewed_phones() {
        let f = MigrateForm::parse(b"_csrf=c&to=desk-b&apply=1&ids=p1&ids=p2");
        assert_eq!(
            (f.csrf.as_str(), f.to.as_str(), f.apply),
            ("c", "desk-b", true)
        );
        assert_eq!(f.ids, ["p1", "p2"]);
        assert!(!MigrateForm::parse(b"to=x").apply);
    }

    #[test]
    fn names_read_as_words() {
        assert_eq!(kind_name(pb::SettingChangeKind::Dropped as i32), "dropped");
        assert_eq!(kind_name(0), "changed");
        assert_eq!(outcome_name(pb::MigrationOutcome::Moved as i32), "moved");
        assert_eq!(outcome_name(99), "failed");
    }
}
