//! The config role's error type and its one mapping to gRPC status codes.

use dialtone_store::StoreError;
use tonic::Code;

/// Why a config call failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field is invalid; names the field and what is allowed.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Dotted path of the field, e.g. `phone.lines[0].sip_user`.
        field: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The object does not exist.
    #[error("{kind} '{id}' not found")]
    NotFound {
        /// Object kind ("site", "phone", ...).
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// A referenced object does not exist.
    #[error("{field}: {kind} '{id}' does not exist")]
    MissingReference {
        /// Field holding the reference.
        field: String,
        /// Referenced kind.
        kind: &'static str,
        /// Referenced id.
        id: String,
    },
    /// A referenced object exists but cannot be used as the field asks.
    #[error("{field}: {reason}")]
    Unusable {
        /// Field holding the reference.
        field: String,
        /// Why it cannot be used, and what to do.
        reason: String,
    },
    /// A unique value is taken.
    #[error("{what} '{value}' is already used by {owner}")]
    AlreadyExists {
        /// What must be unique ("hardware id", "sip user", "site id").
        what: &'static str,
        /// The value.
        value: String,
        /// Who holds it.
        owner: String,
    },
    /// The caller's version is stale (optimistic concurrency).
    #[error(
        "{kind} '{id}' changed: version {expected} is stale (current {current}); read it again"
    )]
    Aborted {
        /// Object kind.
        kind: &'static str,
        /// Its id.
        id: String,
        /// The version the caller sent.
        expected: i64,
        /// The current version.
        current: i64,
    },
    /// The object is still referenced.
    #[error("{kind} '{id}' is used by {count} {users}; move or delete them first")]
    InUse {
        /// Object kind.
        kind: &'static str,
        /// Its id.
        id: String,
        /// How many objects use it.
        count: u64,
        /// What uses it ("phones", "sites").
        users: &'static str,
    },
    /// Concurrent writers kept winning; the caller may retry.
    #[error("{kind} '{id}' is being changed concurrently; retry")]
    Contended {
        /// Object kind.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The phone holds no live binding on any edge.
    #[error("phone '{id}' has no live registration on any edge")]
    NotRegistered {
        /// Phone id.
        id: String,
    },
    /// The edge asked to act on a phone did not report in time.
    #[error("edge '{node}' did not report on phone '{id}' within {waited_ms} ms")]
    ActionTimedOut {
        /// Phone id.
        id: String,
        /// The edge's node id.
        node: String,
        /// How long the caller waited.
        waited_ms: u64,
    },
    /// A stored value could not be decoded.
    #[error("stored value at '{key}' is not a valid {kind}: {source}")]
    Decode {
        /// Store key.
        key: String,
        /// Expected message.
        kind: &'static str,
        /// Decoder error.
        source: prost::DecodeError,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The caller is not allowed.
    #[error(transparent)]
    Auth(#[from] dialtone_auth::AuthError),
}

impl ConfigError {
    /// An invalid field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A reference to an object that does not exist.
    pub fn missing(field: &str, kind: &'static str, id: &str) -> Self {
        ConfigError::MissingReference {
            field: field.to_owned(),
            kind,
            id: id.to_owned(),
        }
    }

    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            ConfigError::InvalidArgument { .. } => Code::InvalidArgument,
            ConfigError::NotFound { .. } => Code::NotFound,
            ConfigError::MissingReference { .. } | ConfigError::Unusable { .. } => {
                Code::FailedPrecondition
            }
            ConfigError::AlreadyExists { .. } => Code::AlreadyExists,
            ConfigError::Aborted { .. } | ConfigError::Contended { .. } => Code::Aborted,
            ConfigError::InUse { .. } => Code::FailedPrecondition,
            ConfigError::NotRegistered { .. } => Code::FailedPrecondition,
            ConfigError::ActionTimedOut { .. } => Code::DeadlineExceeded,
            ConfigError::Decode { .. } => Code::Internal,
            ConfigError::Store(e) => e.code(),
            ConfigError::Auth(e) => e.code(),
        }
    }
}

impl From<ConfigError> for tonic::Status {
    fn from(e: ConfigError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

/// Attaches a field name to a validator's refusal.
pub fn check(field: impl Into<String>, r: std::result::Result<(), String>) -> Result<()> {
    r.map_err(|reason| ConfigError::invalid(field, reason))
}

/// Result of config operations.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// The field an `InvalidArgument` names, else the whole result (so a test's assertion
/// message shows what came instead).
#[cfg(test)]
pub(crate) fn invalid_field(r: Result<()>) -> String {
    match r {
        Err(ConfigError::InvalidArgument { field, .. }) => field,
        other => format!("{other:?}"),
    }
}
