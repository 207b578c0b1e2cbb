//! `/phonebasesettings`: base settings profiles listed, read, created from a meta-base's
//! template, replaced and deleted, their settings as Genesys Cloud's property bag
//! (`base_properties`); the template of a meta-base; the meta-bases a profile may take.
//! Writes need `telephony:plugin:all`, as gRPC's.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
};
use dialtone_auth::Permission;
use dialtone_domain::settings::template;
use dialtone_proto::config::v1 as pb;
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    RestApi, base_properties,
    catalog::PAGE_PARAMS,
    errors::{ApiError, ErrorBody},
    paging::{self, Query},
    shapes::{self, EntityRef, Listing, PhoneBase, TELEPHONY},
};
use crate::error::ConfigError;

/// Lists base settings profiles.
#[utoipa::path(
    get,
    path = "/api/v2/telephony/providers/edges/phonebasesettings",
    tag = "Phone Base Settings",
    params(
        ("pageSize" = Option<u32>, Query, description = "Profiles per page, 1-500 (default 25)"),
        ("pageNumber" = Option<u32>, Query, description = "Page, from 1"),
    ),
    responses(
        (status = 200, description = "A page of profiles", body = Listing<PhoneBase>),
        (status = 400, description = "A bad parameter", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_bases(
    State(api): State<RestApi>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Listing<PhoneBase>>, ApiError> {
    api.caller(&headers, Permission::View)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &PAGE_PARAMS)?;
    let _turn = api.scan_turn().await;
    let bases = paging::read_all("base settings profiles", |t| {
        let core = api.core.clone();
        async move { core.list_base_settings(1000, &t).await }
    })
    .await?;
    let out = bases.iter().map(shapes::base_out).collect();
    Ok(Json(paging::page(
        out,
        &format!("{TELEPHONY}/phonebasesettings"),
        &q,
    )?))
}

/// One base settings profile.
#[utoipa::path(
    get,
    path = "/api/v2/telephony/providers/edges/phonebasesettings/{phoneBaseId}",
    tag = "Phone Base Settings",
    params(("phoneBaseId" = String, Path, description = "The profile's id")),
    responses(
        (status = 200, description = "The profile", body = PhoneBase),
        (status = 404, description = "No such profile", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_base(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<PhoneBase>, ApiError> {
    api.caller(&headers, Permission::View)?;
    Ok(Json(shapes::base_out(
        &api.core.get_base_settings(&id).await?,
    )))
}

/// The meta-bases (model families) a profile may take.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MetaBaseListing {
    /// Every meta-base.
    pub entities: Vec<EntityRef>,
}

/// The meta-bases a base settings profile may take.
#[utoipa::path(
    get,
    path = "/api/v2/telephony/providers/edges/phonebasesettings/availablemetabases",
    tag = "Phone Base Settings",
    responses((status = 200, description = "Every meta-base", body = MetaBaseListing)),
    security(("bearer" = []))
)]
pub async fn meta_bases(
    State(api): State<RestApi>,
    headers: HeaderMap,
) -> Result<Json<MetaBaseListing>, ApiError> {
    api.caller(&headers, Permission::View)?;
    Ok(Json(MetaBaseListing {
        entities: dialtone_domain::settings::META_BASES
            .iter()
            .map(|m| shapes::meta_base_ref(*m))
            .collect(),
    }))
}

/// A config error about a profile, its settings' field named as the property it is.
fn settings_error(e: ConfigError) -> ApiError {
    let field = match &e {
        ConfigError::InvalidArgument { field, .. } => {
            base_properties::property_of_error_field(field)
        }
        _ => None,
    };
    match (field, e) {
        (Some(property), ConfigError::InvalidArgument { reason, .. }) => {
            ApiError::bad_request(&property, format!("{property}: {reason}"))
        }
        (_, e) => e.into(),
    }
}

fn meta_of(body: &PhoneBase) -> Result<pb::MetaBase, ApiError> {
    shapes::meta_base_of(&body.phone_meta_base.id).ok_or_else(|| {
        ApiError::bad_request(
            "phoneMetaBase.id",
            format!(
                "unknown phone meta-base '{}' (see /phonebasesettings/availablemetabases)",
                body.phone_meta_base.id
            ),
        )
    })
}

/// Creates a profile: the meta-base's template, with the body's properties set.
#[utoipa::path(
    post,
    path = "/api/v2/telephony/providers/edges/phonebasesettings",
    tag = "Phone Base Settings",
    request_body = PhoneBase,
    responses(
        (status = 200, description = "The profile", body = PhoneBase),
        (status = 400, description = "An invalid field or property (named in messageParams.field)", body = ErrorBody),
        (status = 409, description = "A profile with this id exists", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_base(
    State(api): State<RestApi>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PhoneBase>, ApiError> {
    let who = api.caller(&headers, Permission::All)?;
    let body: PhoneBase = super::json(&body)?;
    let meta = meta_of(&body)?;
    let settings = base_properties::properties_in(&template(meta), &body.properties)?;
    let id = if body.id.is_empty() {
        shapes::slug(&body.name)
    } else {
        body.id.clone()
    };
    let b = api
        .core
        .create_base_settings(pb::BaseSettings {
            id,
            name: body.name.trim().to_owned(),
            meta_base: meta as i32,
            settings: Some(settings),
            version: 0,
        })
        .await
        .map_err(settings_error)?;
    tracing::info!(token_name = %who, profile = %b.id, "rest api created base settings");
    Ok(Json(shapes::base_out(&b)))
}

/// Replaces a profile's name and the properties the body gives (the others stay), at a
/// required `version`.
#[utoipa::path(
    put,
    path = "/api/v2/telephony/providers/edges/phonebasesettings/{phoneBaseId}",
    tag = "Phone Base Settings",
    params(("phoneBaseId" = String, Path, description = "The profile's id")),
    request_body = PhoneBase,
    responses(
        (status = 200, description = "The profile", body = PhoneBase),
        (status = 400, description = "An invalid field or property, or no version", body = ErrorBody),
        (status = 404, description = "No such profile", body = ErrorBody),
        (status = 409, description = "The version is stale", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn replace_base(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<PhoneBase>, ApiError> {
    let who = api.caller(&headers, Permission::All)?;
    let body: PhoneBase = super::json(&body)?;
    if body.version <= 0 {
        return Err(ApiError::bad_request(
            "version",
            "give the version the profile was read at",
        ));
    }
    let mut b = api.core.get_base_settings(&id).await?;
    if !body.phone_meta_base.id.is_empty() && meta_of(&body)? as i32 != b.meta_base {
        return Err(ApiError::bad_request(
            "phoneMetaBase.id",
            "a profile keeps its meta-base: move its phones to another profile (dialtonectl base-settings migrate)",
        ));
    }
    b.settings = Some(base_properties::properties_in(
        &b.settings.clone().unwrap_or_default(),
        &body.properties,
    )?);
    b.name = body.name.trim().to_owned();
    b.version = body.version;
    let b = api
        .core
        .update_base_settings(b)
        .await
        .map_err(settings_error)?;
    tracing::info!(token_name = %who, profile = %b.id, "rest api replaced base settings");
    Ok(Json(shapes::base_out(&b)))
}

/// Deletes a profile no phone uses (at `version`, when given).
#[utoipa::path(
    delete,
    path = "/api/v2/telephony/providers/edges/phonebasesettings/{phoneBaseId}",
    tag = "Phone Base Settings",
    params(
        ("phoneBaseId" = String, Path, description = "The profile's id"),
        ("version" = Option<i64>, Query, description = "Delete only at this version"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Phones still use it", body = ErrorBody),
        (status = 404, description = "No such profile", body = ErrorBody),
        (status = 409, description = "The version is stale", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_base(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    let who = api.caller(&headers, Permission::All)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &["version"])?;
    let version = super::version_param(&q)?;
    api.core.delete_base_settings(&id, version).await?;
    tracing::info!(token_name = %who, profile = %id, "rest api deleted base settings");
    Ok(StatusCode::NO_CONTENT)
}

/// A meta-base's template: the profile a new one starts from, every property at its
/// default.
#[utoipa::path(
    get,
    path = "/api/v2/telephony/providers/edges/phonebasesettings/template",
    tag = "Phone Base Settings",
    params(("phoneMetabaseId" = String, Query, description = "The meta-base, e.g. generic_sip")),
    responses(
        (status = 200, description = "The template", body = PhoneBase),
        (status = 400, description = "No or an unknown meta-base", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn base_template(
    State(api): State<RestApi>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<PhoneBase>, ApiError> {
    api.caller(&headers, Permission::View)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &["phoneMetabaseId"])?;
    let id = q.get("phoneMetabaseId").unwrap_or("");
    let meta = shapes::meta_base_of(id).ok_or_else(|| {
        ApiError::bad_request("phoneMetabaseId", format!("unknown phone meta-base '{id}'"))
    })?;
    let t = template(meta);
    Ok(Json(PhoneBase {
        id: String::new(),
        name: shapes::meta_base_name(meta),
        version: 0,
        state: "active".into(),
        phone_meta_base: shapes::meta_base_ref(meta),
        properties: base_properties::properties_out(&t, &t),
        self_uri: String::new(),
    }))
}
