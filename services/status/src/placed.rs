//! A phone's placement, cached in its entry: placing a phone hashes it with every edge of
//! its group (SHA-256), a quarter of a re-reduction's time, and an edge's departure
//! re-reduces every phone bound to it but moves no placement.

use dialtone_domain::placement;
use dialtone_proto::config::v1::Edge;

/// A phone's placement as indices into its edge group's edges, found in the view's epoch
/// `epoch` (0: none). The view's epoch moves whenever a site, group or profile changes or
/// the view is listed again; a phone's configuration changing resets its own.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placed {
    epoch: u32,
    primary: u16,
    /// [`Placed::NONE`] for no secondary.
    secondary: u16,
}

impl Placed {
    const NONE: u16 = u16::MAX;

    /// `placement` over `edges` as indices, stamped with `epoch`; none for a group too
    /// large to index.
    pub(crate) fn of(
        placement: placement::Placement<'_>,
        edges: &[Edge],
        epoch: u32,
    ) -> Option<Self> {
        let index = |edge: &Edge| {
            edges
                .iter()
                .position(|e| std::ptr::eq(e, edge))
                .and_then(|i| u16::try_from(i).ok())
                .filter(|i| *i != Self::NONE)
        };
        Some(Self {
            epoch,
            primary: index(placement.primary)?,
            secondary: match placement.secondary {
                Some(e) => index(e)?,
                None => Self::NONE,
            },
        })
    }

    /// The placement over `edges` it stands for, when found in `epoch`.
    pub(crate) fn get<'g>(
        &self,
        edges: &'g [Edge],
        epoch: u32,
    ) -> Option<placement::Placement<'g>> {
        if self.epoch != epoch || epoch == 0 {
            return None;
        }
        Some(placement::Placement {
            primary: edges.get(usize::from(self.primary))?,
            secondary: match self.secondary {
                Self::NONE => None,
                i => Some(edges.get(usize::from(i))?),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_placement_holds_only_in_its_epoch() {
        let edges: Vec<Edge> = ["a", "b", "c"]
            .iter()
            .map(|n| Edge {
                node_id: (*n).into(),
                ..Default::default()
            })
            .collect();
        for dual in [true, false] {
            let p = placement::place("phone-1", &edges, dual).unwrap();
            let cached = Placed::of(p, &edges, 7).unwrap();
            assert_eq!(cached.get(&edges, 7), Some(p), "dual {dual}");
            assert_eq!(cached.get(&edges, 8), None, "another epoch");
            assert_eq!(cached.get(&edges[..0], 7), None, "a group that shrank");
        }
        assert_eq!(Placed::default().get(&edges, 0), None, "never placed");
    }
}
