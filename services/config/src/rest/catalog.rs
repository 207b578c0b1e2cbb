//! `/sites`: listed, read and written.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
};
use dialtone_auth::Permission;
use dialtone_proto::config::v1 as pb;

use super::{
    RestApi,
    errors::{ApiError, ErrorBody},
    paging::{self, Query},
    shapes::{self, Listing, Site, TELEPHONY},
};

pub(super) const PAGE_PARAMS: [&str; 2] = ["pageSize", "pageNumber"];

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
    let sites = paging::read_all("sites", |t| {
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

/// Creates a site (as gRPC's CreateSite: the `telephony:plugin:all` permission).
#[utoipa::path(
    post,
    path = "/api/v2/telephony/providers/edges/sites",
    tag = "Sites",
    request_body = Site,
    responses(
        (status = 200, description = "The site", body = Site),
        (status = 400, description = "An invalid field, or a missing edge group", body = ErrorBody),
        (status = 409, description = "A site with this id exists", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_site(
    State(api): State<RestApi>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Site>, ApiError> {
    let who = api.caller(&headers, Permission::All)?;
    let body: Site = super::json(&body)?;
    let s = api
        .core
        .create_site(shapes::site_in(&body, pb::Site::default()))
        .await?;
    tracing::info!(token_name = %who, site = %s.id, "rest api created site");
    Ok(Json(shapes::site_out(&s)))
}

/// Replaces what the API shows of a site (number plans, routes and restrictions stay);
/// `version` is required and a stale one gets 409.
#[utoipa::path(
    put,
    path = "/api/v2/telephony/providers/edges/sites/{siteId}",
    tag = "Sites",
    params(("siteId" = String, Path, description = "The site's id")),
    request_body = Site,
    responses(
        (status = 200, description = "The site as written", body = Site),
        (status = 400, description = "An invalid field, or no version", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 409, description = "The version is stale", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn replace_site(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Site>, ApiError> {
    let who = api.caller(&headers, Permission::All)?;
    let body: Site = super::json(&body)?;
    if !body.id.is_empty() && body.id != id {
        return Err(ApiError::bad_request(
            "id",
            "differs from the site id in the path",
        ));
    }
    if body.version <= 0 {
        return Err(ApiError::bad_request(
            "version",
            "is required: the version the site was read at (a stale one gets 409)",
        ));
    }
    let current = api.core.get_site(&id).await?;
    let s = api
        .core
        .update_site(shapes::site_in(&body, current))
        .await?;
    tracing::info!(token_name = %who, site = %id, "rest api replaced site");
    Ok(Json(shapes::site_out(&s)))
}

/// Deletes a site without phones (at `version` when given).
#[utoipa::path(
    delete,
    path = "/api/v2/telephony/providers/edges/sites/{siteId}",
    tag = "Sites",
    params(
        ("siteId" = String, Path, description = "The site's id"),
        ("version" = Option<i64>, Query, description = "Delete only at this version"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Phones or users still belong to it", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 409, description = "The version is stale", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_site(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    let who = api.caller(&headers, Permission::All)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &["version"])?;
    let version = super::version_param(&q)?;
    api.core.delete_site(&id, version).await?;
    tracing::info!(token_name = %who, site = %id, "rest api deleted site");
    Ok(StatusCode::NO_CONTENT)
}
