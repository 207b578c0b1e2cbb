//! Carrier trunks as the edges find them: each edge publishes its keep-alive findings
//! (`trunk-health/{node}`), and a trunk is UP when every target answers every edge, DOWN
//! when none answers any, DEGRADED in between. Pure.

use std::collections::{BTreeMap, BTreeSet};

use dialtone_proto::{
    edge::v1::TrunkHealth,
    status::v1::{TrunkState, TrunkStatus, TrunkTargetStatus},
};

/// Every trunk some edge probes, in id order, from each edge's findings (by node id).
pub fn statuses(by_edge: &BTreeMap<String, TrunkHealth>) -> Vec<TrunkStatus> {
    let trunks: BTreeSet<&str> = by_edge
        .values()
        .flat_map(|h| h.targets.iter().map(|t| t.trunk_id.as_str()))
        .collect();
    trunks
        .into_iter()
        .map(|trunk| {
            let mut targets: Vec<TrunkTargetStatus> = by_edge
                .iter()
                .flat_map(|(node, h)| {
                    h.targets
                        .iter()
                        .filter(|t| t.trunk_id == trunk)
                        .map(|t| TrunkTargetStatus {
                            address: t.address.clone(),
                            edge_node_id: node.clone(),
                            up: t.up,
                            changed_at_ms: t.changed_at_ms,
                        })
                })
                .collect();
            targets
                .sort_by(|a, b| (&a.address, &a.edge_node_id).cmp(&(&b.address, &b.edge_node_id)));
            let up = targets.iter().filter(|t| t.up).count();
            let state = match up {
                0 => TrunkState::Down,
                n if n == targets.len() => TrunkState::Up,
                _ => TrunkState::Degraded,
            };
            TrunkStatus {
                trunk_id: trunk.to_owned(),
                state: state as i32,
                targets,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use dialtone_proto::edge::v1::TrunkTargetHealth;

    use super::*;

    fn health(targets: &[(&str, &str, bool)]) -> TrunkHealth {
        TrunkHealth {
            targets: targets
                .iter()
                .map(|(trunk, address, up)| TrunkTargetHealth {
                    trunk_id: (*trunk).into(),
                    address: (*address).into(),
                    up: *up,
                    changed_at_ms: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn a_trunk_is_up_degraded_or_down_over_every_edge_and_target() {
        let by_edge: BTreeMap<String, TrunkHealth> = [
            (
                "edge-a".to_owned(),
                health(&[
                    ("a", "192.0.2.1:5060", true),
                    ("b", "192.0.2.2:5060", true),
                    ("b", "192.0.2.3:5060", false),
                    ("c", "192.0.2.4:5060", false),
                ]),
            ),
            (
                "edge-b".to_owned(),
                health(&[
                    ("a", "192.0.2.1:5060", true),
                    ("c", "192.0.2.4:5060", false),
                    ("d", "192.0.2.5:5060", false),
                ]),
            ),
            (
                "edge-c".to_owned(),
                health(&[("d", "192.0.2.5:5060", true)]),
            ),
        ]
        .into();
        let got: Vec<(TrunkState, usize, String)> = statuses(&by_edge)
            .into_iter()
            .map(|t| (t.state(), t.targets.len(), t.trunk_id))
            .collect();
        assert_eq!(
            got,
            [
                (TrunkState::Up, 2, "a".to_owned()),
                (TrunkState::Degraded, 2, "b".to_owned()),
                (TrunkState::Down, 2, "c".to_owned()),
                (TrunkState::Degraded, 2, "d".to_owned()), // down on one edge only
            ]
        );
        assert!(statuses(&BTreeMap::new()).is_empty());
    }
}
