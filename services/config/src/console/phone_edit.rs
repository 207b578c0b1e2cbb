//! Changing a phone: edit and assignment forms, restart / resync / log out through its
//! edges, reset a line's password (shown once) and delete, through the same `ConfigCore`
//! calls and permissions as gRPC and REST.

use axum::{
    Form,
    extract::{Path, State},
    response::{IntoResponse, Redirect, Response},
};
use dialtone_auth::Permission;
use dialtone_domain::actions::Act;
use dialtone_proto::config::v1::{self as pb, assignment::Mode};
use serde::Deserialize;

use super::{Console, Ctx, Problem, context::allow, phone_new::secrets_of, session::Flash};

/// `new`, with what the form does not show of a common-area phone (its caller id,
/// restrictions and call patterns) kept from `current` when it stays one.
pub fn keep_site_settings(
    mut new: pb::Assignment,
    current: Option<pb::Assignment>,
) -> pb::Assignment {
    if let (Some(Mode::Site(n)), Some(Mode::Site(old))) =
        (new.mode.as_mut(), current.and_then(|a| a.mode))
    {
        let extension = std::mem::take(&mut n.extension);
        *n = pb::SiteAssignment { extension, ..old };
    }
    new
}

/// The edit and assignment forms' fields.
#[derive(Debug, Deserialize)]
pub struct UpdateForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    form: String,
    #[serde(default)]
    version: i64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    base: String,
    #[serde(default)]
    hardware: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    extension: String,
}

/// The assignment an assignment form asks for.
pub fn assignment_of(
    mode: &str,
    user_id: &str,
    extension: &str,
) -> Result<pb::Assignment, Problem> {
    let mode = match mode {
        "user" => Mode::User(pb::UserAssignment {
            user_id: user_id.trim().to_owned(),
        }),
        "site" => Mode::Site(pb::SiteAssignment {
            extension: extension.trim().to_owned(),
            ..Default::default()
        }),
        "unassigned" => Mode::Unassigned(pb::Unassigned {}),
        _ => return Err(Problem::new(400, "choose User, Site or Unassigned")),
    };
    Ok(pb::Assignment { mode: Some(mode) })
}

/// `POST /phones/{id}`: the edit or the assignment form, at the version it was read.
pub async fn update(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<UpdateForm>,
) -> Result<Response, Problem> {
    ctx.check_csrf(&f.csrf)?;
    allow(&c, &ctx, Permission::Edit)?;
    let core = c.api.core();
    let mut p = core.get_phone(&id).await?;
    p.version = f.version;
    let what = if f.form == "assignment" {
        let current = p.assignment.take();
        p.assignment = Some(keep_site_settings(
            assignment_of(&f.mode, &f.user_id, &f.extension)?,
            current,
        ));
        "assign phone"
    } else {
        p.name = f.name.trim().to_owned();
        p.site_id = f.site.clone();
        p.base_settings_id = f.base.clone();
        p.hardware_id = f.hardware.trim().to_owned();
        "edit phone"
    };
    save(&c, &ctx, what, p).await
}

/// Writes phone `p` (at its version) as `action`, records it, keeps the passwords of the
/// lines (and device credential) the write created for its page, once, and goes there.
pub async fn save(c: &Console, ctx: &Ctx, action: &str, p: pb::Phone) -> Result<Response, Problem> {
    let id = p.id.clone();
    let r = c.api.core().update_phone(p).await;
    c.record_result(ctx, action, &id, &r);
    let w = r?;
    if !w.lines.is_empty() || w.device.is_some() {
        c.sessions.lock().set_flash(
            &ctx.sid,
            Flash {
                for_path: format!("/phones/{id}"),
                secrets: secrets_of(&w),
            },
        );
    }
    Ok(Redirect::to(&format!("/phones/{id}")).into_response())
}

/// The action and line forms' fields.
#[derive(Debug, Deserialize)]
pub struct ActForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    act: String,
    #[serde(default)]
    line: u32,
    #[serde(default)]
    version: i64,
}

/// `POST /phones/{id}/act`: restart, resync or log out through the phone's edges.
pub async fn act(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<ActForm>,
) -> Result<Response, Problem> {
    ctx.check_csrf(&f.csrf)?;
    allow(&c, &ctx, Permission::Edit)?;
    let act = match f.act.as_str() {
        "restart" => Act::Restart,
        "resync" => Act::Resync,
        "logout" => Act::LogOut,
        _ => return Err(Problem::new(400, "choose restart, resync or log out")),
    };
    let timeout = crate::actions::timeout_of(0)?;
    let r = c
        .api
        .core()
        .act_on_phone(&id, act, timeout, &format!("console/{}", ctx.who))
        .await;
    c.record_result(&ctx, &f.act, &id, &r);
    r?;
    Ok(Redirect::to(&format!("/phones/{id}")).into_response())
}

/// `POST /phones/{id}/reset-password`: a line's new password, shown once.
pub async fn reset_password(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<ActForm>,
) -> Result<Response, Problem> {
    ctx.check_csrf(&f.csrf)?;
    allow(&c, &ctx, Permission::Edit)?;
    let r = c
        .api
        .core()
        .reset_line_password(&id, f.line, f.version)
        .await;
    c.record_result(&ctx, "reset line password", &format!("{id}.{}", f.line), &r);
    let creds = r?;
    c.sessions.lock().set_flash(
        &ctx.sid,
        Flash {
            for_path: format!("/phones/{id}"),
            secrets: vec![(
                format!(
                    "Line {} ({}) SIP password",
                    creds.line_index + 1,
                    creds.sip_user
                ),
                creds.password,
            )],
        },
    );
    Ok(Redirect::to(&format!("/phones/{id}")).into_response())
}

/// `POST /phones/{id}/delete`.
pub async fn delete(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<ActForm>,
) -> Result<Response, Problem> {
    ctx.check_csrf(&f.csrf)?;
    allow(&c, &ctx, Permission::Delete)?;
    let r = c.api.core().delete_phone(&id, f.version).await;
    c.record_result(&ctx, "delete phone", &id, &r);
    r?;
    Ok(Redirect::to("/phones").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_forms_become_assignments() {
        let user = assignment_of("user", " u1 ", "").unwrap();
        assert_eq!(
            user.mode,
            Some(Mode::User(pb::UserAssignment {
                user_id: "u1".into()
            }))
        );
        let site = assignment_of("site", "", "201").unwrap();
        assert!(matches!(site.mode, Some(Mode::Site(s)) if s.extension == "201"));
        assert!(matches!(
            assignment_of("unassigned", "x", "y").unwrap().mode,
            Some(Mode::Unassigned(_))
        ));
        assert_eq!(assignment_of("bogus", "", "").unwrap_err().status, 400);
        // A common-area phone keeps what the form does not show; another mode starts clean.
        let old = pb::Assignment {
            mode: Some(Mode::Site(pb::SiteAssignment {
                extension: "201".into(),
                outbound_caller_id: "+15551230000".into(),
                call_patterns: vec!["local".into()],
                ..Default::default()
            })),
        };
        let kept = keep_site_settings(assignment_of("site", "", "202").unwrap(), Some(old.clone()));
        assert!(
            matches!(kept.mode, Some(Mode::Site(s)) if s.extension == "202"
            && s.outbound_caller_id == "+15551230000" && s.call_patterns == ["local"])
        );
        let user = keep_site_settings(assignment_of("user", "u1", "").unwrap(), Some(old));
        assert!(matches!(user.mode, Some(Mode::User(_))));
    }
}
