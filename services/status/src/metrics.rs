//! The status role's metrics, rendered as Prometheus text: phones by site and status (the
//! view's own counts), changes published, and the watch lag of bindings (from the edge's
//! write to the status role's view; both clocks are the hosts' wall clocks).

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use crate::fleet::Counts;

/// Upper bounds of the watch-lag histogram, seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0];

/// Counters and the lag histogram.
#[derive(Default)]
pub struct Metrics {
    changes: AtomicU64,
    lag_buckets: [AtomicU64; BUCKETS.len()],
    lag_count: AtomicU64,
    lag_sum_ms: AtomicU64,
}

impl Metrics {
    /// Records the lag of a binding the edge wrote at `written_ms`.
    pub fn observe_binding_lag(&self, written_ms: i64, now_ms: i64) {
        let lag_ms = (now_ms - written_ms).max(0) as u64;
        self.lag_count.fetch_add(1, Relaxed);
        self.lag_sum_ms.fetch_add(lag_ms, Relaxed);
        let s = lag_ms as f64 / 1000.0;
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.lag_buckets[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts published status changes.
    pub fn count_changes(&self, n: usize) {
        self.changes.fetch_add(n as u64, Relaxed);
    }

    /// Prometheus text.
    pub fn render<'a>(
        &self,
        counts: impl Iterator<Item = (&'a String, &'a Counts)>,
        revision: i64,
        watchers: usize,
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP dialtone_phones Phones by site and operational status.\n# TYPE dialtone_phones gauge\n");
        for (site, c) in counts {
            for (status, n) in ["operational", "degraded", "offline", "not_applicable"]
                .iter()
                .zip(c)
            {
                let _ = writeln!(
                    out,
                    "dialtone_phones{{site=\"{site}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP dialtone_status_changes_total Phone status changes published.\n# TYPE dialtone_status_changes_total counter\ndialtone_status_changes_total {}",
            self.changes.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP dialtone_status_revision Store revision the status view reflects.\n# TYPE dialtone_status_revision gauge\ndialtone_status_revision {revision}"
        );
        let _ = writeln!(
            out,
            "# HELP dialtone_status_watchers Open status watch streams.\n# TYPE dialtone_status_watchers gauge\ndialtone_status_watchers {watchers}"
        );
        out.push_str("# HELP dialtone_status_binding_lag_seconds Time from an edge writing a binding to the status view applying it.\n# TYPE dialtone_status_binding_lag_seconds histogram\n");
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.lag_buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(
                out,
                "dialtone_status_binding_lag_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.lag_count.load(Relaxed);
        let _ = writeln!(
            out,
            "dialtone_status_binding_lag_seconds_bucket{{le=\"+Inf\"}} {count}\ndialtone_status_binding_lag_seconds_sum {}\ndialtone_status_binding_lag_seconds_count {count}",
            self.lag_sum_ms.load(Relaxed) as f64 / 1000.0
        );
        out
    }
}
