//! The provisioning role's errors, with one mapping to gRPC codes and HTTP statuses.

use std::path::PathBuf;

use dialtone_store::StoreError;
use tonic::Code;

/// What went wrong in the provisioning role.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    /// The store failed or is unreachable.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The API token is missing, unknown or lacks the permission.
    #[error(transparent)]
    Auth(#[from] dialtone_auth::AuthError),
    /// A stored object does not decode.
    #[error("undecodable object at {0}")]
    Undecodable(String),
    /// No such phone (or it fetches no configuration).
    #[error("phone {0} does not exist or fetches no configuration")]
    NotFound(String),
    /// The phone does not register (REMOTE phones are reached at their remote address).
    #[error("phone {0} is a REMOTE phone: it does not register, requests for it are redirected")]
    NotRegistering(String),
    /// A request field is invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The HTTPS certificate or key cannot be used.
    #[error("tls: {0}")]
    Tls(#[from] dialtone_tls::TlsError),
    /// The HTTPS listener could not bind.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A file given in the settings cannot be read.
    #[error("reading {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl ProvisioningError {
    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            ProvisioningError::Store(e) => e.code(),
            ProvisioningError::NotFound(_) => Code::NotFound,
            ProvisioningError::NotRegistering(_) => Code::FailedPrecondition,
            ProvisioningError::Auth(e) => e.code(),
            ProvisioningError::Invalid { .. } => Code::InvalidArgument,
            _ => Code::Internal,
        }
    }

    /// The HTTP status of this error, as phones see it.
    pub fn http_status(&self) -> u16 {
        match self.code() {
            Code::Unavailable => 503,
            Code::NotFound => 404,
            Code::InvalidArgument => 400,
            _ => 500,
        }
    }
}

impl From<ProvisioningError> for tonic::Status {
    fn from(e: ProvisioningError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}
