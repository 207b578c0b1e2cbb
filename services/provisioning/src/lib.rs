//! The provisioning role: managed phones fetch their vendor configuration files over HTTPS
//! by MAC (or FQDN), authenticated with their device credential (HTTP digest, RFC 7616).
//!
//! Pure parts: [`files`] (the names phones ask for), [`document`] (what a phone's files
//! say), [`render`] (the vendor formats). State: [`catalog`] (rendered files by hardware
//! id, invalidated by a watch of the configuration). IO: [`server`] (TLS and HTTP/1.1),
//! [`http`] (one request), [`recorder`] (what each phone fetched, under `provision/`).

pub mod api;
pub mod catalog;
pub mod document;
pub mod error;
pub mod files;
pub mod http;
pub mod ice;
pub mod recorder;
pub mod reload;
pub mod render;
pub mod server;

use std::{fmt::Write, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use dialtone_auth::{
    Tokens,
    bans::{BanPolicy, Bans},
};
use dialtone_domain::credentials::CredentialKey;
use dialtone_proto::provisioning::v1::provisioning_service_server::ProvisioningServiceServer;
use dialtone_sip::digest::NonceKey;
use dialtone_store::Store;
use tokio::{sync::watch, task::JoinHandle};
use tracing::info;

pub use error::ProvisioningError;

/// The provisioning role's settings.
#[derive(Debug, Clone)]
pub struct ProvisioningSettings {
    /// HTTPS listen address.
    pub listen: SocketAddr,
    /// PEM certificate chain and key; none: the dev pair in `data/tls`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// PEM CA certificates issuing phones' client certificates (mutual TLS); none: clients
    /// are not asked for one.
    pub client_ca: Option<PathBuf>,
    /// Digest realm of device credentials.
    pub realm: String,
    /// Seconds a nonce stays valid.
    pub nonce_lifetime: Duration,
    /// Failed-authentication bans (per source address, per device).
    pub bans: BanPolicy,
    /// Pacing of dynamic reload.
    pub reload: reload::ReloadSettings,
    /// This node's id (dynamic reload shares phones among provisioning nodes by it).
    pub node_id: String,
    /// The TURN servers' shared secret and credential lifetime (none: WebRTC phones get
    /// ICE server URLs without credentials).
    pub turn: Option<ice::Turn>,
}

/// A running provisioning role.
pub struct Provisioning {
    catalog: Arc<catalog::Catalog>,
    reloader: Arc<reload::Reloader>,
    handler: Arc<http::Handler>,
    store: Store,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Provisioning {
    /// Binds the HTTPS port and starts serving.
    pub async fn start(
        settings: ProvisioningSettings,
        store: Store,
        key: CredentialKey,
        data_dir: &std::path::Path,
    ) -> Result<Self, ProvisioningError> {
        let (cert, pem_key) = match &settings.tls {
            Some(pair) => pair.clone(),
            None => dialtone_tls::dev_pair(&data_dir.join("tls"), "provisioning")?,
        };
        let alpn: &[&[u8]] = &[b"http/1.1"];
        let config = match &settings.client_ca {
            Some(ca) => dialtone_tls::server_config_with_client_ca(&cert, &pem_key, alpn, ca)?,
            None => dialtone_tls::server_config(&cert, &pem_key, alpn)?,
        };
        let tls = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = dialtone_common::listen::tcp(settings.listen).map_err(|source| {
            ProvisioningError::Bind {
                addr: settings.listen,
                source,
            }
        })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ProvisioningError::Bind {
                addr: settings.listen,
                source,
            })?;
        #[expect(
            clippy::disallowed_methods,
            reason = "config keys from the config watch, one per config change an admin made (an import of N phones sends N); the reload task drains and deduplicates them"
        )]
        let (changes_tx, changes_rx) = tokio::sync::mpsc::unbounded_channel();
        let catalog = Arc::new(catalog::Catalog::new(
            store.clone(),
            &settings.realm,
            key.clone(),
            Some(changes_tx),
        ));
        let (reloader, reload_tasks) = reload::Reloader::spawn(
            store.clone(),
            catalog.clone(),
            settings.node_id.clone(),
            settings.reload,
            changes_rx,
        );
        let (recorder, recorder_task) = recorder::Recorder::spawn(store.clone());
        let handler = Arc::new(http::Handler {
            catalog: catalog.clone(),
            nonce_key: NonceKey::new(key.subkey("provisioning-nonce")),
            nonce_lifetime_s: settings.nonce_lifetime.as_secs().max(1),
            realm: settings.realm.clone(),
            bans: Bans::new(settings.bans),
            recorder,
            counts: http::fetch_counts(),
            turn: settings.turn.clone(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = catalog.clone().spawn_watches();
        tasks.extend([
            recorder_task,
            server::spawn(listener, tls, handler.clone(), stop_rx),
        ]);
        tasks.extend(reload_tasks);
        info!(addr = %addr, "provisioning listening for phones over https");
        Ok(Self {
            catalog,
            reloader: Arc::new(reloader),
            handler,
            store,
            addr,
            stop,
            tasks,
        })
    }

    /// Where phones fetch.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gRPC service.
    pub fn api(&self, tokens: Arc<Tokens>) -> ProvisioningServiceServer<api::ProvisioningApi> {
        ProvisioningServiceServer::new(api::ProvisioningApi::new(
            self.catalog.clone(),
            self.reloader.clone(),
            self.store.clone(),
            tokens,
            self.handler.turn.clone(),
        ))
    }

    /// Prometheus text of the role's metrics.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        self.handler.counts.render(None, &mut out);
        out.push_str("# HELP dialtone_provisioning_phones_rendered Phones whose files are rendered and cached.\n");
        out.push_str("# TYPE dialtone_provisioning_phones_rendered gauge\n");
        let _ = writeln!(
            out,
            "dialtone_provisioning_phones_rendered {}",
            self.catalog.len()
        );
        out
    }

    /// Stops serving.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
