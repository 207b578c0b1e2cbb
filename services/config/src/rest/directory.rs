//! Dialtone's own resources, where Genesys Cloud's telephony API has none, under
//! `/api/v2/dialtone/`: `users` and `mediaservers` (listed, read, created, replaced at a
//! required version, deleted) and `trunks` (listed and read; written with `dialtonectl`
//! or gRPC, their passwords write-only). The same shapes' conventions as the rest of the
//! API (camelCase, `version`, `selfUri`, numbered pages) and the same permissions as gRPC:
//! view to read, `telephony:plugin:all` to write.

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
    paging::{self, Query},
    shapes::Listing,
};

/// Where Dialtone's own resources live.
pub const DIALTONE: &str = "/api/v2/dialtone";

/// A user: a person whose companion phones ring together at the user's extension.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Id: letters, digits and `.`, `_`, `-`, `@` (an e-mail address will do).
    pub id: String,
    /// Name.
    pub name: String,
    /// The user's site (empty: none).
    #[serde(default)]
    pub site_id: String,
    /// Extension, 2-10 digits, unique in the site (empty: none).
    #[serde(default)]
    pub extension: String,
    /// Caller id of the user's outbound calls, E.164 (empty: the site's).
    #[serde(default)]
    pub outbound_caller_id: String,
    /// The site's call patterns the user's phones may use (empty: the site's).
    #[serde(default)]
    pub call_patterns: Vec<String>,
    /// Its version (a PUT must give the one it read).
    #[serde(default)]
    pub version: i64,
    /// Its URI (in answers).
    #[serde(default)]
    pub self_uri: String,
}

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

/// A carrier's SIP trunk, as read (its password is never shown).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trunk {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The trusted peer the carrier's requests come from.
    pub peer_id: String,
    /// Where calls go, in order: `address` and `transport`.
    pub targets: Vec<TrunkTarget>,
    /// The numbers the carrier delivers (an E.164 number or a range).
    pub dids: Vec<String>,
    /// Whether calls through it are anchored at a media server.
    pub anchor_media: bool,
    /// Whether the edges register at the carrier.
    pub registers: bool,
    /// Whether a password is stored for the carrier's challenges.
    pub has_password: bool,
    /// Its version.
    pub version: i64,
    /// Its URI.
    pub self_uri: String,
}

/// One address of a trunk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrunkTarget {
    /// `ip:port`.
    pub address: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: String,
}

/// The API's form of a user.
pub fn user_out(u: &pb::User) -> User {
    User {
        id: u.id.clone(),
        name: u.name.clone(),
        site_id: u.site_id.clone(),
        extension: u.extension.clone(),
        outbound_caller_id: u.outbound_caller_id.clone(),
        call_patterns: u.call_patterns.clone(),
        version: u.version,
        self_uri: format!("{DIALTONE}/users/{}", u.id),
    }
}

/// `into` with what the API shows of a user set from `body` (call restrictions stay).
pub fn user_in(body: &User, mut into: pb::User) -> pb::User {
    into.id = body.id.clone();
    into.name = body.name.trim().to_owned();
    into.site_id = body.site_id.clone();
    into.extension = body.extension.trim().to_owned();
    into.outbound_caller_id = body.outbound_caller_id.trim().to_owned();
    into.call_patterns = body.call_patterns.clone();
    into.version = body.version;
    into
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

/// The API's form of a trunk.
pub fn trunk_out(t: &pb::Trunk) -> Trunk {
    Trunk {
        id: t.id.clone(),
        name: t.name.clone(),
        peer_id: t.peer_id.clone(),
        targets: t
            .targets
            .iter()
            .map(|x| TrunkTarget {
                address: x.address.clone(),
                transport: if x.transport.is_empty() {
                    "udp".into()
                } else {
                    x.transport.clone()
                },
            })
            .collect(),
        dids: t.dids.iter().map(|d| d.numbers.clone()).collect(),
        anchor_media: t.anchor_media,
        registers: t.registration.is_some(),
        has_password: t
            .credentials
            .as_ref()
            .is_some_and(|c| c.has_password || !c.password.is_empty()),
        version: t.version,
        self_uri: format!("{DIALTONE}/trunks/{}", t.id),
    }
}

fn need_version(v: i64, what: &str) -> Result<(), ApiError> {
    if v <= 0 {
        return Err(ApiError::bad_request(
            "version",
            format!("give the version the {what} was read at"),
        ));
    }
    Ok(())
}

/// Lists users.
#[utoipa::path(get, path = "/api/v2/dialtone/users", tag = "Dialtone",
    params(("pageSize" = Option<u32>, Query, description = "Users per page, 1-500 (default 25)"), ("pageNumber" = Option<u32>, Query, description = "Page, from 1")),
    responses((status = 200, description = "A page of users", body = Listing<User>), (status = 400, description = "A bad parameter", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_users(
    State(api): State<RestApi>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Listing<User>>, ApiError> {
    api.caller(&headers, Permission::View)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &PAGE_PARAMS)?;
    let _turn = api.scan_turn().await;
    let all = paging::read_all("users", |t| {
        let core = api.core.clone();
        async move { core.list_users(1000, &t).await }
    })
    .await?;
    Ok(Json(paging::page(
        all.iter().map(user_out).collect(),
        &format!("{DIALTONE}/users"),
        &q,
    )?))
}

/// One user.
#[utoipa::path(get, path = "/api/v2/dialtone/users/{userId}", tag = "Dialtone",
    params(("userId" = String, Path, description = "The user's id")),
    responses((status = 200, description = "The user", body = User), (status = 404, description = "No such user", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_user(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    api.caller(&headers, Permission::View)?;
    Ok(Json(user_out(&api.core.get_user(&id).await?)))
}

/// Creates a user.
#[utoipa::path(post, path = "/api/v2/dialtone/users", tag = "Dialtone", request_body = User,
    responses((status = 200, description = "The user", body = User), (status = 400, description = "An invalid field", body = ErrorBody), (status = 409, description = "The id or extension is taken", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_user(
    State(api): State<RestApi>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<User>, ApiError> {
    api.caller(&headers, Permission::All)?;
    let body: User = super::json(&body)?;
    Ok(Json(user_out(
        &api.core
            .create_user(user_in(&body, pb::User::default()))
            .await?,
    )))
}

/// Replaces what the API shows of a user (call restrictions stay), at a required `version`.
#[utoipa::path(put, path = "/api/v2/dialtone/users/{userId}", tag = "Dialtone", request_body = User,
    params(("userId" = String, Path, description = "The user's id")),
    responses((status = 200, description = "The user as written", body = User), (status = 400, description = "An invalid field, or no version", body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody), (status = 409, description = "The version is stale", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn replace_user(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<User>, ApiError> {
    api.caller(&headers, Permission::All)?;
    let mut body: User = super::json(&body)?;
    need_version(body.version, "user")?;
    body.id = id;
    let current = api.core.get_user(&body.id).await?;
    Ok(Json(user_out(
        &api.core.update_user(user_in(&body, current)).await?,
    )))
}

/// Deletes a user no phone is assigned to (at `version`, when given).
#[utoipa::path(delete, path = "/api/v2/dialtone/users/{userId}", tag = "Dialtone",
    params(("userId" = String, Path, description = "The user's id"), ("version" = Option<i64>, Query, description = "Delete only at this version")),
    responses((status = 204, description = "Deleted"), (status = 400, description = "Phones are still assigned to it", body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody), (status = 409, description = "The version is stale", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_user(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    api.caller(&headers, Permission::All)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &["version"])?;
    api.core.delete_user(&id, super::version_param(&q)?).await?;
    Ok(StatusCode::NO_CONTENT)
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

/// Lists trunks.
#[utoipa::path(get, path = "/api/v2/dialtone/trunks", tag = "Dialtone",
    params(("pageSize" = Option<u32>, Query, description = "Trunks per page, 1-500 (default 25)"), ("pageNumber" = Option<u32>, Query, description = "Page, from 1")),
    responses((status = 200, description = "A page of trunks", body = Listing<Trunk>), (status = 400, description = "A bad parameter", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_trunks(
    State(api): State<RestApi>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Listing<Trunk>>, ApiError> {
    api.caller(&headers, Permission::View)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &PAGE_PARAMS)?;
    let _turn = api.scan_turn().await;
    let all = paging::read_all("trunks", |t| {
        let core = api.core.clone();
        async move { core.list_trunks(1000, &t).await }
    })
    .await?;
    Ok(Json(paging::page(
        all.iter().map(trunk_out).collect(),
        &format!("{DIALTONE}/trunks"),
        &q,
    )?))
}

/// One trunk.
#[utoipa::path(get, path = "/api/v2/dialtone/trunks/{trunkId}", tag = "Dialtone",
    params(("trunkId" = String, Path, description = "The trunk's id")),
    responses((status = 200, description = "The trunk", body = Trunk), (status = 404, description = "No such trunk", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_trunk(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Trunk>, ApiError> {
    api.caller(&headers, Permission::View)?;
    Ok(Json(trunk_out(&api.core.get_trunk(&id).await?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_keep_what_the_api_does_not_show() {
        let stored = pb::User {
            id: "alice".into(),
            name: "Alice".into(),
            call_restrictions: Some(pb::CallRestrictions::default()),
            version: 3,
            ..Default::default()
        };
        let mut shown = user_out(&stored);
        assert_eq!(shown.self_uri, "/api/v2/dialtone/users/alice");
        shown.extension = " 301 ".into();
        let back = user_in(&shown, stored.clone());
        assert_eq!(back.extension, "301");
        assert_eq!(back.call_restrictions, stored.call_restrictions);
    }

    #[test]
    fn trunks_never_show_their_password() {
        let t = pb::Trunk {
            id: "carrier".into(),
            targets: vec![pb::TrunkTarget {
                address: "192.0.2.1:5060".into(),
                ..Default::default()
            }],
            credentials: Some(pb::TrunkCredentials {
                username: "u".into(),
                password: "secret".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = trunk_out(&t);
        assert!(out.has_password && out.targets[0].transport == "udp");
        assert!(!serde_json::to_string(&out).unwrap().contains("secret"));
        let m = media_out(&pb::MediaServer {
            id: "m".into(),
            weight: 5,
            ..Default::default()
        });
        assert_eq!(media_in(&m).weight, 5);
    }
}
