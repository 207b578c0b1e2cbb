//! How long the edge takes to answer a request: from its arrival to the final response the
//! edge sends for it (its own, or the one it relays from a phone, another edge or a
//! carrier), by method. An INVITE's is the time to its first answer other than 100 Trying
//! (ringing, or a final one): the time a caller waits for a sign of life, not how long
//! someone lets it ring. Process-wide, as one process runs at most one edge.

use std::{
    sync::{
        LazyLock,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Instant,
};

use dialtone_metrics::Histogram;

use super::{METHODS, method_index};

/// Bounds (seconds): the usual latencies, then up to a non-INVITE transaction's 32 s
/// timeout (RFC 3261 Timer F).
pub const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 32.0,
];

/// One histogram per method of [`METHODS`] and "other" (ACK's stays empty: nothing answers
/// an ACK, and it is not rendered).
static DURATIONS: LazyLock<Vec<Histogram>> = LazyLock::new(|| {
    (0..=METHODS.len())
        .map(|_| Histogram::new(BUCKETS))
        .collect()
});

/// One request's clock: started when it arrived, stopped by the first response that ends
/// the wait (see the module). Clones share nothing: each path that answers holds one.
#[derive(Debug)]
pub struct TxClock {
    since: Instant,
    method: u8,
    invite: bool,
    stopped: AtomicBool,
}

impl Clone for TxClock {
    fn clone(&self) -> Self {
        Self {
            since: self.since,
            method: self.method,
            invite: self.invite,
            stopped: AtomicBool::new(self.stopped.load(Relaxed)),
        }
    }
}

impl TxClock {
    /// A clock for a request of `method` that arrived at `since`.
    pub fn start(method: &str, since: Instant) -> Self {
        Self {
            since,
            method: method_index(method) as u8,
            invite: method == "INVITE",
            // Nothing answers an ACK: a clock that never runs.
            stopped: AtomicBool::new(method == "ACK"),
        }
    }

    /// A message sent in answer: when it ends the wait, the time so far is observed once.
    pub fn sent(&self, bytes: &[u8]) {
        let Some(code) = status_code(bytes) else {
            return;
        };
        if !ends_wait(code, self.invite) || self.stopped.swap(true, Relaxed) {
            return;
        }
        DURATIONS[usize::from(self.method)].observe(self.since.elapsed().as_secs_f64());
    }
}

/// Whether a response with `code` ends the wait for the request's answer.
fn ends_wait(code: u16, invite: bool) -> bool {
    code >= 200 || (invite && code > 100)
}

/// The status code of a response's bytes (`SIP/2.0 200 OK…`); none for a request.
fn status_code(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"SIP/2.0 ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Appends `dialtone_sip_transaction_duration_seconds`.
pub fn render(node: &str, out: &mut String) {
    dialtone_metrics::header(
        out,
        "dialtone_sip_transaction_duration_seconds",
        "histogram",
        "From a request's arrival to the final response the edge sent for it (its own or \
         relayed), by method; for INVITE, to its first response other than 100 Trying.",
    );
    for (i, m) in METHODS.iter().chain(["other"].iter()).enumerate() {
        if *m == "ACK" {
            continue;
        }
        DURATIONS[i].render(
            "dialtone_sip_transaction_duration_seconds",
            &format!("node=\"{node}\",method=\"{m}\""),
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_and_what_ends_the_wait() {
        let cases: [(&[u8], Option<u16>); 6] = [
            (b"SIP/2.0 200 OK\r\n", Some(200)),
            (b"SIP/2.0 100 Trying\r\n", Some(100)),
            (b"SIP/2.0 180 Ringing\r\n", Some(180)),
            (b"INVITE sip:a@b SIP/2.0\r\n", None),
            (b"SIP/2.0 2x0 OK\r\n", None),
            (b"SIP/2.0 20", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                status_code(bytes),
                want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        // (code, invite, ends)
        let cases = [
            (100, true, false),
            (180, true, true),
            (183, false, false),
            (200, false, true),
            (486, true, true),
            (100, false, false),
        ];
        for (code, invite, want) in cases {
            assert_eq!(ends_wait(code, invite), want, "{code} invite={invite}");
        }
    }

    #[test]
    fn a_request_is_timed_once() {
        // Process-wide histograms: this test alone uses "PRACK".
        let prack = method_index("PRACK");
        let before = DURATIONS[prack].count();
        let clock = TxClock::start("PRACK", Instant::now());
        clock.sent(b"SIP/2.0 100 Trying\r\n\r\n");
        assert_eq!(DURATIONS[prack].count(), before);
        clock.sent(b"SIP/2.0 200 OK\r\n\r\n");
        clock.sent(b"SIP/2.0 200 OK\r\n\r\n");
        assert_eq!(DURATIONS[prack].count(), before + 1);
        let mut text = String::new();
        render("e1", &mut text);
        assert!(text.contains(&format!(
            "dialtone_sip_transaction_duration_seconds_count{{node=\"e1\",method=\"PRACK\"}} {}",
            before + 1
        )));
        // An ACK's clock never runs, and ACK has no series.
        let ack = TxClock::start("ACK", Instant::now());
        ack.sent(b"SIP/2.0 200 OK\r\n\r\n");
        assert_eq!(DURATIONS[method_index("ACK")].count(), 0);
        assert_eq!(
            DURATIONS[METHODS.len()].count(),
            0,
            "nor is it counted as other"
        );
        assert!(!text.contains("method=\"ACK\""));
    }
}
