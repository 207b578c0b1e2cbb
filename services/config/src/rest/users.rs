//! `/api/v2/dialtone/users`: users (Dialtone's own resource; Genesys Cloud's users are
//! another API) listed, read, created, replaced at a required version and deleted, with
//! gRPC's permissions: view to read, `telephony:plugin:all` to write.

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
}
