//! Counters and a latency histogram shared by every simulated phone (atomics only), and the
//! report printed from them.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

/// Histogram buckets: 0.1 ms to ~6.5 s, 16 per doubling (error under 4.5 %).
const SUB: usize = 16;
const OCTAVES: usize = 17;
const BASE_US: f64 = 100.0;

/// Latencies of completed registrations (REGISTER → 401 → REGISTER → 200, or one round trip
/// when a cached challenge is answered).
pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..SUB * OCTAVES + 1).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    fn index(us: f64) -> usize {
        if us <= BASE_US {
            return 0;
        }
        let i = ((us / BASE_US).log2() * SUB as f64).ceil() as usize;
        i.min(SUB * OCTAVES)
    }

    fn upper_us(i: usize) -> f64 {
        BASE_US * 2f64.powf(i as f64 / SUB as f64)
    }

    /// Records one latency.
    pub fn record(&self, d: Duration) {
        self.buckets[Self::index(d.as_secs_f64() * 1e6)].fetch_add(1, Relaxed);
    }

    /// Counts per bucket, for a later difference.
    pub fn snapshot(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Relaxed)).collect()
    }

    /// The `q` quantile (0..1) of counts, as the bucket's upper bound in milliseconds.
    pub fn quantile_ms(counts: &[u64], q: f64) -> Option<f64> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::upper_us(i) / 1000.0);
            }
        }
        None
    }
}

/// Why a registration attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer in time (after retransmissions).
    Timeout,
    /// 403: the credentials were refused.
    Forbidden,
    /// Any other final answer.
    Rejected,
    /// The socket failed.
    Io,
}

/// Everything counted.
#[derive(Default)]
pub struct Stats {
    /// Completed registrations (first ones and refreshes).
    pub registered: AtomicU64,
    /// Failed attempts by kind: timeout, forbidden, rejected, io.
    pub failed: [AtomicU64; 4],
    /// Registration latencies.
    pub latency: Histogram,
    /// Requests phones received, by method: INVITE, OPTIONS, NOTIFY, MESSAGE, other.
    pub received: [AtomicU64; 5],
    /// NOTIFY check-sync received (a resync or restart request).
    pub check_syncs: AtomicU64,
    /// Of those, the ones with `reboot=true` (a restart request).
    pub reboots: AtomicU64,
    /// Managed phones' fetches after a check-sync: changed (200), unchanged (304), failed.
    pub fetches: [AtomicU64; 3],
    /// Simulated reboots done (registrations started over).
    pub rebooted: AtomicU64,
    /// Registrations moved to another edge after a fetch named it.
    pub moved: AtomicU64,
    /// Softphones' INVITEs by their audio-device rules: answered, rang, rejected.
    pub calls: [AtomicU64; 3],
    /// Requests for a user this simulator does not hold (a routing error upstream).
    pub misdelivered: AtomicU64,
    /// Ringing INVITEs cancelled because another phone answered (`Reason: SIP;cause=200`).
    pub cancelled_elsewhere: AtomicU64,
    /// REGISTERs answered 503 (an edge shedding load; counted in `failed` too), and of
    /// those the ones with a Retry-After, which the phone then waited for.
    pub unavailable: [AtomicU64; 2],
}

impl Stats {
    /// Counts a failure.
    pub fn fail(&self, f: Failure) {
        self.failed[f as usize].fetch_add(1, Relaxed);
    }

    /// Counts a request received.
    pub fn receive(&self, method: &str) {
        let i = match method {
            "INVITE" => 0,
            "OPTIONS" => 1,
            "NOTIFY" => 2,
            "MESSAGE" => 3,
            _ => 4,
        };
        self.received[i].fetch_add(1, Relaxed);
    }

    /// Total failures.
    pub fn failures(&self) -> u64 {
        self.failed.iter().map(|f| f.load(Relaxed)).sum()
    }
}

/// A point-in-time view of the fleet, for the per-second report.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds since the start.
    pub t_s: f64,
    /// Phones with every registration live.
    pub full: u64,
    /// Phones with some.
    pub partial: u64,
    /// Phones with none (unreachable as far as the phone knows).
    pub none: u64,
    /// Registrations completed since the previous sample, per second.
    pub rate: f64,
    /// Failures so far.
    pub failures: u64,
    /// p50 and p99 of the registrations since the previous sample, ms.
    pub p50_ms: Option<f64>,
    /// See `p50_ms`.
    pub p99_ms: Option<f64>,
}

impl Sample {
    /// One report line.
    pub fn line(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        let mut s = String::new();
        let _ = write!(
            s,
            "t={:>6.1}s  all-registered={:>7}  partial={:>7}  unregistered={:>7}  reg/s={:>8.0}  p50={:>6}ms  p99={:>6}ms  failures={}",
            self.t_s,
            self.full,
            self.partial,
            self.none,
            self.rate,
            ms(self.p50_ms),
            ms(self.p99_ms),
            self.failures
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_within_a_bucket() {
        let h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let c = h.snapshot();
        let p50 = Histogram::quantile_ms(&c, 0.5).unwrap();
        let p99 = Histogram::quantile_ms(&c, 0.99).unwrap();
        assert!((50.0..=53.0).contains(&p50), "{p50}");
        assert!((99.0..=104.0).contains(&p99), "{p99}");
        assert_eq!(Histogram::quantile_ms(&vec![0; c.len()], 0.5), None);
        h.record(Duration::from_secs(600));
        assert!(Histogram::quantile_ms(&h.snapshot(), 1.0).unwrap() > 6000.0);
    }
}
