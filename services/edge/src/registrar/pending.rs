//! The pending-count protocol between the directory and a phone actor, in one place.
//!
//! The directory hands a message to an awake actor under its shard lock and counts it as
//! pending ([`Pending::sent`]); the actor's every handler starts by counting it in
//! ([`Pending::received`]); and an actor may fall asleep (hand its state to the directory
//! and stop) only under the same lock and only when nothing is pending
//! ([`Pending::is_clear`]). So no message can reach an actor that is about to stop, and no
//! message is lost between an actor's last handler and its sleep.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

/// Messages the directory sent one actor that it has not handled yet.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pending(Arc<AtomicU32>);

impl Pending {
    /// The directory sent a message (under the shard lock).
    pub(crate) fn sent(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// The first line of every actor handler.
    pub(crate) fn received(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether no message is on its way (checked under the shard lock before sleeping).
    pub(crate) fn is_clear(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_in_flight_keeps_the_actor_awake() {
        let p = Pending::default();
        assert!(p.is_clear());
        p.sent();
        p.sent();
        p.received();
        assert!(!p.is_clear(), "one message still on its way");
        p.received();
        assert!(p.is_clear());
    }
}
