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

/// The median of sorted values: the middle one, or the mean of the two middle ones.
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
