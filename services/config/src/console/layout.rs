//! The page chrome (header, navigation, main landmark), status badges, the problem page
//! and the embedded assets. Pure, but for the asset handlers.

use axum::{
    http::{StatusCode, header},
    response::IntoResponse,
};
use maud::{DOCTYPE, Markup, html};

use super::{Ctx, form};

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The sections, in the navigation's order: `(path, label)`.
pub const SECTIONS: [(&str, &str); 10] = [
    ("/phones", "Phones"),
    ("/base-settings", "Base Settings"),
    ("/sites", "Sites"),
    ("/edge-groups", "Edge groups"),
    ("/users", "Users"),
    ("/trunks", "Trunks"),
    ("/media-servers", "Media servers"),
    ("/import", "Import / Export"),
    ("/status", "Status"),
    ("/audit", "Audit log"),
];

/// A whole page: `title`, the section `active` (a path of [`SECTIONS`]) and its `body`.
pub fn page(ctx: Option<&Ctx>, title: &str, active: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Dialtone" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    span class="brand" { "Dialtone" }
                    @if let Some(ctx) = ctx {
                        nav aria-label="Sections" {
                            ul {
                                @for (path, label) in SECTIONS {
                                    li {
                                        a href=(path) aria-current=[(path == active).then_some("page")] { (label) }
                                    }
                                }
                            }
                        }
                        form class="who" method="post" action="/logout" {
                            (form::csrf(ctx))
                            span { "Signed in as " strong { (ctx.who) } }
                            button type="submit" class="link" { "Log out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A status as a badge (OPERATIONAL, DEGRADED, OFFLINE, NOT_APPLICABLE).
pub fn badge(status: &str) -> Markup {
    let class = format!("badge st-{}", status.to_ascii_lowercase().replace('_', "-"));
    html! { span class=(class) { (status) } }
}

/// A setting's value as the pages show it: a password (the digest credentials the edges
/// answer a phone's challenges with) is never shown, wherever it appears (a profile, a
/// phone's overrides, a migration's diff); `dialtonectl` and the API show it to whoever
/// may read the profile.
pub fn setting_value(path: &str, value: &str) -> String {
    if path.to_ascii_lowercase().contains("password") {
        "(hidden)".to_owned()
    } else {
        value.to_owned()
    }
}

/// The page of a request that could not be served.
pub fn problem_page(status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    page(
        None,
        title,
        "",
        html! {
            p class="error" role="alert" { (message) }
            p { a href="/phones" { "Back to the console" } }
        },
    )
}

/// `/assets/console.css`.
pub async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
}

/// `/assets/console.js`.
pub async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        JS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_no_inline_script_and_escape_text() {
        let html = page(None, "<x>", "", html! { p { "a & b" } }).into_string();
        assert!(
            html.contains("&lt;x&gt;") && html.contains("a &amp; b"),
            "{html}"
        );
        // Every script is an external file (the CSP allows nothing else).
        for (i, _) in html.match_indices("<script") {
            assert!(html[i..].starts_with(r#"<script src="/assets/"#), "{html}");
        }
        assert!(
            !html.contains("onclick=") && !html.contains("onload="),
            "{html}"
        );
    }

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            setting_value("digest_auth_password", "\"1234\""),
            "(hidden)"
        );
        assert_eq!(setting_value("sip_dscp", "46"), "46");
    }

    #[test]
    fn badges_name_their_status() {
        assert_eq!(
            badge("NOT_APPLICABLE").into_string(),
            r#"<span class="badge st-not-applicable">NOT_APPLICABLE</span>"#
        );
    }
}
