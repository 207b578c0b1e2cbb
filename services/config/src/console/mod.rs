//! The admin console: server-rendered HTML pages (maud) on the REST API's port, at `/`.
//! Every read and write goes through the REST API's handlers or the same [`ConfigCore`]
//! calls, with the logged-in session's API token checked by the same `dialtone_auth`
//! rule, so the console can do nothing its token could not do over gRPC or REST.
//!
//! Security: login with an API token starts a session ([`session`]): an
//! `HttpOnly; Secure; SameSite=Strict` cookie, idle and absolute expiry, logout. Every
//! state-changing form carries the session's CSRF token, and a cross-site `Origin` is
//! refused. Pages are sent with a strict Content-Security-Policy (scripts and styles from
//! `/assets/` only: no inline script), `X-Frame-Options: DENY`, `nosniff` and
//! `no-store`. A viewer sees no edit control, and a POST from a viewer's session is
//! refused 403 by the permission check itself. Every change is recorded with the token's
//! name ([`crate::audit`]).
//!
//! Progressive enhancement: every read page works without JavaScript; `console.js` adds
//! live status (Server-Sent Events), copy buttons and select-all. The assets are embedded.
//!
//! Layers: `session` (sessions, pure), `layout` and `form` (HTML chrome and form helpers,
//! pure), `settings_form` (the base settings fields table, pure), then the pages:
//! `login`, `phones`, `phone` (with `phone_new`, `phone_edit`, `phone_lines` and `overrides`), `bases`
//! (with edit), `migrate`, `catalog` (sites, edge groups), `directory` (users, trunks,
//! media servers), `import`, `status` (with the live streams, woken by `live`'s shared
//! watch of bindings), `audit_page`.

mod audit_page;
mod bases;
mod catalog;
mod context;
mod directory;
mod form;
mod import;
mod layout;
mod live;
mod login;
mod migrate;
mod overrides;
mod phone;
mod phone_edit;
mod phone_lines;
mod phone_new;
mod phones;
pub mod session;
pub mod settings_form;
mod status;

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request},
    http::{HeaderValue, header},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use parking_lot::Mutex;

pub use context::Ctx;

use crate::{
    audit::{AuditEntry, AuditLog},
    rest::RestApi,
};

/// Live status streams a node serves at once (each re-reads its phones when their
/// bindings change, and every few seconds besides); more get 503 and the browser's
/// EventSource retries.
pub const MAX_STREAMS: usize = 64;

/// The console's state.
#[derive(Clone)]
pub struct Console {
    api: RestApi,
    sessions: Arc<Mutex<session::Sessions>>,
    streams: Arc<tokio::sync::Semaphore>,
    stream_counts: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    reports: Arc<Mutex<import::Reports>>,
    counts: Arc<tokio::sync::Mutex<status::CountsCache>>,
    login_bans: Arc<dialtone_auth::bans::Bans>,
    imports: Arc<tokio::sync::Semaphore>,
    changes: live::BindingChanges,
}

impl Console {
    /// The console over the REST API `api` (its core, tokens and audit log).
    pub fn new(api: RestApi) -> Self {
        Console {
            sessions: Arc::new(Mutex::new(session::Sessions::default())),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            stream_counts: Arc::default(),
            reports: Arc::new(Mutex::new(import::Reports::default())),
            counts: Arc::new(tokio::sync::Mutex::new(status::CountsCache::default())),
            login_bans: Arc::new(dialtone_auth::bans::Bans::new(login::BANS)),
            imports: Arc::new(tokio::sync::Semaphore::new(import::MAX_IMPORTS)),
            changes: live::BindingChanges::new(api.core().store().clone()),
            api,
        }
    }

    fn audit(&self) -> &AuditLog {
        self.api.audit()
    }

    /// Records a change made by `ctx`.
    fn record(&self, ctx: &Ctx, action: &str, object: &str, outcome: &str) {
        self.audit().record(AuditEntry {
            at_ms: dialtone_common::clock::unix_ms_i64(),
            who: ctx.who.clone(),
            via: "console",
            action: action.to_owned(),
            object: object.to_owned(),
            outcome: outcome.to_owned(),
        });
    }

    /// Records a change made by `ctx` with its outcome: `ok`, or the error.
    fn record_result<T, E: std::fmt::Display>(
        &self,
        ctx: &Ctx,
        action: &str,
        object: &str,
        r: &Result<T, E>,
    ) {
        let outcome = r.as_ref().map_or_else(|e| e.to_string(), |_| "ok".into());
        self.record(ctx, action, object, &outcome);
    }

    /// The console's pages, then the REST API for every other path.
    pub fn router(self) -> Router {
        let rest = self.api.clone().router();
        Router::new()
            .route("/", get(|| async { Redirect::to("/phones") }))
            .route("/login", get(login::page).post(login::submit))
            .route("/logout", post(login::logout))
            .route("/phones", get(phones::list).post(phone_new::create))
            .route("/phones/new", get(phone_new::new_form))
            .route("/phones/bulk", post(phones::bulk))
            .route("/phones/{id}", get(phone::detail).post(phone_edit::update))
            .route("/phones/{id}/act", post(phone_edit::act))
            .route(
                "/phones/{id}/reset-password",
                post(phone_edit::reset_password),
            )
            .route("/phones/{id}/delete", post(phone_edit::delete))
            .route("/phones/{id}/lines", post(phone_lines::update))
            .route(
                "/phones/{id}/overrides",
                get(overrides::edit).post(overrides::save),
            )
            .route("/base-settings", get(bases::list).post(bases::create))
            .route("/base-settings/new", get(bases::new_form))
            .route(
                "/base-settings/{id}",
                get(bases::detail).post(bases::update),
            )
            .route("/base-settings/{id}/edit", get(bases::edit_form))
            .route("/base-settings/{id}/migrate", post(migrate::migrate))
            .route("/sites", get(catalog::sites).post(catalog::create_site))
            .route(
                "/edge-groups",
                get(catalog::edge_groups).post(catalog::create_edge_group),
            )
            .route(
                "/import",
                get(import::page)
                    .post(import::upload)
                    .layer(DefaultBodyLimit::max(import::MAX_UPLOAD)),
            )
            .route("/import/{report}", get(import::report_csv))
            .route("/users", get(directory::users).post(directory::create_user))
            .route("/trunks", get(directory::trunks))
            .route("/media-servers", get(directory::media_servers))
            .route("/status", get(status::page))
            .route("/events/phones", get(status::phone_events))
            .route("/events/counts", get(status::count_events))
            .route("/audit", get(audit_page::page))
            .route("/assets/console.css", get(layout::css))
            .route("/assets/console.js", get(layout::js))
            .route(
                "/favicon.ico",
                get(|| async { axum::http::StatusCode::NO_CONTENT }),
            )
            .route_layer(DefaultBodyLimit::max(MAX_FORM))
            .route_layer(middleware::from_fn(security_headers))
            .with_state(self)
            .fallback_service(rest)
    }
}

/// The largest form the console reads (but the import's file).
pub const MAX_FORM: usize = 256 * 1024;

/// The Content-Security-Policy of every page: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let asset = req.uri().path().starts_with("/assets/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A page that could not be served: its status and what to tell the admin.
#[derive(Debug)]
pub struct Problem {
    status: u16,
    message: String,
}

impl Problem {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Problem {
            status,
            message: message.into(),
        }
    }
}

impl From<crate::rest::errors::ApiError> for Problem {
    fn from(e: crate::rest::errors::ApiError) -> Self {
        Problem::new(e.status(), e.message())
    }
}

impl From<crate::ConfigError> for Problem {
    fn from(e: crate::ConfigError) -> Self {
        crate::rest::errors::ApiError::from(e).into()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = axum::http::StatusCode::from_u16(self.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        (status, layout::problem_page(status, &self.message)).into_response()
    }
}
