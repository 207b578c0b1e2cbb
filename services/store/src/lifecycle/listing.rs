//! The keeper's look for its binding leases among the store's leases, between their
//! refreshes: when to list, and what a listing leaves to ask about. No IO: the keeper
//! lists and asks, this decides.
//!
//! One binding lease revoked behind the node's back (an operator, a restored etcd) takes
//! its bindings with it, and its next refresh may be 30 s away ([`super::BINDING_REFRESH_S`]).
//! One listing finds it whatever the node's count of leases, where refreshing them all each
//! round was 771 calls a second from three edges. A lease a listing lacks is asked about
//! (`TimeToLive`, answered by the leader) the round after, since the listing is the
//! answering member's own table and a member behind may lack a lease granted moments ago.

use std::collections::HashSet;

use super::shards::{ASKED_MOST, list_every, unlisted};
use crate::LeaseId;

/// What the keeper knows of its listings from round to round.
#[derive(Debug)]
pub(super) struct Listing {
    /// Keeper rounds since the last listing (none yet: due at once).
    rounds_since: Option<u32>,
    /// How many leases the last listing held: it sets their pace ([`list_every`]).
    count: usize,
    /// Whether the last listing failed (said once, not every round).
    failed: bool,
    /// Leases the last listing lacked, to ask about.
    suspects: Vec<LeaseId>,
}

/// What one listing came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Listed {
    /// Not listed this round.
    Skipped,
    /// The listing failed, after one that had not (the keeper says so once).
    FirstFailure,
    /// Failed again (said already), or listed with none of the node's leases lacking.
    Quiet,
    /// Listed, and these leases (ids) were lacking: asked about next round.
    Lacking(Vec<LeaseId>),
}

impl Listing {
    pub(super) fn new() -> Self {
        Self {
            rounds_since: None,
            count: 0,
            failed: false,
            suspects: Vec::new(),
        }
    }

    /// Whether this round lists: one that leaves some lease unrefreshed (`refreshing`, in
    /// the order of the node's leases), at the pace the store's size allows.
    pub(super) fn due(&self, refreshing: &[bool]) -> bool {
        !refreshing.iter().all(|r| *r)
            && self
                .rounds_since
                .is_none_or(|n| n + 1 >= list_every(self.count))
    }

    /// The leases to ask about this round (the last listing's suspects), handed over once.
    pub(super) fn take_suspects(&mut self) -> Vec<LeaseId> {
        std::mem::take(&mut self.suspects)
    }

    /// Takes in a round's listing: `None` not listed, `Some(None)` failed, `Some(ids)`
    /// the store's leases, against the node's `held` leases and which the round refreshed.
    pub(super) fn absorb(
        &mut self,
        listed: Option<Option<Vec<LeaseId>>>,
        held: &[LeaseId],
        refreshing: &[bool],
    ) -> Listed {
        let Some(listed) = listed else {
            self.rounds_since = Some(self.rounds_since.map_or(0, |n| n.saturating_add(1)));
            return Listed::Skipped;
        };
        self.rounds_since = Some(0);
        let Some(ids) = listed else {
            let first = !self.failed;
            self.failed = true;
            return match first {
                true => Listed::FirstFailure,
                false => Listed::Quiet,
            };
        };
        self.failed = false;
        self.count = ids.len();
        let ids: HashSet<LeaseId> = ids.into_iter().collect();
        let mut lacking = unlisted(held, refreshing, &ids);
        lacking.truncate(ASKED_MOST);
        self.suspects = lacking.iter().map(|&i| held[i]).collect();
        match self.suspects.is_empty() {
            true => Listed::Quiet,
            false => Listed::Lacking(self.suspects.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_due_when_some_lease_goes_unrefreshed_at_the_stores_pace() {
        let mut l = Listing::new();
        assert!(
            !l.due(&[true, true]),
            "every lease refreshed: nothing to look for"
        );
        assert!(l.due(&[true, false]), "the first round that leaves one");
        let held = [1, 2, 3];
        let some = [true, false, false];
        let listed = |n: usize| Some(Some((1..=n as LeaseId).collect::<Vec<_>>()));
        assert_eq!(l.absorb(listed(3), &held, &some), Listed::Quiet);
        assert!(l.due(&some), "a small store: every round");
        // A store of 12,000 leases: every third round.
        assert_eq!(l.absorb(listed(12_000), &held, &some), Listed::Quiet);
        let mut dues = Vec::new();
        for _ in 0..6 {
            let due = l.due(&some);
            dues.push(due);
            let got = l.absorb(if due { listed(12_000) } else { None }, &held, &some);
            assert_eq!(got == Listed::Skipped, !due);
        }
        assert_eq!(dues, [false, false, true, false, false, true]);
    }

    #[test]
    fn a_lacking_lease_is_asked_about_once_the_round_after_and_a_failure_said_once() {
        let mut l = Listing::new();
        let held = [1, 2, 3, 4];
        let some = [true, false, false, false];
        // (what the round listed, what it came to, the suspects the next round asks about)
        type Case = (
            &'static str,
            Option<Option<Vec<LeaseId>>>,
            Listed,
            Vec<LeaseId>,
        );
        let cases: Vec<Case> = vec![
            (
                "all there",
                Some(Some(vec![1, 2, 3, 4, 9])),
                Listed::Quiet,
                vec![],
            ),
            (
                "two lacking",
                Some(Some(vec![1, 3])),
                Listed::Lacking(vec![2, 4]),
                vec![2, 4],
            ),
            ("not listed: nothing new", None, Listed::Skipped, vec![]),
            ("failed", Some(None), Listed::FirstFailure, vec![]),
            ("failed again: quiet", Some(None), Listed::Quiet, vec![]),
            (
                "listed again",
                Some(Some(vec![1, 2, 3])),
                Listed::Lacking(vec![4]),
                vec![4],
            ),
            (
                "then failed: said again",
                Some(None),
                Listed::FirstFailure,
                vec![],
            ),
        ];
        for (name, listed, came_to, asked) in cases {
            assert_eq!(l.absorb(listed, &held, &some), came_to, "{name}");
            assert_eq!(l.take_suspects(), asked, "{name}");
            assert!(l.take_suspects().is_empty(), "{name}: handed over once");
        }
    }

    #[test]
    fn a_member_far_behind_costs_a_few_lookups_a_round() {
        let mut l = Listing::new();
        let held: Vec<LeaseId> = (1..=257).collect();
        let mut some = vec![false; 257];
        some[0] = true;
        let got = l.absorb(Some(Some(vec![1])), &held, &some);
        assert_eq!(
            got,
            Listed::Lacking((2..2 + ASKED_MOST as LeaseId).collect())
        );
    }
}
