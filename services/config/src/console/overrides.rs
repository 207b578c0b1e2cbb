//! A phone's overrides of its base settings, edited in the browser: every field of the
//! settings form with what the phone gets now beside it, and a value that either
//! overrides the profile or is left to inherit (an empty box, a checkbox field's
//! "inherit" choice). Saved at the version it was read, through the same `UpdatePhone`
//! as gRPC and REST, so a stale form gets 409 and a value the core refuses names its field.

use std::collections::HashMap;

use axum::{
    extract::{Path, RawForm, State},
    response::{IntoResponse, Redirect, Response},
};
use dialtone_auth::Permission;
use dialtone_domain::settings;
use dialtone_proto::config::v1::{self as pb, PhoneSettings};
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::{
    Console, Ctx, Problem,
    context::allow,
    form::{self, FormError},
    layout,
    settings_form::{self, FIELDS, Kind},
};

/// `current` overrides with the form's fields set (a value) or removed (empty, or
/// `inherit`); overrides the form does not show are kept. The first bad field is refused.
pub fn apply(
    current: &PhoneSettings,
    form: &HashMap<String, String>,
) -> Result<PhoneSettings, FormError> {
    let mut v = match serde_json::to_value(current) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for fd in FIELDS {
        let raw = form.get(fd.name).map(|s| s.trim()).unwrap_or("");
        let raw = if raw == "inherit" { "" } else { raw };
        match settings_form::parse(&fd, raw)? {
            // An empty list is "not overridden" too.
            Some(Value::Array(a)) if a.is_empty() => v.remove(fd.name),
            Some(x) => v.insert(fd.name.to_owned(), x),
            None => v.remove(fd.name),
        };
    }
    serde_json::from_value(Value::Object(v)).map_err(|e| FormError {
        status: 400,
        field: String::new(),
        message: format!("the overrides do not fit: {e}"),
    })
}

/// The form's value of each field in `overrides` (empty: inherited).
fn shown(overrides: &PhoneSettings) -> HashMap<&'static str, String> {
    let set = crate::settings::flatten(overrides);
    settings_form::values(overrides)
        .into_iter()
        .map(|(k, v)| {
            let v = match FIELDS.iter().find(|f| f.name == k).map(|f| f.kind) {
                // A checkbox field is "inherit" unless the overrides name it.
                Some(Kind::Bool) => match set.get(k) {
                    Some(Value::Bool(true)) => "on".into(),
                    Some(Value::Bool(false)) => "off".into(),
                    _ => String::new(),
                },
                _ => v,
            };
            (k, v)
        })
        .collect()
}

fn page(
    ctx: &Ctx,
    p: &pb::Phone,
    effective: &HashMap<&'static str, String>,
    values: &HashMap<&'static str, String>,
    err: Option<&FormError>,
) -> Markup {
    let mut sections: Vec<&str> = FIELDS.iter().map(|f| f.section).collect();
    sections.dedup();
    let elsewhere = err.filter(|e| !FIELDS.iter().any(|f| e.field.ends_with(f.name)));
    layout::page(
        Some(ctx),
        &format!("Overrides: {}", p.name),
        "/phones",
        html! {
            form class="card" method="post" action={ "/phones/" (p.id) "/overrides" } novalidate {
                (form::csrf(ctx))
                input type="hidden" name="version" value=(p.version);
                (form::banner(elsewhere))
                p class="help" { "An empty field, or " em { "inherit" } ", takes the base settings' value, shown under it as what the phone gets now." }
                @for section in sections {
                    fieldset {
                        legend { (section) }
                        @for fd in FIELDS.iter().filter(|f| f.section == section) {
                            @let id = format!("o-{}", fd.name.replace('_', "-"));
                            @let value = values.get(fd.name).cloned().unwrap_or_default();
                            @let now = effective.get(fd.name).cloned().unwrap_or_default();
                            @let e = err.and_then(|e| e.about(fd.name));
                            @let help = format!("{id}-now");
                            @let described = match e { Some(_) => format!("{help} {id}-error"), None => help.clone() };
                            div class="field" {
                                label for=(id) { (fd.label) }
                                @match fd.kind {
                                    Kind::Bool => {
                                        select id=(id) name=(fd.name) aria-describedby=(described) {
                                            option value="inherit" selected[value.is_empty()] { "inherit" }
                                            option value="on" selected[value == "on"] { "on" }
                                            option value="off" selected[value == "off"] { "off" }
                                        }
                                    }
                                    Kind::Choice(options) => {
                                        select id=(id) name=(fd.name) aria-invalid=[e.map(|_| "true")] aria-describedby=(described) {
                                            option value="inherit" selected[value.is_empty()] { "inherit" }
                                            @for o in options() { option value=(o) selected[o == value] { (o) } }
                                        }
                                    }
                                    Kind::Int { min, max } => {
                                        input type="number" id=(id) name=(fd.name) value=(value) min=(min) max=(max)
                                            aria-invalid=[e.map(|_| "true")] aria-describedby=(described);
                                    }
                                    Kind::Text | Kind::List => {
                                        input type="text" id=(id) name=(fd.name) value=(value)
                                            aria-invalid=[e.map(|_| "true")] aria-describedby=(described);
                                    }
                                }
                                p class="help" id=(help) { "Now: " code { (if now.is_empty() { "(unset)".to_owned() } else { layout::setting_value(fd.name, &now) }) } }
                                @if let Some(e) = e { p class="field-error" id={ (id) "-error" } { (e) } }
                            }
                        }
                    }
                }
                button type="submit" class="primary" { "Save overrides" }
                " "
                a href={ "/phones/" (p.id) } { "Cancel" }
            }
        },
    )
}

/// What phone `p` gets now for each field (its profile's, or its own override).
async fn effective(c: &Console, p: &pb::Phone) -> HashMap<&'static str, String> {
    let base = match p.base_settings_id.as_str() {
        "" => None,
        b => c.api.core().get_base_settings(b).await.ok(),
    };
    let (_, eff) = settings::of_phone(base.as_ref(), p.overrides.as_ref());
    settings_form::values(&eff)
        .into_iter()
        .map(|(k, v)| {
            let bool_field = FIELDS
                .iter()
                .any(|f| f.name == k && matches!(f.kind, Kind::Bool));
            (
                k,
                if bool_field && v.is_empty() {
                    "off".into()
                } else {
                    v
                },
            )
        })
        .collect()
}

/// Refuses a REMOTE phone: it does not register, and has no settings to override.
fn takes_overrides(p: &pb::Phone) -> Result<(), Problem> {
    if p.kind == pb::PhoneKind::Remote as i32 {
        return Err(Problem::new(
            400,
            "a REMOTE phone does not register: it has no settings to override",
        ));
    }
    Ok(())
}

/// `GET /phones/{id}/overrides`.
pub async fn edit(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Markup, Problem> {
    allow(&c, &ctx, Permission::Edit)?;
    let p = c.api.core().get_phone(&id).await?;
    takes_overrides(&p)?;
    let now = effective(&c, &p).await;
    Ok(page(
        &ctx,
        &p,
        &now,
        &shown(&p.overrides.clone().unwrap_or_default()),
        None,
    ))
}

/// `POST /phones/{id}/overrides`: the form, at the version it was read.
pub async fn save(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    RawForm(body): RawForm,
) -> Result<Response, Problem> {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map_or("", String::as_str);
    ctx.check_csrf(get("_csrf"))?;
    allow(&c, &ctx, Permission::Edit)?;
    let core = c.api.core();
    let mut p = core.get_phone(&id).await?;
    takes_overrides(&p)?;
    p.version = form::version_of(get("version"))?;
    let fail = |p: &pb::Phone, now: &HashMap<&'static str, String>, err: FormError| {
        // What was typed, as typed, so the admin corrects it rather than retypes it.
        let typed = FIELDS
            .iter()
            .map(|f| {
                let v = get(f.name);
                (f.name, if v == "inherit" { "" } else { v }.to_owned())
            })
            .collect();
        (err.status_code(), page(&ctx, p, now, &typed, Some(&err))).into_response()
    };
    // "Now" on a page sent back is what the phone has, never the refused overrides.
    let now = effective(&c, &p).await;
    let current = p.overrides.clone().unwrap_or_default();
    let overrides = match apply(&current, &form) {
        Ok(o) => o,
        Err(e) => return Ok(fail(&p, &now, e)),
    };
    p.overrides = Some(overrides);
    match core.update_phone(p.clone()).await {
        Ok(_) => {
            c.record(&ctx, "edit phone overrides", &id, "ok");
            Ok(Redirect::to(&format!("/phones/{id}")).into_response())
        }
        Err(e) => {
            c.record(&ctx, "edit phone overrides", &id, &e.to_string());
            let mut err = FormError::from(e);
            // `phone.overrides.sip_dscp` → the form's `sip_dscp`.
            if let Some(f) = FIELDS.iter().find(|f| err.field.ends_with(f.name)) {
                err.field = f.name.to_owned();
            }
            Ok(fail(&p, &now, err))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_field_overrides_or_inherits() {
        let current = PhoneSettings {
            sip_dscp: Some(10),
            mwi_enabled: Some(false),
            codecs: vec!["audio/PCMU".into()],
            custom_properties: vec![pb::CustomProperty {
                name: "x".into(),
                value: "1".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        // Nothing typed: every shown field inherits; hidden ones stay.
        let cleared = apply(&current, &form(&[])).unwrap();
        assert_eq!(cleared.sip_dscp, None);
        assert_eq!(cleared.mwi_enabled, None);
        assert!(cleared.codecs.is_empty());
        assert_eq!(cleared.custom_properties, current.custom_properties);
        // Values override, "inherit" and empty do not, "off" is an override too.
        let set = apply(
            &current,
            &form(&[
                ("sip_dscp", "46"),
                ("mwi_enabled", "off"),
                ("dynamic_reload", "inherit"),
                ("transport", "TRANSPORT_TCP"),
                ("codecs", " , "),
            ]),
        )
        .unwrap();
        assert_eq!(set.sip_dscp, Some(46));
        assert_eq!(set.mwi_enabled, Some(false));
        assert_eq!(set.dynamic_reload, None);
        assert_eq!(set.transport(), pb::Transport::Tcp);
        assert!(set.codecs.is_empty(), "an empty list is not an override");
    }

    #[test]
    fn a_bad_field_is_named() {
        for (field, value, why) in [
            ("sip_dscp", "99", "outside 0-63"),
            ("mwi_enabled", "maybe", "neither on nor off"),
            ("dtmf_mode", "LOUD", "not one of"),
        ] {
            let e = apply(&PhoneSettings::default(), &form(&[(field, value)])).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.message.contains(why), "{field}: {}", e.message);
        }
    }

    #[test]
    fn checkbox_fields_show_inherit_unless_set() {
        let o = PhoneSettings {
            mwi_enabled: Some(false),
            dynamic_reload: Some(true),
            ..Default::default()
        };
        let v = shown(&o);
        assert_eq!(v["mwi_enabled"], "off");
        assert_eq!(v["dynamic_reload"], "on");
        assert_eq!(v["e911_enabled"], "");
        assert_eq!(v["sip_dscp"], "");
    }
}
