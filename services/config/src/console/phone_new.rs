//! Creating a phone: the form (kind, site, base settings, hardware id, its first line) and
//! the write, whose passwords wait, once, on the phone's page.

use axum::{
    Form,
    extract::State,
    response::{IntoResponse, Redirect, Response},
};
use dialtone_auth::Permission;
use dialtone_proto::config::v1::{self as pb, PhoneKind};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Console, Ctx, Problem,
    context::allow,
    form::{self, FormError},
    layout, phones,
    session::Flash,
};

/// The create form's fields.
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
const KINDS: [(&str, &str); 4] = [
    ("", "Managed with a hardware id, else unmanaged"),
    ("unmanaged", "Unmanaged (configured by hand)"),
    ("managed", "Managed (provisioned by its MAC)"),
    ("webrtc", "WebRTC (a browser)"),
];

/// The kind a create form asks for; none chosen: managed with a hardware id, else
/// unmanaged (the REST API's rule).
fn kind_of(v: &str, hardware_id: &str) -> PhoneKind {
    match v {
        "managed" => PhoneKind::Managed,
        "webrtc" => PhoneKind::Webrtc,
        "unmanaged" => PhoneKind::Unmanaged,
        _ if !hardware_id.trim().is_empty() => PhoneKind::Managed,
        _ => PhoneKind::Unmanaged,
    }
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

pub(super) fn secrets_of(w: &crate::phones::Written) -> Vec<(String, String)> {
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
        kind: kind_of(&f.kind, &f.hardware) as i32,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_default_as_the_rest_api_does() {
        assert_eq!(kind_of("", "00:04:f2:aa:bb:cc"), PhoneKind::Managed);
        assert_eq!(
            kind_of("unmanaged", "00:04:f2:aa:bb:cc"),
            PhoneKind::Unmanaged
        );
        for (v, k) in [
            ("managed", PhoneKind::Managed),
            ("webrtc", PhoneKind::Webrtc),
            ("unmanaged", PhoneKind::Unmanaged),
            ("", PhoneKind::Unmanaged),
            ("auto", PhoneKind::Unmanaged),
            ("remote", PhoneKind::Unmanaged),
        ] {
            assert_eq!(kind_of(v, ""), k, "{v}");
        }
    }
}
