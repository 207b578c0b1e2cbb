//! The REST API (`/api/v2/...`, JSON), shaped after Genesys Cloud's telephony API so a
//! script written against `/api/v2/telephony/providers/edges/phones` talks to Dialtone:
//! its paths, field names (camelCase), numbered pages and error body. Each handler checks
//! the same bearer token permission as the gRPC method it mirrors (`dialtone_auth`, one
//! check) and calls the same [`ConfigCore`] function, so every rule has one
//! implementation. `/api/v2/openapi.json` describes it, generated from these handlers.
//!
//! Layers: `shapes` and `sites` (the JSON and its pure conversions), `paging` (numbered pages, pure),
//! `status` (a phone's status shapes, pure), `errors` (the error body), `phones`,
//! `reboot`, `catalog`, `bases`, `edge_groups` and `directory` (handlers; `users`, `media`
//! and `trunks` are Dialtone's own resources under `/api/v2/dialtone/`), `server` (HTTP/1.1,
//! optionally TLS).

pub mod base_properties;
pub mod bases;
pub mod catalog;
pub mod edge_groups;
pub mod errors;
pub mod media;
pub mod openapi;
pub mod paging;
pub mod phones;
pub mod reboot;
mod server;
pub mod shapes;
pub mod sites;
pub mod status;
pub mod trunks;
pub mod users;

use std::sync::Arc;

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderMap, Uri, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use dialtone_auth::{Permission, Tokens};
use serde::de::DeserializeOwned;

pub use server::serve;

use crate::{
    ConfigCore,
    audit::{AuditEntry, AuditLog},
};
use errors::ApiError;

/// The largest request body the API reads.
pub const MAX_BODY: usize = 256 * 1024;

/// Lists that read a whole filtered set (to sort, count and page it) running at once;
/// more wait their turn, so a token holder cannot make the node decode the fleet many
/// times over in parallel.
pub const MAX_SCANS: usize = 4;

/// The REST API's state: the config core and the node's tokens.
#[derive(Clone)]
pub struct RestApi {
    core: ConfigCore,
    tokens: Arc<Tokens>,
    scans: Arc<tokio::sync::Semaphore>,
    waves: Arc<tokio::sync::Semaphore>,
}

impl RestApi {
    /// The API over `core`, checking `tokens`.
    pub fn new(core: ConfigCore, tokens: Arc<Tokens>) -> Self {
        RestApi {
            core,
            tokens,
            scans: Arc::new(tokio::sync::Semaphore::new(MAX_SCANS)),
            waves: Arc::new(tokio::sync::Semaphore::new(reboot::MAX_WAVES)),
        }
    }

    /// The config core the API calls.
    pub fn core(&self) -> &ConfigCore {
        &self.core
    }

    /// The node's tokens.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The node's audit log (changes through the REST API and the console).
    pub fn audit(&self) -> &AuditLog {
        self.core.audit()
    }

    /// A turn to run a bulk wave, when fewer than [`reboot::MAX_WAVES`] are under way.
    pub fn wave_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.waves.clone().try_acquire_owned().ok()
    }

    /// A turn to read a whole listing (see [`MAX_SCANS`]).
    pub async fn scan_turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.scans
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Every route, with Genesys-shaped answers for unknown paths and methods.
    pub fn router(self) -> Router {
        let (t, d) = (shapes::TELEPHONY, shapes::DIALTONE);
        Router::new()
            .route("/api/v2/openapi.json", get(openapi::document))
            .route(
                &format!("{t}/phones"),
                get(phones::list).post(phones::create),
            )
            .route(&format!("{t}/phones/reboot"), post(reboot::reboot_many))
            .route(
                &format!("{t}/phones/{{phoneId}}"),
                get(phones::get).put(phones::replace).delete(phones::delete),
            )
            .route(
                &format!("{t}/phones/{{phoneId}}/reboot"),
                post(reboot::reboot),
            )
            .route(
                &format!("{t}/sites"),
                get(catalog::list_sites).post(catalog::create_site),
            )
            .route(
                &format!("{t}/sites/{{siteId}}"),
                get(catalog::get_site)
                    .put(catalog::replace_site)
                    .delete(catalog::delete_site),
            )
            .route(
                &format!("{t}/edgegroups"),
                get(edge_groups::list_groups).post(edge_groups::create_group),
            )
            .route(
                &format!("{t}/edgegroups/{{edgeGroupId}}"),
                get(edge_groups::get_group)
                    .put(edge_groups::replace_group)
                    .delete(edge_groups::delete_group),
            )
            .route(
                &format!("{t}/phonebasesettings"),
                get(bases::list_bases).post(bases::create_base),
            )
            .route(
                &format!("{t}/phonebasesettings/availablemetabases"),
                get(bases::meta_bases),
            )
            .route(
                &format!("{t}/phonebasesettings/template"),
                get(bases::base_template),
            )
            .route(
                &format!("{t}/phonebasesettings/{{phoneBaseId}}"),
                get(bases::get_base)
                    .put(bases::replace_base)
                    .delete(bases::delete_base),
            )
            .route(
                &format!("{d}/users"),
                get(users::list_users).post(users::create_user),
            )
            .route(
                &format!("{d}/users/{{userId}}"),
                get(users::get_user)
                    .put(users::replace_user)
                    .delete(users::delete_user),
            )
            .route(
                &format!("{d}/mediaservers"),
                get(media::list_media).post(media::create_media),
            )
            .route(
                &format!("{d}/mediaservers/{{mediaServerId}}"),
                get(media::get_media)
                    .put(media::replace_media)
                    .delete(media::delete_media),
            )
            .route(&format!("{d}/trunks"), get(trunks::list_trunks))
            .route(&format!("{d}/trunks/{{trunkId}}"), get(trunks::get_trunk))
            .method_not_allowed_fallback(|| async {
                ApiError::route(405, "this resource does not take that method")
            })
            .fallback(|| async { ApiError::route(404, "no such resource") })
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .layer(middleware::from_fn_with_state(self.clone(), front_door))
            .with_state(self)
    }

    /// The caller's token name, when its bearer token grants `needed`.
    fn caller(&self, headers: &HeaderMap, needed: Permission) -> Result<String, ApiError> {
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(self.tokens.authorize_header(header, needed)?)
    }
}

/// How long a request may take, its body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Before any handler: a request without a known bearer token is refused before its body
/// is read (the OpenAPI document excepted), as the gRPC port's token gate does; and every
/// request, a slow body included, ends within [`REQUEST_TIMEOUT`].
async fn front_door(State(api): State<RestApi>, req: Request, next: Next) -> Response {
    let public = req.uri().path() == "/api/v2/openapi.json";
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !public && !api.tokens.knows(header) {
        return ApiError::from(dialtone_auth::AuthError::Unauthenticated).into_response();
    }
    // A change is recorded with its token's name and outcome.
    use axum::http::Method;
    let writes = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
    let change = writes
        .contains(req.method())
        .then(|| api.tokens.name_of(header))
        .flatten()
        .map(|who| (who, format!("{} {}", req.method(), req.uri().path())));
    let res = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::route(408, "the request took too long").into_response(),
    };
    if let Some((who, action)) = change {
        api.audit().record(AuditEntry {
            at_ms: dialtone_common::clock::unix_ms_i64(),
            who,
            via: "rest",
            action,
            object: String::new(),
            outcome: res.status().as_u16().to_string(),
        });
    }
    res
}

/// A delete's optional `version` (0: whatever is current).
fn version_param(q: &paging::Query) -> Result<i64, ApiError> {
    match q.get("version") {
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| ApiError::bad_request("version", "must be a positive number")),
        None => Ok(0),
    }
}

/// Refuses a replace without the version its object was read at.
fn need_version(v: i64, what: &str) -> Result<(), ApiError> {
    if v <= 0 {
        return Err(ApiError::bad_request(
            "version",
            format!("give the version the {what} was read at"),
        ));
    }
    Ok(())
}

/// The query string's pairs, decoded.
fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request("query", format!("unreadable query string: {e}")))
}

/// A JSON body, or a 400 saying where it is wrong.
fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("body", format!("the body is not a valid request: {e}")))
}
