//! Dynamic reload: a configuration change that affects phones makes each of them fetch
//! again, through a `check-sync;reboot=false` NOTIFY sent by the edge that holds its
//! registration (handed over through the store under `actions/{node}/{phone}`).
//!
//! Changes are debounced (an admin editing a profile field by field causes one wave), the
//! affected phones found through the config indexes (a profile's phones, a site's phones,
//! an edge group's sites), and the wave paced at a configured rate, so a change to a profile
//! used by 100,000 phones does not storm the edges. A phone is skipped when its files did
//! not change (its applied version is the desired one), when it never fetched, when its
//! profile turns dynamic reload off (it needs a restart), or when it is not registered.
//! With several provisioning nodes, each reloads the phones that rendezvous hashing over
//! the live provisioning members gives it.

use std::{
    collections::{BTreeSet, HashSet, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use dialtone_domain::{actions, keys, placement};
use dialtone_proto::{
    config::v1::{Edge, Member},
    provisioning::v1::{ProvisionState, ReloadProgress},
};
use dialtone_store::{Compare, Op, Store};
use parking_lot::Mutex;
use prost::Message;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
};
use tracing::{info, warn};

use crate::{catalog::Catalog, error::ProvisioningError};

/// How a wave is paced.
#[derive(Debug, Clone, Copy)]
pub struct ReloadSettings {
    /// Phones handled per second.
    pub rate_per_s: u32,
    /// Quiet time after the last change before the wave starts.
    pub debounce: Duration,
}

/// What happened to each phone of the waves so far.
#[derive(Default)]
pub struct Progress {
    pending: AtomicU64,
    sent: AtomicU64,
    unchanged: AtomicU64,
    never_fetched: AtomicU64,
    not_registered: AtomicU64,
    needs_restart: AtomicU64,
    other_node: AtomicU64,
}

impl Progress {
    /// As the API reports it.
    pub fn snapshot(&self, rate: u32) -> ReloadProgress {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ReloadProgress {
            pending: g(&self.pending),
            resyncs_sent: g(&self.sent),
            unchanged: g(&self.unchanged),
            never_fetched: g(&self.never_fetched),
            not_registered: g(&self.not_registered),
            needs_restart: g(&self.needs_restart),
            other_node: g(&self.other_node),
            rate_per_second: rate,
        }
    }
}

/// The queue of phones to handle, without repeats.
#[derive(Default)]
struct Queue {
    order: VecDeque<String>,
    queued: HashSet<String>,
}

/// The running reloader.
pub struct Reloader {
    /// Progress counters.
    pub progress: Arc<Progress>,
    /// The pacing.
    pub settings: ReloadSettings,
}

/// The phones a changed `config/` key reaches.
async fn affected(store: &Store, key: &str) -> Result<Vec<String>, ProvisioningError> {
    let under = async |prefix: String| -> Result<Vec<String>, ProvisioningError> {
        let mut out = Vec::new();
        store
            .list_pages(&prefix, 1000, |kvs| {
                out.extend(
                    kvs.iter()
                        .filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_owned)),
                )
            })
            .await?;
        Ok(out)
    };
    if let Some(id) = key.strip_prefix(keys::PHONES) {
        return Ok(vec![id.to_owned()]);
    }
    if let Some(id) = key.strip_prefix(keys::BASE_SETTINGS) {
        return under(keys::base_phones(id)).await;
    }
    if let Some(id) = key.strip_prefix(keys::SITES) {
        return under(keys::site_phones(id)).await;
    }
    if let Some(id) = key.strip_prefix(keys::EDGE_GROUPS) {
        let mut phones = Vec::new();
        for site in under(keys::group_sites(id)).await? {
            phones.extend(under(keys::site_phones(&site)).await?);
        }
        return Ok(phones);
    }
    Ok(Vec::new())
}

impl Reloader {
    /// Starts collecting changes from `changes` and handling the affected phones.
    pub fn spawn(
        store: Store,
        catalog: Arc<Catalog>,
        node: String,
        settings: ReloadSettings,
        mut changes: mpsc::UnboundedReceiver<String>,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let progress = Arc::new(Progress::default());
        let queue = Arc::new(Mutex::new(Queue::default()));
        let wake = Arc::new(Notify::new());
        let collector = {
            let (store, queue, wake, progress) =
                (store.clone(), queue.clone(), wake.clone(), progress.clone());
            tokio::spawn(async move {
                while let Some(first) = changes.recv().await {
                    let mut keys = BTreeSet::from([first]);
                    let started = Instant::now();
                    // Wait for quiet, but never more than five debounce periods.
                    while started.elapsed() < settings.debounce * 5 {
                        match tokio::time::timeout(settings.debounce, changes.recv()).await {
                            Ok(Some(k)) => {
                                keys.insert(k);
                            }
                            Ok(None) => return,
                            Err(_) => break,
                        }
                    }
                    let mut phones = Vec::new();
                    for k in &keys {
                        match affected(&store, k).await {
                            Ok(p) => phones.extend(p),
                            Err(e) => {
                                warn!(key = %k, error = %e, "finding the phones a change reaches failed")
                            }
                        }
                    }
                    let mut q = queue.lock();
                    let before = q.order.len();
                    for p in phones {
                        if q.queued.insert(p.clone()) {
                            q.order.push_back(p);
                        }
                    }
                    progress
                        .pending
                        .store(q.order.len() as u64, Ordering::Relaxed);
                    info!(
                        changes = keys.len(),
                        phones = q.order.len() - before,
                        "configuration changed: resyncing affected phones"
                    );
                    drop(q);
                    wake.notify_one();
                }
            })
        };
        let pacer = {
            let progress = progress.clone();
            tokio::spawn(async move {
                let period = Duration::from_secs_f64(1.0 / f64::from(settings.rate_per_s.max(1)));
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut members = Members::default();
                loop {
                    let next = {
                        let mut q = queue.lock();
                        let n = q.order.pop_front();
                        if let Some(p) = &n {
                            q.queued.remove(p);
                        }
                        progress
                            .pending
                            .store(q.order.len() as u64, Ordering::Relaxed);
                        n
                    };
                    let Some(phone) = next else {
                        wake.notified().await;
                        continue;
                    };
                    tick.tick().await;
                    let outcome = if members.is_mine(&store, &node, &phone).await {
                        handle(&store, &catalog, &node, &phone).await
                    } else {
                        Ok(Outcome::OtherNode)
                    };
                    match outcome {
                        Ok(o) => progress.count(o),
                        Err(e) => warn!(phone_id = %phone, error = %e, "resync failed"),
                    }
                }
            })
        };
        (Self { progress, settings }, vec![collector, pacer])
    }
}

/// The live provisioning members, refreshed every few seconds.
#[derive(Default)]
struct Members {
    /// As placement candidates (placement ranks any node ids).
    nodes: Vec<Edge>,
    read_at: Option<Instant>,
}

impl Members {
    async fn is_mine(&mut self, store: &Store, node: &str, phone: &str) -> bool {
        if self
            .read_at
            .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
        {
            if let Ok(page) = store
                .range(&keys::role_members("provisioning"), None, 1000)
                .await
            {
                self.nodes = page
                    .kvs
                    .iter()
                    .filter_map(|kv| Member::decode(kv.value.as_slice()).ok())
                    .map(|m| Edge {
                        node_id: m.node_id,
                        addresses: None,
                    })
                    .collect();
            }
            self.read_at = Some(Instant::now());
        }
        // Alone, or not yet listed: this node does the work.
        placement::place(phone, &self.nodes, false).is_none_or(|p| p.primary.node_id == node)
    }
}

/// What happened to one phone of a wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A check-sync was handed to the edge holding its registration.
    Sent,
    /// Its files did not change (or it no longer fetches configuration).
    Unchanged,
    /// It never fetched: it will get the new files when it boots.
    NeverFetched,
    /// No edge holds a registration of it.
    NotRegistered,
    /// Its profile turns dynamic reload off: the change applies at its next restart.
    NeedsRestart,
    /// Another provisioning node handles it.
    OtherNode,
}

impl Progress {
    fn count(&self, o: Outcome) {
        let c = match o {
            Outcome::Sent => &self.sent,
            Outcome::Unchanged => &self.unchanged,
            Outcome::NeverFetched => &self.never_fetched,
            Outcome::NotRegistered => &self.not_registered,
            Outcome::NeedsRestart => &self.needs_restart,
            Outcome::OtherNode => &self.other_node,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Handles one phone of a wave.
async fn handle(
    store: &Store,
    catalog: &Catalog,
    node: &str,
    phone: &str,
) -> Result<Outcome, ProvisioningError> {
    let Some(entry) = catalog.load_phone(phone).await? else {
        return Ok(Outcome::Unchanged);
    };
    let key = keys::provision(phone);
    let Some(kv) = store.get(&key).await? else {
        return Ok(Outcome::NeverFetched);
    };
    let Ok(mut state) = ProvisionState::decode(kv.value.as_slice()) else {
        return Ok(Outcome::NeverFetched);
    };
    if state.applied_version == entry.rendered.version {
        return Ok(Outcome::Unchanged);
    }
    if state.desired_version != entry.rendered.version {
        // The status model shows the drift until the phone fetches (a fetch meanwhile wins:
        // it records what it was served).
        state.desired_version = entry.rendered.version.clone();
        let guard = Compare::ModRevision {
            key: key.clone(),
            revision: kv.mod_revision,
        };
        let put = Op::Put {
            key,
            value: state.encode_to_vec(),
            lease: None,
        };
        store.txn(vec![guard], vec![put]).await?;
    }
    if !entry.dynamic_reload {
        return Ok(Outcome::NeedsRestart);
    }
    // Any edge holding a binding will do.
    let Some(edge) = actions::holders(store, phone).await?.into_iter().next() else {
        return Ok(Outcome::NotRegistered);
    };
    let action = actions::Act::Resync.action(phone, &format!("provisioning/{node}"), String::new());
    actions::request(store, &edge, &action).await?;
    Ok(Outcome::Sent)
}
