//! Which of a line's bindings a request tries, in what order: the phone's primary edge's,
//! its secondary's, then the freshest elsewhere. The store says where the other bindings
//! are. When this edge holds one itself, the store's answer only orders the attempts, so it
//! is waited for briefly ([`ORDER_WAIT`], the reads cancelled past it), and not asked at
//! all for [`STORE_QUIET`] after it failed to answer in time: during an etcd outage, or
//! while etcd deletes a dead edge's bindings, a call goes over the binding here instead of
//! waiting on etcd. An edge that let a hop go unanswered (it may have just died, its
//! bindings not yet expired) is tried after every other for [`SILENT_FOR`], so only the
//! requests sent while the first one waits for it wait too.
//!
//! The decisions are pure ([`lookup`], [`order`]); [`Hints`] holds what the edge lately
//! learnt; `Delivery::targets` (`mod.rs`) does the IO.

use std::{
    cmp::Reverse,
    collections::HashMap,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

/// How long a request that has a binding here waits for the store to order the phone's
/// bindings: etcd answers a range in milliseconds when it is well.
pub(crate) const ORDER_WAIT: Duration = Duration::from_millis(100);
/// How long, after the store did not answer in time, requests with a binding here skip it.
pub(crate) const STORE_QUIET: Duration = Duration::from_secs(1);
/// How long an edge that let a hop go unanswered is tried last: the default lease TTL, by
/// which a dead edge's bindings have gone with its lease (with a longer TTL it is tried
/// again after this, one more request waiting for it), and answering anything clears it.
/// Kept short because a request delivered here is never passed on when the phone does
/// not answer: a live primary wrongly thought silent is not tried meanwhile.
pub(crate) const SILENT_FOR: Duration = Duration::from_secs(10);

/// `task`'s result if it comes within `wait`; else it is cancelled (its store reads do not
/// go on piling up behind a stalled etcd) and there is none.
pub(crate) async fn bounded<T>(mut task: tokio::task::JoinHandle<T>, wait: Duration) -> Option<T> {
    match tokio::time::timeout(wait, &mut task).await {
        Ok(done) => done.ok(),
        Err(_) => {
            task.abort();
            None
        }
    }
}

/// What a request asks the store for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Nothing: the binding here is the one to use, or there is no store to ask.
    Skip,
    /// The line's bindings, waiting at most this long (the binding here is the fallback).
    Within(Duration),
    /// The line's bindings, however long the store takes (there is no binding here).
    Wait,
}

impl Lookup {
    /// Whether to ask, and how long to wait then: none (no longer than the store takes)
    /// or some bound.
    pub(crate) fn wait(self) -> Option<Option<Duration>> {
        match self {
            Lookup::Skip => None,
            Lookup::Within(d) => Some(Some(d)),
            Lookup::Wait => Some(None),
        }
    }
}

/// What decides a request's [`Lookup`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Facts {
    /// The request was handed here by another edge (it is delivered here or not at all).
    pub(crate) from_edge: bool,
    /// There is a store (none in unit tests).
    pub(crate) has_store: bool,
    /// This edge is the phone's primary.
    pub(crate) primary_here: bool,
    /// This edge holds a live binding of the line.
    pub(crate) local: bool,
    /// The store lately failed to answer in time ([`Hints::store_quiet`]).
    pub(crate) store_quiet: bool,
}

/// What a request asks the store for, by [`Facts`].
pub(crate) fn lookup(f: Facts) -> Lookup {
    if f.from_edge || !f.has_store || (f.local && (f.primary_here || f.store_quiet)) {
        Lookup::Skip
    } else if f.local {
        Lookup::Within(ORDER_WAIT)
    } else {
        Lookup::Wait
    }
}

/// The holders of a line's bindings (node, its binding's last write), in the order to try
/// them: by the phone's `placement` (primary first), then the freshest; an edge `silent`
/// says let a hop go unanswered comes after every other.
pub(crate) fn order(
    mut holders: Vec<(String, i64)>,
    placement: &[String],
    silent: impl Fn(&str) -> bool,
) -> Vec<String> {
    holders.sort_by_cached_key(|(node, at)| {
        (
            silent(node),
            placement
                .iter()
                .position(|o| o == node)
                .unwrap_or(usize::MAX),
            Reverse(*at),
        )
    });
    holders.into_iter().map(|(node, _)| node).collect()
}

/// What the edge lately learnt of the store and of the other edges.
#[derive(Debug, Default)]
pub(crate) struct Hints {
    store_failed: Mutex<Option<Instant>>,
    /// Edges that let a hop go unanswered, and when. Only edges named by bindings in the
    /// store are put here, and entries past [`SILENT_FOR`] go at each insert: it holds at
    /// most the cluster's edges.
    silent: Mutex<HashMap<String, Instant>>,
}

impl Hints {
    /// The store did not answer in time, or failed.
    pub(crate) fn store_failed(&self, now: Instant) {
        *self.store_failed.lock() = Some(now);
    }

    /// Whether the store failed within [`STORE_QUIET`] of `now`.
    pub(crate) fn store_quiet(&self, now: Instant) -> bool {
        self.store_failed
            .lock()
            .is_some_and(|at| now.saturating_duration_since(at) < STORE_QUIET)
    }

    /// `node` let a hop go unanswered.
    pub(crate) fn edge_silent(&self, node: &str, now: Instant) {
        let mut silent = self.silent.lock();
        silent.retain(|_, at| now.saturating_duration_since(*at) < SILENT_FOR);
        silent.insert(node.to_owned(), now);
    }

    /// `node` answered a hop.
    pub(crate) fn edge_answered(&self, node: &str) {
        let mut silent = self.silent.lock();
        if !silent.is_empty() {
            silent.remove(node);
        }
    }

    /// Whether `node` let a hop go unanswered within [`SILENT_FOR`] of `now`.
    pub(crate) fn is_silent(&self, node: &str, now: Instant) -> bool {
        self.silent
            .lock()
            .get(node)
            .is_some_and(|at| now.saturating_duration_since(*at) < SILENT_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_asked_only_when_its_answer_matters() {
        let f = Facts {
            has_store: true,
            ..Facts::default()
        };
        let cases = [
            (
                Facts {
                    from_edge: true,
                    ..f
                },
                Lookup::Skip,
            ),
            (
                Facts {
                    has_store: false,
                    ..f
                },
                Lookup::Skip,
            ),
            (
                Facts {
                    local: true,
                    primary_here: true,
                    ..f
                },
                Lookup::Skip,
            ),
            (
                Facts {
                    local: true,
                    store_quiet: true,
                    ..f
                },
                Lookup::Skip,
            ),
            (Facts { local: true, ..f }, Lookup::Within(ORDER_WAIT)),
            // No binding here: the store is the only way to the phone, quiet or not.
            (f, Lookup::Wait),
            (
                Facts {
                    store_quiet: true,
                    ..f
                },
                Lookup::Wait,
            ),
            (
                Facts {
                    primary_here: true,
                    ..f
                },
                Lookup::Wait,
            ),
        ];
        for (facts, want) in cases {
            assert_eq!(lookup(facts), want, "{facts:?}");
        }
    }

    #[test]
    fn bindings_go_by_placement_then_freshness_and_a_silent_edge_last() {
        let holders: Vec<(String, i64)> = [("e9", 5), ("e2", 1), ("e8", 7), ("e1", 2)]
            .iter()
            .map(|(n, at)| ((*n).to_owned(), *at))
            .collect();
        let placement = ["e1".to_owned(), "e2".to_owned()];
        // (the silent edges, the order)
        let cases = [
            (vec![], ["e1", "e2", "e8", "e9"]),
            (vec!["e1"], ["e2", "e8", "e9", "e1"]),
            (vec!["e1", "e8"], ["e2", "e9", "e1", "e8"]),
            (vec!["e7"], ["e1", "e2", "e8", "e9"]),
        ];
        for (silent, want) in cases {
            let got = order(holders.clone(), &placement, |n| silent.contains(&n));
            assert_eq!(got, want, "silent {silent:?}");
        }
    }

    #[tokio::test]
    async fn a_bounded_task_is_cancelled_past_its_wait() {
        let quick = tokio::spawn(async { 7 });
        assert_eq!(bounded(quick, Duration::from_secs(5)).await, Some(7));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let slow = tokio::spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        assert_eq!(bounded(slow, Duration::from_millis(10)).await, None);
        // The task was dropped: its end of the channel with it.
        assert!(rx.await.is_err());
    }

    #[test]
    fn hints_fade() {
        let hints = Hints::default();
        let t = Instant::now();
        assert!(!hints.store_quiet(t));
        hints.store_failed(t);
        assert!(hints.store_quiet(t + STORE_QUIET / 2));
        assert!(!hints.store_quiet(t + STORE_QUIET));

        hints.edge_silent("e2", t);
        assert!(hints.is_silent("e2", t + SILENT_FOR / 2));
        assert!(!hints.is_silent("e2", t + SILENT_FOR));
        assert!(!hints.is_silent("e3", t));
        hints.edge_answered("e2");
        assert!(!hints.is_silent("e2", t));
        // An old entry goes when another edge is put in.
        hints.edge_silent("e2", t);
        hints.edge_silent("e3", t + SILENT_FOR);
        assert_eq!(hints.silent.lock().len(), 1);
    }
}
