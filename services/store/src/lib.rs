//! The store every Dialtone role uses: etcd in a cluster, or an embedded single-node store
//! (persisted on local disk) for the all-in-one mode. Both give the same semantics: keys with
//! create/mod revisions, prefix ranges with pagination, transactions guarded by compares,
//! prefix watches resumable from a revision (with an explicit "compacted, re-list" signal)
//! and leases that delete their keys when they expire.
//!
//! Keys passed to the store are relative (`config/phones/42`); the store prepends its root
//! (default `/dialtone/v1/`), so several deployments or tests can share one etcd.

mod embedded;
mod embedded_watch;
mod error;
mod etcd;
mod follow;
pub mod lifecycle;
pub mod metrics;
mod types;
mod wal;
mod windows;

pub use embedded::EmbeddedStore;
pub use error::StoreError;
pub use etcd::{EtcdSecurity, EtcdStore};
pub use follow::{Follow, Follower};
use metrics::{METRICS, Outcome, StoreOp};
pub use types::{
    Compare, KeyValue, LeaseId, LeaseInfo, Op, RangePage, TxnResult, WatchBatch, WatchEvent,
};
pub use windows::window_of;

/// The root under which Dialtone keeps its keys unless told otherwise.
pub const DEFAULT_ROOT: &str = "/dialtone/v1/";

/// Most keys a single transaction may touch (etcd's default `--max-txn-ops` is 128).
pub const MAX_TXN_OPS: usize = 128;

/// A store backend. Cheap to clone; clones share one connection or one embedded database.
#[derive(Clone)]
pub enum Store {
    /// The embedded single-node store.
    Embedded(EmbeddedStore),
    /// An etcd cluster.
    Etcd(EtcdStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Embedded($s) => $e,
            Store::Etcd($s) => $e,
        }
    };
}

impl Store {
    /// Short name of the backend, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Embedded(_) => "embedded",
            Store::Etcd(_) => "etcd",
        }
    }

    /// Reads one key.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        METRICS
            .timed(StoreOp::Get, async {
                dispatch!(self, s => s.get(key).await)
            })
            .await
    }

    /// Reads several keys at one revision, in the order given.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<KeyValue>>, StoreError> {
        METRICS
            .timed(StoreOp::GetMany, async {
                dispatch!(self, s => s.get_many(keys).await)
            })
            .await
    }

    /// The keys under each of `prefixes` (at most `limit` each, at least 1, in key order),
    /// one list per prefix in their order: for many small prefixes, such as a page of
    /// phones' bindings. On etcd, one transaction (one revision) per 128 prefixes.
    pub async fn range_many(
        &self,
        prefixes: &[String],
        limit: usize,
    ) -> Result<Vec<Vec<KeyValue>>, StoreError> {
        METRICS
            .timed(StoreOp::RangeMany, async {
                dispatch!(self, s => s.range_many(prefixes, limit.max(1)).await)
            })
            .await
    }

    /// Writes one key, optionally attached to a lease; returns the new revision.
    pub async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<i64, StoreError> {
        let r = self
            .txn(
                Vec::new(),
                vec![Op::Put {
                    key: key.to_owned(),
                    value,
                    lease,
                }],
            )
            .await?;
        Ok(r.revision)
    }

    /// Deletes one key; returns whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        METRICS
            .timed(StoreOp::Delete, async {
                dispatch!(self, s => s.delete(key).await)
            })
            .await
    }

    /// Keys under `prefix` in key order, after `start_after` (exclusive), at most `limit`.
    pub async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<RangePage, StoreError> {
        METRICS
            .timed(StoreOp::Range, async {
                dispatch!(self, s => s.range(prefix, start_after, None, limit).await)
            })
            .await
    }

    /// Like [`Store::range`], but only keys before `end` (exclusive). `more` then means
    /// "more keys before `end`". Walking a large prefix in bounded windows keeps each read
    /// small: etcd 3.4 visits every key of a range even when the request has a limit.
    pub async fn range_until(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        end: &str,
        limit: usize,
    ) -> Result<RangePage, StoreError> {
        METRICS
            .timed(StoreOp::Range, async {
                dispatch!(self, s => s.range(prefix, start_after, Some(end), limit).await)
            })
            .await
    }

    /// Reads every key under `prefix` in pages of `page` keys, handing each page to `f`;
    /// past the first page, window by window of the key space (`windows.rs`: a page then
    /// costs etcd its window's keys, not every key left). Returns the lowest revision a page
    /// was read at: a watch from that revision + 1 misses nothing (changes made while
    /// listing are then seen twice, in order).
    pub async fn list_pages(
        &self,
        prefix: &str,
        page: usize,
        mut f: impl FnMut(Vec<KeyValue>),
    ) -> Result<i64, StoreError> {
        let mut revision = i64::MAX;
        let mut after: Option<String> = None;
        let mut span = windows::Span::Whole;
        loop {
            let p = match span.end(prefix) {
                Some(end) => {
                    self.range_until(prefix, after.as_deref(), &end, page)
                        .await?
                }
                None => self.range(prefix, after.as_deref(), page).await?,
            };
            revision = revision.min(p.revision);
            if let Some(kv) = p.kvs.last() {
                after = Some(kv.key.clone());
            }
            // A page that says more but holds nothing cannot move the cursor.
            let more = p.more && !p.kvs.is_empty();
            f(p.kvs);
            let last = after.as_deref().and_then(|k| k.strip_prefix(prefix));
            match span.next(more, last) {
                Some(next) => span = next,
                None => return Ok(revision),
            }
        }
    }

    /// Every key under each of `prefixes`, all as of one revision (returned with them): a
    /// consistent copy, for a backup. Holds them all in memory.
    pub async fn snapshot(&self, prefixes: &[&str]) -> Result<(i64, Vec<KeyValue>), StoreError> {
        let prefixes: Vec<String> = prefixes.iter().map(|p| (*p).to_owned()).collect();
        METRICS
            .timed(StoreOp::Range, async {
                dispatch!(self, s => s.snapshot(&prefixes).await)
            })
            .await
    }

    /// Number of keys under `prefix`.
    pub async fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        METRICS
            .timed(StoreOp::Count, async {
                dispatch!(self, s => s.count(prefix).await)
            })
            .await
    }

    /// Applies `ops` atomically if every compare holds.
    pub async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResult, StoreError> {
        if compares.len() > MAX_TXN_OPS || ops.len() > MAX_TXN_OPS {
            return Err(StoreError::TooManyOps {
                count: compares.len().max(ops.len()),
                max: MAX_TXN_OPS,
            });
        }
        let started = std::time::Instant::now();
        let r = dispatch!(self, s => s.txn(compares, ops).await);
        let outcome = match &r {
            Ok(t) if !t.succeeded => Outcome::CompareFailed,
            r => Outcome::of(r),
        };
        METRICS.record(StoreOp::Txn, outcome, started);
        r
    }

    /// The store's current revision.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        METRICS
            .timed(StoreOp::Revision, async {
                dispatch!(self, s => s.revision().await)
            })
            .await
    }

    /// Forgets the history before `revision`: a watch from an earlier revision gets
    /// [`StoreError::Compacted`] (etcd's compaction; the embedded store drops its history).
    pub async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        METRICS
            .timed(StoreOp::Compact, async {
                dispatch!(self, s => s.compact(revision).await)
            })
            .await
    }

    /// Watches every key under `prefix`, from `from_revision` (inclusive; 0: from now on).
    /// If that revision is no longer available the stream yields [`StoreError::Compacted`]:
    /// re-list, then watch from the listed revision + 1.
    pub async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError> {
        METRICS
            .timed(StoreOp::Watch, async {
                Ok(match self {
                    Store::Embedded(s) => WatchStream::Embedded(s.watch(prefix, from_revision)?),
                    Store::Etcd(s) => WatchStream::Etcd(s.watch(prefix, from_revision).await?),
                })
            })
            .await
    }

    /// Grants a lease of `ttl_s` seconds.
    pub async fn lease_grant(&self, ttl_s: i64) -> Result<LeaseId, StoreError> {
        METRICS
            .timed(StoreOp::LeaseGrant, async {
                dispatch!(self, s => s.lease_grant(ttl_s).await)
            })
            .await
    }

    /// Opens a keep-alive channel for a lease.
    pub async fn lease_keep_alive(&self, lease: LeaseId) -> Result<LeaseKeepAlive, StoreError> {
        METRICS
            .timed(StoreOp::LeaseKeepAlive, async {
                Ok(match self {
                    Store::Embedded(s) => LeaseKeepAlive::Embedded(s.clone(), lease),
                    Store::Etcd(s) => {
                        LeaseKeepAlive::Etcd(Box::new(s.lease_keep_alive(lease).await?))
                    }
                })
            })
            .await
    }

    /// A lease's TTLs; `None` once it expired or was revoked. (Read by a node that takes
    /// over the lease of the process it replaces: see `lifecycle::NodeLease::resume`.)
    pub async fn lease_info(&self, lease: LeaseId) -> Result<Option<LeaseInfo>, StoreError> {
        METRICS
            .timed(StoreOp::LeaseInfo, async {
                dispatch!(self, s => s.lease_info(lease).await)
            })
            .await
    }

    /// The keys attached to a lease, relative to the store's root, in no particular order
    /// (none once it is gone). Any number of them: an edge's lease holds every binding it
    /// keeps, hundreds of thousands.
    pub async fn lease_keys(&self, lease: LeaseId) -> Result<Vec<String>, StoreError> {
        METRICS
            .timed(StoreOp::LeaseKeys, async {
                dispatch!(self, s => s.lease_keys(lease).await)
            })
            .await
    }

    /// The id of every lease the store holds (every root's: lease ids are the cluster's),
    /// in no particular order. A node with many leases looks for its own among them to find
    /// one revoked behind its back without refreshing each (`lifecycle/keeper.rs`). etcd
    /// answers it from the member's own lease table, without consensus: a member behind may
    /// lack a lease granted moments ago or still list one revoked, so absence is confirmed
    /// with [`Store::lease_info`]. etcd copies and sorts its whole table for each call.
    pub async fn lease_ids(&self) -> Result<Vec<LeaseId>, StoreError> {
        METRICS
            .timed(StoreOp::LeaseList, async {
                dispatch!(self, s => s.lease_ids().await)
            })
            .await
    }

    /// Revokes a lease, deleting every key attached to it.
    pub async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        METRICS
            .timed(StoreOp::LeaseRevoke, async {
                dispatch!(self, s => s.lease_revoke(lease).await)
            })
            .await
    }
}

/// A stream of watch batches; see [`Store::watch`].
pub enum WatchStream {
    /// Embedded backend.
    Embedded(embedded_watch::EmbeddedWatch),
    /// etcd backend.
    Etcd(etcd::EtcdWatch),
}

impl WatchStream {
    /// The next batch of events; `Err(Compacted)` means re-list; `Ok(None)` means the store
    /// closed. Any other error means the watch broke: watch again from the last revision seen.
    pub async fn next(&mut self) -> Result<Option<WatchBatch>, StoreError> {
        let r = match self {
            WatchStream::Embedded(w) => w.next().await,
            WatchStream::Etcd(w) => w.next().await,
        };
        match &r {
            Ok(Some(b)) => METRICS.watch_batch(b.events.len()),
            Ok(None) => {}
            Err(e) => METRICS.watch_error(e),
        }
        r
    }
}

/// Keeps one lease alive; see [`Store::lease_keep_alive`].
pub enum LeaseKeepAlive {
    /// Embedded backend.
    Embedded(EmbeddedStore, LeaseId),
    /// etcd backend.
    Etcd(Box<etcd::EtcdKeepAlive>),
}

impl LeaseKeepAlive {
    /// Refreshes the lease; returns its TTL in seconds, 0 when the lease no longer exists.
    pub async fn refresh(&mut self) -> Result<i64, StoreError> {
        let started = std::time::Instant::now();
        let r = match self {
            LeaseKeepAlive::Embedded(s, id) => Ok(s.lease_refresh(*id)),
            LeaseKeepAlive::Etcd(k) => k.refresh().await,
        };
        METRICS.record(StoreOp::LeaseKeepAlive, Outcome::of(&r), started);
        r
    }
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
