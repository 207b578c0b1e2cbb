//! Memory given back when a thread goes quiet.
//!
//! mimalloc keeps each thread's freed memory for that thread, and returns what stays unused
//! to the system a while after it empties (a second, its `purge_delay`), but only when a
//! thread next calls into it. A runtime thread whose phones went quiet may not allocate for
//! an hour, so what a reconnect wave freed stayed with the process: in one run the edges
//! held 50-150 bytes a TCP phone more than with the delay at 0, which instead makes a
//! system call for every page as it empties (1.036-1.039 of the CPU a registration at the
//! median in two `sip-bench` runs, within their spread; `docs/benchmarks.md`).
//!
//! Instead each runtime thread calls [`parked`] as it runs out of work (tokio's
//! `on_thread_park`: a worker about to sleep, not one yielding, and a current-thread
//! runtime's thread in `block_on`; never the blocking pool, nor the thread in a
//! multi-thread runtime's `block_on`): at most once every [`EVERY`] it runs the process's
//! collector, which the binary sets at start ([`set_collector`]; `dialtone`'s is
//! mimalloc's `mi_collect`, which takes back what other threads freed of this thread's
//! pages, frees its empty ones, and purges, program-wide, what has waited out its delay).
//! A thread that parks again within [`EVERY`] of its last collection skips it, so what its
//! last busy moment freed goes back when it next wakes and parks: the edge's actor threads
//! tick every second, its other threads at their next timer or packet. Without a collector
//! [`parked`] does nothing.

use std::{
    cell::Cell,
    sync::OnceLock,
    time::{Duration, Instant},
};

/// How seldom one thread runs the collector: seldom enough to cost nothing a busy thread
/// would notice (about one call a second against thousands of parks), and under the actor
/// threads' one-second tick so each tick's park collects despite the timer's jitter.
pub const EVERY: Duration = Duration::from_millis(900);

static COLLECTOR: OnceLock<fn()> = OnceLock::new();

thread_local! {
    /// When this thread last ran the collector.
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Sets the process's collector, once; false if one was set already.
pub fn set_collector(collect: fn()) -> bool {
    COLLECTOR.set(collect).is_ok()
}

/// A runtime's park hook (`on_thread_park`): runs the collector if it is set and this
/// thread has not run it within [`EVERY`].
pub fn parked() {
    let Some(collect) = COLLECTOR.get() else {
        return;
    };
    let now = Instant::now();
    if due(LAST.get(), now) {
        LAST.set(Some(now));
        collect();
    }
}

/// Whether a thread that last collected at `last` (never: `None`) collects at `now`.
fn due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|l| now.saturating_duration_since(l) >= EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_thread_collects_at_most_every_900_ms() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        for (last, now, want) in [
            (None, t, true),
            (Some(t), t, false),
            (Some(t), t + ms(899), false),
            (Some(t), t + EVERY, true),
            (Some(t), t + ms(5000), true),
            // A clock read out of order never collects twice in a row.
            (Some(t + ms(10)), t, false),
        ] {
            assert_eq!(due(last, now), want, "{last:?} {now:?}");
        }
    }

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn parking_runs_the_collector_it_was_given() {
        // With none set, parking runs nothing and keeps no time: the first park after one
        // is set collects.
        parked();
        assert_eq!(LAST.get(), None);
        assert!(set_collector(|| {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }));
        assert!(!set_collector(|| {}), "set once");
        // Each thread keeps its own time: a fresh thread collects at its first park and
        // not again at its second.
        std::thread::spawn(|| {
            parked();
            parked();
        })
        .join()
        .unwrap();
        assert_eq!(CALLS.load(Ordering::Relaxed), 1);
    }
}
