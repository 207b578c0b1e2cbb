//! Metric primitives shared by every role: a lock-free histogram with fixed bucket bounds,
//! a counter family split by one label, and the Prometheus text helpers that render them. Each role keeps its own counters next to
//! the code that bumps them and renders them on `/metrics`; the OTLP exporter of the binary
//! reads that same text back, so there is one source of truth for every value.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

/// Bucket bounds (seconds) for latencies of calls that usually take a millisecond or so.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A histogram of seconds with fixed upper bounds. Observing is a few relaxed atomic adds,
/// so hot paths can record without a lock. The sum is kept in microseconds.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these ascending upper bounds (seconds; `+Inf` is implied).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one observation of `secs` seconds (negative values count as 0).
    pub fn observe(&self, secs: f64) {
        let secs = secs.max(0.0);
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add((secs * 1e6) as u64, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Writes the `_bucket` (cumulative), `_sum` and `_count` lines of one series. `labels`
    /// is the series' label list without braces (`a="x",b="y"`), empty for none.
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, n) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            braces(labels),
            self.sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// One counter family split by one label with a fixed set of values (an outcome, a
/// result), rendered as Prometheus text. Counting is one relaxed atomic add.
pub struct Counters<const N: usize> {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    values: [&'static str; N],
    counts: [AtomicU64; N],
}

impl<const N: usize> Counters<N> {
    /// A family `name` with `help`, split by `label` into `values`, all at 0.
    pub fn new(
        name: &'static str,
        help: &'static str,
        label: &'static str,
        values: [&'static str; N],
    ) -> Self {
        Self {
            name,
            help,
            label,
            values,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Counts one `value` (a value not in the family is ignored).
    pub fn count(&self, value: &str) {
        if let Some(i) = self.values.iter().position(|v| *v == value) {
            self.count_at(i);
        }
    }

    /// Counts the value at `index` of the values.
    pub fn count_at(&self, index: usize) {
        self.counts[index].fetch_add(1, Relaxed);
    }

    /// Appends the family; `node` adds a `node` label to each series.
    pub fn render(&self, node: Option<&str>, out: &mut String) {
        header(out, self.name, "counter", self.help);
        let node = node.map(|n| format!("node=\"{n}\",")).unwrap_or_default();
        for (value, n) in self.values.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{}{{{node}{}=\"{value}\"}} {}",
                self.name,
                self.label,
                n.load(Relaxed)
            );
        }
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a family.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value escaped as Prometheus text needs it.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets_sum_and_count() {
        static B: &[f64] = &[0.01, 0.1];
        let h = Histogram::new(B);
        for s in [0.005, 0.05, 0.05, 3.0, -1.0] {
            h.observe(s);
        }
        let mut out = String::new();
        h.render("x_seconds", "op=\"get\"", &mut out);
        assert_eq!(
            out,
            "x_seconds_bucket{op=\"get\",le=\"0.01\"} 2\n\
             x_seconds_bucket{op=\"get\",le=\"0.1\"} 4\n\
             x_seconds_bucket{op=\"get\",le=\"+Inf\"} 5\n\
             x_seconds_sum{op=\"get\"} 3.105\n\
             x_seconds_count{op=\"get\"} 5\n"
        );
        let mut bare = String::new();
        Histogram::new(B).render("y", "", &mut bare);
        assert!(
            bare.contains("y_bucket{le=\"+Inf\"} 0\ny_sum 0\ny_count 0\n"),
            "{bare}"
        );
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn counters_render_a_family_with_or_without_a_node() {
        let o = Counters::new("x_total", "Things by outcome.", "outcome", ["ok", "failed"]);
        o.count("failed");
        o.count("failed");
        o.count("unknown");
        o.count_at(0);
        let mut out = String::new();
        o.render(None, &mut out);
        assert_eq!(
            out,
            "# HELP x_total Things by outcome.\n# TYPE x_total counter\nx_total{outcome=\"ok\"} 1\nx_total{outcome=\"failed\"} 2\n"
        );
        let mut out = String::new();
        o.render(Some("edge-1"), &mut out);
        assert!(
            out.contains("x_total{node=\"edge-1\",outcome=\"failed\"} 2\n"),
            "{out}"
        );
    }
}
