//! A node's one lease and everything it owns.
//!
//! Each process holds ONE lease and hangs every key it owns on it (its membership records
//! `members/{role}/{node}`, an edge's bindings). The keeper refreshes the lease at a third of
//! its TTL. When the lease is lost (etcd says TTL 0, or no refresh succeeded for a whole TTL)
//! the node logs it, marks itself unhealthy, grants a new lease and writes every owned key
//! again; subscribers are told through [`NodeLease::generation`] so roles can re-publish
//! state they keep elsewhere. Graceful shutdown revokes the lease, so the node's keys vanish
//! at once instead of after the TTL; or leaves it to expire ([`NodeLease::leave`]), so the
//! next process with the same node id, started within the TTL (a restart, a rollout), takes
//! the lease and every key on it over ([`NodeLease::resume`]): an edge's bindings survive.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{info, warn};

use crate::{
    LeaseId, Store, StoreError,
    metrics::{self, KeepAliveOutcome},
};

struct Shared {
    store: Store,
    node_id: String,
    ttl_s: i64,
    lease: AtomicI64,
    alive: AtomicBool,
    owned: Mutex<BTreeMap<String, Vec<u8>>>,
    generation: watch::Sender<u64>,
}

/// The node's lease; see the module docs.
pub struct NodeLease {
    shared: Arc<Shared>,
    keeper: JoinHandle<()>,
}

impl NodeLease {
    /// Grants the node's lease and starts keeping it alive.
    pub async fn start(store: Store, node_id: &str, ttl_s: i64) -> Result<Self, StoreError> {
        let lease = store.lease_grant(ttl_s).await?;
        info!(node = node_id, lease = %format!("{lease:x}"), ttl_s, "node lease granted");
        Ok(Self::keeping(store, node_id, ttl_s, lease))
    }

    /// Takes over the lease `key` hangs on, when it is still alive and was granted with
    /// `ttl_s` (the lease of the process this one replaces under the same node id, left by
    /// [`NodeLease::leave`] or by a crash), refreshing it at once; else grants a new one as
    /// [`NodeLease::start`] does. Returns the lease and the keys the previous process left
    /// on it (none for a new lease).
    pub async fn resume(
        store: Store,
        node_id: &str,
        ttl_s: i64,
        key: &str,
    ) -> Result<(Self, Vec<String>), StoreError> {
        let previous = store.get(key).await?.map_or(0, |kv| kv.lease);
        // Anything that fails here starts afresh: the keys then expire with the old lease
        // and the phones register again, as after a crash.
        let info = match previous {
            0 => None,
            id => store.lease_info(id).await.unwrap_or_else(|e| {
                warn!(node = node_id, lease = %format!("{id:x}"), error = %e, "the previous process's lease could not be read: granting a new one");
                None
            }),
        };
        let refreshed = match &info {
            Some(i) if i.granted_ttl_s == ttl_s => match store.lease_keep_alive(previous).await {
                Ok(mut k) => k.refresh().await.is_ok_and(|left| left > 0),
                Err(_) => false,
            },
            _ => false,
        };
        if !refreshed {
            return Ok((Self::start(store, node_id, ttl_s).await?, Vec::new()));
        }
        // Kept alive from here on: reading hundreds of thousands of keys may take longer
        // than the lease has left.
        let lease = Self::keeping(store.clone(), node_id, ttl_s, previous);
        match store.lease_keys(previous).await {
            // The keeper lost the lease while its keys were read and re-registered on a
            // new one: they are gone with it.
            Ok(_) if lease.lease_id() != previous => {
                warn!(node = node_id, lease = %format!("{previous:x}"), "the previous process's lease was lost while its keys were read: they expired with it");
                Ok((lease, Vec::new()))
            }
            Ok(keys) => {
                info!(node = node_id, lease = %format!("{previous:x}"), ttl_s, keys = keys.len(), "node lease taken over from the previous process");
                Ok((lease, keys))
            }
            Err(e) => {
                // Keys this process cannot name would live on with the lease for ever.
                warn!(node = node_id, lease = %format!("{previous:x}"), error = %e, "the previous process's keys could not be read: revoking its lease and granting a new one");
                drop(lease);
                if let Err(e) = store.lease_revoke(previous).await {
                    warn!(node = node_id, lease = %format!("{previous:x}"), error = %e, "revoking the previous process's lease failed: its keys expire with it");
                }
                Ok((Self::start(store, node_id, ttl_s).await?, Vec::new()))
            }
        }
    }

    fn keeping(store: Store, node_id: &str, ttl_s: i64, lease: LeaseId) -> Self {
        let shared = Arc::new(Shared {
            store,
            node_id: node_id.to_owned(),
            ttl_s,
            lease: AtomicI64::new(lease),
            alive: AtomicBool::new(true),
            owned: Mutex::new(BTreeMap::new()),
            generation: watch::channel(0).0,
        });
        let keeper = tokio::spawn(keep(shared.clone()));
        NodeLease { shared, keeper }
    }

    /// The current lease id.
    pub fn lease_id(&self) -> LeaseId {
        self.shared.lease.load(Ordering::Acquire)
    }

    /// Whether the lease is known to be alive (false between a loss and re-registration).
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire)
    }

    /// A counter bumped every time the node re-registered on a new lease.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// Writes a key on the node's lease and remembers it, so it is written again after a
    /// lost lease.
    pub async fn put_owned(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.shared
            .owned
            .lock()
            .insert(key.to_owned(), value.clone());
        self.shared
            .store
            .put(key, value, Some(self.lease_id()))
            .await?;
        Ok(())
    }

    /// Deletes an owned key and forgets it.
    pub async fn delete_owned(&self, key: &str) -> Result<(), StoreError> {
        self.shared.owned.lock().remove(key);
        self.shared.store.delete(key).await?;
        Ok(())
    }

    /// Stops the keeper and revokes the lease: every owned key disappears at once.
    pub async fn shutdown(&self) {
        self.keeper.abort();
        let lease = self.lease_id();
        match self.shared.store.lease_revoke(lease).await {
            Ok(()) => {
                info!(node = %self.shared.node_id, lease = %format!("{lease:x}"), "node lease revoked")
            }
            Err(e) => {
                warn!(node = %self.shared.node_id, error = %e, "lease revoke failed; keys expire with the ttl")
            }
        }
    }
}

impl NodeLease {
    /// Stops refreshing the lease without revoking it: the node's keys stay for the rest
    /// of the TTL, for the next process with this node id to take over
    /// ([`NodeLease::resume`]); if none comes, they expire as after a crash.
    pub fn leave(&self) {
        self.keeper.abort();
        info!(node = %self.shared.node_id, lease = %format!("{:x}", self.lease_id()), ttl_s = self.shared.ttl_s, "node lease left to expire: a restart within its ttl takes it over");
    }
}

impl Drop for NodeLease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Keeps the lease alive; on loss, re-registers on a new one.
async fn keep(shared: Arc<Shared>) {
    let interval = Duration::from_millis((shared.ttl_s as u64 * 1000 / 3).max(100));
    let ttl = Duration::from_secs(shared.ttl_s as u64);
    let mut keep_alive = None;
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        let lease = shared.lease.load(Ordering::Acquire);
        if keep_alive.is_none() {
            keep_alive = shared
                .store
                .lease_keep_alive(lease)
                .await
                .map_err(|e| {
                    warn!(node = %shared.node_id, error = %e, "lease keep-alive could not open");
                })
                .ok();
        }
        let outcome = match keep_alive.as_mut() {
            Some(k) => {
                Some(tokio::time::timeout(interval.max(Duration::from_secs(1)), k.refresh()).await)
            }
            None => None,
        };
        let lost = match outcome {
            Some(outcome) => match outcome {
                Ok(Ok(ttl_left)) if ttl_left > 0 => {
                    metrics::keep_alive(KeepAliveOutcome::Ok);
                    last_ok = Instant::now();
                    // Declared lost while etcd was unreachable, yet the lease survived (etcd
                    // extends every lease when a new leader is elected): write the owned
                    // keys again on it, so nothing a half-done re-registration missed stays
                    // missing, and become healthy again.
                    if !shared.alive.load(Ordering::Acquire) && rewrite(&shared, lease).await {
                        info!(node = %shared.node_id, lease = %format!("{lease:x}"), "lease survived the outage: owned keys written again");
                    }
                    false
                }
                Ok(Ok(_)) => {
                    warn!(node = %shared.node_id, lease = %format!("{lease:x}"), "lease lost: expired");
                    true
                }
                Ok(Err(e)) => {
                    warn!(node = %shared.node_id, error = %e, "lease keep-alive failed");
                    metrics::keep_alive(KeepAliveOutcome::Failed);
                    keep_alive = None;
                    last_ok.elapsed() >= ttl
                }
                Err(_) => {
                    warn!(node = %shared.node_id, "lease keep-alive timed out");
                    metrics::keep_alive(KeepAliveOutcome::Failed);
                    keep_alive = None;
                    last_ok.elapsed() >= ttl
                }
            },
            None => last_ok.elapsed() >= ttl,
        };
        if lost {
            metrics::keep_alive(KeepAliveOutcome::Lost);
            if shared.alive.swap(false, Ordering::AcqRel) {
                warn!(node = %shared.node_id, lease = %format!("{lease:x}"), "lease lost: every owned key must be written again");
            }
            keep_alive = None;
            if reregister(&shared).await {
                last_ok = Instant::now();
            }
        }
    }
}

/// Grants a new lease and writes every owned key on it. Returns whether it succeeded.
async fn reregister(shared: &Shared) -> bool {
    let lease = match shared.store.lease_grant(shared.ttl_s).await {
        Ok(l) => l,
        Err(e) => {
            warn!(node = %shared.node_id, error = %e, "new lease could not be granted; retrying");
            return false;
        }
    };
    shared.lease.store(lease, Ordering::Release);
    let ok = rewrite(shared, lease).await;
    if ok {
        info!(node = %shared.node_id, lease = %format!("{lease:x}"), "node re-registered on a new lease");
    }
    ok
}

/// Writes every owned key on `lease`; on success the node is healthy again and subscribers
/// are told to re-publish. Returns whether it succeeded.
async fn rewrite(shared: &Shared, lease: LeaseId) -> bool {
    let owned: Vec<(String, Vec<u8>)> = shared
        .owned
        .lock()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in &owned {
        if let Err(e) = shared.store.put(key, value.clone(), Some(lease)).await {
            warn!(node = %shared.node_id, key = %key, error = %e, "re-registration write failed; retrying");
            return false;
        }
    }
    shared.alive.store(true, Ordering::Release);
    shared.generation.send_modify(|g| *g += 1);
    true
}
