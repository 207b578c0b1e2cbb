//! One phone: create it (its passwords shown once), its detail page (status, lines,
//! assignment, How to Register, provisioning), edit, restart / resync / log out, reset a
//! line's password (shown once) and delete. Writes go through the same `ConfigCore` calls
//! and permission checks as gRPC and REST.

use axum::{
    Form,
    extract::{Path, State},
    http::Uri,
    response::{IntoResponse, Redirect, Response},
};
use dialtone_auth::Permission;
use dialtone_domain::{actions::Act, keys, placement, settings};
use dialtone_proto::{
    config::v1::{self as pb, PhoneKind, assignment::Mode},
    provisioning::v1::ProvisionState,
};
use maud::{Markup, html};
use prost::Message as _;
use serde::Deserialize;

use super::{
    Console, Ctx, Problem,
    form::{self, FormError},
    layout, phones,
    session::Flash,
};
use crate::rest::{phones as rest_phones, shapes::rfc3339};

/// The create and edit forms' fields.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PhoneForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    base: String,
    #[serde(default)]
    hardware: String,
    #[serde(default)]
    line_user: String,
    #[serde(default)]
    line_label: String,
}

/// The kinds a phone may be created as: `(value, label)`.
const KINDS: [(&str, &str); 3] = [
    ("unmanaged", "Unmanaged (configured by hand)"),
    ("managed", "Managed (provisioned by its MAC)"),
    ("webrtc", "WebRTC (a browser)"),
];

fn kind_of(v: &str) -> PhoneKind {
    match v {
        "managed" => PhoneKind::Managed,
        "webrtc" => PhoneKind::Webrtc,
        _ => PhoneKind::Unmanaged,
    }
}

/// Refuses `ctx` unless its token grants `needed` (the one rule, `dialtone_auth`).
pub fn allow(c: &Console, ctx: &Ctx, needed: Permission) -> Result<(), Problem> {
    c.api
        .tokens()
        .authorize_header(Some(&ctx.bearer()), needed)
        .map(|_| ())
        .map_err(|e| Problem::from(crate::ConfigError::from(e)))
}

async fn create_form(
    c: &Console,
    ctx: &Ctx,
    f: &PhoneForm,
    err: Option<&FormError>,
) -> Result<Markup, Problem> {
    let (sites, bases) = phones::choices(c).await?;
    let kinds: Vec<(String, String)> = KINDS
        .iter()
        .map(|(v, l)| (v.to_string(), l.to_string()))
        .collect();
    let about = |f: &str| err.and_then(|e| e.about(f));
    Ok(layout::page(
        Some(ctx),
        "Create phone",
        "/phones",
        html! {
            form class="card" method="post" action="/phones" {
                (form::csrf(ctx))
                (form::banner(err.filter(|e| e.field.is_empty() || !["name", "site_id", "base_settings_id", "hardware_id", "sip_user", "kind"].iter().any(|f| e.field.ends_with(f)))))
                (form::text("Name", "name", &f.name, true, about("name")))
                (form::select("Kind", "kind", &kinds, &f.kind, about("kind")))
                (form::select("Site", "site", &sites, &f.site, about("site_id")))
                (form::select("Base settings", "base", &bases, &f.base, about("base_settings_id")))
                (form::text("Hardware id (MAC, managed phones)", "hardware", &f.hardware, false, about("hardware_id")))
                (form::text("Line SIP user (empty: generated)", "line_user", &f.line_user, false, about("sip_user")))
                (form::text("Line label", "line_label", &f.line_label, false, about("display_name")))
                button type="submit" class="primary" { "Create" }
            }
        },
    ))
}

/// `GET /phones/new`.
pub async fn new_form(State(c): State<Console>, ctx: Ctx) -> Result<Markup, Problem> {
    allow(&c, &ctx, Permission::Add)?;
    create_form(&c, &ctx, &PhoneForm::default(), None).await
}

fn secrets_of(w: &crate::phones::Written) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = w
        .lines
        .iter()
        .map(|l| {
            (
                format!("Line {} ({}) SIP password", l.line_index + 1, l.sip_user),
                l.password.clone(),
            )
        })
        .collect();
    if let Some(d) = &w.device {
        out.push((
            format!("Provisioning password of {}", d.user),
            d.password.clone(),
        ));
    }
    out
}

/// `POST /phones`: creates the phone; its passwords wait, once, on its page.
pub async fn create(
    State(c): State<Console>,
    ctx: Ctx,
    Form(f): Form<PhoneForm>,
) -> Result<Response, Problem> {
    ctx.check_csrf(&f.csrf)?;
    allow(&c, &ctx, Permission::Add)?;
    let phone = pb::Phone {
        name: f.name.trim().to_owned(),
        kind: kind_of(&f.kind) as i32,
        site_id: f.site.clone(),
        base_settings_id: f.base.clone(),
        hardware_id: f.hardware.trim().to_owned(),
        lines: vec![pb::Line {
            sip_user: f.line_user.trim().to_owned(),
            display_name: f.line_label.trim().to_owned(),
            ..Default::default()
        }],
        ..Default::default()
    };
    match c.api.core().create_phone(phone).await {
        Ok(w) => {
            let path = format!("/phones/{}", w.phone.id);
            c.sessions.lock().set_flash(
                &ctx.sid,
                Flash {
                    for_path: path.clone(),
                    secrets: secrets_of(&w),
                },
            );
            c.record(&ctx, "create phone", &w.phone.id, "ok");
            Ok(Redirect::to(&path).into_response())
        }
        Err(e) => {
            c.record(&ctx, "create phone", &f.name, &e.to_string());
            let status = crate::rest::errors::ApiError::from(e);
            let code = status.status();
            let err = FormError::from(status);
            let page = create_form(&c, &ctx, &f, Some(&err)).await?;
            Ok((
                axum::http::StatusCode::from_u16(code)
                    .unwrap_or(axum::http::StatusCode::BAD_REQUEST),
                page,
            )
                .into_response())
        }
    }
}

/// The registrar addresses a phone of `site_id` registers to, in its order (primary first).
async fn registrars(c: &Console, p: &pb::Phone) -> Vec<(String, pb::SipAddresses)> {
    let core = c.api.core();
    let Ok(site) = core.get_site(&p.site_id).await else {
        return Vec::new();
    };
    let Ok(group) = core.get_edge_group(&site.edge_group_id).await else {
        return Vec::new();
    };
    placement::node_ids(&p.id, &group.edges, true)
        .into_iter()
        .filter_map(|n| {
            group
                .edges
                .iter()
                .find(|e| e.node_id == n)
                .map(|e| (n, e.addresses.clone().unwrap_or_default()))
        })
        .collect()
}

fn address_for(a: &pb::SipAddresses, t: pb::Transport) -> (&'static str, String) {
    match t {
        pb::Transport::Tcp => ("TCP", a.tcp.clone()),
        pb::Transport::Tls => ("TLS", a.tls.clone()),
        pb::Transport::Ws | pb::Transport::Wss => ("WSS", a.wss.clone()),
        _ => ("UDP", a.udp.clone()),
    }
}

/// `GET /phones/{id}`.
pub async fn detail(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Markup, Problem> {
    let shown = rest_phones::get(State(c.api.clone()), ctx.headers(), Path(id.clone()))
        .await?
        .0;
    let core = c.api.core();
    let p = core.get_phone(&id).await?;
    let flash = c.sessions.lock().take_flash(&ctx.sid, uri.path());
    let base = match p.base_settings_id.as_str() {
        "" => None,
        b => core.get_base_settings(b).await.ok(),
    };
    let (_, effective) = settings::of_phone(base.as_ref(), p.overrides.as_ref());
    let transport = effective.transport();
    let registrars = registrars(&c, &p).await;
    let overrides = p
        .overrides
        .as_ref()
        .map(crate::settings::flatten)
        .unwrap_or_default();
    let provision: Option<ProvisionState> = core
        .store()
        .get(&keys::provision(&id))
        .await
        .ok()
        .flatten()
        .and_then(|kv| ProvisionState::decode(kv.value.as_slice()).ok());
    let (mode, user_id, extension) = match p.assignment.as_ref().and_then(|a| a.mode.as_ref()) {
        Some(Mode::User(u)) => ("user", u.user_id.clone(), String::new()),
        Some(Mode::Site(s)) => ("site", String::new(), s.extension.clone()),
        _ => ("unassigned", String::new(), String::new()),
    };
    let body = html! {
        @if let Some(f) = &flash {
            section class="card secret" aria-labelledby="secret-h" {
                h2 id="secret-h" { "Passwords: shown this once" }
                p { "Copy them now: Dialtone keeps only their digests, and this page will not show them again." }
                @for (i, (label, value)) in f.secrets.iter().enumerate() {
                    div class="field" {
                        label for={ "secret-" (i) } { (label) }
                        div class="copy" {
                            input type="text" readonly id={ "secret-" (i) } value=(value) class="secret-value";
                            button type="button" data-copy={ "secret-" (i) } { "Copy" }
                        }
                    }
                }
            }
        }
        div class="grid" {
            section class="card" aria-labelledby="status-h" data-live-status="phone" {
                h2 id="status-h" { "Status" }
                p data-phone-id=(id) { span data-status-for=(id) { (phones::status_cell(&shown)) } }
                @if let Some(s) = &shown.status {
                    table { caption { "Lines" } thead { tr { th scope="col" { "Address of record" } th scope="col" { "Registered" } } }
                        tbody { @for l in &s.line_statuses { tr { td { code { (l.address_of_record) } } td { @if l.reachable { "yes" } @else { "no" } } } } }
                    }
                }
                @if ctx.can_edit {
                    form method="post" action={ "/phones/" (id) "/act" } class="inline" {
                        (form::csrf(&ctx))
                        button type="submit" name="act" value="restart" { "Restart" }
                        button type="submit" name="act" value="resync" { "Resync" }
                        button type="submit" name="act" value="logout" { "Log out" }
                    }
                }
            }
            section class="card" aria-labelledby="register-h" {
                h2 id="register-h" { "How to Register" }
                dl {
                    dt { "Realm" } dd { code { (core.realm()) } }
                    @for (i, l) in p.lines.iter().enumerate() {
                        dt { "Line " (i + 1) " user" } dd { code { (l.sip_user) } }
                    }
                    dt { "Transport" } dd { (address_for(&pb::SipAddresses::default(), transport).0) }
                    dt { "Registration period" } dd { (effective.registration_period_s.unwrap_or(3600)) " s" }
                    @for (i, (node, a)) in registrars.iter().enumerate() {
                        @let (_, addr) = address_for(a, transport);
                        dt { @if i == 0 { "Primary registrar" } @else { "Secondary registrar" } }
                        dd { code { (if addr.is_empty() { "(none for this transport)".to_owned() } else { addr }) } " (" (node) ")" }
                    }
                    dt { "Password" } dd { "Shown when the line was created or reset." }
                }
            }
        }
        section class="card" aria-labelledby="lines-h" {
            h2 id="lines-h" { "Lines" }
            table {
                thead { tr { th scope="col" { "#" } th scope="col" { "SIP user" } th scope="col" { "Label" } @if ctx.can_edit { th scope="col" { "Password" } } } }
                tbody {
                    @for (i, l) in p.lines.iter().enumerate() {
                        tr {
                            td { (i + 1) } td { code { (l.sip_user) } } td { (l.display_name) }
                            @if ctx.can_edit {
                                td {
                                    form method="post" action={ "/phones/" (id) "/reset-password" } class="inline" {
                                        (form::csrf(&ctx))
                                        input type="hidden" name="line" value=(i);
                                        input type="hidden" name="version" value=(p.version);
                                        button type="submit" data-confirm="The line's current password stops working. Reset it?" { "Reset password" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section class="card" aria-labelledby="edit-h" {
            h2 id="edit-h" { @if ctx.can_edit { "Edit" } @else { "Details" } }
            @if ctx.can_edit {
                (edit_form(&c, &ctx, &p, None).await?)
            } @else {
                dl {
                    dt { "Name" } dd { (p.name) }
                    dt { "Site" } dd { (shown.site.as_ref().and_then(|s| s.name.clone()).unwrap_or_default()) }
                    dt { "Base settings" } dd { (shown.phone_base_settings.as_ref().and_then(|s| s.name.clone()).unwrap_or_default()) }
                    dt { "Hardware id" } dd { code { (p.hardware_id) } }
                }
            }
        }
        section class="card" aria-labelledby="assign-h" {
            h2 id="assign-h" { "Assignment" }
            @if ctx.can_edit {
                form method="post" action={ "/phones/" (id) } {
                    (form::csrf(&ctx))
                    input type="hidden" name="version" value=(p.version);
                    input type="hidden" name="form" value="assignment";
                    fieldset class="tabs" {
                        legend { "Assigned to" }
                        @for (v, l) in [("user", "User"), ("site", "Site"), ("unassigned", "Unassigned")] {
                            label class="tab" { input type="radio" name="mode" value=(v) checked[mode == v]; " " (l) }
                        }
                    }
                    (form::text("User id (User)", "user_id", &user_id, false, None))
                    (form::text("Extension (Site)", "extension", &extension, false, None))
                    button type="submit" { "Save assignment" }
                }
            } @else {
                p { (mode) @if !user_id.is_empty() { " " (user_id) } @if !extension.is_empty() { ", extension " (extension) } }
            }
        }
        section class="card" aria-labelledby="prov-h" {
            h2 id="prov-h" { "Provisioning" }
            @match &provision {
                Some(s) => dl {
                    dt { "Applied version" } dd { code { (s.applied_version) } }
                    dt { "Last fetch" } dd { (if s.last_fetch_ms > 0 { rfc3339(s.last_fetch_ms) } else { "never".into() }) }
                    dt { "Last file" } dd { (s.last_file) }
                    dt { "Last problem" } dd { (if s.last_error.is_empty() { "none" } else { s.last_error.as_str() }) }
                },
                None => p { "The phone has not fetched its configuration." },
            }
            p class="help" { "The desired version is rendered by the provisioning role: " code { "dialtonectl provisioning show " (id) } "." }
        }
        section class="card" aria-labelledby="over-h" {
            h2 id="over-h" { "Overrides of its base settings" }
            @if overrides.is_empty() { p { "None." } } @else {
                table { thead { tr { th scope="col" { "Setting" } th scope="col" { "Value" } } }
                    tbody { @for (k, v) in &overrides { tr { td { code { (k) } } td { code { (v) } } } } } }
            }
        }
        @if ctx.can_delete {
            form method="post" action={ "/phones/" (id) "/delete" } class="danger" {
                (form::csrf(&ctx))
                input type="hidden" name="version" value=(p.version);
                button type="submit" class="danger" data-confirm="Delete this phone and its lines?" { "Delete phone" }
            }
        }
    };
    Ok(layout::page(Some(&ctx), &p.name, "/phones", body))
}

async fn edit_form(
    c: &Console,
    ctx: &Ctx,
    p: &pb::Phone,
    err: Option<&FormError>,
) -> Result<Markup, Problem> {
    let (sites, bases) = phones::choices(c).await?;
    let about = |f: &str| err.and_then(|e| e.about(f));
    Ok(html! {
        form method="post" action={ "/phones/" (p.id) } {
            (form::csrf(ctx))
            input type="hidden" name="version" value=(p.version);
            (form::banner(err))
            (form::text("Name", "name", &p.name, true, about("name")))
            (form::select("Site", "site", &sites, &p.site_id, about("site_id")))
            (form::select("Base settings", "base", &bases, &p.base_settings_id, about("base_settings_id")))
            (form::text("Hardware id", "hardware", &p.hardware_id, false, about("hardware_id")))
            button type="submit" { "Save" }
        }
    })
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
        let a = assignment_of(&f.mode, &f.user_id, &f.extension)?;
        // A site extension is kept when the phone already had one and none is given.
        p.assignment = Some(a);
        "assign phone"
    } else {
        p.name = f.name.trim().to_owned();
        p.site_id = f.site.clone();
        p.base_settings_id = f.base.clone();
        p.hardware_id = f.hardware.trim().to_owned();
        "edit phone"
    };
    match core.update_phone(p.clone()).await {
        Ok(w) => {
            if !w.lines.is_empty() || w.device.is_some() {
                c.sessions.lock().set_flash(
                    &ctx.sid,
                    Flash {
                        for_path: format!("/phones/{id}"),
                        secrets: secrets_of(&w),
                    },
                );
            }
            c.record(&ctx, what, &id, "ok");
            Ok(Redirect::to(&format!("/phones/{id}")).into_response())
        }
        Err(e) => {
            c.record(&ctx, what, &id, &e.to_string());
            Err(e.into())
        }
    }
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
    c.record(
        &ctx,
        &f.act,
        &id,
        &r.as_ref().map_or_else(|e| e.to_string(), |_| "ok".into()),
    );
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
    c.record(
        &ctx,
        "reset line password",
        &format!("{id}.{}", f.line),
        &r.as_ref().map_or_else(|e| e.to_string(), |_| "ok".into()),
    );
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
    c.record(
        &ctx,
        "delete phone",
        &id,
        &r.as_ref().map_or_else(|e| e.to_string(), |_| "ok".into()),
    );
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
    }

    #[test]
    fn kinds_default_to_unmanaged() {
        for (v, k) in [
            ("managed", PhoneKind::Managed),
            ("webrtc", PhoneKind::Webrtc),
            ("unmanaged", PhoneKind::Unmanaged),
            ("", PhoneKind::Unmanaged),
            ("remote", PhoneKind::Unmanaged),
        ] {
            assert_eq!(kind_of(v), k, "{v}");
        }
    }
}
