//! The REST API's errors: a [`ConfigError`] (or a request the API cannot read) as Genesys
//! Cloud's error body, `{message, code, status, messageParams, contextId, details, errors}`,
//! with the HTTP status of its gRPC code (`dialtone_auth::http_status`, the one mapping).

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

use crate::error::ConfigError;

/// An error answer.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub message: String,
    /// A stable code for programs (`bad.request`, `not.found`, `general.conflict`, ...).
    pub code: String,
    /// The HTTP status.
    pub status: u16,
    /// Values the message names (`field`, `id`, ...).
    pub message_params: BTreeMap<String, String>,
    /// This request's id in the node's logs.
    pub context_id: String,
    /// More about the error (none so far).
    pub details: Vec<String>,
    /// Errors behind this one (none so far).
    pub errors: Vec<String>,
}

/// An error the API answers with.
#[derive(Debug)]
pub struct ApiError {
    status: u16,
    message: String,
    params: BTreeMap<String, String>,
}

impl ApiError {
    /// A request the API cannot read (a query parameter, a body), 400.
    pub fn bad_request(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
            params: BTreeMap::from([("field".to_owned(), param.to_owned())]),
        }
    }

    /// No such route (404) or method (405).
    pub fn route(status: u16, message: &str) -> Self {
        ApiError {
            status,
            message: message.to_owned(),
            params: BTreeMap::new(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// What went wrong, for a person.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field it is about, when it names one.
    pub fn field(&self) -> Option<&str> {
        self.params.get("field").map(String::as_str)
    }

    /// The body, with `context_id`.
    pub fn body(&self, context_id: String) -> ErrorBody {
        ErrorBody {
            message: self.message.clone(),
            code: code_of(self.status).to_owned(),
            status: self.status,
            message_params: self.params.clone(),
            context_id,
            details: Vec::new(),
            errors: Vec::new(),
        }
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        let mut params = BTreeMap::new();
        match &e {
            ConfigError::InvalidArgument { field, .. }
            | ConfigError::Unusable { field, .. }
            | ConfigError::MissingReference { field, .. } => {
                params.insert("field".to_owned(), field.clone());
            }
            ConfigError::NotFound { kind, id } => {
                params.insert("entity".to_owned(), (*kind).to_owned());
                params.insert("id".to_owned(), id.clone());
            }
            _ => {}
        }
        ApiError {
            status: dialtone_auth::http_status(e.code()),
            message: e.to_string(),
            params,
        }
    }
}

impl From<dialtone_auth::AuthError> for ApiError {
    fn from(e: dialtone_auth::AuthError) -> Self {
        ConfigError::from(e).into()
    }
}

/// Genesys Cloud's error code for an HTTP status.
pub fn code_of(status: u16) -> &'static str {
    match status {
        400 => "bad.request",
        401 => "authentication.required",
        403 => "missing.permissions",
        404 => "not.found",
        405 => "method.not.allowed",
        408 => "request.timeout",
        409 => "general.conflict",
        413 => "request.entity.too.large",
        429 => "too.many.requests",
        501 => "not.implemented",
        503 => "service.unavailable",
        504 => "gateway.timeout",
        _ => "internal.server.error",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let context_id = format!("{:016x}", rand::random::<u64>());
        if self.status >= 500 {
            tracing::warn!(context_id = %context_id, status = self.status, error = %self.message, "rest api request failed");
        } else {
            tracing::debug!(context_id = %context_id, status = self.status, error = %self.message, "rest api request refused");
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(self.body(context_id))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: the scheme the client should use.
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"dialtone\""),
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_keep_their_grpc_meaning() {
        let cases: Vec<(ConfigError, u16, &str)> = vec![
            (
                ConfigError::invalid("name", "is required"),
                400,
                "bad.request",
            ),
            (
                ConfigError::NotFound {
                    kind: "phone",
                    id: "p1".into(),
                },
                404,
                "not.found",
            ),
            (
                ConfigError::missing("site.id", "site", "hq"),
                400,
                "bad.request",
            ),
            (
                ConfigError::Aborted {
                    kind: "phone",
                    id: "p1".into(),
                    expected: 3,
                    current: 4,
                },
                409,
                "general.conflict",
            ),
            (
                ConfigError::Auth(dialtone_auth::AuthError::Unauthenticated),
                401,
                "authentication.required",
            ),
        ];
        for (e, status, code) in cases {
            let text = e.to_string();
            let body = ApiError::from(e).body("c".into());
            assert_eq!((body.status, body.code.as_str()), (status, code), "{text}");
            assert_eq!(body.message, text);
        }
    }
}
