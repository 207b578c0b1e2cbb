//! One phone's page: status per line (live), How to Register, lines, edit, assignment,
//! provisioning and overrides, each control shown to a token that may use it.

use axum::{
    extract::{Path, State},
    http::Uri,
};
use dialtone_domain::{placement, settings};
use dialtone_proto::config::v1::{self as pb, assignment::Mode};
use maud::{Markup, html};

use super::{
    Console, Ctx, Problem,
    form::{self, FormError},
    layout, phones,
};
use crate::rest::{phones as rest_phones, shapes::rfc3339};

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
        pb::Transport::Ws => ("WS", a.ws.clone()),
        pb::Transport::Wss => ("WSS", a.wss.clone()),
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
    let provision = core.provision_state(&id).await?;
    let (mode, user_id, extension) = match p.assignment.as_ref().and_then(|a| a.mode.as_ref()) {
        Some(Mode::User(u)) => ("user", u.user_id.clone(), String::new()),
        Some(Mode::Site(s)) => ("site", String::new(), s.extension.clone()),
        _ => ("unassigned", String::new(), String::new()),
    };
    // A REMOTE phone has no lines or settings of its own to edit.
    let remote = p.kind == pb::PhoneKind::Remote as i32;
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
                thead { tr { th scope="col" { "#" } th scope="col" { "SIP user" } th scope="col" { "Label" } @if ctx.can_edit { th scope="col" { "Password" } th scope="col" { "Line" } } } }
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
                                td { @if p.lines.len() > 1 { (super::phone_lines::remove_button(&ctx, &p, i)) } }
                            }
                        }
                    }
                }
            }
            @if ctx.can_edit && !remote { (super::phone_lines::add_form(&ctx, &p)) }
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
                table id="overrides" { thead { tr { th scope="col" { "Setting" } th scope="col" { "Value" } } }
                    tbody { @for (k, v) in &overrides { tr { td { code { (k) } } td { code { (layout::setting_value(k, &v.to_string())) } } } } } }
            }
            @if ctx.can_edit && !remote {
                p { a class="button" href={ "/phones/" (id) "/overrides" } { "Edit overrides" } }
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
