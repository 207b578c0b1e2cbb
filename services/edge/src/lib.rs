//! The Dialtone SIP edge: a registrar and a proxy to its phones over UDP, TCP, TLS, WS
//! and WSS.
//!
//! Floors, each using only those below it (no import loop; `docs/architecture.md` has the
//! map, the threading model and the life of a REGISTER):
//! - ground: [`flow`] (transport, peer, replier, open flows, the UDP outbox),
//!   [`settings`], [`error`], [`metrics`], [`credentials`] (the cache of lines, fed from
//!   the store by its follower), [`replies`] (the responder and the digest challenge);
//! - [`registrar`]: each phone's actor run in place (bindings, nonce counts, the last
//!   transaction), handled under its shard's lock on the thread its message arrived on, with
//!   the directory's actor threads checking phones as they come due, sleeping phones kept
//!   as bytes, and the publisher that writes bindings to the store off the REGISTER path;
//! - [`delivery`]: requests for phones, proxied to their bindings here or on another edge;
//!   [`uac`]: the edge's own requests (NOTIFY check-sync, keep-alives, REGISTERs);
//! - [`dispatch`]: judges each message and sends it to the wing that handles it, after
//!   the trust boundary;
//! - [`transport`]: accepts and reads; the only caller of `Dispatcher::handle`;
//! - [`api`] (gRPC control), [`actions`] (the store's action protocol), [`keepalive`]
//!   (OPTIONS to carrier trunks) and [`carrier_registration`] (REGISTER at carriers) on
//!   top.

mod actions;
mod admission;
mod api;
mod carrier_registration;
mod credentials;
mod delivery;
mod dispatch;
pub mod error;
mod external_address;
mod flow;
mod keepalive;
mod media_pings;
mod metrics;
mod registrar;
mod replies;
pub mod settings;
pub use external_address::{ExternalAddress, parse_external, resolve_external};
mod takeover;
mod transport;
mod uac;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use dialtone_auth::Tokens;
use dialtone_common::clock::unix_ms;
use dialtone_store::{Follow, Store, lifecycle::NodeLease};
use parking_lot::RwLock;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{info, warn};

pub use admission::SourceLimits;
pub use error::EdgeError;
pub use flow::Transport;
pub use registrar::backlog::BacklogLimit;
pub use settings::{BanPolicy, EdgeSettings, Listeners};

use crate::{
    credentials::sync::CredentialsFollower,
    credentials::{CredentialCache, Limits},
    delivery::{Delivery, DeliveryParts},
    dispatch::{Dispatcher, DispatcherParts},
    flow::Flows,
    metrics::Stats,
    registrar::directory::{Directory, SharedParts},
    replies::{Listening, Replies, Responder},
    uac::Uac,
};

/// A running edge.
pub struct Edge {
    /// Tells the binding publisher to write what is queued and end (at shutdown).
    publisher_stop: watch::Sender<bool>,
    publisher_task: parking_lot::Mutex<Option<JoinHandle<()>>>,
    handler: Arc<Dispatcher>,
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
        left_on_lease: &[String],
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
                let listener = transport::stream::bind(flag, a)?;
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
        let trunk_tls = transport::tls::trunk_connector(settings.trunk_ca.as_deref())?;

        let stats = Arc::new(Stats::default());
        let cache = Arc::new(RwLock::new(CredentialCache::new(Limits {
            min_expires: settings.min_expires,
            max_expires: settings.max_expires,
            digest_bound: settings.digest_bound,
        })));
        let (publisher_stop, publisher_stop_rx) = watch::channel(false);
        let (publisher, publisher_task) =
            registrar::publisher::spawn(lease.clone(), publisher_stop_rx);
        let replies = Arc::new(Replies {
            responder: Responder {
                to_tag: format!("{:08x}", rand::random::<u32>()),
                server: settings.server_header.clone(),
            },
            node_id: settings.node_id.clone(),
            realm: settings.realm.clone(),
            nonce_key: settings.nonce_key.clone(),
            nonce_lifetime_s: settings.nonce_lifetime.as_secs(),
            stats: stats.clone(),
        });
        let directory = Arc::new(Directory::start(
            settings.shards,
            SharedParts {
                node_id: settings.node_id.clone(),
                quiet_before_sleep_s: registrar::phone::TXN_MEMORY_S,
                publisher: publisher.clone(),
                replies: replies.clone(),
                stats: stats.clone(),
            },
        ));
        // Before any listener serves: a phone's REGISTER that arrives later is newer.
        takeover::take_back(
            &store,
            &lease,
            &directory,
            &publisher,
            &settings.node_id,
            left_on_lease,
        )
        .await;
        let ready = Arc::new(AtomicBool::new(false));
        let credentials_task = loop {
            let registrar = directory.clone();
            let gone = Box::new(move |id: &str, lines: Option<Vec<u32>>| {
                registrar.forget(id, lines.as_deref(), None);
            });
            let follower = CredentialsFollower::new(cache.clone(), gone);
            match Follow::listing("credentials", &credentials::sync::PREFIXES)
                .start(store.clone(), follower, ready.clone())
                .await
            {
                Ok(task) => break task,
                Err(e) => {
                    warn!(error = %e, "loading credentials failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        };
        info!(lines = cache.read().lines(), "credentials cache loaded");
        let mut tasks = vec![
            credentials_task,
            republish_on_new_lease(lease.clone(), directory.clone()),
        ];
        let flows = Arc::new(Flows::default());
        // The media servers' ng client, on a port of its own (any address: a media server
        // may be anywhere the edge reaches).
        let ng = dialtone_media::client::NgClient::bind(([0, 0, 0, 0], 0).into()).await?;
        let settings = Arc::new(settings);
        let delivery = Arc::new(Delivery::new(DeliveryParts {
            cache: cache.clone(),
            directory: directory.clone(),
            flows: flows.clone(),
            settings: settings.clone(),
            replies: replies.clone(),
            local: Listening::new(addresses.clone()).with_external(settings.external.clone()),
            store: Some(store.clone()),
            runtime: tokio::runtime::Handle::current(),
            ng: Some(ng),
        }));
        let handler = Dispatcher::new(DispatcherParts {
            cache,
            directory: directory.clone(),
            delivery,
            flows,
            uac: Arc::new(Uac::default()),
            stats,
            settings: settings.clone(),
            replies,
            local: Listening::new(addresses.clone()).with_external(settings.external.clone()),
        });
        handler
            .flows()
            .set_connector(Arc::new(transport::stream::Outbound {
                handler: Arc::downgrade(&handler),
                tls: trunk_tls,
                runtime: tokio::runtime::Handle::current(),
                open: Default::default(),
                dialling: Default::default(),
            }));
        let action_counts = Arc::new(actions::counts());
        tasks.push(actions::spawn(
            store.clone(),
            lease.clone(),
            settings.node_id.clone(),
            handler.clone(),
            action_counts.clone(),
        ));
        tasks.push(keepalive::spawn(handler.clone(), lease.clone()));
        tasks.push(carrier_registration::spawn(handler.clone()));
        tasks.push(media_pings::spawn(handler.clone(), lease.clone()));
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
            publisher_stop,
            publisher_task: parking_lot::Mutex::new(Some(publisher_task)),
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

    /// Ready while it serves phones: from the moment `start` returns (its listeners are
    /// bound and its credentials cache loaded) until `shutdown`. The store is not asked:
    /// the cache stays in use, complete as of its last listing, while the store is away
    /// or the view is listed again, so an etcd outage takes no edge out of its Service.
    pub fn ready(&self) -> bool {
        !*self.stop.borrow()
    }

    /// Whether the credentials cache is as current as the store's watch (false while the
    /// view is listed again after a compaction), for the metric.
    pub fn credentials_current(&self) -> bool {
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
        h.delivery.render(&self.node_id, &mut out);
        // Open connections are counted by transport in the stats.
        h.admission.render_refused(
            "dialtone_edge_connections",
            "Stream connections (TCP, TLS, WS, WSS)",
            &self.node_id,
            &mut out,
        );
        h.delivery.admission.render(
            "dialtone_edge_deliveries_held",
            "Requests for phones being delivered",
            &self.node_id,
            &mut out,
        );
        h.delivery.lingering.render(
            "dialtone_edge_transactions_lingering",
            "Final answers kept for retransmissions after a delivery ended",
            &self.node_id,
            &mut out,
        );
        h.directory.backlog().render(&self.node_id, &mut out);
        out
    }

    /// Stops listening and stops the actors. The bindings stay in the store on the node's
    /// lease, which `dialtone serve` leaves to expire: a restart within its TTL takes them
    /// back ([`takeover`]).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        self.handler.directory.stop();
        let _ = self.publisher_stop.send(true);
    }

    /// Waits (at most `within`) for the bindings queued before [`Edge::shutdown`] to reach
    /// the store: the next process with this node id takes back what is there.
    pub async fn published(&self, within: std::time::Duration) {
        let task = self.publisher_task.lock().take();
        if let Some(task) = task
            && tokio::time::timeout(within, task).await.is_err()
        {
            warn!(
                "bindings still queued at shutdown were not written: those phones register again"
            );
        }
    }
}

/// After a binding lease was lost and replaced its binding keys are gone: the actors of
/// its phones write their bindings again, on the new lease. Compared with counters of 0,
/// so a replacement made before this task subscribed (while the edge started) is not
/// missed.
fn republish_on_new_lease(lease: Arc<NodeLease>, directory: Arc<Directory>) -> JoinHandle<()> {
    let mut generations = lease.binding_generations();
    tokio::spawn(async move {
        let mut seen: Vec<u64> = vec![0; generations.borrow().len()];
        loop {
            let now = generations.borrow_and_update().clone();
            let replaced: Vec<bool> = now.iter().zip(&seen).map(|(n, s)| n != s).collect();
            if replaced.iter().any(|r| *r) {
                // Sleeping phones stay asleep (their state written again).
                let phones: Vec<Arc<str>> = directory
                    .ids()
                    .into_iter()
                    .filter(|id| replaced.get(lease.shard_of(id)).is_some_and(|r| *r))
                    .collect();
                info!(
                    phones = phones.len(),
                    binding_leases = replaced.iter().filter(|r| **r).count(),
                    "republishing bindings on new leases"
                );
                for (i, id) in phones.iter().enumerate() {
                    directory.republish(id);
                    // A worker of the main runtime: others' tasks get their turn.
                    if i % 1024 == 1023 {
                        tokio::task::yield_now().await;
                    }
                }
                seen = now.to_vec();
            }
            if generations.changed().await.is_err() {
                return;
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
