//! The edge's one error type and its mapping to gRPC status codes.

use dialtone_store::StoreError;

/// What can go wrong in the edge role.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A setting is invalid; names the flag and the value.
    #[error("invalid value '{value}' for '{flag}': {reason}")]
    InvalidSetting {
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A request argument is invalid; names the field.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        field: &'static str,
        reason: &'static str,
    },
    /// The phone does not exist.
    #[error("phone {0} not found")]
    PhoneNotFound(String),
    /// The phone has no binding on this edge.
    #[error("phone {0} has no binding on this edge")]
    NotRegistered(String),
    /// A listener could not bind.
    #[error("binding {what} {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The media servers' `ng` client could not start.
    #[error("media: {0}")]
    Media(#[from] dialtone_media::MediaError),
    /// TLS material could not be read or generated.
    #[error("tls: {0}")]
    Tls(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller's token is missing or lacks the permission.
    #[error(transparent)]
    Auth(#[from] dialtone_auth::AuthError),
}

impl EdgeError {
    pub fn invalid(flag: &'static str, value: &str, reason: &'static str) -> Self {
        EdgeError::InvalidSetting {
            flag,
            value: value.to_owned(),
            reason,
        }
    }
}

impl From<EdgeError> for tonic::Status {
    fn from(e: EdgeError) -> Self {
        let msg = e.to_string();
        match e {
            EdgeError::InvalidSetting { .. } | EdgeError::InvalidArgument { .. } => {
                tonic::Status::invalid_argument(msg)
            }
            EdgeError::PhoneNotFound(_) => tonic::Status::not_found(msg),
            EdgeError::NotRegistered(_) => tonic::Status::failed_precondition(msg),
            EdgeError::Store(ref s) => tonic::Status::new(s.code(), msg),
            EdgeError::Auth(ref a) => tonic::Status::new(a.code(), msg),
            EdgeError::Listen { .. } | EdgeError::Tls(_) | EdgeError::Media(_) => {
                tonic::Status::internal(msg)
            }
        }
    }
}
