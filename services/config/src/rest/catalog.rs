//! `/sites` and `/phonebasesettings` as phones refer to them (read only here: they are
//! written over gRPC and `dialtonectl`), and the meta-bases a profile may take.

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, Uri},
};
use dialtone_auth::Permission;
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    RestApi,
    errors::{ApiError, ErrorBody},
    paging::{self, Query},
    shapes::{self, EntityRef, Listing, PhoneBase, Site, TELEPHONY},
};

const PAGE_PARAMS: [&str; 2] = ["pageSize", "pageNumber"];

/// Reads every page of a cursor listing.
async fn all<T, F, Fut>(mut page: F) -> Result<Vec<T>, ApiError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<(Vec<T>, String)>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await?;
        out.extend(items);
        if next.is_empty() || out.len() > super::phones::MAX_LISTED {
            return Ok(out);
        }
        token = next;
    }
}

/// Lists sites.
#[utoipa::path(
    get,
    path = "/api/v2/telephony/providers/edges/sites",
    tag = "Sites",
    params(
        ("pageSize" = Option<u32>, Query, description = "Sites per page, 1-500 (default 25)"),
        ("pageNumber" = Option<u32>, Query, description = "Page, from 1"),
    ),
    responses(
        (status = 200, description = "A page of sites", body = Listing<Site>),
        (status = 400, description = "A bad parameter", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_sites(
    State(api): State<RestApi>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Listing<Site>>, ApiError> {
    api.caller(&headers, Permission::View)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &PAGE_PARAMS)?;
    let _turn = api.scan_turn().await;
    let sites = all(|t| {
        let core = api.core.clone();
        async move { core.list_sites(1000, &t).await }
    })
    .await?;
    let out = sites.iter().map(shapes::site_out).collect();
    Ok(Json(paging::page(out, &format!("{TELEPHONY}/sites"), &q)?))
}

/// One site.
#[utoipa::path(
    get,
    path = "/api/v2/telephony/providers/edges/sites/{siteId}",
    tag = "Sites",
    params(("siteId" = String, Path, description = "The site's id")),
    responses(
        (status = 200, description = "The site", body = Site),
        (status = 404, description = "No such site", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_site(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Site>, ApiError> {
    api.caller(&headers, Permission::View)?;
    Ok(Json(shapes::site_out(&api.core.get_site(&id).await?)))
}

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
    let bases = all(|t| {
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
