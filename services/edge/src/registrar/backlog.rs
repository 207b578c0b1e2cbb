//! How far the binding publisher is behind the store, and whether a REGISTER should be
//! turned away for it.
//!
//! A phone is answered 200 before its binding is stored (the publisher writes it off the
//! REGISTER path), so when registrations arrive faster than etcd takes their writes (every
//! phone of a site booting after a power cut), the changes queue in the publisher: each is
//! a registration acknowledged but not yet seen by the status role or the other edges, and
//! lost if the edge dies. When the queue would take more than [`BacklogLimit::wait`] to be
//! written (at the rate the store has been taking writes, after the time a write has been
//! hanging, if one is), the edge sheds load: REGISTERs of phones with no state on this edge
//! are answered 503 with a Retry-After of the time the queue takes to write at that rate
//! (at least the limit), before any authentication or phone state is spent on them (RFC
//! 3261 §21.5.4; phones wait that long, as phonesim does). Phones registered here
//! keep refreshing, so shedding never expires a binding, and a retransmitted REGISTER still
//! gets its answer; during an etcd outage the edge keeps them registered from its caches
//! and admits new phones only up to the limit. The queue then stays near the limit instead
//! of growing with every phone that arrives, and the phones come back paced.
//!
//! State: counters the publisher keeps ([`Backlog`]); the decision
//! ([`shed`]) is pure.

use std::{
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    time::{Duration, Instant},
};

/// Queued changes below which nothing is shed whatever the rate: one drain's worth, so a
/// burst the publisher takes in one go never sheds, nor does a store that was idle.
pub const FLOOR: usize = 1024;

/// The rate assumed before the store has taken a write, and the least assumed after
/// (writes a second): a store that took nothing for a while is not taken for one that
/// takes nothing at all.
const MIN_RATE: f64 = 100.0;

/// The longest Retry-After given, seconds.
pub const MAX_RETRY_AFTER_S: u32 = 120;

/// The publisher's queue as the REGISTER path sees it.
#[derive(Debug)]
pub struct Backlog {
    /// Changes sent by phones and not yet taken off the channel.
    queued: AtomicUsize,
    /// Changes taken off the channel and not yet written (coalesced by key).
    held: AtomicUsize,
    /// The store's write rate, writes a second (f64 bits), averaged over transactions.
    rate: AtomicU64,
    /// Since when the publisher has been writing without success (ms after `epoch`, 0: it
    /// is not): a store that stalls or fails takes nothing, and the queue waits that long
    /// before the rate it took before applies again (through retries: an outage too).
    stalled_since_ms: AtomicU64,
    epoch: Instant,
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog {
            queued: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            rate: AtomicU64::new(0),
            stalled_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Backlog {
    /// A change was queued.
    pub(crate) fn queued(&self) {
        self.queued.fetch_add(1, Relaxed);
    }

    /// A change counted by [`Backlog::queued`] was not sent after all (the publisher ended).
    pub(crate) fn unqueued(&self) {
        self.queued.fetch_sub(1, Relaxed);
    }

    /// `n` changes were taken off the channel; `held` are waiting to be written now.
    pub(crate) fn taken(&self, n: usize, held: usize) {
        // Held first: the changes are never out of both counts at once.
        self.held.store(held, Relaxed);
        self.queued.fetch_sub(n, Relaxed);
    }

    /// A transaction is sent (a retry keeps the time of the first try).
    pub(crate) fn writing(&self) {
        if self.stalled_since_ms.load(Relaxed) == 0 {
            let ms = self.epoch.elapsed().as_millis() as u64;
            self.stalled_since_ms.store(ms.max(1), Relaxed);
        }
    }

    /// The store took `n` writes in `took`; `held` are still waiting.
    pub(crate) fn written(&self, n: usize, took: Duration, held: usize) {
        self.stalled_since_ms.store(0, Relaxed);
        self.held.store(held, Relaxed);
        let sample = n as f64 / took.as_secs_f64().max(1e-3);
        let old = f64::from_bits(self.rate.load(Relaxed));
        // A fifth of each sample: a few dozen transactions make the average.
        let rate = if old == 0.0 {
            sample
        } else {
            old + (sample - old) / 5.0
        };
        self.rate.store(rate.to_bits(), Relaxed);
    }

    /// Changes waiting, in the channel and in hand (a REGISTER is handled by its phone
    /// before the dispatcher reads the next message, so none is on its way).
    pub fn len(&self) -> usize {
        self.queued.load(Relaxed) + self.held.load(Relaxed)
    }

    /// The store's write rate, writes a second, averaged over recent transactions (0
    /// before the first write).
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Relaxed))
    }

    /// How long the write being sent has been waiting for the store (through retries).
    pub fn stalled(&self) -> Duration {
        match self.stalled_since_ms.load(Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis(
                (self.epoch.elapsed().as_millis() as u64).saturating_sub(since),
            ),
        }
    }

    /// Prometheus text: the queue and the rate (REGISTERs shed for them are counted in
    /// `dialtone_registrations_rejected_total{reason="overloaded"}`).
    pub fn render(&self, node: &str, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "# HELP dialtone_edge_binding_backlog Binding changes waiting to be written to the store.\n# TYPE dialtone_edge_binding_backlog gauge\ndialtone_edge_binding_backlog{{node=\"{node}\"}} {}\n\
             # HELP dialtone_edge_binding_write_rate Binding writes a second the store has recently taken.\n# TYPE dialtone_edge_binding_write_rate gauge\ndialtone_edge_binding_write_rate{{node=\"{node}\"}} {:.0}\n",
            self.len(),
            self.rate()
        );
    }
}

/// How much backlog the edge accepts before it sheds REGISTERs (`--sip-register-backlog`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BacklogLimit {
    /// The longest the queue may take to drain at the store's rate (zero: never shed).
    pub wait: Duration,
}

/// Whether to turn a REGISTER away, and the Retry-After (seconds) to give it: `queued`
/// changes waiting, the store taking `rate` a second and its current write waiting for
/// `stalled`, `jitter` drawing a number in [0, 1) for each REGISTER turned away (only
/// then: the REGISTER path draws nothing while the edge keeps up), so the phones turned
/// away together come back spread over up to half as long again. The queue drains in
/// `stalled` plus `queued` at `rate`: a hiccup of a second delays it a second, a store
/// frozen for longer than the limit sheds whatever the queue. The Retry-After is the time
/// to write the queue at `rate` (at least the limit).
pub fn shed(
    queued: usize,
    rate: f64,
    stalled: Duration,
    limit: BacklogLimit,
    jitter: impl FnOnce() -> f64,
) -> Option<u32> {
    if limit.wait.is_zero() || queued <= FLOOR {
        return None;
    }
    let write_s = queued as f64 / rate.max(MIN_RATE);
    if stalled.as_secs_f64() + write_s <= limit.wait.as_secs_f64() {
        return None;
    }
    // Come back when the queue is written once the store takes writes again (not after the
    // stall so far: an outage of a minute would send every phone away for two), and no
    // sooner than the limit.
    let after =
        (write_s.max(limit.wait.as_secs_f64()) * (1.0 + jitter().clamp(0.0, 1.0) / 2.0)).ceil();
    Some((after as u32).clamp(1, MAX_RETRY_AFTER_S))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_are_shed_only_past_the_time_the_queue_needs_to_drain() {
        let five = BacklogLimit {
            wait: Duration::from_secs(5),
        };
        let off = BacklogLimit {
            wait: Duration::ZERO,
        };
        let s = Duration::from_secs;
        // (case, queued, rate, stalled, limit, jitter, Retry-After)
        type Case = (
            &'static str,
            usize,
            f64,
            Duration,
            BacklogLimit,
            f64,
            Option<u32>,
        );
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("empty", 0, 2000.0, s(0), five, 0.0, None),
            ("one drain's worth, a frozen store", FLOOR, 1.0, s(60), five, 0.0, None),
            ("within the wait", 9_000, 2000.0, s(0), five, 0.0, None),
            ("exactly the wait", 10_000, 2000.0, s(0), five, 0.0, None),
            ("past it: the drain time", 12_000, 2000.0, s(0), five, 0.0, Some(6)),
            ("jitter adds up to half", 12_000, 2000.0, s(0), five, 0.99, Some(9)),
            ("a hiccup of a second: within", 2_000, 2000.0, s(1), five, 0.0, None),
            ("stalled past the wait: back after the limit", 2_000, 2000.0, s(5), five, 0.0, Some(5)),
            ("a long outage: the queue's time, not the outage's", 20_000, 2000.0, s(100), five, 0.0, Some(10)),
            ("no rate yet: the least assumed", 2_000, 0.0, s(0), five, 0.0, Some(20)),
            ("a slow store: capped", 1_000_000, 100.0, s(0), five, 0.0, Some(120)),
            ("shedding off", 1_000_000, 1.0, s(600), off, 0.0, None),
        ];
        for (name, queued, rate, stalled, limit, jitter, want) in cases {
            assert_eq!(
                shed(queued, rate, stalled, limit, || jitter),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn the_backlog_counts_the_channel_and_the_hand_and_averages_the_rate() {
        let b = Backlog::default();
        for _ in 0..10 {
            b.queued();
        }
        assert_eq!(b.len(), 10);
        b.taken(10, 7); // three coalesced
        assert_eq!(b.len(), 7);
        b.writing();
        b.written(7, Duration::from_millis(7), 0);
        assert_eq!(b.len(), 0);
        assert_eq!(b.rate(), 1000.0, "the first sample is the rate");
        assert_eq!(b.stalled(), Duration::ZERO, "written: nothing waits");
        b.written(10, Duration::from_millis(5), 0);
        assert_eq!(b.rate(), 1200.0, "a fifth of the way to 2000");
        // A write that waits, and its retry: the stall counts from the first try.
        b.writing();
        std::thread::sleep(Duration::from_millis(200));
        b.writing();
        assert!(
            b.stalled() >= Duration::from_millis(190),
            "{:?}",
            b.stalled()
        );
        b.written(10, Duration::from_millis(5), 0);
        assert_eq!(b.stalled(), Duration::ZERO);
    }
}
