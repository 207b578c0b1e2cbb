//! The status role's errors, with one mapping to gRPC codes.

use dialtone_store::StoreError;
use tonic::Code;

/// What went wrong in the status role.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The store failed or is unreachable.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The API token is missing, unknown or lacks the permission.
    #[error(transparent)]
    Auth(#[from] dialtone_auth::AuthError),
    /// No such phone.
    #[error("phone {0} does not exist")]
    NotFound(String),
    /// A request field is invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The view is being rebuilt.
    #[error("the status view is loading; retry shortly")]
    Loading,
}

impl StatusError {
    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            StatusError::Store(e) => e.code(),
            StatusError::Auth(e) => e.code(),
            StatusError::NotFound(_) => Code::NotFound,
            StatusError::Invalid { .. } => Code::InvalidArgument,
            StatusError::Loading => Code::Unavailable,
        }
    }
}

impl From<StatusError> for tonic::Status {
    fn from(e: StatusError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}
