//! The embedded single-node store: keys in memory, every acknowledged change in an
//! append-only log on disk (fsync before the call returns), leases with deadlines, and a
//! bounded history of changes for watches. It stands in for etcd on one machine and passes
//! the same contract tests.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fs::{File, OpenOptions},
    io::{Read, Write},
    ops::Bound,
    path::{Path, PathBuf},
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

pub use crate::embedded_watch::EmbeddedWatch;
use tracing::{info, warn};

use crate::{
    StoreError,
    types::{
        Compare, KeyValue, LeaseId, LeaseInfo, Op, RangePage, TxnResult, WatchBatch, WatchEvent,
    },
    wal::{Record, decode_frames, encode_frame},
};

/// Events kept for watches that resume from an earlier revision.
const HISTORY_EVENTS: usize = 100_000;
/// Batches a live watcher may fall behind before it is told to re-list.
const WATCH_BUFFER: usize = 4096;
/// The log is rewritten as a snapshot once it is this large and mostly dead records.
const COMPACT_MIN_BYTES: u64 = 64 << 20;
const LOG_FILE: &str = "store.log";

#[derive(Clone)]
struct Entry {
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: LeaseId,
}

struct Lease {
    ttl: i64,
    deadline: Instant,
    keys: std::collections::BTreeSet<String>,
}

impl Lease {
    /// Whether it is still alive at `now`: one expires at its deadline, though the sweep
    /// that deletes its keys may come later.
    fn alive_at(&self, now: Instant) -> bool {
        self.deadline > now
    }
}

struct State {
    revision: i64,
    kvs: BTreeMap<String, Entry>,
    leases: HashMap<LeaseId, Lease>,
    last_lease: LeaseId,
    history: VecDeque<Arc<WatchBatch>>,
    history_events: usize,
    /// Watches may start at `history_floor + 1` or later.
    history_floor: i64,
    live_bytes: u64,
}

struct Log {
    file: File,
    path: PathBuf,
    dir: PathBuf,
    bytes: u64,
    buf: Vec<u8>,
    /// Set by a write or sync that failed: what is on disk after it is unknown (a failed
    /// fsync may have dropped pages, a short write left half a frame), and a later frame
    /// appended after the damage would be cut off at the next start with everything after
    /// it. So the store stops taking writes (fail-stop) until it is restarted.
    poisoned: bool,
}

struct Inner {
    state: RwLock<State>,
    log: Mutex<Log>,
    events: broadcast::Sender<Arc<WatchBatch>>,
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl State {
    fn empty() -> Self {
        State {
            revision: 1,
            kvs: BTreeMap::new(),
            leases: HashMap::new(),
            last_lease: 0,
            history: VecDeque::new(),
            history_events: 0,
            history_floor: 1,
            live_bytes: 0,
        }
    }

    fn holds(&self, c: &Compare) -> bool {
        match c {
            Compare::ModRevision { key, revision } => self
                .kvs
                .get(key)
                .is_some_and(|e| e.mod_revision == *revision),
            Compare::Exists(key) => self.kvs.contains_key(key),
            Compare::Absent(key) => !self.kvs.contains_key(key),
            Compare::PrefixEmpty(prefix) => self
                .first_at_or_after(prefix)
                .is_none_or(|k| !k.starts_with(prefix.as_str())),
        }
    }

    fn first_at_or_after(&self, key: &str) -> Option<&String> {
        self.kvs
            .range::<str, _>((Bound::Included(key), Bound::Unbounded))
            .next()
            .map(|(k, _)| k)
    }

    /// Applies one record at revision `rev`; returns the watch event it makes, if any.
    fn apply(&mut self, rec: Record, rev: i64, now: Instant) -> Option<WatchEvent> {
        match rec {
            Record::Revision(r) => {
                self.revision = r;
                None
            }
            Record::Put { key, value, lease } => {
                let (create_revision, version) = match self.kvs.get(&key) {
                    Some(old) => {
                        let (c, v, l, len) =
                            (old.create_revision, old.version, old.lease, old.value.len());
                        self.detach(&key, l);
                        self.live_bytes -= (key.len() + len) as u64;
                        (c, v + 1)
                    }
                    None => (rev, 1),
                };
                if let Some(l) = self.leases.get_mut(&lease).filter(|_| lease != 0) {
                    l.keys.insert(key.clone());
                }
                self.live_bytes += (key.len() + value.len()) as u64;
                let entry = Entry {
                    value,
                    create_revision,
                    mod_revision: rev,
                    version,
                    lease,
                };
                let kv = to_kv(&key, &entry);
                self.kvs.insert(key, entry);
                Some(WatchEvent::Put(kv))
            }
            Record::Delete { key } => {
                let old = self.kvs.remove(&key)?;
                self.live_bytes -= (key.len() + old.value.len()) as u64;
                self.detach(&key, old.lease);
                Some(WatchEvent::Delete {
                    key,
                    mod_revision: rev,
                })
            }
            Record::LeaseGrant { id, ttl } => {
                self.last_lease = self.last_lease.max(id);
                self.leases.insert(
                    id,
                    Lease {
                        ttl,
                        deadline: now + secs(ttl),
                        keys: Default::default(),
                    },
                );
                None
            }
            Record::LeaseRevoke { id } => {
                self.leases.remove(&id);
                None
            }
            Record::SnapshotKey {
                key,
                value,
                create_revision,
                mod_revision,
                version,
                lease,
            } => {
                if let Some(l) = self.leases.get_mut(&lease) {
                    l.keys.insert(key.clone());
                }
                self.live_bytes += (key.len() + value.len()) as u64;
                self.kvs.insert(
                    key,
                    Entry {
                        value,
                        create_revision,
                        mod_revision,
                        version,
                        lease,
                    },
                );
                None
            }
        }
    }

    fn detach(&mut self, key: &str, lease: LeaseId) {
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.remove(key);
        }
    }

    fn record_history(&mut self, batch: Arc<WatchBatch>) {
        self.history_events += batch.events.len();
        self.history.push_back(batch);
        while self.history_events > HISTORY_EVENTS {
            let Some(old) = self.history.pop_front() else {
                break;
            };
            self.history_events -= old.events.len();
            self.history_floor = old.revision;
        }
    }

    fn snapshot_records(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.kvs.len() + self.leases.len() + 1);
        out.push(Record::Revision(self.revision));
        for (id, l) in &self.leases {
            out.push(Record::LeaseGrant {
                id: *id,
                ttl: l.ttl,
            });
        }
        for (k, e) in &self.kvs {
            out.push(Record::SnapshotKey {
                key: k.clone(),
                value: e.value.clone(),
                create_revision: e.create_revision,
                mod_revision: e.mod_revision,
                version: e.version,
                lease: e.lease,
            });
        }
        out
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(1) as u64)
}

fn to_kv(key: &str, e: &Entry) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: e.value.clone(),
        create_revision: e.create_revision,
        mod_revision: e.mod_revision,
        version: e.version,
        lease: e.lease,
    }
}

impl Log {
    /// Appends records as one frame and waits until they are on disk.
    fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        self.buf.clear();
        encode_frame(records, &mut self.buf);
        let written = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.poisoned = true;
            tracing::error!(path = %self.path.display(), error = %e, "store log write failed: no more writes until restart");
            return Err(e.into());
        }
        self.bytes += self.buf.len() as u64;
        Ok(())
    }

    /// Replaces the log by a snapshot of `records` (written aside, synced, renamed over).
    /// A failure before the rename leaves the log as it was; one after it poisons the log
    /// (the open file may no longer be the one on disk).
    fn rewrite(&mut self, records: &[Record]) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let tmp = self.dir.join(format!("{LOG_FILE}.compact"));
        let written = (|| -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            let mut buf = Vec::new();
            for chunk in records.chunks(4096) {
                buf.clear();
                encode_frame(chunk, &mut buf);
                f.write_all(&buf)?;
            }
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        std::fs::rename(&tmp, &self.path)?;
        let reopened = (|| -> std::io::Result<(File, u64)> {
            File::open(&self.dir)?.sync_all()?;
            let file = OpenOptions::new().append(true).open(&self.path)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        })();
        match reopened {
            Ok((file, len)) => {
                self.file = file;
                self.bytes = len;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e.into())
            }
        }
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, replaying its log. Must be called inside a
    /// tokio runtime: lease expiry runs as a task.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut state = State::empty();
        let now = Instant::now();
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)?.read_to_end(&mut bytes)?;
        }
        let decoded = decode_frames(&bytes);
        if decoded.valid_len < bytes.len() {
            if !crate::wal::torn_tail(&bytes[decoded.valid_len..]) {
                return Err(StoreError::Corrupt(
                    "a damaged frame in the middle of the store log, with data after it: refusing to start (restore the data dir from a backup, or move store.log aside to start empty)",
                ));
            }
            warn!(path = %path.display(), dropped = bytes.len() - decoded.valid_len, "dropping torn tail of store log");
        }
        let frames = decoded.frames.len();
        for frame in decoded.frames {
            let mut rev = state.revision;
            for rec in frame {
                if let Record::Revision(r) = rec {
                    rev = r;
                }
                state.apply(rec, rev, now);
            }
        }
        state.history_floor = state.revision;
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)?
        };
        file.set_len(decoded.valid_len as u64)?;
        file.sync_all()?;
        info!(path = %path.display(), keys = state.kvs.len(), revision = state.revision, frames, "embedded store opened");
        let log = Log {
            file,
            path,
            dir: dir.to_owned(),
            bytes: decoded.valid_len as u64,
            buf: Vec::new(),
            poisoned: false,
        };
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let store = EmbeddedStore {
            inner: Arc::new(Inner {
                state: RwLock::new(state),
                log: Mutex::new(log),
                events,
            }),
        };
        store.maybe_compact(true)?;
        tokio::spawn(expire_leases(Arc::downgrade(&store.inner)));
        Ok(store)
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.inner.state.read().kvs.get(key).map(|e| to_kv(key, e)))
    }

    pub(crate) async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<KeyValue>>, StoreError> {
        let st = self.inner.state.read();
        Ok(keys
            .iter()
            .map(|k| st.kvs.get(k).map(|e| to_kv(k, e)))
            .collect())
    }

    pub(crate) async fn range_many(
        &self,
        prefixes: &[String],
        limit: usize,
    ) -> Result<Vec<Vec<KeyValue>>, StoreError> {
        let st = self.inner.state.read();
        Ok(prefixes
            .iter()
            .map(|p| {
                st.kvs
                    .range::<str, _>((Bound::Included(p.as_str()), Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(p.as_str()))
                    .take(limit)
                    .map(|(k, e)| to_kv(k, e))
                    .collect()
            })
            .collect())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.commit(&[Compare::Exists(key.clone())], vec![Op::Delete(key)])
                .map(|r| r.succeeded)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Every key under `prefixes` at one revision: read under one lock.
    pub(crate) async fn snapshot(
        &self,
        prefixes: &[String],
    ) -> Result<(i64, Vec<KeyValue>), StoreError> {
        let st = self.inner.state.read();
        let mut out = Vec::new();
        for p in prefixes {
            out.extend(
                st.kvs
                    .range::<str, _>((Bound::Included(p.as_str()), Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(p.as_str()))
                    .map(|(k, e)| to_kv(k, e)),
            );
        }
        Ok((st.revision, out))
    }

    pub(crate) async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        end: Option<&str>,
        limit: usize,
    ) -> Result<RangePage, StoreError> {
        let st = self.inner.state.read();
        let start = match start_after {
            Some(k) if k >= prefix => Bound::Excluded(k),
            _ => Bound::Included(prefix),
        };
        let mut kvs = Vec::new();
        let mut more = false;
        for (k, e) in st.kvs.range::<str, _>((start, Bound::Unbounded)) {
            if !k.starts_with(prefix) || end.is_some_and(|e| k.as_str() >= e) {
                break;
            }
            if kvs.len() == limit {
                more = true;
                break;
            }
            kvs.push(to_kv(k, e));
        }
        Ok(RangePage {
            kvs,
            more,
            revision: st.revision,
        })
    }

    pub(crate) async fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        let st = self.inner.state.read();
        Ok(st
            .kvs
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .count() as u64)
    }

    /// The current revision; fails once the log is poisoned, so readiness (which asks for
    /// it) reports a store that takes no writes.
    pub(crate) async fn revision(&self) -> Result<i64, StoreError> {
        if self.inner.log.lock().poisoned {
            return Err(StoreError::Poisoned);
        }
        Ok(self.inner.state.read().revision)
    }

    pub(crate) async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let mut st = self.inner.state.write();
        let revision = revision.min(st.revision);
        // As etcd: watches may still start at `revision`, not before.
        while st.history.front().is_some_and(|b| b.revision < revision) {
            if let Some(old) = st.history.pop_front() {
                st.history_events -= old.events.len();
            }
        }
        st.history_floor = st.history_floor.max(revision - 1);
        Ok(())
    }

    pub(crate) async fn txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
    ) -> Result<TxnResult, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.commit(&compares, ops))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Checks the compares and applies the ops under the write lock; the log is synced
    /// before the state changes, so a failed write changes nothing.
    fn commit(&self, compares: &[Compare], ops: Vec<Op>) -> Result<TxnResult, StoreError> {
        let mut st = self.inner.state.write();
        if !compares.iter().all(|c| st.holds(c)) {
            return Ok(TxnResult {
                succeeded: false,
                revision: st.revision,
            });
        }
        let rev = st.revision + 1;
        let mut records = Vec::with_capacity(ops.len() + 1);
        records.push(Record::Revision(rev));
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let lease = lease.unwrap_or(0);
                    if lease != 0 && !st.leases.contains_key(&lease) {
                        return Err(StoreError::LeaseNotFound(lease));
                    }
                    records.push(Record::Put { key, value, lease });
                }
                Op::Delete(key) => {
                    if st.kvs.contains_key(&key) {
                        records.push(Record::Delete { key });
                    }
                }
            }
        }
        if records.len() == 1 {
            return Ok(TxnResult {
                succeeded: true,
                revision: st.revision,
            });
        }
        self.inner.log.lock().append(&records)?;
        self.apply_committed(&mut st, records, rev);
        drop(st);
        // The write is committed: a compaction that fails does not make it fail.
        if let Err(e) = self.maybe_compact(false) {
            warn!(error = %e, "store log compaction failed; the log stays as it was");
        }
        Ok(TxnResult {
            succeeded: true,
            revision: rev,
        })
    }

    fn apply_committed(&self, st: &mut State, records: Vec<Record>, rev: i64) {
        let now = Instant::now();
        let events: Vec<WatchEvent> = records
            .into_iter()
            .filter_map(|r| st.apply(r, rev, now))
            .collect();
        st.revision = rev;
        if !events.is_empty() {
            let batch = Arc::new(WatchBatch {
                events,
                revision: rev,
            });
            st.record_history(batch.clone());
            // No receiver is fine: nobody watches.
            let _ = self.inner.events.send(batch);
        }
    }

    fn maybe_compact(&self, at_open: bool) -> Result<(), StoreError> {
        let bytes = self.inner.log.lock().bytes;
        let live = self.inner.state.read().live_bytes;
        let threshold = if at_open { 1 << 20 } else { COMPACT_MIN_BYTES };
        if bytes < threshold || bytes < live.saturating_mul(4) {
            return Ok(());
        }
        let st = self.inner.state.write();
        let mut log = self.inner.log.lock();
        log.rewrite(&st.snapshot_records())?;
        info!(before = bytes, after = log.bytes, "store log compacted");
        Ok(())
    }

    pub(crate) fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> Result<EmbeddedWatch, StoreError> {
        let st = self.inner.state.read();
        // Subscribing under the read lock: no commit can slip between history and live.
        let rx = self.inner.events.subscribe();
        let mut w = EmbeddedWatch {
            prefix: prefix.to_owned(),
            rx,
            backlog: VecDeque::new(),
            pending: None,
        };
        if from_revision > 0 && from_revision <= st.revision {
            if from_revision <= st.history_floor {
                w.pending = Some(st.history_floor + 1);
            } else {
                w.backlog = st
                    .history
                    .iter()
                    .filter(|b| b.revision >= from_revision)
                    .cloned()
                    .collect();
            }
        }
        Ok(w)
    }

    pub(crate) async fn lease_grant(&self, ttl_s: i64) -> Result<LeaseId, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut st = this.inner.state.write();
            let now_ms = dialtone_common::clock::unix_ms_i64();
            let id = (st.last_lease + 1).max(now_ms << 10);
            let rec = Record::LeaseGrant {
                id,
                ttl: ttl_s.max(1),
            };
            this.inner.log.lock().append(std::slice::from_ref(&rec))?;
            let rev = st.revision;
            st.apply(rec, rev, Instant::now());
            Ok(id)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Pushes a lease's deadline out by its TTL; returns the TTL, 0 if the lease is gone.
    pub(crate) fn lease_refresh(&self, id: LeaseId) -> i64 {
        let mut st = self.inner.state.write();
        match st.leases.get_mut(&id) {
            Some(l) => {
                l.deadline = Instant::now() + secs(l.ttl);
                l.ttl
            }
            None => 0,
        }
    }

    /// What `read` makes of lease `id` while it is alive (its deadline not passed).
    fn live_lease<T>(&self, id: LeaseId, read: impl FnOnce(&Lease, Instant) -> T) -> Option<T> {
        let st = self.inner.state.read();
        let now = Instant::now();
        st.leases
            .get(&id)
            .filter(|l| l.alive_at(now))
            .map(|l| read(l, now))
    }

    pub(crate) async fn lease_info(&self, id: LeaseId) -> Result<Option<LeaseInfo>, StoreError> {
        Ok(self.live_lease(id, |l, now| LeaseInfo {
            granted_ttl_s: l.ttl,
            ttl_left_s: l.deadline.duration_since(now).as_secs().max(1) as i64,
        }))
    }

    pub(crate) async fn lease_keys(&self, id: LeaseId) -> Result<Vec<String>, StoreError> {
        Ok(self
            .live_lease(id, |l, _| l.keys.iter().cloned().collect())
            .unwrap_or_default())
    }

    pub(crate) async fn lease_ids(&self) -> Result<Vec<LeaseId>, StoreError> {
        let st = self.inner.state.read();
        let now = Instant::now();
        Ok(st
            .leases
            .iter()
            .filter(|(_, l)| l.alive_at(now))
            .map(|(id, _)| *id)
            .collect())
    }

    pub(crate) async fn lease_revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.revoke(id))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    fn revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        let mut st = self.inner.state.write();
        let Some(lease) = st.leases.get(&id) else {
            return Err(StoreError::LeaseNotFound(id));
        };
        let rev = st.revision + 1;
        let mut records = Vec::with_capacity(lease.keys.len() + 2);
        if !lease.keys.is_empty() {
            records.push(Record::Revision(rev));
            records.extend(lease.keys.iter().map(|k| Record::Delete { key: k.clone() }));
        }
        records.push(Record::LeaseRevoke { id });
        self.inner.log.lock().append(&records)?;
        if lease.keys.is_empty() {
            st.leases.remove(&id);
        } else {
            self.apply_committed(&mut st, records, rev);
        }
        Ok(())
    }
}

/// Revokes leases whose deadline passed, four times a second, until the store is dropped.
async fn expire_leases(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let store = EmbeddedStore { inner };
        let now = Instant::now();
        let expired: Vec<LeaseId> = store
            .inner
            .state
            .read()
            .leases
            .iter()
            .filter(|(_, l)| !l.alive_at(now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.revoke(id)).await {
                Ok(Ok(())) | Ok(Err(StoreError::LeaseNotFound(_))) => {
                    info!(lease = %format!("{id:x}"), "lease expired")
                }
                Ok(Err(e)) => warn!(lease = %format!("{id:x}"), error = %e, "lease expiry failed"),
                Err(_) => return,
            }
        }
    }
}
