//! Carrier trunks as the edges find them: each edge publishes its keep-alive findings and
//! its registrations at the carrier (`trunk-health/{node}`), and a trunk is UP when every
//! target answers every edge and every edge that registers it is registered, DOWN when no
//! target answers any edge, DEGRADED in between (an unregistered edge receives no calls
//! from the carrier). Pure.

use std::collections::{BTreeMap, BTreeSet};

use dialtone_proto::{
    edge::v1::TrunkHealth,
    status::v1::{TrunkRegistrationStatus, TrunkState, TrunkStatus, TrunkTargetStatus},
};

/// Every trunk some edge probes, in id order, from each edge's findings (by node id).
pub fn statuses(by_edge: &BTreeMap<String, TrunkHealth>) -> Vec<TrunkStatus> {
    let trunks: BTreeSet<&str> = by_edge
        .values()
        .flat_map(|h| {
            let targets = h.targets.iter().map(|t| t.trunk_id.as_str());
            targets.chain(h.registrations.iter().map(|r| r.trunk_id.as_str()))
        })
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
            let registrations: Vec<TrunkRegistrationStatus> = by_edge
                .iter()
                .flat_map(|(node, h)| {
                    h.registrations
                        .iter()
                        .filter(|r| r.trunk_id == trunk)
                        .map(|r| TrunkRegistrationStatus {
                            edge_node_id: node.clone(),
                            registered: r.registered,
                            expires_at_ms: r.expires_at_ms,
                            last_status: r.last_status,
                            changed_at_ms: r.changed_at_ms,
                        })
                })
                .collect();
            let up = targets.iter().filter(|t| t.up).count();
            let all_registered = registrations.iter().all(|r| r.registered);
            let state = match up {
                0 if !targets.is_empty() => TrunkState::Down,
                n if n == targets.len() && all_registered => TrunkState::Up,
                _ => TrunkState::Degraded,
            };
            TrunkStatus {
                trunk_id: trunk.to_owned(),
                state: state as i32,
                targets,
                registrations,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use dialtone_proto::edge::v1::{TrunkRegistrationHealth, TrunkTargetHealth};

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
            registrations: Vec::new(),
        }
    }

    fn registered(trunk: &str, yes: bool) -> TrunkRegistrationHealth {
        TrunkRegistrationHealth {
            trunk_id: trunk.into(),
            registered: yes,
            last_status: if yes { 200 } else { 403 },
            ..Default::default()
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

        // A trunk whose targets all answer is DEGRADED while an edge that registers it is
        // not registered: that edge gets no calls from the carrier.
        let mut a = health(&[("r", "192.0.2.9:5060", true)]);
        a.registrations = vec![registered("r", true)];
        let mut b = health(&[("r", "192.0.2.9:5060", true)]);
        b.registrations = vec![registered("r", false)];
        let mut by_edge: BTreeMap<String, TrunkHealth> =
            [("edge-a".to_owned(), a), ("edge-b".to_owned(), b)].into();
        let got = &statuses(&by_edge)[0];
        assert_eq!(got.state(), TrunkState::Degraded);
        assert_eq!(got.registrations.len(), 2);
        assert_eq!(got.registrations[1].last_status, 403);
        by_edge.get_mut("edge-b").unwrap().registrations = vec![registered("r", true)];
        assert_eq!(statuses(&by_edge)[0].state(), TrunkState::Up);
    }
}
