//! The fleet's shared vocabulary, which every role speaks and none owns.
//!
//! Roles (config, edge, provisioning, status) coordinate only through the store, so they
//! must agree on what is written where and what it means. That agreement lives here and
//! nowhere else: the key layout ([`keys`]), where a phone registers ([`placement`]), a
//! phone's effective settings ([`settings`]), its derived passwords and HA1s
//! ([`credentials`]), which sources are trusted peers ([`peers`]), how a role asks an
//! edge to act on a phone ([`actions`]) and what a dialled number is and whether a line
//! may call it ([`dialplan`]), which trunk carries a call out and who answers a number
//! a carrier delivers ([`trunks`]). Roles depend on this crate and on the store, never on each
//! other.

pub mod actions;
pub mod credentials;
pub mod dialplan;
pub mod error;
pub mod keys;
pub mod peers;
pub mod placement;
pub mod settings;
pub mod status_model;
pub mod trunks;

pub use error::{DidError, PeerAddressError};

/// Default digest realm of phone credentials.
pub const DEFAULT_REALM: &str = "dialtone";
