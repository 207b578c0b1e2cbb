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

use crate::LeaseId;

/// The leases of `held` (the main lease first) that a keeper round did not refresh
/// (`refreshed[i]` false) and that `listed`, every lease the store holds, lacks: revoked
/// behind the node's back, or granted so lately that the member that answered has not
/// applied it yet. Indexes into `held`, for the keeper to confirm each with a lookup.
fn unlisted(held: &[LeaseId], refreshed: &[bool], listed: &HashSet<LeaseId>) -> Vec<usize> {
    held.iter()
        .zip(refreshed)
        .enumerate()
        .filter(|(_, (id, refreshed))| !**refreshed && !listed.contains(*id))
        .map(|(i, _)| i)
        .collect()
}

/// How many leases the keeper asks about in a round, of those a listing lacked: a member
/// far behind may lack many, and each lookup goes to the leader.
const ASKED_MOST: usize = 8;

/// Every how many keeper rounds a node lists the store's leases, when the last listing
/// held `listed` of them: every round up to 5,000, then one more round per 5,000. etcd
/// copies and sorts its whole lease table for each listing, so the work stays about 5,000
/// leases a round an edge however many edges share the cluster.
fn list_every(listed: usize) -> u32 {
    listed.div_ceil(5_000).max(1) as u32
}

/// What the keeper knows of its listings from round to round.
#[derive(Debug)]
pub(super) struct Listing {
    /// Keeper rounds since the last listing; none before the first, which is due at the
    /// first round that leaves a lease unrefreshed.
    rounds_since: Option<u32>,
    /// How many leases the last listing held: it sets their pace ([`list_every`]).
    count: usize,
    /// Listings failed in a row: each doubles the pace, up to [`FAILED_PACE_MOST`] rounds
    /// (etcd may have copied and sorted its table for a listing the client then refused,
    /// past its 4 MB message).
    failures: u32,
    /// Listings made, to start the leases asked about at a different one each time.
    made: usize,
    /// Leases the last listing lacked, to ask about.
    suspects: Vec<LeaseId>,
}

/// The most rounds between two listings after failures (doubling from 2).
const FAILED_PACE_MOST: u32 = 64;

/// What one round's listing came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Listed<E> {
    /// Not listed this round.
    Skipped,
    /// The listing failed, after one that had not (the keeper says so once), and why.
    FirstFailure(E),
    /// Failed again (said already), or listed with none of the node's leases lacking.
    Quiet,
    /// Listed, and `of` of the node's leases were lacking: these (at most
    /// [`ASKED_MOST`]) are asked about next round.
    Lacking { asked: Vec<LeaseId>, of: usize },
}

impl Listing {
    pub(super) fn new() -> Self {
        Self {
            rounds_since: None,
            count: 0,
            failures: 0,
            made: 0,
            suspects: Vec::new(),
        }
    }

    /// Every how many rounds to list: at the store's size ([`list_every`]), slower after
    /// failures.
    fn pace(&self) -> u32 {
        // 2^failures rounds: 1 while listings succeed, then 2, 4, ... up to the ceiling.
        let backoff = 1u32
            .checked_shl(self.failures)
            .map_or(FAILED_PACE_MOST, |b| b.min(FAILED_PACE_MOST));
        list_every(self.count).max(backoff)
    }

    /// Whether this round lists: one that leaves some lease unrefreshed (`refreshing`, in
    /// the order of the node's leases), at [`Listing::pace`].
    pub(super) fn due(&self, refreshing: &[bool]) -> bool {
        !refreshing.iter().all(|r| *r)
            && self
                .rounds_since
                .is_none_or(|n| n.saturating_add(1) >= self.pace())
    }

    /// The leases to ask about this round (the last listing's suspects), handed over once.
    pub(super) fn take_suspects(&mut self) -> Vec<LeaseId> {
        std::mem::take(&mut self.suspects)
    }

    /// Takes in a round's listing (`None`: not listed), against the node's `held` leases
    /// and which of them the round settled (`settled[i]`: refreshed, or found gone).
    pub(super) fn absorb<E>(
        &mut self,
        listed: Option<Result<Vec<LeaseId>, E>>,
        held: &[LeaseId],
        settled: &[bool],
    ) -> Listed<E> {
        let Some(listed) = listed else {
            if let Some(n) = &mut self.rounds_since {
                *n = n.saturating_add(1);
            }
            return Listed::Skipped;
        };
        self.rounds_since = Some(0);
        let ids = match listed {
            Ok(ids) => ids,
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                return match self.failures {
                    1 => Listed::FirstFailure(e),
                    _ => Listed::Quiet,
                };
            }
        };
        self.failures = 0;
        self.count = ids.len();
        let ids: HashSet<LeaseId> = ids.into_iter().collect();
        let mut lacking = unlisted(held, settled, &ids);
        let of = lacking.len();
        // A member behind may lack the same leases listing after listing: start where the
        // last listing's asking ended, so each is asked within ceil(of / 8) listings.
        if of > 0 {
            lacking.rotate_left(self.made.wrapping_mul(ASKED_MOST) % of);
        }
        self.made += 1;
        lacking.truncate(ASKED_MOST);
        self.suspects = lacking.iter().map(|&i| held[i]).collect();
        match self.suspects.is_empty() {
            true => Listed::Quiet,
            false => Listed::Lacking {
                asked: self.suspects.clone(),
                of,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Round = Option<Result<Vec<LeaseId>, &'static str>>;

    #[test]
    fn a_lease_not_refreshed_is_suspect_only_when_the_store_does_not_list_it() {
        let listed = |ids: &[LeaseId]| ids.iter().copied().collect::<HashSet<_>>();
        // (held, refreshed this round, listed, suspect)
        type Case = (
            &'static str,
            Vec<LeaseId>,
            Vec<bool>,
            HashSet<LeaseId>,
            Vec<usize>,
        );
        let cases: Vec<Case> = vec![
            (
                "every one listed",
                vec![1, 2, 3],
                vec![true, false, false],
                listed(&[1, 2, 3]),
                vec![],
            ),
            (
                "one revoked",
                vec![1, 2, 3],
                vec![true, false, false],
                listed(&[1, 3]),
                vec![1],
            ),
            (
                "revoked but refreshed: the refresh says so",
                vec![1, 2, 3],
                vec![true, true, false],
                listed(&[1, 3]),
                vec![],
            ),
            (
                "none listed: all not refreshed",
                vec![1, 2, 3],
                vec![true, false, false],
                listed(&[]),
                vec![1, 2],
            ),
            (
                "others' leases do not matter",
                vec![1, 2],
                vec![true, false],
                listed(&[9, 2, 8]),
                vec![],
            ),
            ("nothing held", vec![], vec![], listed(&[1]), vec![]),
        ];
        for (name, held, refreshed, listed, want) in cases {
            assert_eq!(unlisted(&held, &refreshed, &listed), want, "{name}");
        }
    }

    #[test]
    fn the_store_is_listed_less_often_as_it_holds_more_leases() {
        // (leases the last listing held, every how many rounds)
        let cases = [
            (0, 1),
            (771, 1),
            (5_000, 1),
            (5_001, 2),
            (26_000, 6),
            (350_000, 70),
        ];
        for (listed, every) in cases {
            assert_eq!(list_every(listed), every, "{listed} leases");
        }
    }

    #[test]
    fn a_listing_is_due_when_some_lease_goes_unrefreshed_at_the_stores_pace() {
        let mut l = Listing::new();
        assert!(
            !l.due(&[true, true]),
            "every lease refreshed: nothing to look for"
        );
        assert!(l.due(&[true, false]), "the first round that leaves one");
        assert_eq!(
            l.absorb::<&str>(None, &[1, 2], &[true, true]),
            Listed::Skipped
        );
        assert!(
            l.due(&[true, false]),
            "still the first, after rounds that refreshed all"
        );
        let held = [1, 2, 3];
        let some = [true, false, false];
        let listed = |n: usize| -> Round { Some(Ok((1..=n as LeaseId).collect())) };
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
    fn failed_listings_come_ever_slower_and_are_said_once() {
        let mut l = Listing::new();
        let (held, some) = ([1, 2], [true, false]);
        let mut said = Vec::new();
        let mut dues = Vec::new();
        for _ in 0..16 {
            let due = l.due(&some);
            dues.push(due);
            let round: Round = due.then_some(Err("timed out"));
            said.push(l.absorb(round, &held, &some));
        }
        let listed_at: Vec<usize> = (0..16).filter(|&i| dues[i]).collect();
        assert_eq!(
            listed_at,
            [0, 2, 6, 14],
            "every 2, 4, 8 rounds after each failure"
        );
        assert_eq!(said[0], Listed::FirstFailure("timed out"));
        assert!(
            said[1..]
                .iter()
                .all(|s| matches!(s, Listed::Skipped | Listed::Quiet))
        );
        // Listed again: back to the store's pace, and the next failure said again.
        while !l.due(&some) {
            l.absorb::<&str>(None, &held, &some);
        }
        assert_eq!(
            l.absorb::<&str>(Some(Ok(vec![1, 2])), &held, &some),
            Listed::Quiet
        );
        assert!(l.due(&some));
        assert_eq!(
            l.absorb(Some(Err("refused")), &held, &some),
            Listed::FirstFailure("refused")
        );
        let mut l = Listing::new();
        for _ in 0..40 {
            l.absorb::<&str>(Some(Err("x")), &held, &some);
        }
        assert_eq!(l.pace(), FAILED_PACE_MOST, "the backoff's ceiling");
    }

    #[test]
    fn a_lacking_lease_is_asked_about_once_the_round_after() {
        let mut l = Listing::new();
        let held = [1, 2, 3, 4];
        let some = [true, false, false, false];
        // (what the round listed, what it came to, the suspects the next round asks about)
        let cases: Vec<(&str, Round, Listed<&str>, Vec<LeaseId>)> = vec![
            (
                "all there",
                Some(Ok(vec![1, 2, 3, 4, 9])),
                Listed::Quiet,
                vec![],
            ),
            (
                "two lacking",
                Some(Ok(vec![1, 3])),
                Listed::Lacking {
                    asked: vec![2, 4],
                    of: 2,
                },
                vec![2, 4],
            ),
            ("not listed: nothing new", None, Listed::Skipped, vec![]),
            ("failed", Some(Err("e")), Listed::FirstFailure("e"), vec![]),
            (
                "listed again",
                Some(Ok(vec![1, 2, 3])),
                Listed::Lacking {
                    asked: vec![4],
                    of: 1,
                },
                vec![4],
            ),
        ];
        for (name, listed, came_to, asked) in cases {
            assert_eq!(l.absorb(listed, &held, &some), came_to, "{name}");
            assert_eq!(l.take_suspects(), asked, "{name}");
            assert!(l.take_suspects().is_empty(), "{name}: handed over once");
        }
        // A lease the round found gone itself (settled) is not asked about again.
        let got = l.absorb::<&str>(Some(Ok(vec![1])), &held, &[true, true, false, true]);
        assert_eq!(
            got,
            Listed::Lacking {
                asked: vec![3],
                of: 1
            }
        );
    }

    #[test]
    fn a_member_far_behind_costs_a_few_lookups_a_round_and_each_lease_its_turn() {
        let mut l = Listing::new();
        let held: Vec<LeaseId> = (1..=20).collect();
        let mut some = vec![false; 20];
        some[0] = true;
        let mut asked = std::collections::BTreeSet::new();
        for _ in 0..3 {
            match l.absorb::<&str>(Some(Ok(vec![1])), &held, &some) {
                Listed::Lacking { asked: a, of } => {
                    assert_eq!((a.len(), of), (ASKED_MOST, 19));
                    asked.extend(a);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            asked.len(),
            19,
            "every lacking lease asked within three listings"
        );
    }
}
