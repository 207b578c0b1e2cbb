//! Form helpers shared by the pages: the CSRF field, labelled inputs with their error
//! message, and URL encoding. Pure.

use maud::{Markup, html};

use super::Ctx;

/// The hidden CSRF field every state-changing form carries.
pub fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="_csrf" value=(ctx.csrf); }
}

/// A form's error: the field it is about (as the API names it) and what is wrong.
#[derive(Clone, Debug, Default)]
pub struct FormError {
    /// The field's name (`name`, `settings.sip_dscp`, ...), or empty for the whole form.
    pub field: String,
    /// The message.
    pub message: String,
    /// The HTTP status it is answered with (0: 400).
    pub status: u16,
}

impl FormError {
    /// The status the page with this error is answered with.
    pub fn status_code(&self) -> axum::http::StatusCode {
        axum::http::StatusCode::from_u16(self.status).unwrap_or(axum::http::StatusCode::BAD_REQUEST)
    }

    /// The message when it is about `field`.
    pub fn about(&self, field: &str) -> Option<&str> {
        (!self.message.is_empty() && self.field.ends_with(field)).then_some(self.message.as_str())
    }
}

impl From<crate::rest::errors::ApiError> for FormError {
    fn from(e: crate::rest::errors::ApiError) -> Self {
        FormError {
            field: e.field().unwrap_or_default().to_owned(),
            message: e.message().to_owned(),
            status: e.status(),
        }
    }
}

impl From<crate::ConfigError> for FormError {
    fn from(e: crate::ConfigError) -> Self {
        crate::rest::errors::ApiError::from(e).into()
    }
}

/// The version a form was read at (its hidden `version` field).
pub fn version_of(raw: &str) -> Result<i64, super::Problem> {
    raw.parse()
        .map_err(|_| super::Problem::new(400, "the form has no version: reload the page"))
}

/// The banner of an error not about one field.
pub fn banner(err: Option<&FormError>) -> Markup {
    html! {
        @if let Some(e) = err {
            @if !e.message.is_empty() {
                div class="error" role="alert" id="form-error" { (e.message) }
            }
        }
    }
}

/// A labelled text input; `err` is shown under it and marks it invalid.
pub fn text(label: &str, name: &str, value: &str, required: bool, err: Option<&str>) -> Markup {
    let id = format!("f-{}", name.replace(['.', '_'], "-"));
    let msg = format!("{id}-error");
    html! {
        div class="field" {
            label for=(id) { (label) }
            input type="text" id=(id) name=(name) value=(value) required[required]
                aria-invalid=[err.map(|_| "true")] aria-describedby=[err.map(|_| msg.as_str())];
            @if let Some(e) = err { p class="field-error" id=(msg) { (e) } }
        }
    }
}

/// A labelled select of `(value, label)` options.
pub fn select(
    label: &str,
    name: &str,
    options: &[(String, String)],
    chosen: &str,
    err: Option<&str>,
) -> Markup {
    let id = format!("f-{}", name.replace(['.', '_'], "-"));
    let msg = format!("{id}-error");
    html! {
        div class="field" {
            label for=(id) { (label) }
            select id=(id) name=(name) aria-invalid=[err.map(|_| "true")] aria-describedby=[err.map(|_| msg.as_str())] {
                @for (v, l) in options {
                    option value=(v) selected[v == chosen] { (l) }
                }
            }
            @if let Some(e) = err { p class="field-error" id=(msg) { (e) } }
        }
    }
}

/// Percent-encodes `s` for a query string.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_a_query_cannot_carry() {
        for (raw, want) in [
            ("/phones", "/phones"),
            ("/phones?name=a b", "/phones%3Fname%3Da%20b"),
            ("é&=", "%C3%A9%26%3D"),
        ] {
            assert_eq!(encode(raw), want);
        }
    }

    #[test]
    fn an_error_marks_its_own_field_only() {
        let e = FormError {
            field: "phone.name".into(),
            message: "taken".into(),
            status: 409,
        };
        assert_eq!(e.status_code(), axum::http::StatusCode::CONFLICT);
        assert_eq!(
            FormError::default().status_code(),
            axum::http::StatusCode::BAD_REQUEST
        );
        assert_eq!(e.about("name"), Some("taken"));
        assert_eq!(e.about("site"), None);
        let html = text("Name", "name", "x", true, e.about("name")).into_string();
        assert!(html.contains(r#"aria-invalid="true""#), "{html}");
        assert!(html.contains("taken"));
        let html = text("Site", "site", "<b>", false, None).into_string();
        assert!(
            html.contains("&lt;b&gt;") && !html.contains("aria-invalid"),
            "{html}"
        );
    }
}
