//! Base Settings: the list, Add (by meta-base, from its template, with typed fields and
//! inline messages), a profile's settings, and Edit (the same fields, saved at the
//! version read: a stale form gets 409).

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, RawForm, State},
    response::{IntoResponse, Redirect, Response},
};
use dialtone_auth::Permission;
use dialtone_domain::settings::{META_BASES, template};
use dialtone_proto::config::v1::{self as pb, MetaBase, PhoneSettings};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Console, Ctx, Problem,
    context::allow,
    form::{self, FormError},
    layout,
    settings_form::{self, FIELDS, Kind},
};
use crate::rest::{paging, shapes};

/// `GET /base-settings`.
pub async fn list(State(c): State<Console>, ctx: Ctx) -> Result<Markup, Problem> {
    let core = c.api.core().clone();
    let bases = paging::read_all("base settings profiles", |t| {
        let core = core.clone();
        async move { core.list_base_settings(1000, &t).await }
    })
    .await?;
    let metas: Vec<(String, String)> = META_BASES
        .iter()
        .map(|m| (shapes::meta_base_id(*m), shapes::meta_base_name(*m)))
        .collect();
    Ok(layout::page(
        Some(&ctx),
        "Base Settings",
        "/base-settings",
        html! {
            @if ctx.can_all {
                form class="inline card" method="get" action="/base-settings/new" {
                    (form::select("Phone meta-base", "meta", &metas, "", None))
                    button type="submit" class="primary" { "Add" }
                }
            }
            table {
                caption { (bases.len()) " profiles" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Meta-base" } th scope="col" { "Id" } } }
                tbody {
                    @for b in &bases {
                        tr {
                            th scope="row" { a href={ "/base-settings/" (b.id) } { (b.name) } }
                            td { (shapes::meta_base_name(MetaBase::try_from(b.meta_base).unwrap_or_default())) }
                            td { code { (b.id) } }
                        }
                    }
                }
            }
        },
    ))
}

/// Which meta-base a new profile is for.
#[derive(Debug, Deserialize)]
pub struct NewQuery {
    #[serde(default)]
    meta: String,
}

fn settings_fields(values: &HashMap<&'static str, String>, err: Option<&FormError>) -> Markup {
    let mut sections: Vec<&str> = FIELDS.iter().map(|f| f.section).collect();
    sections.dedup();
    html! {
        @for section in sections {
            fieldset {
                legend { (section) }
                @for fd in FIELDS.iter().filter(|f| f.section == section) {
                    @let id = format!("s-{}", fd.name.replace('_', "-"));
                    @let value = values.get(fd.name).cloned().unwrap_or_default();
                    @let e = err.and_then(|e| e.about(fd.name));
                    @let msg = format!("{id}-error");
                    div class={ "field" @if matches!(fd.kind, Kind::Bool) { " check" } } {
                        @match fd.kind {
                            Kind::Bool => {
                                input type="checkbox" id=(id) name=(fd.name) checked[!value.is_empty()];
                                label for=(id) { (fd.label) }
                            }
                            Kind::Int { min, max } => {
                                label for=(id) { (fd.label) }
                                input type="number" id=(id) name=(fd.name) value=(value) min=(min) max=(max)
                                    aria-invalid=[e.map(|_| "true")] aria-describedby=[e.map(|_| msg.as_str())];
                            }
                            Kind::Choice(options) => {
                                label for=(id) { (fd.label) }
                                select id=(id) name=(fd.name) aria-invalid=[e.map(|_| "true")] aria-describedby=[e.map(|_| msg.as_str())] {
                                    @for o in options() { option value=(o) selected[o == value] { (o) } }
                                }
                            }
                            Kind::Text | Kind::List => {
                                label for=(id) { (fd.label) }
                                input type="text" id=(id) name=(fd.name) value=(value)
                                    aria-invalid=[e.map(|_| "true")] aria-describedby=[e.map(|_| msg.as_str())];
                            }
                        }
                        @if let Some(e) = e { p class="field-error" id=(msg) { (e) } }
                    }
                }
            }
        }
    }
}

fn new_page(
    ctx: &Ctx,
    meta: MetaBase,
    name: &str,
    values: &HashMap<&'static str, String>,
    err: Option<&FormError>,
) -> Markup {
    let shown_elsewhere = err.filter(|e| {
        e.field.is_empty()
            || !FIELDS.iter().any(|f| e.field.ends_with(f.name)) && !e.field.ends_with("name")
    });
    layout::page(
        Some(ctx),
        &format!("Add base settings: {}", shapes::meta_base_name(meta)),
        "/base-settings",
        html! {
            form class="card" method="post" action="/base-settings" novalidate {
                (form::csrf(ctx))
                input type="hidden" name="meta" value=(shapes::meta_base_id(meta));
                (form::banner(shown_elsewhere))
                (form::text("Name", "name", name, true, err.and_then(|e| e.about("name"))))
                p class="help" { "Defaults are the " (shapes::meta_base_name(meta)) " template's." }
                (settings_fields(values, err))
                button type="submit" class="primary" { "Save" }
            }
        },
    )
}

fn meta_of(id: &str) -> Result<MetaBase, Problem> {
    shapes::meta_base_of(id)
        .ok_or_else(|| Problem::new(400, format!("unknown phone meta-base '{id}'")))
}

/// `GET /base-settings/new?meta=...`: the template's form.
pub async fn new_form(
    State(c): State<Console>,
    ctx: Ctx,
    Query(q): Query<NewQuery>,
) -> Result<Markup, Problem> {
    allow(&c, &ctx, Permission::All)?;
    let meta = meta_of(&q.meta)?;
    Ok(new_page(
        &ctx,
        meta,
        "",
        &settings_form::values(&template(meta)),
        None,
    ))
}

/// `POST /base-settings`.
pub async fn create(
    State(c): State<Console>,
    ctx: Ctx,
    RawForm(body): RawForm,
) -> Result<Response, Problem> {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map_or("", String::as_str);
    ctx.check_csrf(get("_csrf"))?;
    allow(&c, &ctx, Permission::All)?;
    let meta = meta_of(get("meta"))?;
    let name = get("name").trim().to_owned();
    let fail = |err: FormError, settings: &PhoneSettings| {
        let values = settings_form::values(settings);
        let mut shown = values.clone();
        // What was typed, as typed, so the admin corrects it rather than retypes it.
        for fd in FIELDS {
            shown.insert(fd.name, form.get(fd.name).cloned().unwrap_or_default());
        }
        (
            err.status_code(),
            new_page(&ctx, meta, &name, &shown, Some(&err)),
        )
            .into_response()
    };
    let base_template = template(meta);
    let settings = match settings_form::apply(&base_template, &form) {
        Ok(s) => s,
        Err(e) => return Ok(fail(e, &base_template)),
    };
    let b = pb::BaseSettings {
        id: shapes::slug(&name),
        name: name.clone(),
        meta_base: meta as i32,
        settings: Some(settings.clone()),
        version: 0,
    };
    match c.api.core().create_base_settings(b).await {
        Ok(b) => {
            c.record(&ctx, "create base settings", &b.id, "ok");
            Ok(Redirect::to(&format!("/base-settings/{}", b.id)).into_response())
        }
        Err(e) => {
            c.record(&ctx, "create base settings", &name, &e.to_string());
            match form_error(e) {
                Ok(err) => Ok(fail(err, &settings)),
                Err(p) => Err(p),
            }
        }
    }
}

/// A refusal of the core shown on the form (400 and 409, with the field it names as the
/// form names it), or the error page for anything else.
fn form_error(e: crate::ConfigError) -> Result<FormError, Problem> {
    let status = crate::rest::errors::ApiError::from(e);
    if status.status() != 400 && status.status() != 409 {
        return Err(Problem::from(status));
    }
    let mut err = FormError::from(status);
    // `base_settings.settings.sip_dscp` → the form's `sip_dscp`.
    if let Some(f) = FIELDS.iter().find(|f| err.field.ends_with(f.name)) {
        err.field = f.name.to_owned();
    } else if err.field.ends_with(".id") || err.field.ends_with(".name") {
        err.field = "name".into();
    }
    Ok(err)
}

fn edit_page(
    ctx: &Ctx,
    b: &pb::BaseSettings,
    name: &str,
    values: &HashMap<&'static str, String>,
    err: Option<&FormError>,
) -> Markup {
    let elsewhere = err.filter(|e| {
        e.field.is_empty()
            || !FIELDS.iter().any(|f| e.field.ends_with(f.name)) && !e.field.ends_with("name")
    });
    layout::page(
        Some(ctx),
        &format!("Edit base settings: {}", b.name),
        "/base-settings",
        html! {
            form class="card" method="post" action={ "/base-settings/" (b.id) } novalidate {
                (form::csrf(ctx))
                input type="hidden" name="version" value=(b.version);
                (form::banner(elsewhere))
                (form::text("Name", "name", name, true, err.and_then(|e| e.about("name"))))
                p class="help" { "Every phone of this profile gets the change; phones that apply changes without a reboot do so at once." }
                (settings_fields(values, err))
                button type="submit" class="primary" { "Save" }
                " "
                a href={ "/base-settings/" (b.id) } { "Cancel" }
            }
        },
    )
}

/// The settings profile `b` gives its phones (its own over its template's), as its edit
/// form shows them.
fn shown_settings(b: &pb::BaseSettings) -> PhoneSettings {
    let meta = MetaBase::try_from(b.meta_base).unwrap_or_default();
    dialtone_domain::settings::effective(meta, &b.settings.clone().unwrap_or_default(), None)
}

/// `GET /base-settings/{id}/edit`.
pub async fn edit_form(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Markup, Problem> {
    allow(&c, &ctx, Permission::All)?;
    let b = c.api.core().get_base_settings(&id).await?;
    // What the profile gives its phones: its own values over its template's.
    let values = settings_form::values(&shown_settings(&b));
    Ok(edit_page(&ctx, &b, &b.name, &values, None))
}

/// `POST /base-settings/{id}`: the edit form, at the version it was read.
pub async fn update(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    RawForm(body): RawForm,
) -> Result<Response, Problem> {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map_or("", String::as_str);
    ctx.check_csrf(get("_csrf"))?;
    allow(&c, &ctx, Permission::All)?;
    let mut b = c.api.core().get_base_settings(&id).await?;
    b.version = form::version_of(get("version"))?;
    let name = get("name").trim().to_owned();
    let fail = |err: FormError| {
        let shown = FIELDS
            .iter()
            .map(|f| (f.name, get(f.name).to_owned()))
            .collect();
        (
            err.status_code(),
            edit_page(&ctx, &b, &name, &shown, Some(&err)),
        )
            .into_response()
    };
    let before = shown_settings(&b);
    let stored = b.settings.clone().unwrap_or_default();
    let settings = match settings_form::apply(&before, &form)
        .and_then(|after| settings_form::changed_only(&stored, &before, &after))
    {
        Ok(s) => s,
        Err(e) => return Ok(fail(e)),
    };
    let mut changed = b.clone();
    changed.name = name.clone();
    changed.settings = Some(settings);
    match c.api.core().update_base_settings(changed).await {
        Ok(_) => {
            c.record(&ctx, "edit base settings", &id, "ok");
            Ok(Redirect::to(&format!("/base-settings/{id}")).into_response())
        }
        Err(e) => {
            c.record(&ctx, "edit base settings", &id, &e.to_string());
            form_error(e).map(fail)
        }
    }
}

/// `GET /base-settings/{id}`.
pub async fn detail(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Markup, Problem> {
    let b = c.api.core().get_base_settings(&id).await?;
    let meta = MetaBase::try_from(b.meta_base).unwrap_or_default();
    let (_, targets) = super::phones::choices(&c).await?;
    let flat = b
        .settings
        .as_ref()
        .map(crate::settings::flatten)
        .unwrap_or_default();
    Ok(layout::page(
        Some(&ctx),
        &b.name,
        "/base-settings",
        html! {
            dl class="card" {
                dt { "Meta-base" } dd { (shapes::meta_base_name(meta)) }
                dt { "Id" } dd { code { (b.id) } }
                dt { "Version" } dd { (b.version) }
            }
            @if ctx.can_all {
                p { a class="button" href={ "/base-settings/" (b.id) "/edit" } { "Edit" } }
            }
            p class="help" { "Settings the form does not show (softphone audio rules, custom properties, digest algorithms) change with " code { "dialtonectl base-settings update" } " or the REST API (" code { "PUT /api/v2/telephony/providers/edges/phonebasesettings/" (b.id) } ")." }
            (super::migrate::form_of(&ctx, &b.id, &targets))
            table {
                caption { "Settings" }
                thead { tr { th scope="col" { "Setting" } th scope="col" { "Value" } } }
                tbody {
                    @for (k, v) in &flat {
                        tr { td { code { (k) } } td { code { (layout::setting_value(k, &v.to_string())) } } }
                    }
                }
            }
        },
    ))
}
