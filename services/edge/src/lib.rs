//! The Dialtone SIP edge: a registrar over UDP, TCP, TLS, WS and WSS.
//!
//! Layout, in the manner of mini-redis (pure parsing, state and IO apart):
//! - pure SIP lives in `dialtone-sip` (parsing, verdicts, digest, the binding reducer);
//! - [`credentials`] is the cache state, [`credentials_sync`] the watch that feeds it;
//! - [`handler`] answers what needs no phone state, on the transport tasks;
//! - [`phone`] is one actix actor per phone (bindings, nonce counts, timers), sharded over
//!   the arbiters of [`directory`];
//! - [`publisher`] writes bindings to the store off the REGISTER path;
//! - [`transport`] holds the sockets; [`api`] the gRPC control service.

pub mod actions;
pub mod api;
pub mod boundary;
pub mod credentials;
pub mod credentials_sync;
pub mod delivery;
pub mod directory;
pub mod error;
pub mod forwarding;
pub mod handler;
pub mod metrics;
pub mod phone;
pub mod phone_state;
pub mod publisher;
pub mod remote;
pub mod replies;
pub mod settings;
pub mod transport;
pub mod uac;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use dialtone_auth::Tokens;
use dialtone_store::{Store, lifecycle::NodeLease};
use parking_lot::RwLock;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{info, warn};

pub use error::EdgeError;
pub use settings::{BanPolicy, EdgeSettings, Listeners};
pub use transport::Transport;

use crate::{
    credentials::{CredentialCache, Limits},
    directory::{Directory, SharedParts},
    handler::Handler,
    metrics::Stats,
    replies::Responder,
    transport::Flows,
    uac::Uac,
};

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A running edge.
pub struct Edge {
    handler: Arc<Handler>,
    action_counts: Arc<actions::ActionCounts>,
    ready: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    addresses: HashMap<Transport, SocketAddr>,
    node_id: String,
}

impl Edge {
    /// Binds every listener, loads the credentials cache, and starts serving.
    /// Listeners on an unspecified address are published at `settings.advertise_ip`.
    /// `data_dir` receives a generated self-signed certificate when TLS or WSS listens
    /// without one (dev mode).
    pub async fn start(
        settings: EdgeSettings,
        store: Store,
        lease: Arc<NodeLease>,
        data_dir: &Path,
    ) -> Result<Self, EdgeError> {
        settings.validate()?;
        let l = settings.listeners.clone();
        let mut addresses = HashMap::new();
        let udp = match l.udp {
            Some(a) => {
                let s = transport::udp::bind(a, settings.shards)?;
                addresses.insert(Transport::Udp, s[0].local_addr().unwrap_or(a));
                Some(s)
            }
            None => None,
        };
        let mut streams = Vec::new();
        for (t, addr, flag) in [
            (Transport::Tcp, l.tcp, "--sip-tcp"),
            (Transport::Tls, l.tls, "--sip-tls"),
            (Transport::Ws, l.ws, "--sip-ws"),
            (Transport::Wss, l.wss, "--sip-wss"),
        ] {
            if let Some(a) = addr {
                let listener = transport::stream::bind(flag, a).await?;
                addresses.insert(t, listener.local_addr().unwrap_or(a));
                streams.push((t, listener));
            }
        }
        for (t, a) in addresses.iter_mut() {
            if a.ip().is_unspecified() && settings.advertise_ip.is_none() {
                warn!(
                    transport = t.name(),
                    addr = %a,
                    "listening on an unspecified address without --sip-advertise-ip: other edges cannot forward to this one"
                );
            }
            *a = advertised(*a, settings.advertise_ip);
        }
        let tls = if l.tls.is_some() || l.wss.is_some() {
            let (cert, key) = match (&settings.tls_cert, &settings.tls_key) {
                (Some(c), Some(k)) => (c.clone(), k.clone()),
                _ => transport::tls::dev_pair(&data_dir.join("tls"))?,
            };
            Some(transport::tls::acceptor(
                &cert,
                &key,
                settings.tls_client_ca.as_deref(),
            )?)
        } else {
            None
        };

        let stats = Arc::new(Stats::default());
        let cache = Arc::new(RwLock::new(CredentialCache::new(Limits {
            min_expires: settings.min_expires,
            max_expires: settings.max_expires,
        })));
        let revision = loop {
            match credentials_sync::load(&store, &cache).await {
                Ok(r) => break r,
                Err(e) => {
                    warn!(error = %e, "loading credentials failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        };
        info!(lines = cache.read().lines(), "credentials cache loaded");

        let (publisher, publisher_task) = publisher::spawn(store.clone(), lease.clone());
        let directory = Arc::new(Directory::start(
            settings.shards,
            SharedParts {
                node_id: settings.node_id.clone(),
                realm: settings.realm.clone(),
                publisher,
                responder: Responder {
                    to_tag: format!("{:08x}", rand::random::<u32>()),
                    server: settings.server_header.clone(),
                },
                nonce_key: settings.nonce_key.clone(),
                nonce_lifetime_s: settings.nonce_lifetime.as_secs(),
                algorithms: settings.algorithms.clone(),
                stats: stats.clone(),
            },
        ));
        let ready = Arc::new(AtomicBool::new(true));
        let mut tasks = vec![
            publisher_task,
            credentials_sync::spawn(
                store.clone(),
                cache.clone(),
                directory.clone(),
                revision,
                ready.clone(),
            ),
            republish_on_new_lease(lease.clone(), directory.clone()),
        ];
        let flows = Arc::new(Flows::default());
        let settings = Arc::new(settings);
        let handler = Handler::new(
            cache,
            directory.clone(),
            flows,
            Arc::new(Uac::default()),
            stats,
            settings.clone(),
            addresses.clone(),
            Some(store.clone()),
        );
        let action_counts = Arc::new(actions::counts());
        tasks.push(actions::spawn(
            store.clone(),
            settings.node_id.clone(),
            handler.clone(),
            action_counts.clone(),
        ));
        let (stop, stop_rx) = watch::channel(false);
        if let Some(s) = udp {
            transport::udp::serve(s, directory.arbiters(), handler.clone(), stop_rx.clone());
        }
        for (t, listener) in streams {
            let h = handler.clone();
            let task = match t {
                Transport::Tcp => transport::stream::serve(listener, None, h, stop_rx.clone()),
                Transport::Tls => {
                    transport::stream::serve(listener, tls.clone(), h, stop_rx.clone())
                }
                Transport::Ws => transport::ws::serve(listener, None, h, stop_rx.clone()),
                Transport::Wss => transport::ws::serve(listener, tls.clone(), h, stop_rx.clone()),
                Transport::Udp => unreachable!("udp is not a stream"),
            };
            tasks.push(task);
        }
        Ok(Edge {
            handler,
            action_counts,
            ready,
            stop,
            tasks,
            addresses,
            node_id: settings.node_id.clone(),
        })
    }

    /// The gRPC control service.
    pub fn api(
        &self,
        tokens: Arc<Tokens>,
    ) -> dialtone_proto::edge::v1::edge_service_server::EdgeServiceServer<api::EdgeApi> {
        api::EdgeApi::new(self.handler.clone(), tokens).into_server()
    }

    /// Ready when it can authenticate phones (the credentials cache is current).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Where each transport listens.
    pub fn addresses(&self) -> &HashMap<Transport, SocketAddr> {
        &self.addresses
    }

    /// Prometheus text for the admin port.
    pub fn metrics(&self) -> String {
        let h = &self.handler;
        let lines = h.cache.read().lines();
        let mut out = h
            .stats
            .render(&self.node_id, lines, h.bans.active(unix_ms()));
        self.action_counts.render(None, &mut out);
        h.deliveries.render(&self.node_id, &mut out);
        h.admission
            .render("dialtone_edge_connections", &self.node_id, &mut out);
        h.deliveries
            .admission
            .render("dialtone_edge_deliveries_held", &self.node_id, &mut out);
        out
    }

    /// Stops listening and stops the actors (bindings vanish with the lease revoke).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        self.handler.directory.stop();
    }
}

/// After the node re-registered on a new lease its old binding keys are gone: every actor
/// writes its bindings again.
fn republish_on_new_lease(lease: Arc<NodeLease>, directory: Arc<Directory>) -> JoinHandle<()> {
    let mut generation = lease.generation();
    tokio::spawn(async move {
        while generation.changed().await.is_ok() {
            // Sleeping phones wake for it and fall asleep again later.
            let phones = directory.ids();
            info!(
                phones = phones.len(),
                "republishing bindings on the new lease"
            );
            for id in phones {
                directory.tell(&id, phone::Republish);
            }
        }
    })
}

/// Where others reach a listener bound at `bound`: the advertised IP when it bound an
/// unspecified address (0.0.0.0, ::), else the bound address itself.
fn advertised(bound: SocketAddr, advertise: Option<std::net::IpAddr>) -> SocketAddr {
    match advertise {
        Some(ip) if bound.ip().is_unspecified() => SocketAddr::new(ip, bound.port()),
        _ => bound,
    }
}

#[cfg(test)]
mod advertise_tests {
    use super::advertised;

    #[test]
    fn unspecified_listeners_take_the_advertised_ip() {
        let ip = |s: &str| Some(s.parse().unwrap());
        for (bound, advertise, want) in [
            ("0.0.0.0:5060", ip("10.1.2.3"), "10.1.2.3:5060"),
            ("[::]:5061", ip("fd00::7"), "[fd00::7]:5061"),
            ("127.0.0.2:5060", ip("10.1.2.3"), "127.0.0.2:5060"),
            ("0.0.0.0:5060", None, "0.0.0.0:5060"),
        ] {
            assert_eq!(
                advertised(bound.parse().unwrap(), advertise).to_string(),
                want,
                "{bound}"
            );
        }
    }
}
