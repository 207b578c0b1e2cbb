//! The status role's metrics, rendered as Prometheus text: phones by site and status (the
//! view's own counts), changes published, and the watch lag of bindings (from the edge's
//! write to the status role's view; both clocks are the hosts' wall clocks).

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use dialtone_metrics::Histogram;

use crate::fleet::Counts;

/// Upper bounds of the watch-lag histogram, seconds.
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0];

/// How a watcher that fell behind was resumed: from the history, with the phones
/// changed since read from the view, with the whole fleet again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// From the history of changes.
    History,
    /// The phones changed since, read from the view.
    Changed,
    /// The whole fleet again.
    Snapshot,
}

impl Resumed {
    const ALL: [Resumed; 3] = [Resumed::History, Resumed::Changed, Resumed::Snapshot];

    fn label(self) -> &'static str {
        match self {
            Resumed::History => "history",
            Resumed::Changed => "changed",
            Resumed::Snapshot => "snapshot",
        }
    }
}

/// Counters and the lag histogram.
pub struct Metrics {
    changes: AtomicU64,
    lag: Histogram,
    /// Watchers resumed after falling behind, by [`Resumed`].
    resumes: [AtomicU64; 3],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            changes: AtomicU64::new(0),
            lag: Histogram::new(BUCKETS),
            resumes: Default::default(),
        }
    }
}

impl Metrics {
    /// Records the lag of a binding the edge wrote at `written_ms`.
    pub fn observe_binding_lag(&self, written_ms: i64, now_ms: i64) {
        self.lag.observe((now_ms - written_ms) as f64 / 1000.0);
    }

    /// Counts a watcher resumed after falling behind.
    pub fn count_resume(&self, how: Resumed) {
        self.resumes[how as usize].fetch_add(1, Relaxed);
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
        out.push_str("# HELP dialtone_status_watch_resumes_total Watches resumed after falling behind the live changes, by how (history: from the history of changes; changed: the phones changed since, read from the view; snapshot: the whole fleet again).\n# TYPE dialtone_status_watch_resumes_total counter\n");
        for how in Resumed::ALL {
            let _ = writeln!(
                out,
                "dialtone_status_watch_resumes_total{{from=\"{}\"}} {}",
                how.label(),
                self.resumes[how as usize].load(Relaxed)
            );
        }
        out.push_str("# HELP dialtone_status_binding_lag_seconds Time from an edge writing a binding to the status view applying it.\n# TYPE dialtone_status_binding_lag_seconds histogram\n");
        self.lag
            .render("dialtone_status_binding_lag_seconds", "", &mut out);
        out
    }
}
