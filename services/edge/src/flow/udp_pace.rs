//! When a UDP receive loop waits for its socket and when it reads on a clock: the pure
//! decision ([`Pace`]); the loop (`transport::udp`) does the waiting.
//!
//! Woken by the socket, a loop under load wakes once for every datagram or two: each
//! wake-up is a switch into the thread and out again, an `epoll_wait` and a `recvmmsg`
//! that finds one datagram, and a `sendmmsg` of one answer. A registration storm's
//! profile put those calls and switches at about half the edge's CPU. So while datagrams
//! come at [`CROWDED`] a tick or more (averaged over [`WINDOW`]), the loop stops asking
//! the socket to wake it and reads what is queued once a [`TICK`] instead: a tick reads
//! and answers many at once, as a network card's interrupt moderation does. Each
//! datagram then waits a tick more at most (tokio's timer rounds up to whole
//! milliseconds, so 1-2 ms; SIP's T1 is 500 ms). When the ticks find fewer than [`THIN`]
//! datagrams each, the loop goes back to being woken.
//!
//! A tick is not free: it is a timer's wake-up after a sleep the length of a tick, and
//! leaving or joining the poller costs a system call. At four datagrams a tick, ticking
//! cost more CPU than being woken for each (same-run A/Bs at 2,000 registrations a
//! second, which SIPp sends from one address, so to one loop, in clumps); at sixteen it
//! cost less (`docs/benchmarks.md`, "UDP read on a clock under load"). So a loop ticks
//! only well above a few a tick, its rate is averaged over several ticks (a clump of
//! datagrams is not a rate), and the two thresholds are apart, so that a rate near them
//! does not switch back and forth.
//!
//! A flood is read in the same batches, with fewer wake-ups: a tick that reads many reads
//! again at once instead of sleeping (`transport::udp`), so a small receive buffer does
//! not overflow while the loop sleeps.

use std::time::Duration;

/// How often a loop reading on the clock reads.
pub const TICK: Duration = Duration::from_millis(1);

/// How long a loop woken by its socket counts what it reads before it decides.
const WINDOW: Duration = Duration::from_millis(8);

/// Datagrams a [`TICK`], averaged over a [`WINDOW`], that make a loop read on the clock.
const CROWDED: u32 = 10;

/// Ticks over which a loop reading on the clock counts what it read.
const TICKS_COUNTED: u32 = 8;

/// Datagrams a tick must read on average, over [`TICKS_COUNTED`] ticks, for the loop to
/// go on ticking.
const THIN: usize = 8;

/// How a receive loop waits for datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Woken by the socket (registered with the thread's poller).
    Woken,
    /// Reading once a [`TICK`] (not registered: the socket wakes nobody).
    Ticking,
}

/// The state of the decision, one for each receive loop.
#[derive(Clone, Debug)]
pub struct Pace {
    wait: Wait,
    /// Woken: how long this window has run so far.
    span: Duration,
    /// Ticking: ticks so far in this round.
    ticks: u32,
    /// Datagrams read in this window or round.
    read: usize,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            wait: Wait::Woken,
            span: Duration::ZERO,
            ticks: 0,
            read: 0,
        }
    }
}

impl Pace {
    /// Reading on the clock from now, a round of ticks at least (a loop whose socket
    /// could not join its poller).
    pub fn ticking() -> Self {
        Pace {
            wait: Wait::Ticking,
            ..Pace::default()
        }
    }

    /// How the loop waits now.
    pub fn wait(&self) -> Wait {
        self.wait
    }

    /// The loop was woken by its socket, `since` after the wake-up before, and read `n`
    /// datagrams ([`Pace::wait`] says how it waits next).
    pub fn woken(&mut self, since: Duration, n: usize) {
        if self.wait == Wait::Woken {
            self.span += since;
            self.read += n;
            if self.span >= WINDOW {
                let read = u32::try_from(self.read).unwrap_or(u32::MAX);
                *self = if TICK.saturating_mul(read) >= self.span.saturating_mul(CROWDED) {
                    Pace::ticking()
                } else {
                    Pace::default()
                };
            }
        }
    }

    /// A tick read `n` datagrams ([`Pace::wait`] says how the loop waits next).
    pub fn ticked(&mut self, n: usize) {
        if self.wait == Wait::Ticking {
            self.ticks += 1;
            self.read += n;
            if self.ticks == TICKS_COUNTED {
                if self.read < THIN * TICKS_COUNTED as usize {
                    *self = Pace::default();
                } else {
                    (self.ticks, self.read) = (0, 0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const ROUND: usize = THIN * TICKS_COUNTED as usize;

    #[test]
    fn a_loop_ticks_while_crowded_and_is_woken_again_when_thin() {
        enum Step {
            Woken(Duration, usize),
            Ticked(usize),
        }
        use Step::*;
        let crowded = || (0..8).map(|_| Woken(MS, 10));
        // (what happened, in order; how the loop waits after the last step)
        let cases: Vec<(Vec<Step>, Wait)> = vec![
            (vec![], Wait::Woken),
            // Ten a millisecond over eight is crowded; nine is not.
            (crowded().collect(), Wait::Ticking),
            ((0..8).map(|_| Woken(MS, 9)).collect(), Wait::Woken),
            // The window must be over before the loop decides.
            ((0..7).map(|_| Woken(MS, 100)).collect(), Wait::Woken),
            // One datagram each 100 µs is ten a millisecond; each 101 µs is fewer.
            (
                (0..80)
                    .map(|_| Woken(Duration::from_micros(100), 1))
                    .collect(),
                Wait::Ticking,
            ),
            (
                (0..80)
                    .map(|_| Woken(Duration::from_micros(101), 1))
                    .collect(),
                Wait::Woken,
            ),
            // A rate is averaged over the window: clumps count by what they hold.
            (
                (0..4)
                    .map(|_| Woken(MS, 20))
                    .chain((0..4).map(|_| Woken(MS, 0)))
                    .collect(),
                Wait::Ticking,
            ),
            // Clumps of 40 every 10 ms are four a millisecond.
            ((0..8).map(|_| Woken(10 * MS, 40)).collect(), Wait::Woken),
            // A window that was not crowded leaves nothing to the next one.
            (
                (0..8)
                    .map(|_| Woken(MS, 9))
                    .chain((0..7).map(|_| Woken(MS, 11)))
                    .collect(),
                Wait::Woken,
            ),
            // Ticks only count while ticking.
            ((0..20).map(|_| Ticked(0)).collect(), Wait::Woken),
            // Ticking: seven empty ticks are not a round; eight are.
            (
                crowded().chain((0..7).map(|_| Ticked(0))).collect(),
                Wait::Ticking,
            ),
            (
                crowded().chain((0..8).map(|_| Ticked(0))).collect(),
                Wait::Woken,
            ),
            // THIN datagrams a tick keep it ticking, round after round, however spread.
            (
                crowded()
                    .chain((0..24).map(|i| Ticked(if i % 8 == 0 { ROUND } else { 0 })))
                    .collect(),
                Wait::Ticking,
            ),
            // One fewer in a round is too few.
            (
                crowded()
                    .chain((0..8).map(|i| Ticked(if i == 0 { THIN - 1 } else { THIN })))
                    .collect(),
                Wait::Woken,
            ),
            // Socket wake-ups do not count while ticking (there are none, but a loop
            // that saw one must not leave on it).
            (
                crowded().chain([Woken(10 * MS, 0), Ticked(THIN)]).collect(),
                Wait::Ticking,
            ),
            // Back to being woken, it takes a crowded window again.
            (
                crowded()
                    .chain((0..8).map(|_| Ticked(0)))
                    .chain((0..7).map(|_| Woken(MS, 10)))
                    .collect(),
                Wait::Woken,
            ),
        ];
        for (i, (steps, want)) in cases.into_iter().enumerate() {
            let mut pace = Pace::default();
            for step in steps {
                match step {
                    Woken(since, n) => pace.woken(since, n),
                    Ticked(n) => pace.ticked(n),
                }
            }
            assert_eq!(pace.wait(), want, "case {i}");
        }
    }
}
