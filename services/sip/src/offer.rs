//! Which digest algorithms a challenge offers, in order (RFC 8760 §2.4: one challenge per
//! algorithm, the preferred first), and how an edge chooses one for a user it does not
//! know without telling that user apart from one it does. Pure.

use crate::digest::Algorithm;

/// The algorithms a 401/407 offers, in order: every order of every non-empty set of the
/// two, so it fits in a byte (a line's entry carries one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Offer {
    Md5,
    Sha256,
    Md5ThenSha256,
    Sha256ThenMd5,
}

impl Offer {
    /// Every offer, in [`Offer::index`] order.
    pub const ALL: [Offer; 4] = [
        Offer::Md5,
        Offer::Sha256,
        Offer::Md5ThenSha256,
        Offer::Sha256ThenMd5,
    ];

    /// The algorithms, in the order the challenges go out.
    pub fn algorithms(self) -> &'static [Algorithm] {
        use Algorithm::{Md5, Sha256};
        match self {
            Offer::Md5 => &[Md5],
            Offer::Sha256 => &[Sha256],
            Offer::Md5ThenSha256 => &[Md5, Sha256],
            Offer::Sha256ThenMd5 => &[Sha256, Md5],
        }
    }

    /// The offer of `list`, in its order; none when it is empty or repeats one.
    pub fn of(list: &[Algorithm]) -> Option<Offer> {
        Offer::ALL.into_iter().find(|o| o.algorithms() == list)
    }

    /// Whether an answer in `alg` answers this offer.
    pub fn accepts(self, alg: Algorithm) -> bool {
        self.algorithms().contains(&alg)
    }

    /// This offer cut to what `allowed` accepts, in this offer's order; `allowed` itself
    /// when nothing is left (the edge's bound wins over a profile).
    pub fn within(self, allowed: Offer) -> Offer {
        let kept: Vec<Algorithm> = self
            .algorithms()
            .iter()
            .copied()
            .filter(|a| allowed.accepts(*a))
            .collect();
        Offer::of(&kept).unwrap_or(allowed)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How many lines get each offer: what a challenge to an unknown user is drawn from, so
/// that it looks like one of the fleet's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OfferCounts([u64; 4]);

impl OfferCounts {
    /// One more line with `o`.
    pub fn add(&mut self, o: Offer) {
        self.0[o.index()] += 1;
    }

    /// One line with `o` fewer.
    pub fn remove(&mut self, o: Offer) {
        self.0[o.index()] = self.0[o.index()].saturating_sub(1);
    }

    /// The offer for a user nobody has, from `draw` (a number only the edges can compute
    /// from the user name, the same at every edge of a group: see `NonceKey::sign`): each
    /// offer as often as the lines that have it, so a user guessed at gets what a real
    /// line might, the same at every edge. The draw is scaled onto the counts (not taken
    /// modulo them), so a name keeps its offer while the fleet's mix holds: a line added
    /// or removed moves only the names at a boundary between offers. `fallback` when there
    /// are no lines.
    ///
    /// `draw` is called only when the lines have more than one offer between them: with
    /// one (a fleet on one digest policy, the usual case) every name gets it whatever its
    /// draw, so the keyed hash is not computed, for a known user or an unknown one alike.
    pub fn pick(&self, draw: impl FnOnce() -> u64, fallback: Offer) -> Offer {
        let total: u64 = self.0.iter().sum();
        if total == 0 {
            return fallback;
        }
        let mut offered = Offer::ALL.into_iter().filter(|o| self.0[o.index()] > 0);
        if let (Some(only), None) = (offered.next(), offered.next()) {
            return only;
        }
        let mut at = ((u128::from(draw()) * u128::from(total)) >> 64) as u64;
        for o in Offer::ALL {
            let n = self.0[o.index()];
            if at < n {
                return o;
            }
            at -= n;
        }
        fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Algorithm::{Md5, Sha256};

    #[test]
    fn offers_of_lists() {
        // (list, offer)
        let cases: [(&[Algorithm], Option<Offer>); 6] = [
            (&[Md5], Some(Offer::Md5)),
            (&[Sha256], Some(Offer::Sha256)),
            (&[Md5, Sha256], Some(Offer::Md5ThenSha256)),
            (&[Sha256, Md5], Some(Offer::Sha256ThenMd5)),
            (&[], None),
            (&[Md5, Md5], None),
        ];
        for (list, want) in cases {
            assert_eq!(Offer::of(list), want, "{list:?}");
            if let Some(o) = want {
                assert_eq!(o.algorithms(), list);
            }
        }
        assert!(Offer::Md5ThenSha256.accepts(Sha256) && !Offer::Md5.accepts(Sha256));
    }

    #[test]
    fn an_edges_bound_cuts_a_profiles_offer() {
        use Offer::*;
        // (profile's offer, edge's bound, what goes out)
        let cases = [
            (Md5ThenSha256, Sha256ThenMd5, Md5ThenSha256),
            (Md5ThenSha256, Md5, Md5),
            (Sha256ThenMd5, Md5, Md5),
            (Sha256, Sha256ThenMd5, Sha256),
            // Nothing of the profile's is allowed: the edge's.
            (Sha256, Md5, Md5),
            (Md5, Sha256, Sha256),
        ];
        for (profile, bound, want) in cases {
            assert_eq!(profile.within(bound), want, "{profile:?} within {bound:?}");
        }
    }

    #[test]
    fn unknown_users_draw_offers_as_often_as_lines_have_them() {
        let mut c = OfferCounts::default();
        let undrawn = || -> u64 { panic!("drawn with fewer than two offers") };
        assert_eq!(c.pick(undrawn, Offer::Md5ThenSha256), Offer::Md5ThenSha256);
        for _ in 0..3 {
            c.add(Offer::Md5ThenSha256);
        }
        // One offer among the lines: every name gets it, and nothing is drawn.
        assert_eq!(c.pick(undrawn, Offer::Md5), Offer::Md5ThenSha256);
        c.add(Offer::Sha256);
        // (draw, offer): the draws' range is split in the counts' proportions, offers in
        // index order: the first quarter SHA-256, the rest MD5 then SHA-256.
        let quarter = u64::MAX / 4;
        let cases = [
            (0, Offer::Sha256),
            (quarter - 1, Offer::Sha256),
            (quarter + 1, Offer::Md5ThenSha256),
            (u64::MAX / 2, Offer::Md5ThenSha256),
            (u64::MAX, Offer::Md5ThenSha256),
        ];
        for (draw, want) in cases {
            assert_eq!(c.pick(|| draw, Offer::Md5), want, "{draw}");
        }
        // One more common line: only draws at the boundary move.
        c.add(Offer::Md5ThenSha256);
        assert_eq!(c.pick(|| u64::MAX / 2, Offer::Md5), Offer::Md5ThenSha256);
        assert_eq!(c.pick(|| 0, Offer::Md5), Offer::Sha256);
        c.remove(Offer::Sha256);
        c.remove(Offer::Sha256);
        assert_eq!(c.pick(|| 0, Offer::Md5), Offer::Md5ThenSha256);
    }
}
