//! How a request is answered: the flow it came on, and its transaction's clock, so every
//! path that answers (the dispatcher, a phone's actor, a delivery relaying a phone's
//! answer) times it the same way (`metrics::transactions`).

use crate::metrics::transactions::TxClock;

use super::Replier;

/// A request's way back, timed. Not `Clone`: one clock per request, stopped once.
#[derive(Debug)]
pub struct Answer {
    flow: Replier,
    clock: TxClock,
}

impl Answer {
    pub fn new(flow: Replier, clock: TxClock) -> Self {
        Self { flow, clock }
    }

    /// Sends a response (or anything else) back; a response that ends the wait stops the
    /// clock. See [`Replier::send`].
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        self.clock.sent(&bytes);
        self.flow.send(bytes)
    }

    /// Sends again what was sent before (a retransmission's answer): not timed again.
    pub fn resend(&self, bytes: Vec<u8>) -> bool {
        self.flow.send(bytes)
    }

    /// Marks its datagrams with `dscp` (see [`Replier::marked`]).
    pub fn marked(self, dscp: u8) -> Self {
        Self {
            flow: self.flow.marked(dscp),
            clock: self.clock,
        }
    }
}
