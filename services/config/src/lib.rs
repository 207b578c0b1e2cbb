//! The config role: sites, edge groups, base-settings profiles and phones, stored in the
//! shared store under `config/` with the indexes of DESIGN.md, served over gRPC
//! `dialtone.config.v1`.
//!
//! Every change is one store transaction guarded by compares (optimistic concurrency on the
//! object's mod revision, create-if-absent for unique values, existence of references,
//! emptiness of reverse indexes), so several config replicas can serve at once and nothing
//! is ever half-written.

pub mod actions;
pub mod audit;
pub mod backup;
pub mod bulk;
pub mod console;
pub mod csv_format;
pub mod error;
mod export;
pub mod field_mask;
mod import;
pub mod list;
pub mod media_servers;
mod migrate;
pub mod migration_plan;
mod name_order;
mod objects;
pub mod peers;
pub mod phone_status;
pub mod phones;
pub mod rebalance;
mod repo;
pub mod rest;
pub mod service;
pub mod settings;
pub mod trunks;
mod upgrade;
pub mod users;
pub mod validate;

use dialtone_store::Store;

pub use error::ConfigError;
pub use service::ConfigApi;
pub use upgrade::Backfill;

/// The config role's logic over a store (no gRPC; see [`ConfigApi`]).
#[derive(Clone)]
pub struct ConfigCore {
    store: Store,
    realm: String,
    key: dialtone_domain::credentials::CredentialKey,
    audit: std::sync::Arc<audit::AuditLog>,
    names: name_order::NameOrder,
    names_cover: std::sync::Arc<parking_lot::Mutex<Option<(std::time::Instant, bool)>>>,
}

impl ConfigCore {
    /// Writes an update with `update_mask` through `write` (the kind's update): the stored
    /// object with the fields the mask names (none: those the update sets) taken from
    /// `update` ([`field_mask`]). An update that gives no version is guarded by the one it
    /// was merged with, and merged again (a few times) when another write came first.
    pub async fn update_masked<M, T, F, Fut>(
        &self,
        update: M,
        mask: &[String],
        write: F,
    ) -> error::Result<T>
    where
        M: field_mask::Stored + Clone,
        F: Fn(M) -> Fut,
        Fut: std::future::Future<Output = error::Result<T>>,
    {
        let any_version = update.version() == 0;
        let mut attempts = 0;
        loop {
            let merged = repo::masked(&self.store, update.clone(), mask).await?;
            match write(merged).await {
                Err(error::ConfigError::Aborted { .. } | error::ConfigError::Contended { .. })
                    if any_version && attempts < 4 =>
                {
                    attempts += 1;
                }
                r => return r,
            }
        }
    }

    /// A config core writing credentials for `realm`, deriving passwords from `key`.
    pub fn new(
        store: Store,
        realm: &str,
        key: dialtone_domain::credentials::CredentialKey,
    ) -> Self {
        ConfigCore {
            store,
            realm: realm.to_owned(),
            key,
            audit: std::sync::Arc::default(),
            names: name_order::NameOrder::default(),
            names_cover: std::sync::Arc::default(),
        }
    }

    /// The SIP realm of its lines' credentials.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The store it uses.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The node's audit log, shared by gRPC, the REST API and the console.
    pub fn audit(&self) -> &std::sync::Arc<audit::AuditLog> {
        &self.audit
    }
}
