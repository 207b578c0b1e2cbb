//! Keeps the [`Fleet`] current from the store and hands its changes to watchers: the
//! store's follower lists every input prefix, then watches them from the revision after it
//! (one watch, so changes arrive in store order), and lists again after compaction. Changes go to
//! a broadcast channel and a bounded history, so a watcher can resume from a revision.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use dialtone_proto::status::v1::StatusChange;
use dialtone_store::{Follow, Follower, KeyValue, Store, StoreError, WatchBatch, WatchEvent};
use parking_lot::{RwLock, RwLockWriteGuard};
use tokio::{
    sync::{broadcast, watch},
    task::JoinHandle,
};
use tracing::info;

use crate::{
    fleet::{self, Fleet, Form, Handed},
    metrics::Metrics,
};

/// Changes remembered for watchers that resume.
pub const HISTORY: usize = 100_000;
/// Changes buffered per live watcher before it falls behind (and is resumed: `watch.rs`).
/// The broadcast channel holds each change until every watcher has read it: up to this
/// many when one lags, so it carries them encoded, about 350 bytes each instead of 1.2 KB
/// in 20 allocations.
pub const CHANNEL: usize = 16_384;

/// A [`StatusChange`], protobuf-encoded, as the broadcast channel carries it.
pub type EncodedChange = Arc<[u8]>;
/// Most changes applied under one hold of the write lock. A dead edge's lease takes all its
/// bindings in one revision (666,000 of them at a million phones): applied whole, that held
/// every reader (site summaries, a phone's status, a new watcher's page) for seconds.
/// Applied in parts of this many, with the lock handed to waiting readers between them, a
/// reader waits for one part.
pub const PART: usize = 4_096;
/// Changes ahead whose popped id [`remember`] asks the CPU for.
const POP_AHEAD: usize = 16;
/// Keys per listing page.
const PAGE: usize = 1_000;

/// The fleet view, its recent changes, and the channel live watchers listen on.
pub struct State {
    /// The view.
    pub fleet: Fleet,
    /// (revision, phone id) of each change: a resuming watcher is sent the phones' current
    /// statuses, so the history keeps no status, and the id is the view's own copy (24
    /// bytes a change, not ~1 KB).
    history: VecDeque<(i64, Arc<str>)>,
    /// Changes after this revision are all in `history` (the first listing's revision).
    floor: i64,
    /// The latest revision of a change dropped from `history`: changes at a later one are
    /// all there.
    dropped: i64,
}

impl State {
    /// The phones that changed at or after `revision`, each with its current status (or
    /// its removal), in the order of their last change; none when those changes are no
    /// longer all remembered. At, not only after: a batch applied in parts ([`PART`])
    /// stamps every part with its revision, so a watcher that saw the first part's changes
    /// and resumes from their revision is owed the other parts' (and is sent the first
    /// part's again, which a status being current makes harmless).
    pub fn since(&self, revision: i64) -> Option<Vec<StatusChange>> {
        let start = self.history.len() - self.held_since(revision)?;
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

    /// How many changes at or after `revision` the history holds, when it holds them all
    /// ([`State::since`] without building a status).
    pub fn held_since(&self, revision: i64) -> Option<usize> {
        if revision < self.floor || revision <= self.dropped || revision <= 0 {
            return None;
        }
        let start = self.history.partition_point(|(r, _)| *r < revision);
        Some(self.history.len() - start)
    }

    /// A state holding `fleet`, with no change remembered yet.
    pub fn new(fleet: Fleet) -> Self {
        Self {
            fleet,
            history: VecDeque::new(),
            floor: 0,
            dropped: 0,
        }
    }

    /// Remembers `changes` (just made by the view) and sends them to live watchers.
    /// Public for `loadtest`'s `status-footprint`, which measures what this retains.
    pub fn record(&mut self, tx: &broadcast::Sender<EncodedChange>, changes: Vec<StatusChange>) {
        for c in changes {
            let id = self.fleet.shared_id(&c.phone_id);
            let revision = c.revision;
            let encoded = Handed::of(c, form_for(tx)).into_encoded();
            remember(
                &mut self.history,
                &mut self.dropped,
                tx,
                id,
                revision,
                encoded,
            );
        }
    }

    /// Re-reduces phones `ids` ([`Fleet::republish_all`]), remembering each change and
    /// sending it to live watchers; returns how many phones changed.
    fn republish(
        &mut self,
        tx: &broadcast::Sender<EncodedChange>,
        ids: &[Arc<str>],
        revision: i64,
        now_ms: i64,
    ) -> usize {
        let (history, dropped) = (&mut self.history, &mut self.dropped);
        let mut changed = 0;
        self.fleet
            .republish_all(ids, revision, now_ms, form_for(tx), &mut |id, handed| {
                changed += 1;
                let encoded = handed.into_encoded();
                remember(history, dropped, tx, id.clone(), revision, encoded);
            });
        changed
    }
}

/// How changes are wanted for the live watchers on `tx`: encoded, or not at all when there
/// is nobody to encode for (a watcher that subscribes later starts from the state).
fn form_for(tx: &broadcast::Sender<EncodedChange>) -> Form {
    if tx.receiver_count() > 0 {
        Form::Encoded
    } else {
        Form::Bare
    }
}

/// Remembers one change (`id` is the view's copy of its phone's id) at `revision`, and
/// sends it, `encoded`, to live watchers.
fn remember(
    history: &mut VecDeque<(i64, Arc<str>)>,
    dropped: &mut i64,
    tx: &broadcast::Sender<EncodedChange>,
    id: Arc<str>,
    revision: i64,
    encoded: Option<EncodedChange>,
) {
    if history.len() == HISTORY
        && let Some((r, _)) = history.pop_front()
    {
        *dropped = (*dropped).max(r);
        // The id a change further on pops: a phone's id last touched a hundred thousand
        // changes ago, its reference count a cache miss when dropped unasked.
        if let Some((_, ahead)) = history.get(POP_AHEAD) {
            crate::prefetch::arc(ahead);
        }
    }
    history.push_back((revision, id));
    if let Some(encoded) = encoded {
        let _ = tx.send(encoded);
    }
}

/// Where a batch of changes to `keys` is cut into parts of about `size`: each part's end
/// (exclusive), the last one `keys.len()` (one empty part for no keys). A cut falls only
/// between two phones' keys ([`fleet::phone_of`]), so a part may run past `size` to finish
/// a phone and no phone is seen half-changed.
pub fn part_ends(keys: &[&str], size: usize) -> Vec<usize> {
    let size = size.max(1);
    let mut ends = Vec::new();
    let mut start = 0;
    while start < keys.len() {
        let mut end = (start + size).min(keys.len());
        while end < keys.len() && fleet::phone_of(keys[end - 1]) == fleet::phone_of(keys[end]) {
            end += 1;
        }
        ends.push(end);
        start = end;
    }
    if ends.is_empty() {
        ends.push(0);
    }
    ends
}

/// The status role's shared state.
pub struct Hub {
    /// The view and history; written only by the follower task.
    pub state: RwLock<State>,
    /// Live changes (sent while the state's write lock is held, so a watcher that
    /// subscribes under the read lock misses nothing and sees nothing twice).
    pub tx: broadcast::Sender<EncodedChange>,
    ready: Arc<AtomicBool>,
    /// True while a batch is applied in more than one hold of the write lock
    /// ([`apply_in_parts`]): a watcher that fell behind waits for it to be in before it
    /// reads the view (`watch.rs`).
    pub applying: watch::Sender<bool>,
    /// Counters and the watch-lag histogram.
    pub metrics: Metrics,
}

fn now_ms() -> i64 {
    dialtone_common::clock::unix_ms_i64()
}

impl Hub {
    /// Builds the view from a full listing and follows the store from there; returns the
    /// hub and the following task. The first listing's error is returned.
    pub async fn start(
        store: Store,
        realm: &str,
    ) -> Result<(Arc<Self>, JoinHandle<()>), StoreError> {
        let hub = Arc::new(Self::new(Fleet::new(realm), CHANNEL));
        let follower = HubFollower {
            hub: hub.clone(),
            fresh: None,
            first: true,
        };
        let task = Follow::listing("status", &fleet::PREFIXES)
            .page(PAGE)
            .start(store, follower, hub.ready.clone())
            .await?;
        Ok((hub, task))
    }

    /// A hub over `fleet`, not yet ready and following nothing, whose channel holds
    /// `capacity` changes.
    pub(crate) fn new(fleet: Fleet, capacity: usize) -> Self {
        Self {
            state: RwLock::new(State::new(fleet)),
            tx: broadcast::channel(capacity).0,
            ready: Arc::new(AtomicBool::new(false)),
            applying: watch::channel(false).0,
            metrics: Metrics::default(),
        }
    }

    /// Where [`apply_in_parts`] hands this hub's changes.
    pub(crate) fn feed(&self) -> Feed<'_> {
        Feed {
            tx: &self.tx,
            applying: &self.applying,
        }
    }

    /// Whether the view is loaded and current (false while re-listing).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Applies a batch in parts ([`PART`]), handing the lock to waiting readers between
    /// them; the view's revision moves once the last part is in. A batch of more than one
    /// part, or one that may touch every phone of an edge or of the fleet, runs off the
    /// async workers, which it would otherwise hold for seconds.
    fn absorb(&self, events: Vec<WatchEvent>, revision: i64) {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let apply = || apply_in_parts(&self.state, self.feed(), &self.metrics, &events, revision);
        let wide =
            events.len() > PART || events.iter().any(|e| fleet::touches_many_phones(e.key()));
        if wide && multi_thread {
            tokio::task::block_in_place(apply);
        } else {
            apply();
        }
    }
}

/// Applies a batch of store changes that brings the view to `revision` in parts ([`PART`]),
/// handing the lock to waiting readers between them; the view's revision moves once the
/// last part is in. The phones a part touches are re-reduced in parts of [`PART`] too: a
/// departed edge's membership record is one key and touches every phone bound to it.
/// `feed.applying` is true while it runs when it takes the lock more than once.
/// Public for `status-footprint`, which times it.
pub fn apply_in_parts(
    state: &RwLock<State>,
    Feed { tx, applying }: Feed<'_>,
    metrics: &Metrics,
    events: &[WatchEvent],
    revision: i64,
) {
    let now = now_ms();
    let started = std::time::Instant::now();
    let (mut rereduced, mut changed) = (0, 0);
    let keys: Vec<&str> = events.iter().map(WatchEvent::key).collect();
    let mut start = 0;
    let ends = part_ends(&keys, PART);
    let mut marked = Marked::new(applying);
    if ends.len() > 1 {
        marked.set();
    }
    for end in ends {
        // Keys outside the view's prefixes (indexes, other roles' members, actions) are
        // ignored by it.
        let changes = events[start..end].iter().map(|ev| match ev {
            WatchEvent::Put(kv) => (kv.key.as_str(), Some(kv.value.as_slice())),
            WatchEvent::Delete { key, .. } => (key.as_str(), None),
        });
        let mut st = state.write();
        let touched = st.fleet.absorb_part(changes);
        if touched.len() > PART {
            marked.set();
        }
        for written in st.fleet.take_binding_writes() {
            metrics.observe_binding_lag(written, now);
        }
        let mut chunks = touched.chunks(PART).peekable();
        while let Some(ids) = chunks.next() {
            let n = st.republish(tx, ids, revision, now);
            metrics.count_changes(n);
            (rereduced, changed) = (rereduced + ids.len(), changed + n);
            if chunks.peek().is_some() {
                RwLockWriteGuard::unlock_fair(st);
                st = state.write();
            }
        }
        if end == events.len() {
            st.fleet.advance(revision);
        }
        RwLockWriteGuard::unlock_fair(st);
        start = end;
    }
    // What a dead edge, a site or group change or a catch-up costs the role: said once.
    if rereduced > PART {
        info!(
            revision,
            keys = events.len(),
            rereduced,
            changed,
            took_ms = started.elapsed().as_millis() as u64,
            "applied a change of many phones"
        );
    }
}

/// Where [`apply_in_parts`] hands its changes: the live watchers' channel, and the mark
/// that a batch is being applied in more than one hold of the lock.
#[derive(Clone, Copy)]
pub struct Feed<'a> {
    /// The live watchers' channel.
    pub tx: &'a broadcast::Sender<EncodedChange>,
    /// True while such a batch is being applied.
    pub applying: &'a watch::Sender<bool>,
}

/// Holds `applying` true from [`Marked::set`] until dropped. A batch that takes the lock
/// more than once (a dead edge's 666,000 phones at a million) may overflow a live
/// watcher's share of the channel; a watcher that then read the view at once would compute
/// the batch's phones while they are being re-reduced, contending for the lock and the
/// cores, and fall behind again.
struct Marked<'a> {
    applying: &'a watch::Sender<bool>,
    set: bool,
}

impl<'a> Marked<'a> {
    fn new(applying: &'a watch::Sender<bool>) -> Self {
        Self {
            applying,
            set: false,
        }
    }

    fn set(&mut self) {
        if !self.set {
            self.applying.send_replace(true);
            self.set = true;
        }
    }
}

impl Drop for Marked<'_> {
    fn drop(&mut self) {
        if self.set {
            self.applying.send_replace(false);
        }
    }
}

/// Lists into a fresh view, swapped in at once (readers never see half a listing), then
/// applies the changes as they come.
struct HubFollower {
    hub: Arc<Hub>,
    fresh: Option<Fleet>,
    /// The first listing starts the history; later ones report what differs from it.
    first: bool,
}

impl Follower for HubFollower {
    fn reset(&mut self) {
        self.fresh = Some(Fleet::new(""));
    }

    fn listed(&mut self, page: Vec<KeyValue>) {
        if let Some(fresh) = &mut self.fresh {
            fresh.load(page.iter().map(|kv| (kv.key.as_str(), kv.value.as_slice())));
        }
    }

    fn caught_up(&mut self, revision: i64) {
        let Some(fresh) = self.fresh.take() else {
            return;
        };
        let mut st = self.hub.state.write();
        let changes = st.fleet.replace_inputs(fresh, revision, now_ms());
        st.record(&self.hub.tx, changes);
        if std::mem::take(&mut self.first) {
            st.floor = revision;
        }
    }

    fn changed(&mut self, batch: WatchBatch) {
        self.hub.absorb(batch.events, batch.revision);
    }

    /// Writes outside the view (members, indexes, actions) still move its revision, as
    /// the API's `revision` and the revision gauge report it.
    fn progressed(&mut self, revision: i64) {
        self.hub.absorb(Vec::new(), revision);
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
