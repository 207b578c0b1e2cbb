//! What the status view keeps of each phone ([`PhoneEntry`]) and of the edges with a
//! membership record ([`Members`]): the data the view (`fleet.rs`) updates from the
//! store, and that one phone is reduced from (`reduce.rs`), and many (`republish.rs`).

use std::sync::Arc;

use dialtone_proto::status::v1::{OperationalStatus, ProvisioningStatus};

use crate::placed::Placed;

// The view holds every phone of the fleet, so its layout is its memory (docs/capacity.md):
// strings many phones share (site, profile and edge ids, user agents) are kept once
// ([`Interner`]), lists are boxed slices of their exact length (a `Vec` grown by a push
// keeps room for four), what most phones lack (a provisioning record) is boxed, and a
// contact keeps no copy of its edge's id. `loadtest`'s `status-footprint` prints the bytes.

/// What the view keeps of a phone's configuration.
#[derive(Debug)]
pub(crate) struct PhoneFacts {
    pub(crate) name: Box<str>,
    pub(crate) site_id: Arc<str>,
    pub(crate) base_id: Arc<str>,
    pub(crate) kind: i32,
    pub(crate) disabled: bool,
    pub(crate) secondary_override: Option<bool>,
    pub(crate) sip_users: Box<[Box<str>]>,
}

/// What the view keeps of one binding (one line of a phone on one edge).
#[derive(Debug)]
pub(crate) struct BindingFacts {
    pub(crate) line: u32,
    pub(crate) node_id: Arc<str>,
    /// Sorted by URI.
    pub(crate) contacts: Box<[ContactFacts]>,
    pub(crate) user_agent: Arc<str>,
    pub(crate) updated_at_ms: i64,
}

/// One contact of a binding (its edge is the binding's).
#[derive(Debug)]
pub(crate) struct ContactFacts {
    pub(crate) uri: Box<str>,
    pub(crate) source: Box<str>,
    pub(crate) transport: i32,
}

/// The last status published for a phone.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) fingerprint: u64,
    pub(crate) status: OperationalStatus,
    pub(crate) since_ms: i64,
    /// (edge, lines registered there, since when).
    pub(crate) edges: Box<[(Arc<str>, u32, i64)]>,
    pub(crate) site_id: Arc<str>,
    pub(crate) revision: i64,
}

#[derive(Debug, Default)]
pub(crate) struct PhoneEntry {
    pub(crate) config: Option<PhoneFacts>,
    /// Sorted by (line, edge).
    pub(crate) bindings: Box<[BindingFacts]>,
    pub(crate) provision: Option<Box<ProvisioningStatus>>,
    pub(crate) published: Option<Published>,
    /// Where it was last placed, while nothing placement reads has changed since.
    pub(crate) placed: Placed,
}

impl PhoneEntry {
    /// Nothing is known of the phone (no configuration, binding or provisioning): the
    /// view drops it once re-reduced.
    pub(crate) fn is_empty(&self) -> bool {
        self.config.is_none() && self.bindings.is_empty() && self.provision.is_none()
    }
}

/// Per-site counts by status: [operational, degraded, offline, not applicable, other].
pub type Counts = [u32; 5];

/// The edges with a membership record.
#[derive(Debug, Default)]
pub(crate) struct Members(Vec<Arc<str>>);

impl Members {
    /// Adds edge `node`; returns whether it was not there.
    pub(crate) fn insert(&mut self, node: Arc<str>) -> bool {
        let new = !self.0.contains(&node);
        if new {
            self.0.push(node);
        }
        new
    }

    /// Removes edge `node`; returns whether it was there.
    pub(crate) fn remove(&mut self, node: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|m| **m != *node);
        self.0.len() != before
    }

    /// Whether edge `node` has a record, by name.
    pub(crate) fn contains_name(&self, node: &str) -> bool {
        self.0.iter().any(|m| **m == *node)
    }

    /// Whether edge `node` has a record: the interner's copy of its id is compared by
    /// address first, then by value.
    pub(crate) fn contains(&self, node: &Arc<str>) -> bool {
        self.0.iter().any(|m| Arc::ptr_eq(m, node)) || self.contains_name(node)
    }
}
