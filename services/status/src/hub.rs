//! Keeps the [`Fleet`] current from the store and hands its changes to watchers: a full
//! listing of every input prefix, then one watch of the whole key space from the revision
//! after it (so changes arrive in store order), re-listing after compaction. Changes go to
//! a broadcast channel and a bounded history, so a watcher can resume from a revision.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use dialtone_proto::status::v1::StatusChange;
use dialtone_store::{Store, StoreError, WatchEvent};
use parking_lot::RwLock;
use tokio::{sync::broadcast, task::JoinHandle};
use tracing::{info, warn};

use crate::{
    fleet::{self, Fleet},
    metrics::Metrics,
};

/// Changes remembered for watchers that resume.
const HISTORY: usize = 100_000;
/// Changes buffered per live watcher before it falls behind (and gets a fresh snapshot).
const CHANNEL: usize = 16_384;
/// Keys per listing page.
const PAGE: usize = 1_000;

/// The fleet view, its recent changes, and the channel live watchers listen on.
pub struct State {
    /// The view.
    pub fleet: Fleet,
    /// (revision, phone id) of each change: a resuming watcher is sent the phones' current
    /// statuses, so the history keeps no status (it costs ~60 bytes a change, not ~1 KB).
    history: VecDeque<(i64, Arc<str>)>,
    /// Changes after this revision are all in `history`.
    floor: i64,
}

impl State {
    /// The phones that changed after `revision`, each with its current status (or its
    /// removal), in the order of their last change; none when those changes are no longer
    /// all remembered.
    pub fn since(&self, revision: i64) -> Option<Vec<StatusChange>> {
        if revision < self.floor || revision <= 0 {
            return None;
        }
        let start = self.history.partition_point(|(r, _)| *r <= revision);
        let mut last: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        for (r, id) in self.history.range(start..) {
            last.insert(id, *r);
        }
        let mut ids: Vec<(&str, i64)> = last.into_iter().collect();
        ids.sort_by_key(|(_, r)| *r);
        Some(
            ids.into_iter()
                .map(|(id, r)| match self.fleet.get(id) {
                    Some(s) => StatusChange {
                        phone_id: id.to_owned(),
                        revision: s.revision,
                        status: Some(s),
                        ..Default::default()
                    },
                    None => StatusChange {
                        phone_id: id.to_owned(),
                        revision: r,
                        removed: true,
                        ..Default::default()
                    },
                })
                .collect(),
        )
    }

    fn record(&mut self, tx: &broadcast::Sender<Arc<StatusChange>>, changes: Vec<StatusChange>) {
        for c in changes {
            if self.history.len() == HISTORY
                && let Some((r, _)) = self.history.pop_front()
            {
                self.floor = self.floor.max(r);
            }
            self.history
                .push_back((c.revision, Arc::from(c.phone_id.as_str())));
            let _ = tx.send(Arc::new(c));
        }
    }
}

/// The status role's shared state.
pub struct Hub {
    /// The view and history; written only by the follower task.
    pub state: RwLock<State>,
    /// Live changes (sent while the state's write lock is held, so a watcher that
    /// subscribes under the read lock misses nothing and sees nothing twice).
    pub tx: broadcast::Sender<Arc<StatusChange>>,
    ready: AtomicBool,
    /// Counters and the watch-lag histogram.
    pub metrics: Metrics,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Hub {
    /// Builds the view from a full listing; returns the hub and the revision to watch from.
    pub async fn load(store: &Store, realm: &str) -> Result<(Arc<Self>, i64), StoreError> {
        let hub = Arc::new(Self {
            state: RwLock::new(State {
                fleet: Fleet::new(realm),
                history: VecDeque::new(),
                floor: 0,
            }),
            tx: broadcast::channel(CHANNEL).0,
            ready: AtomicBool::new(false),
            metrics: Metrics::default(),
        });
        let revision = hub.relist(store).await?;
        hub.state.write().floor = revision;
        hub.ready.store(true, Ordering::Release);
        Ok((hub, revision))
    }

    /// Whether the view is loaded and current (false while re-listing).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Reads every input again and reports what differs from what was published.
    async fn relist(&self, store: &Store) -> Result<i64, StoreError> {
        // Listed into a fresh view, swapped in at once: readers never see half a listing.
        let mut fresh = Fleet::new("");
        let mut revision = i64::MAX;
        for prefix in fleet::PREFIXES {
            let r = store
                .list_pages(prefix, PAGE, |kvs| {
                    fresh.load(kvs.iter().map(|kv| (kv.key.as_str(), kv.value.as_slice())));
                })
                .await?;
            revision = revision.min(r);
        }
        let mut st = self.state.write();
        let changes = st.fleet.replace_inputs(fresh, revision, now_ms());
        st.record(&self.tx, changes);
        Ok(revision)
    }

    /// Follows the store from `revision` + 1 until the task is aborted.
    pub fn spawn(self: Arc<Self>, store: Store, mut revision: i64) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let mut watch = match store.watch("", revision + 1).await {
                    Ok(w) => w,
                    Err(e) => {
                        warn!(error = %e, "status watch could not open; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                loop {
                    match watch.next().await {
                        Ok(Some(batch)) => {
                            revision = batch.revision;
                            self.absorb(batch.events, batch.revision);
                        }
                        Ok(None) => break,
                        Err(StoreError::Compacted { .. }) => {
                            info!("status watch compacted: re-listing");
                            self.ready.store(false, Ordering::Release);
                            match self.relist(&store).await {
                                Ok(r) => {
                                    revision = r;
                                    self.ready.store(true, Ordering::Release);
                                }
                                Err(e) => {
                                    warn!(error = %e, "re-listing the fleet failed; retrying");
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                            }
                            break;
                        }
                        Err(e) => {
                            warn!(error = %e, "status watch failed; resuming");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            break;
                        }
                    }
                }
            }
        })
    }

    fn absorb(&self, events: Vec<WatchEvent>, revision: i64) {
        let now = now_ms();
        // Keys outside the view's prefixes (indexes, members, actions) are ignored by it.
        let changes = events.iter().map(|ev| match ev {
            WatchEvent::Put(kv) => (kv.key.as_str(), Some(kv.value.as_slice())),
            WatchEvent::Delete { key, .. } => (key.as_str(), None),
        });
        let mut st = self.state.write();
        let changes = st.fleet.apply(changes, revision, now);
        for written in st.fleet.take_binding_writes() {
            self.metrics.observe_binding_lag(written, now);
        }
        self.metrics.count_changes(changes.len());
        st.record(&self.tx, changes);
    }
}
