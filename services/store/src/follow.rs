//! Following a part of the store: list it, watch from the listed revision + 1, resume a
//! broken watch where it stopped, list again when the history it needs was compacted away,
//! and back off while the store is unreachable. Every role keeps a view of some prefixes
//! (the edge's credentials cache, its phone actions, the status view, provisioning's
//! document cache); this is the one loop they all run, so each only says what a key means.
//!
//! The watch is ONE watch on the prefixes' common prefix, filtered to the prefixes: one
//! watch keeps the store's revision order across them (two watches would interleave
//! freely), which a view that records changes by revision (status) relies on.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{KeyValue, Store, StoreError, WatchBatch};

/// What a role does with the part of the store it follows. Called from one task, in order.
pub trait Follower: Send + 'static {
    /// A full listing starts: what `listed` hands over until `caught_up` is then the whole
    /// of the followed prefixes (at start, and after the watch's history was compacted).
    /// A follower that does not list ([`Follow::from_now`]) is told its view may be stale.
    fn reset(&mut self) {}

    /// One page of the listing.
    fn listed(&mut self, _page: Vec<KeyValue>) {}

    /// The listing is complete (or, without one, following starts) at `revision`.
    fn caught_up(&mut self, _revision: i64) {}

    /// Changes after that, in revision order, filtered to the followed prefixes.
    fn changed(&mut self, batch: WatchBatch);

    /// The store moved on to `revision` with nothing under the followed prefixes (a view
    /// that reports the revision it is current at raises it here).
    fn progressed(&mut self, _revision: i64) {}
}

/// Which prefixes to follow, and how to start.
#[derive(Clone, Debug)]
pub struct Follow {
    /// What the log lines call it.
    name: &'static str,
    prefixes: Vec<String>,
    /// List before watching (false: only changes from now on matter).
    list: bool,
    /// Start watching here instead of listing first (a view restored from elsewhere).
    resume_from: Option<i64>,
    /// List again after any watch error, not only after compaction (for a follower that
    /// must see again what a failed attempt left behind).
    relist_on_error: bool,
    page: usize,
}

/// Shortest and longest wait before the store is tried again.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Follow {
    /// Lists `prefixes`, then watches them.
    pub fn listing(name: &'static str, prefixes: &[&str]) -> Self {
        Follow {
            name,
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            list: true,
            resume_from: None,
            relist_on_error: false,
            page: 1000,
        }
    }

    /// Watches `prefixes` from the current revision on, never listing them: for a cache
    /// that only needs to know what changed (after a compaction it is reset instead).
    pub fn from_now(name: &'static str, prefixes: &[&str]) -> Self {
        Follow {
            list: false,
            ..Follow::listing(name, prefixes)
        }
    }

    /// Skips the first listing and watches from `revision` (exclusive) on; if that history
    /// is gone the follower is reset and listed as usual.
    pub fn resuming_from(mut self, revision: i64) -> Self {
        self.resume_from = Some(revision);
        self
    }

    /// Lists again after any watch error (an outage), not only after compaction: what the
    /// follower could not finish while the store was unreachable is handed over again.
    pub fn relisting_after_errors(mut self) -> Self {
        self.relist_on_error = true;
        self
    }

    /// Pages of `n` keys while listing.
    pub fn page(mut self, n: usize) -> Self {
        self.page = n.max(1);
        self
    }

    /// Catches up once (the first listing's error is returned, so a role that cannot
    /// start without its view fails to start), then follows in a task. `ready` is true
    /// while the view is complete, false while it is listed again.
    pub async fn start<F: Follower>(
        self,
        store: Store,
        mut follower: F,
        ready: Arc<AtomicBool>,
    ) -> Result<JoinHandle<()>, StoreError> {
        let revision = match self.resume_from {
            Some(r) => r,
            None => self.catch_up(&store, &mut follower, &ready).await?,
        };
        Ok(tokio::spawn(self.run(store, follower, ready, revision)))
    }

    /// Catches up and follows in a task, retrying the first catch-up too.
    pub fn spawn<F: Follower>(
        self,
        store: Store,
        mut follower: F,
        ready: Arc<AtomicBool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut backoff = BACKOFF_MIN;
            let revision = loop {
                if let Some(r) = self.resume_from {
                    break r;
                }
                match self.catch_up(&store, &mut follower, &ready).await {
                    Ok(r) => break r,
                    Err(e) => {
                        warn!(view = self.name, error = %e, "listing failed; retrying");
                        backoff = wait(backoff).await;
                    }
                }
            };
            self.run(store, follower, ready, revision).await
        })
    }

    /// Lists (or, without listing, reads the current revision) into a reset follower.
    async fn catch_up<F: Follower>(
        &self,
        store: &Store,
        follower: &mut F,
        ready: &AtomicBool,
    ) -> Result<i64, StoreError> {
        ready.store(false, Ordering::Release);
        let revision = if self.list {
            follower.reset();
            let mut revision = i64::MAX;
            for prefix in &self.prefixes {
                let r = store
                    .list_pages(prefix, self.page, |page| follower.listed(page))
                    .await?;
                revision = revision.min(r);
            }
            revision
        } else {
            let r = store.revision().await?;
            follower.reset();
            r
        };
        follower.caught_up(revision);
        ready.store(true, Ordering::Release);
        Ok(revision)
    }

    /// Follows from `revision` (exclusive) until the task is aborted.
    async fn run<F: Follower>(
        self,
        store: Store,
        mut follower: F,
        ready: Arc<AtomicBool>,
        mut revision: i64,
    ) {
        let watched = common_prefix(&self.prefixes);
        let mut backoff = BACKOFF_MIN;
        ready.store(true, Ordering::Release);
        loop {
            let mut watch = match store.watch(watched, revision + 1).await {
                Ok(w) => {
                    backoff = BACKOFF_MIN;
                    w
                }
                Err(e) => {
                    warn!(view = self.name, error = %e, "watch could not open; retrying");
                    backoff = wait(backoff).await;
                    continue;
                }
            };
            // Until the watch ends: whether to list again before the next one.
            let relist = loop {
                match watch.next().await {
                    Ok(Some(batch)) => {
                        revision = batch.revision;
                        match self.filtered(batch) {
                            Some(batch) => follower.changed(batch),
                            None => follower.progressed(revision),
                        }
                    }
                    Ok(None) => break false,
                    Err(StoreError::Compacted { .. }) => {
                        info!(view = self.name, "watch compacted: listing again");
                        break true;
                    }
                    Err(e) => {
                        warn!(view = self.name, error = %e, "watch failed; resuming");
                        backoff = wait(backoff).await;
                        break self.relist_on_error;
                    }
                }
            };
            if relist {
                match self.catch_up(&store, &mut follower, &ready).await {
                    Ok(r) => revision = r,
                    Err(e) => {
                        warn!(view = self.name, error = %e, "listing again failed; retrying");
                        backoff = wait(backoff).await;
                    }
                }
            }
        }
    }

    /// The events of `batch` under the followed prefixes (none: nothing to hand over).
    fn filtered(&self, mut batch: WatchBatch) -> Option<WatchBatch> {
        if self.prefixes.len() > 1 {
            batch.events.retain(|e| {
                self.prefixes
                    .iter()
                    .any(|p| e.key().starts_with(p.as_str()))
            });
        }
        (!batch.events.is_empty()).then_some(batch)
    }
}

/// Sleeps `d`; returns the next, doubled, wait.
async fn wait(d: Duration) -> Duration {
    tokio::time::sleep(d).await;
    (d * 2).min(BACKOFF_MAX)
}

/// The longest prefix every one of `prefixes` starts with.
fn common_prefix(prefixes: &[String]) -> &str {
    let Some(first) = prefixes.first() else {
        return "";
    };
    let mut len = first.len();
    for p in &prefixes[1..] {
        len = first
            .bytes()
            .zip(p.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    // Never split a character.
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    &first[..len]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WatchEvent;

    #[test]
    fn the_watch_covers_every_prefix_and_hands_over_only_theirs() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        for (prefixes, want) in [
            (&["config/"][..], "config/"),
            (&["config/sites/", "config/phones/"], "config/"),
            (&["config/sites/", "bindings/", "provision/"], ""),
            (&["a/b/", "a/b/c/"], "a/b/"),
            (&[], ""),
        ] {
            assert_eq!(common_prefix(&s(prefixes)), want, "{prefixes:?}");
        }
        let f = Follow::listing("t", &["config/sites/", "bindings/"]);
        let put = |k: &str| {
            WatchEvent::Put(KeyValue {
                key: k.into(),
                ..Default::default()
            })
        };
        let batch = WatchBatch {
            events: vec![put("config/sites/a"), put("index/x"), put("bindings/p/0/n")],
            revision: 7,
        };
        let got = f.filtered(batch).unwrap();
        assert_eq!(got.revision, 7);
        assert_eq!(
            got.events.iter().map(WatchEvent::key).collect::<Vec<_>>(),
            ["config/sites/a", "bindings/p/0/n"]
        );
        let other = WatchBatch {
            events: vec![put("members/edge/n")],
            revision: 8,
        };
        assert!(f.filtered(other).is_none());
    }
}
