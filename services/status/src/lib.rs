//! The status role: the live status of every phone (OPERATIONAL, DEGRADED, OFFLINE), per
//! line and per edge, derived from what every edge publishes under `bindings/` and from
//! the configuration, served over gRPC `dialtone.status.v1` (get, list, per-site
//! summaries, a watch that resumes from a revision) and as metrics.
//!
//! Pure: [`model`] (the reducer), [`trunks`] (trunk states from the edges' keep-alives). State: [`fleet`] (the view). IO: [`hub`] (listing and
//! one watch of the store, history and broadcast), [`api`] (gRPC), `watch` (a watch's
//! paged snapshot and live feed).
//!
//! The view is rebuilt from the store on start; it is derived state, never written back.
//! One ordered watch feeds it instead of an actor per phone (DESIGN.md's general pattern):
//! every status then carries the store revision it reflects, which is what lets a watcher
//! resume after either side restarts without missing a change.

pub mod api;
mod compute;
mod entry;
pub mod error;
pub mod fleet;
pub mod hub;
mod intern;
pub mod media;
pub mod metrics;
mod placed;
mod prefetch;
mod reduce;
mod republish;
pub mod server;
pub mod trunks;
mod watch;
mod wire;

use std::sync::Arc;

use dialtone_auth::Tokens;
use dialtone_store::Store;
use tokio::task::JoinHandle;
use tracing::info;

pub use error::StatusError;

/// A running status role.
pub struct StatusRole {
    hub: Arc<Hub>,
    task: JoinHandle<()>,
}

use hub::Hub;

impl StatusRole {
    /// Loads the view from the store and starts following it. `realm` makes the lines' AORs.
    pub async fn start(store: Store, realm: &str) -> Result<Self, StatusError> {
        let (hub, task) = Hub::start(store, realm).await?;
        info!(
            phones = hub.state.read().fleet.len(),
            revision = hub.state.read().fleet.revision(),
            "status view loaded"
        );
        Ok(Self { hub, task })
    }

    /// Whether the view is current.
    pub fn ready(&self) -> bool {
        self.hub.ready()
    }

    /// The gRPC service.
    pub fn api(&self, tokens: Arc<Tokens>) -> server::StatusServer {
        server::StatusServer::new(api::StatusApi::new(self.hub.clone(), tokens))
    }

    /// Prometheus text of the role's metrics.
    pub fn metrics(&self) -> String {
        let st = self.hub.state.read();
        self.hub.metrics.render(
            st.fleet.counts().iter(),
            st.fleet.revision(),
            self.hub.tx.receiver_count(),
        )
    }

    /// Stops following the store.
    pub fn shutdown(&self) {
        self.task.abort();
    }
}
