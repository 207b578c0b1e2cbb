//! What the store did, for `/metrics`: calls by operation and outcome with their latency,
//! watch batches and breaks, and the node lease's keep-alive answers. One process-wide
//! registry: every role of a process shares its store connection, so they share these.

use std::{
    future::Future,
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Instant,
};

use dialtone_metrics::{Histogram, LATENCY_BUCKETS, header};

use crate::StoreError;

/// A store call, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreOp {
    Get,
    GetMany,
    RangeMany,
    Delete,
    Range,
    Count,
    Txn,
    Revision,
    Compact,
    Watch,
    LeaseGrant,
    LeaseKeepAlive,
    LeaseRevoke,
    LeaseInfo,
    LeaseKeys,
    LeaseList,
}

const OPS: [&str; 16] = [
    "get",
    "get_many",
    "range_many",
    "delete",
    "range",
    "count",
    "txn",
    "revision",
    "compact",
    "watch",
    "lease_grant",
    "lease_keep_alive",
    "lease_revoke",
    "lease_info",
    "lease_keys",
    "lease_list",
];

/// How a call ended, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    /// A transaction whose compares did not hold (a conflict, not a failure of the store).
    CompareFailed,
    /// The store was unreachable or busy.
    Unavailable,
    /// Any other error (compacted revision, missing lease, bad data).
    Error,
}

const OUTCOMES: [&str; 4] = ["ok", "compare_failed", "unavailable", "error"];

impl Outcome {
    pub(crate) fn of<T>(r: &Result<T, StoreError>) -> Self {
        match r {
            Ok(_) => Outcome::Ok,
            Err(e) if e.is_unavailable() => Outcome::Unavailable,
            Err(_) => Outcome::Error,
        }
    }
}

/// The keep-alive answers of the node's lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAliveOutcome {
    /// The lease was refreshed.
    Ok,
    /// The call failed or timed out (the lease may still live).
    Failed,
    /// etcd said the lease was gone (expired).
    Lost,
}

const KEEP_ALIVE: [&str; 3] = ["ok", "failed", "lost"];

pub(crate) struct StoreMetrics {
    calls: [[AtomicU64; OUTCOMES.len()]; OPS.len()],
    latency: [Histogram; OPS.len()],
    watch_batches: AtomicU64,
    watch_events: AtomicU64,
    watch_compacted: AtomicU64,
    watch_broken: AtomicU64,
    keep_alive: [AtomicU64; KEEP_ALIVE.len()],
}

pub(crate) static METRICS: LazyLock<StoreMetrics> = LazyLock::new(StoreMetrics::new);

impl StoreMetrics {
    fn new() -> Self {
        StoreMetrics {
            calls: Default::default(),
            latency: std::array::from_fn(|_| Histogram::new(LATENCY_BUCKETS)),
            watch_batches: AtomicU64::new(0),
            watch_events: AtomicU64::new(0),
            watch_compacted: AtomicU64::new(0),
            watch_broken: AtomicU64::new(0),
            keep_alive: Default::default(),
        }
    }

    pub(crate) fn record(&self, op: StoreOp, outcome: Outcome, started: Instant) {
        self.calls[op as usize][outcome as usize].fetch_add(1, Relaxed);
        self.latency[op as usize].observe(started.elapsed().as_secs_f64());
    }

    /// Times `call` and records it with the outcome its result gives.
    pub(crate) async fn timed<T>(
        &self,
        op: StoreOp,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let r = call.await;
        self.record(op, Outcome::of(&r), started);
        r
    }

    pub(crate) fn watch_batch(&self, events: usize) {
        self.watch_batches.fetch_add(1, Relaxed);
        self.watch_events.fetch_add(events as u64, Relaxed);
    }

    pub(crate) fn watch_error(&self, e: &StoreError) {
        match e {
            StoreError::Compacted { .. } => &self.watch_compacted,
            _ => &self.watch_broken,
        }
        .fetch_add(1, Relaxed);
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "dialtone_store_requests_total",
            "counter",
            "Store calls by operation and outcome.",
        );
        for (op, row) in OPS.iter().zip(&self.calls) {
            for (outcome, n) in OUTCOMES.iter().zip(row) {
                let n = n.load(Relaxed);
                if n > 0 {
                    out.push_str(&format!(
                        "dialtone_store_requests_total{{op=\"{op}\",outcome=\"{outcome}\"}} {n}\n"
                    ));
                }
            }
        }
        header(
            &mut out,
            "dialtone_store_request_duration_seconds",
            "histogram",
            "Latency of store calls by operation (etcd round trips, or the embedded store's fsync).",
        );
        for (op, h) in OPS.iter().zip(&self.latency) {
            if h.count() > 0 {
                h.render(
                    "dialtone_store_request_duration_seconds",
                    &format!("op=\"{op}\""),
                    &mut out,
                );
            }
        }
        let compacted = self.watch_compacted.load(Relaxed);
        let broken = self.watch_broken.load(Relaxed);
        for (name, help, series) in [
            (
                "dialtone_store_watch_batches_total",
                "Watch batches received.",
                vec![("", self.watch_batches.load(Relaxed))],
            ),
            (
                "dialtone_store_watch_events_total",
                "Key changes received by watches.",
                vec![("", self.watch_events.load(Relaxed))],
            ),
            (
                "dialtone_store_watch_errors_total",
                "Watches that ended: compacted (the watcher re-lists) or broken (it resumes).",
                vec![
                    ("{reason=\"compacted\"}", compacted),
                    ("{reason=\"broken\"}", broken),
                ],
            ),
        ] {
            header(&mut out, name, "counter", help);
            for (labels, n) in series {
                out.push_str(&format!("{name}{labels} {n}\n"));
            }
        }
        header(
            &mut out,
            "dialtone_lease_keepalives_total",
            "counter",
            "Keep-alive rounds of the node's lease by outcome (ok, failed, lost).",
        );
        for (outcome, n) in KEEP_ALIVE.iter().zip(&self.keep_alive) {
            out.push_str(&format!(
                "dialtone_lease_keepalives_total{{outcome=\"{outcome}\"}} {}\n",
                n.load(Relaxed)
            ));
        }
        out
    }
}

/// Counts one keep-alive round of the node's lease.
pub(crate) fn keep_alive(outcome: KeepAliveOutcome) {
    METRICS.keep_alive[outcome as usize].fetch_add(1, Relaxed);
}

/// The store's metrics of this process, as Prometheus text.
pub fn render() -> String {
    METRICS.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_classified() {
        assert_eq!(Outcome::of::<()>(&Ok(())), Outcome::Ok);
        assert_eq!(
            Outcome::of::<()>(&Err(StoreError::Closed)),
            Outcome::Unavailable
        );
        assert_eq!(
            Outcome::of::<()>(&Err(StoreError::LeaseNotFound(7))),
            Outcome::Error
        );
    }

    #[test]
    fn renders_recorded_calls() {
        let m = StoreMetrics::new();
        m.record(StoreOp::Txn, Outcome::CompareFailed, Instant::now());
        m.watch_batch(3);
        m.watch_error(&StoreError::Compacted {
            compact_revision: 4,
        });
        let text = m.render();
        for line in [
            "dialtone_store_requests_total{op=\"txn\",outcome=\"compare_failed\"} 1",
            "dialtone_store_request_duration_seconds_count{op=\"txn\"} 1",
            "dialtone_store_watch_events_total 3",
            "dialtone_store_watch_errors_total{reason=\"compacted\"} 1",
            "dialtone_lease_keepalives_total{outcome=\"lost\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("op=\"get\""), "unused ops are not rendered");
    }
}
