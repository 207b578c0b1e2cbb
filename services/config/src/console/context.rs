//! Who is asking: the session a page request carries ([`Ctx`]), what its token may do
//! now, and the checks every state-changing request passes (same origin, CSRF token).

use std::time::Instant;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, Method, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use dialtone_auth::Permission;

use super::{Console, Problem, session};

/// A logged-in request.
#[derive(Clone)]
pub struct Ctx {
    /// The session id (from the cookie).
    pub sid: String,
    /// The token's name.
    pub who: String,
    /// The session's CSRF token, put in every form.
    pub csrf: String,
    token: String,
    /// Whether the token may add phones (shows Add controls).
    pub can_add: bool,
    /// ... edit them (and restart, resync, log out).
    pub can_edit: bool,
    /// ... delete them.
    pub can_delete: bool,
    /// ... everything (sites, edge groups, base settings: `telephony:plugin:all`).
    pub can_all: bool,
}

// Debug never prints the session id, the CSRF token or the API token.
impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("who", &self.who)
            .field("can_add", &self.can_add)
            .field("can_edit", &self.can_edit)
            .field("can_delete", &self.can_delete)
            .field("can_all", &self.can_all)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// The request headers the REST handlers read: the session's token as a bearer token.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", self.token)) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    /// The `Authorization` value of the session's token.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Refuses a form without the session's CSRF token.
    pub fn check_csrf(&self, sent: &str) -> Result<(), Problem> {
        if session::same_secret(sent, &self.csrf) {
            Ok(())
        } else {
            Err(Problem::new(
                403,
                "this form is stale or was not sent by the console (CSRF token mismatch): reload the page and try again",
            ))
        }
    }
}

/// Whether a state-changing request comes from another site: its `Origin` names another
/// host than the request's, or the browser says so in `Sec-Fetch-Site`.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let get = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    if get(header::HeaderName::from_static("sec-fetch-site"))
        .is_some_and(|s| s == "cross-site" || s == "same-site")
    {
        return true;
    }
    match (get(header::ORIGIN), get(header::HOST)) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_none_or(|(_, authority)| !authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

impl FromRequestParts<Console> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next = parts.uri.path_and_query().map_or("/phones", |p| p.as_str());
            let next = if parts.method == Method::GET && next.starts_with('/') {
                next
            } else {
                "/phones"
            };
            Redirect::to(&format!("/login?next={}", super::form::encode(next))).into_response()
        };
        let Some(sid) = parts
            .headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(session::id_in)
            .map(str::to_owned)
        else {
            return Err(to_login());
        };
        // Live status streams look at their session without using it.
        let live_stream = parts.uri.path().starts_with("/events/");
        let now = Instant::now();
        let found = if live_stream {
            c.sessions.lock().peek(&sid, now)
        } else {
            c.sessions.lock().touch(&sid, now)
        };
        let Some(s) = found else {
            return Err(to_login());
        };
        if parts.method != Method::GET && cross_site(&parts.headers) {
            return Err(Problem::new(403, "a change from another site is refused").into_response());
        }
        let tokens = c.api.tokens();
        if !tokens.allows(&s.token, Permission::View) {
            // The token was revoked or lost its rights since login.
            c.sessions.lock().end(&sid);
            return Err(to_login());
        }
        Ok(Ctx {
            can_add: tokens.allows(&s.token, Permission::Add),
            can_edit: tokens.allows(&s.token, Permission::Edit),
            can_delete: tokens.allows(&s.token, Permission::Delete),
            can_all: tokens.allows(&s.token, Permission::All),
            sid,
            who: s.who,
            csrf: s.csrf,
            token: s.token,
        })
    }
}

/// Refuses `ctx` unless its token grants `needed` (the one rule, `dialtone_auth`).
pub fn allow(c: &Console, ctx: &Ctx, needed: Permission) -> Result<(), Problem> {
    c.api
        .tokens()
        .authorize_header(Some(&ctx.bearer()), needed)
        .map(|_| ())
        .map_err(|e| {
            // A refusal is a change asked for: the audit log shows who tried.
            c.record(
                ctx,
                &format!("refused: needs {needed}"),
                "",
                "permission denied",
            );
            Problem::from(crate::ConfigError::from(e))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_requests_are_told_apart() {
        let cases: [(&[(&str, &str)], bool); 8] = [
            (&[], false),
            (&[("host", "127.0.0.1:7702")], false),
            (
                &[
                    ("host", "127.0.0.1:7702"),
                    ("origin", "https://127.0.0.1:7702"),
                ],
                false,
            ),
            (
                &[
                    ("host", "127.0.0.1:7702"),
                    ("origin", "https://evil.example"),
                ],
                true,
            ),
            (&[("host", "a:1"), ("origin", "null")], true),
            (&[("origin", "https://a")], true),
            (&[("sec-fetch-site", "cross-site")], true),
            (&[("sec-fetch-site", "same-origin")], false),
        ];
        for (headers, want) in cases {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.insert(
                    header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                );
            }
            assert_eq!(cross_site(&h), want, "{headers:?}");
        }
    }
}
