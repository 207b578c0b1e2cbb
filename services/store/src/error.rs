//! The store's error type.

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The revision a watch asked for has been compacted away: re-list, then watch again.
    #[error("revision compacted (oldest available {compact_revision}); re-list")]
    Compacted {
        /// The oldest revision still available.
        compact_revision: i64,
    },
    /// The lease does not exist (expired or revoked).
    #[error("lease {0:x} not found")]
    LeaseNotFound(i64),
    /// A transaction names more keys than the store accepts.
    #[error("transaction has {count} operations, more than {max}")]
    TooManyOps {
        /// How many it had.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// etcd could not be reached or refused the call.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A key in the store is not UTF-8 (written by something other than Dialtone).
    #[error("key is not UTF-8")]
    BadKey,
    /// Reading or writing the embedded store's files failed.
    #[error("embedded store io: {0}")]
    Io(#[from] std::io::Error),
    /// The embedded store's files are damaged beyond the torn tail a crash can leave.
    #[error("embedded store corrupt: {0}")]
    Corrupt(&'static str),
    /// No etcd endpoint was given.
    #[error("no etcd endpoints given")]
    NoEndpoints,
    /// A write to the embedded store's log failed earlier: it takes no more writes until
    /// the process restarts (what reached the disk is unknown).
    #[error("embedded store stopped taking writes after a failed write; restart the node")]
    Poisoned,
    /// The embedded store is shutting down.
    #[error("store closed")]
    Closed,
    /// A newer process claimed this node id (`lifecycle::claim`): this one writes nothing
    /// more for the node and stops.
    #[error("node {0} was claimed by a newer process with the same node id; this one stops")]
    Fenced(String),
}

impl StoreError {
    /// True when retrying later may succeed (the store was unreachable or busy).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Etcd(_) | StoreError::Closed)
    }

    /// The gRPC code a role answers with when a call fails on the store: UNAVAILABLE when
    /// a retry may succeed, else INTERNAL. Every role maps a store error through this one
    /// rule.
    pub fn code(&self) -> tonic::Code {
        if self.is_unavailable() {
            tonic::Code::Unavailable
        } else {
            tonic::Code::Internal
        }
    }
}
