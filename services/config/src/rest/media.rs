//! `/api/v2/dialtone/mediaservers`: the rtpengines the edges anchor media at, listed,
//! read, created, replaced at a required version and deleted (view to read,
//! `telephony:plugin:all` to write, as gRPC).

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
};
use dialtone_auth::Permission;
use dialtone_proto::config::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    RestApi,
    catalog::PAGE_PARAMS,
    errors::{ApiError, ErrorBody},
    need_version,
    paging::{self, Query},
    shapes::{DIALTONE, Listing},
};

/// An rtpengine the edges anchor calls' media at.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaServer {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The media region it serves.
    pub region: String,
    /// Its `ng` control address, `ip:port`.
    pub ng_address: String,
    /// Relative share of its region's calls, 1-1000.
    #[serde(default)]
    pub weight: u32,
    /// ICE server URLs of the TURN server beside it.
    #[serde(default)]
    pub turn_urls: Vec<String>,
    /// Its version (a PUT must give the one it read).
    #[serde(default)]
    pub version: i64,
    /// Its URI (in answers).
    #[serde(default)]
    pub self_uri: String,
}

/// The API's form of a media server.
pub fn media_out(m: &pb::MediaServer) -> MediaServer {
    MediaServer {
        id: m.id.clone(),
        name: m.name.clone(),
        region: m.region.clone(),
        ng_address: m.ng_address.clone(),
        weight: m.weight,
        turn_urls: m.turn_urls.clone(),
        version: m.version,
        self_uri: format!("{DIALTONE}/mediaservers/{}", m.id),
    }
}

/// The config model's form of a media server.
pub fn media_in(b: &MediaServer) -> pb::MediaServer {
    pb::MediaServer {
        id: b.id.clone(),
        name: b.name.trim().to_owned(),
        region: b.region.trim().to_owned(),
        ng_address: b.ng_address.trim().to_owned(),
        weight: b.weight,
        version: b.version,
        turn_urls: b.turn_urls.clone(),
    }
}

/// Lists media servers.
#[utoipa::path(get, path = "/api/v2/dialtone/mediaservers", tag = "Dialtone",
    params(("pageSize" = Option<u32>, Query, description = "Servers per page, 1-500 (default 25)"), ("pageNumber" = Option<u32>, Query, description = "Page, from 1")),
    responses((status = 200, description = "A page of media servers", body = Listing<MediaServer>), (status = 400, description = "A bad parameter", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_media(
    State(api): State<RestApi>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Listing<MediaServer>>, ApiError> {
    api.caller(&headers, Permission::View)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &PAGE_PARAMS)?;
    let _turn = api.scan_turn().await;
    let all = paging::read_all("media servers", |t| {
        let core = api.core.clone();
        async move { core.list_media_servers(1000, &t).await }
    })
    .await?;
    Ok(Json(paging::page(
        all.iter().map(media_out).collect(),
        &format!("{DIALTONE}/mediaservers"),
        &q,
    )?))
}

/// One media server.
#[utoipa::path(get, path = "/api/v2/dialtone/mediaservers/{mediaServerId}", tag = "Dialtone",
    params(("mediaServerId" = String, Path, description = "The server's id")),
    responses((status = 200, description = "The media server", body = MediaServer), (status = 404, description = "No such server", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_media(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<MediaServer>, ApiError> {
    api.caller(&headers, Permission::View)?;
    Ok(Json(media_out(&api.core.get_media_server(&id).await?)))
}

/// Creates a media server.
#[utoipa::path(post, path = "/api/v2/dialtone/mediaservers", tag = "Dialtone", request_body = MediaServer,
    responses((status = 200, description = "The media server", body = MediaServer), (status = 400, description = "An invalid field", body = ErrorBody), (status = 409, description = "The id is taken", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_media(
    State(api): State<RestApi>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<MediaServer>, ApiError> {
    api.caller(&headers, Permission::All)?;
    let body: MediaServer = super::json(&body)?;
    Ok(Json(media_out(
        &api.core.create_media_server(media_in(&body)).await?,
    )))
}

/// Replaces a media server, at a required `version`.
#[utoipa::path(put, path = "/api/v2/dialtone/mediaservers/{mediaServerId}", tag = "Dialtone", request_body = MediaServer,
    params(("mediaServerId" = String, Path, description = "The server's id")),
    responses((status = 200, description = "The media server as written", body = MediaServer), (status = 400, description = "An invalid field, or no version", body = ErrorBody), (status = 404, description = "No such server", body = ErrorBody), (status = 409, description = "The version is stale", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn replace_media(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<MediaServer>, ApiError> {
    api.caller(&headers, Permission::All)?;
    let mut body: MediaServer = super::json(&body)?;
    need_version(body.version, "media server")?;
    body.id = id;
    Ok(Json(media_out(
        &api.core.update_media_server(media_in(&body)).await?,
    )))
}

/// Deletes a media server (at `version`, when given).
#[utoipa::path(delete, path = "/api/v2/dialtone/mediaservers/{mediaServerId}", tag = "Dialtone",
    params(("mediaServerId" = String, Path, description = "The server's id"), ("version" = Option<i64>, Query, description = "Delete only at this version")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such server", body = ErrorBody), (status = 409, description = "The version is stale", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_media(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    api.caller(&headers, Permission::All)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &["version"])?;
    api.core
        .delete_media_server(&id, super::version_param(&q)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_servers_go_out_and_back() {
        let m = media_out(&pb::MediaServer {
            id: "m".into(),
            weight: 5,
            ..Default::default()
        });
        assert_eq!(m.self_uri, "/api/v2/dialtone/mediaservers/m");
        assert_eq!(media_in(&m).weight, 5);
    }
}
