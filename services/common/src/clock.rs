//! The wall clock, read in one place.
//!
//! Timestamps that leave a process (bindings, reports, leases, HTTP dates, OTLP points) are
//! Unix time; `clippy.toml` forbids `SystemTime::now` everywhere else, so a clock skew or a
//! test clock has one place to go, and nobody writes the conversion a seventh time.
//! Durations and deadlines inside a process use `Instant`, never this.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since the Unix epoch (zero for a clock set before 1970, which the conversions
/// below would otherwise have to handle each on its own).
#[expect(
    clippy::disallowed_methods,
    reason = "the one permitted reading of the wall clock"
)]
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The wall clock as a `SystemTime` (for APIs that take one, e.g. HTTP dates).
#[expect(
    clippy::disallowed_methods,
    reason = "the one permitted reading of the wall clock"
)]
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    since_epoch().as_millis() as u64
}

/// Milliseconds since the Unix epoch, as the protos and the store's leases carry them.
pub fn unix_ms_i64() -> i64 {
    since_epoch().as_millis() as i64
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    since_epoch().as_secs()
}

/// Nanoseconds since the Unix epoch (OTLP data points).
pub fn unix_ns() -> u64 {
    since_epoch().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_agree() {
        let (ms, s, ns) = (unix_ms(), unix_secs(), unix_ns());
        assert!(ms / 1000 >= s && ms / 1000 <= s + 1);
        assert!(ns / 1_000_000 >= ms && ns / 1_000_000 <= ms + 1000);
        assert!(unix_ms_i64() as u64 >= ms);
        // 2020-01-01: a clock that reads the epoch would mean the conversion broke.
        assert!(s > 1_577_836_800);
    }
}
