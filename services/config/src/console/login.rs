//! Login with an API token, and logout.

use std::time::Instant;

use std::net::SocketAddr;

use axum::{
    Form,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Redirect, Response},
};
use dialtone_auth::Permission;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Console, Ctx, Problem, context, layout, session};
use crate::audit::AuditEntry;

/// Failed logins from one address (an IPv6 /64) that ban it for a while; the tokens are
/// far too long to guess, but a guess must still cost the guesser, not the node.
pub const BANS: dialtone_auth::bans::BanPolicy = dialtone_auth::bans::BanPolicy {
    per_source: 10,
    per_user: 0,
    window: std::time::Duration::from_secs(60),
    duration: std::time::Duration::from_secs(300),
};

/// Where to go after logging in.
#[derive(Debug, Default, Deserialize)]
pub struct Next {
    #[serde(default)]
    next: String,
}

/// A local path to go back to, never another site (`//host`, a scheme, or what a browser
/// would read as one once it drops tabs and newlines: `/\t/host`).
pub fn safe_next(next: &str) -> &str {
    if next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace())
        && next.len() <= 2048
    {
        next
    } else {
        "/phones"
    }
}

fn login_form(next: &str, error: Option<&str>) -> Markup {
    layout::page(
        None,
        "Log in",
        "",
        html! {
            form class="card narrow" method="post" action="/login" {
                input type="hidden" name="next" value=(safe_next(next));
                @if let Some(e) = error { p class="error" role="alert" id="login-error" { (e) } }
                div class="field" {
                    label for="f-token" { "API token" }
                    input type="password" id="f-token" name="token" autocomplete="current-password" required
                        aria-describedby="token-help";
                    p class="help" id="token-help" {
                        "A token of the node's token file (" code { "--api-tokens" } "), or in dev mode the admin token in the data directory."
                    }
                }
                button type="submit" class="primary" { "Log in" }
            }
        },
    )
}

/// `GET /login`.
pub async fn page(Query(n): Query<Next>) -> Markup {
    login_form(&n.next, None)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: a token that may view starts a session.
pub async fn submit(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if context::cross_site(&headers) {
        return Problem::new(403, "a login from another site is refused").into_response();
    }
    let now_ms = dialtone_common::clock::unix_ms();
    if c.login_bans.source_banned(peer.ip(), now_ms) {
        return Problem::new(
            429,
            "too many failed logins from this address: try again in a few minutes",
        )
        .into_response();
    }
    let token = f.token.trim();
    let who = match c
        .api
        .tokens()
        .authorize_header(Some(&format!("Bearer {token}")), Permission::View)
    {
        Ok(who) => who,
        Err(e) => {
            let banned = c.login_bans.failure(peer.ip(), "", now_ms).source;
            tracing::warn!(error = %e, peer = %peer, banned, "console login refused");
            let status = axum::http::StatusCode::UNAUTHORIZED;
            return (
                status,
                login_form(
                    &f.next,
                    Some("That token is unknown, or may not view phones."),
                ),
            )
                .into_response();
        }
    };
    let sid = c.sessions.lock().start(token, &who, Instant::now());
    c.audit().record(AuditEntry {
        at_ms: dialtone_common::clock::unix_ms_i64(),
        who,
        via: "console",
        action: "log in".into(),
        object: String::new(),
        outcome: "ok".into(),
    });
    (
        [(header::SET_COOKIE, session::cookie(&sid))],
        Redirect::to(safe_next(&f.next)),
    )
        .into_response()
}

/// The logout form's field.
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

/// `POST /logout`.
pub async fn logout(
    State(c): State<Console>,
    ctx: Ctx,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, Problem> {
    ctx.check_csrf(&f.csrf)?;
    c.sessions.lock().end(&ctx.sid);
    c.record(&ctx, "log out", "", "ok");
    Ok((
        [(header::SET_COOKIE, session::cleared_cookie())],
        Redirect::to("/login"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_gone_back_to() {
        for (next, want) in [
            ("/phones?site.id=hq", "/phones?site.id=hq"),
            ("//evil.example/x", "/phones"),
            ("https://evil.example", "/phones"),
            ("/\\evil.example", "/phones"),
            ("/\t/evil.example", "/phones"),
            ("/\n/evil.example", "/phones"),
            ("/phones?name=a b", "/phones"),
            ("", "/phones"),
        ] {
            assert_eq!(safe_next(next), want, "{next}");
        }
    }
}
