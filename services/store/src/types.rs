//! Values passed to and from the store.

/// A lease id.
pub type LeaseId = i64;

/// A live lease's TTLs (its keys: [`crate::Store::lease_keys`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The TTL it was granted with, seconds.
    pub granted_ttl_s: i64,
    /// Seconds left before it expires.
    pub ttl_left_s: i64,
}

/// One key with its value and revisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, relative to the store's root.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// Revision of the key's creation.
    pub create_revision: i64,
    /// Revision of the key's last change (Dialtone's object `version`).
    pub mod_revision: i64,
    /// Number of changes since creation.
    pub version: i64,
    /// Lease the key hangs on (0: none).
    pub lease: LeaseId,
}

/// A page of a prefix range.
#[derive(Clone, Debug, Default)]
pub struct RangePage {
    /// Keys in key order.
    pub kvs: Vec<KeyValue>,
    /// More keys follow the last one.
    pub more: bool,
    /// Store revision the page was read at.
    pub revision: i64,
}

/// A condition of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key exists with exactly this mod revision.
    ModRevision {
        /// Key.
        key: String,
        /// Expected mod revision.
        revision: i64,
    },
    /// The key exists.
    Exists(String),
    /// The key does not exist (create-if-absent).
    Absent(String),
    /// No key starts with this prefix.
    PrefixEmpty(String),
}

/// A write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create or replace a key.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Lease to attach the key to.
        lease: Option<LeaseId>,
    },
    /// Delete a key (nothing happens if it is absent).
    Delete(String),
}

impl Op {
    /// The key this op writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete(key) => key,
        }
    }
}

/// Result of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnResult {
    /// Every compare held and the ops were applied.
    pub succeeded: bool,
    /// Store revision after the transaction.
    pub revision: i64,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or changed.
    Put(KeyValue),
    /// A key was deleted (explicitly or by its lease).
    Delete {
        /// Key.
        key: String,
        /// Revision of the deletion.
        mod_revision: i64,
    },
}

impl WatchEvent {
    /// The key this event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// Events of one or more revisions, in revision order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchBatch {
    /// The events.
    pub events: Vec<WatchEvent>,
    /// The store revision this batch brings the watcher up to.
    pub revision: i64,
}
