//! Publishes bindings to `bindings/{phone}/{line}/{node}` on the node's binding lease for
//! the phone ([`NodeLease::binding_lease`]), off the
//! REGISTER path: phone actors queue changes, this task coalesces them by key (the latest
//! wins) and writes them in transactions of at most the store's op limit. When the store is
//! unreachable, changes wait and are retried; nothing a phone was told is re-ordered. When
//! told to stop (the edge shuts down), it writes what is queued and ends, so the next
//! process with this node id takes back what the phones were last told.

use std::{collections::HashMap, sync::Arc, time::Duration};

use dialtone_domain::keys;
use dialtone_store::{MAX_TXN_OPS, Op, StoreError, lifecycle::NodeLease};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{error, info, warn};

use super::backlog::Backlog;

/// A queued change: a value to put, or `None` to delete.
pub(crate) type Change = (String, Option<Vec<u8>>);

/// The handle phone actors publish through.
#[derive(Clone, Debug)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Change>,
    backlog: Arc<Backlog>,
}

impl Publisher {
    pub fn put(&self, key: String, value: Vec<u8>) {
        self.send((key, Some(value)));
    }

    pub fn delete(&self, key: String) {
        self.send((key, None));
    }

    /// Counted before it is sent, so the task never takes a change it has not counted
    /// (the count would wrap below zero).
    fn send(&self, change: Change) {
        self.backlog.queued();
        if self.tx.send(change).is_err() {
            self.backlog.unqueued();
        }
    }

    /// How far the publication is behind.
    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.backlog
    }
}

impl Publisher {
    /// A publisher whose changes land in the returned queue instead of the store.
    #[cfg(test)]
    pub(crate) fn capturing() -> (Publisher, mpsc::UnboundedReceiver<Change>) {
        #[expect(clippy::disallowed_methods, reason = "a unit test's capture")]
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::default();
        (Publisher { tx, backlog }, rx)
    }
}

/// Most changes taken off the queue before writing.
const DRAIN: usize = 8 * MAX_TXN_OPS;

/// Starts the publishing task; it ends once `stop` turns true and the queue is written.
pub fn spawn(
    lease: Arc<NodeLease>,
    mut stop: watch::Receiver<bool>,
) -> (Publisher, JoinHandle<()>) {
    #[expect(
        clippy::disallowed_methods,
        reason = "fed only by this edge's phone actors, one change per binding change, which admission and the per-phone rate bound; the task drains it into a map keyed by binding (up to DRAIN keys at a time while the store fails)"
    )]
    let (tx, mut rx) = mpsc::unbounded_channel::<Change>();
    let backlog = Arc::new(Backlog::default());
    let gauge = backlog.clone();
    let task = tokio::spawn(async move {
        let mut pending: HashMap<String, Option<Vec<u8>>> = HashMap::new();
        let mut failing = false;
        let mut stopping = false;
        loop {
            let mut taken = 0;
            if pending.is_empty() {
                if stopping {
                    match rx.try_recv() {
                        Ok((k, v)) => {
                            pending.insert(k, v);
                            taken += 1;
                        }
                        Err(_) => return,
                    }
                } else {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Some((k, v)) => {
                                pending.insert(k, v);
                                taken += 1;
                            }
                            None => return,
                        },
                        _ = stop.wait_for(|s| *s) => {
                            stopping = true;
                            continue;
                        }
                    }
                }
            }
            while pending.len() < DRAIN {
                match rx.try_recv() {
                    Ok((k, v)) => {
                        pending.insert(k, v);
                        taken += 1;
                    }
                    Err(_) => break,
                }
            }
            gauge.taken(taken, pending.len());
            let keys: Vec<String> = pending.keys().take(MAX_TXN_OPS).cloned().collect();
            let ops: Vec<Op> = keys
                .iter()
                .map(|k| match &pending[k] {
                    Some(v) => Op::Put {
                        key: k.clone(),
                        value: v.clone(),
                        lease: Some(match keys::parse_binding(k) {
                            Some((phone, ..)) => lease.binding_lease(phone),
                            None => lease.lease_id(),
                        }),
                    },
                    None => Op::Delete(k.clone()),
                })
                .collect();
            let started = std::time::Instant::now();
            gauge.writing();
            // Under the node's claim: a process whose node id a newer one claimed writes
            // nothing more (the newer one holds these phones now).
            match lease.write(ops).await {
                Ok(_) => {
                    for k in &keys {
                        pending.remove(k);
                    }
                    gauge.written(keys.len(), started.elapsed(), pending.len());
                    if failing {
                        info!("binding publication resumed");
                        failing = false;
                    }
                }
                Err(StoreError::Fenced(node)) => {
                    error!(node = %node, pending = pending.len(), "binding publication stopped: a newer process holds this node id");
                    return;
                }
                Err(e) => {
                    // A lease a binding was put on is gone: the keeper replaces it now
                    // instead of at its next round, and the retry puts it on the new one.
                    if matches!(e, StoreError::LeaseNotFound(_)) {
                        lease.check_now();
                    }
                    if !failing {
                        warn!(error = %e, pending = pending.len(), "binding publication failed; retrying");
                        failing = true;
                    }
                    // Keep taking changes meanwhile so the latest value wins when it returns.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    (Publisher { tx, backlog }, task)
}
