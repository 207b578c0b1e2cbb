//! Where a phone registers: its primary and secondary edge, chosen from its site's edge
//! group by rendezvous (highest-random-weight) hashing of the phone id. Pure functions.
//!
//! Each edge scores every phone with a hash of (edge node id, phone id); the best score is
//! the primary, the second best the secondary. The choice depends only on the group's
//! configured edges, never on which are up, so an edge that is briefly down moves nobody;
//! adding an edge moves only the phones that now score it best, and removing one moves
//! only its own phones. The hash is SHA-256, fixed forever: every role and every release
//! computes the same placement.

use dialtone_proto::config::v1::Edge;
use sha2::{Digest, Sha256};

/// A phone's edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement<'a> {
    /// The edge the phone registers to first.
    pub primary: &'a Edge,
    /// The second edge (dual registration); none with one edge or when the phone's settings
    /// turn secondary registration off.
    pub secondary: Option<&'a Edge>,
}

fn score(node_id: &str, phone_id: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(node_id.as_bytes());
    h.update([0]);
    h.update(phone_id.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The node ids of `phone_id`'s edges over `edges`, primary first (empty when the group has
/// no edges): what edges and the status role compare bindings with.
pub fn node_ids(phone_id: &str, edges: &[Edge], secondary: bool) -> Vec<String> {
    place(phone_id, edges, secondary)
        .map(|p| {
            std::iter::once(p.primary.node_id.clone())
                .chain(p.secondary.map(|e| e.node_id.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The placement of `phone_id` over `edges` (none when the group has no edges).
pub fn place<'a>(phone_id: &str, edges: &'a [Edge], secondary: bool) -> Option<Placement<'a>> {
    let mut best: Option<(u64, &Edge)> = None;
    let mut second: Option<(u64, &Edge)> = None;
    for e in edges {
        // Ties (astronomically rare) break by node id so the order of the list never matters.
        let s = (score(&e.node_id, phone_id), e);
        let beats = |o: &Option<(u64, &Edge)>| {
            o.is_none_or(|(os, oe)| (s.0, &s.1.node_id) > (os, &oe.node_id))
        };
        if beats(&best) {
            second = best;
            best = Some(s);
        } else if beats(&second) {
            second = Some(s);
        }
    }
    best.map(|(_, primary)| Placement {
        primary,
        secondary: if secondary {
            second.map(|(_, e)| e)
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn edges(ids: &[&str]) -> Vec<Edge> {
        ids.iter()
            .map(|id| Edge {
                node_id: (*id).into(),
                addresses: None,
            })
            .collect()
    }

    fn ids(p: Placement<'_>) -> (String, Option<String>) {
        (
            p.primary.node_id.clone(),
            p.secondary.map(|e| e.node_id.clone()),
        )
    }

    #[test]
    fn small_groups() {
        assert!(place("p", &[], true).is_none());
        let one = edges(&["a"]);
        assert_eq!(ids(place("p", &one, true).unwrap()), ("a".into(), None));
        let two = edges(&["a", "b"]);
        let (pri, sec) = ids(place("p", &two, true).unwrap());
        assert_ne!(Some(pri.clone()), sec);
        assert!(sec.is_some());
        let (pri2, none) = ids(place("p", &two, false).unwrap());
        assert_eq!((pri2, none), (pri.clone(), None));
        // The node ids, primary first, are the placement's.
        assert!(node_ids("p", &[], true).is_empty());
        assert_eq!(node_ids("p", &two, true), [pri.clone(), sec.unwrap()]);
        assert_eq!(node_ids("p", &two, false), [pri]);
    }

    #[test]
    fn stable_whatever_the_order_of_the_list() {
        let a = edges(&["edge-1", "edge-2", "edge-3"]);
        let b = edges(&["edge-3", "edge-1", "edge-2"]);
        for i in 0..500 {
            let id = format!("phone-{i}");
            assert_eq!(
                ids(place(&id, &a, true).unwrap()),
                ids(place(&id, &b, true).unwrap())
            );
        }
        // Fixed forever: known phones keep their known edges across releases (computed
        // independently: sorted by the first 8 bytes of SHA-256(node "\0" phone), big-endian).
        for (phone, primary, secondary) in [
            ("phone-0", "edge-3", "edge-2"),
            ("phone-1", "edge-1", "edge-3"),
            ("phone-2", "edge-1", "edge-3"),
        ] {
            assert_eq!(
                ids(place(phone, &a, true).unwrap()),
                (primary.into(), Some(secondary.into()))
            );
        }
    }

    #[test]
    fn balanced_and_minimal_movement() {
        let three = edges(&["edge-1", "edge-2", "edge-3"]);
        let four = edges(&["edge-1", "edge-2", "edge-3", "edge-4"]);
        let n = 12_000;
        let mut primaries: HashMap<String, usize> = HashMap::new();
        let mut pairs: HashMap<(String, String), usize> = HashMap::new();
        let (mut moved, mut moved_elsewhere) = (0, 0);
        for i in 0..n {
            let id = format!("{i:08x}-phone");
            let before = ids(place(&id, &three, true).unwrap());
            *primaries.entry(before.0.clone()).or_default() += 1;
            *pairs
                .entry((before.0.clone(), before.1.clone().unwrap()))
                .or_default() += 1;
            let after = ids(place(&id, &four, true).unwrap());
            if after.0 != before.0 {
                moved += 1;
                if after.0 != "edge-4" {
                    moved_elsewhere += 1;
                }
            }
        }
        // Each edge is primary for a third (within 5 %), each ordered pair for a sixth.
        for c in primaries.values() {
            assert!(
                (*c as f64 - n as f64 / 3.0).abs() < n as f64 * 0.05,
                "{primaries:?}"
            );
        }
        assert_eq!(pairs.len(), 6);
        for c in pairs.values() {
            assert!(
                (*c as f64 - n as f64 / 6.0).abs() < n as f64 * 0.04,
                "{pairs:?}"
            );
        }
        // A fourth edge takes a quarter of the primaries, all of them from the others.
        assert!(
            (moved as f64 - n as f64 / 4.0).abs() < n as f64 * 0.04,
            "{moved}"
        );
        assert_eq!(moved_elsewhere, 0);
        // Removing an edge moves only the phones it served.
        let two = edges(&["edge-1", "edge-3"]);
        for i in 0..2000 {
            let id = format!("{i}");
            let before = ids(place(&id, &three, true).unwrap());
            let after = ids(place(&id, &two, true).unwrap());
            if before.0 != "edge-2" {
                assert_eq!(after.0, before.0);
            }
        }
    }
}
