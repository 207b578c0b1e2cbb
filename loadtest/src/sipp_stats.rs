//! What a SIPp run reports in its statistics file (`-trace_stat -stf FILE`): calls done
//! and failed, and the 99th percentile bucket of one response time.

use std::path::Path;

use anyhow::Context;

/// The calls SIPp completed and failed, and the bucket (ms) holding the 99th percentile of
/// response time `rtd`, from the final line of `stat`.
pub fn read(stat: &Path, rtd: u32) -> anyhow::Result<(u64, u64, Option<u32>)> {
    let text = std::fs::read_to_string(stat).context("sipp wrote no statistics")?;
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap_or("").split(';').collect();
    let last: Vec<&str> = text.lines().last().unwrap_or("").split(';').collect();
    let col = |name: &str| {
        head.iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ok = col("SuccessfulCall(C)");
    let failed = col("FailedCall(C)");
    // RTD `rtd` repartition (cumulative in the final line): the bucket holding the 99th percentile.
    let buckets = [1u32, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
    let counts: Vec<u64> = buckets
        .iter()
        .map(|b| col(&format!("ResponseTimeRepartition{rtd}_<{b}")))
        .collect();
    let total: u64 =
        counts.iter().sum::<u64>() + col(&format!("ResponseTimeRepartition{rtd}_>=1000"));
    let mut seen = 0;
    let mut p99 = None;
    for (b, c) in buckets.iter().zip(&counts) {
        seen += c;
        if total > 0 && seen * 100 >= total * 99 {
            p99 = Some(*b);
            break;
        }
    }
    Ok((ok, failed, p99))
}

/// Why SIPp's failed calls failed: each non-zero `Failed…(C)` counter of the final line of
/// `stat` (without its prefix), and `Retransmissions(C)` when any, as `name=count`.
pub fn failure_reasons(stat: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(stat) else {
        return Vec::new();
    };
    let head = text.lines().next().unwrap_or("").split(';');
    let last: Vec<&str> = text.lines().last().unwrap_or("").split(';').collect();
    head.zip(last)
        .filter(|(h, _)| {
            (h.starts_with("Failed") && *h != "FailedCall(C)") || *h == "Retransmissions(C)"
        })
        .filter_map(|(h, v)| {
            let n = v.trim().parse::<u64>().ok().filter(|n| *n > 0)?;
            let name = h.trim_end_matches("(C)");
            Some(format!(
                "{}={n}",
                name.strip_prefix("Failed").unwrap_or(name)
            ))
        })
        .collect()
}

/// One rate of a benchmark's ladder against one server.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub rate: u32,
    /// Calls (SIPp's word: scenarios) completed.
    pub ok: u64,
    pub failed: u64,
    /// The bucket (ms) holding the 99th percentile of the measured response time.
    pub p99_ms: Option<u32>,
    /// The server's CPU microseconds per completed call.
    pub cpu_us: f64,
}

/// A server's ladder summed up: its highest clean rate (no failure, p99 within
/// `p99_limit_ms`) and the median CPU per call of its runs without failure.
pub fn summarize(runs: &[Run], p99_limit_ms: u32) -> (u32, f64) {
    let clean = runs
        .iter()
        .filter(|r| r.failed == 0 && r.p99_ms.is_some_and(|p| p <= p99_limit_ms))
        .map(|r| r.rate)
        .max()
        .unwrap_or(0);
    let mut cpu: Vec<f64> = runs
        .iter()
        .filter(|r| r.failed == 0)
        .map(|r| r.cpu_us)
        .collect();
    cpu.sort_by(|a, b| a.total_cmp(b));
    (clean, median(&cpu))
}

/// Our CPU per call over the peer's, compared rate by rate (at each rate both ran without
/// failure), and the median of those ratios: medians of each server's own runs would
/// compare different rates when one of them fails earlier, and a call costs more at a low
/// rate. NaN when no rate qualifies.
pub fn cpu_ratio(ours: &[Run], peer: &[Run]) -> f64 {
    let mut ratios: Vec<f64> = ours
        .iter()
        .filter(|o| o.failed == 0)
        .filter_map(|o| {
            let p = peer.iter().find(|p| p.rate == o.rate && p.failed == 0)?;
            (p.cpu_us > 0.0).then(|| o.cpu_us / p.cpu_us)
        })
        .collect();
    ratios.sort_by(|a, b| a.total_cmp(b));
    median(&ratios)
}

/// The median of sorted values: the middle one, or the mean of the two middle ones.
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_name_the_non_zero_counters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stat = dir.path().join("stat.csv");
        std::fs::write(
            &stat,
            "FailedCall(C);FailedMaxUDPRetrans(C);FailedTimeoutOnRecv(C);Retransmissions(C);SuccessfulCall(C)\n\
             0;0;0;0;1\n\
             7;3;4;12;90\n",
        )
        .expect("write");
        assert_eq!(
            failure_reasons(&stat),
            ["MaxUDPRetrans=3", "TimeoutOnRecv=4", "Retransmissions=12"]
        );
        assert!(failure_reasons(&dir.path().join("none.csv")).is_empty());
    }

    #[test]
    fn the_clean_rate_is_the_highest_without_failure_within_the_p99_limit() {
        let run = |rate, failed, p99, cpu_us| Run {
            rate,
            ok: 100,
            failed,
            p99_ms: p99,
            cpu_us,
        };
        let runs = [
            run(100, 0, Some(5), 30.0),
            run(200, 0, Some(20), 20.0),
            run(300, 0, Some(50), 10.0), // too slow: not clean, its CPU still counts
            run(400, 3, Some(5), 1.0),   // failures: neither
        ];
        assert_eq!(summarize(&runs, 20), (200, 20.0));
        assert_eq!(summarize(&runs, 10).0, 100);
        assert_eq!(summarize(&[], 20).0, 0);
        assert!(summarize(&[], 20).1.is_nan());
    }

    #[test]
    fn cpu_is_compared_rate_by_rate() {
        let run = |rate, failed, cpu_us| Run {
            rate,
            ok: 100,
            failed,
            p99_ms: Some(5),
            cpu_us,
        };
        let ours = [run(100, 0, 50.0), run(200, 0, 30.0), run(300, 0, 20.0)];
        // The peer fails at 300: compared at 100 and 200 only (0.5 and 0.3).
        let peer = [run(100, 0, 100.0), run(200, 0, 100.0), run(300, 2, 10.0)];
        assert!((cpu_ratio(&ours, &peer) - 0.4).abs() < 1e-9);
        // Where we fail, that rate is left out too.
        let ours_failing = [run(100, 0, 50.0), run(200, 1, 30.0)];
        assert!((cpu_ratio(&ours_failing, &peer) - 0.5).abs() < 1e-9);
        assert!(cpu_ratio(&[], &peer).is_nan());
    }
}
