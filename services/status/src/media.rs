//! Media servers as the edges find them: each edge publishes what its `ng` pings find and
//! the calls up it anchored at each server (`media-health/{node}`); a media server is UP
//! when it answers every edge, DOWN when it answers none, DEGRADED in between. Pure.

use std::collections::{BTreeMap, BTreeSet};

use dialtone_proto::{
    edge::v1::MediaHealth,
    status::v1::{MediaServerEdgeStatus, MediaServerState, MediaServerStatus},
};

/// Every media server some edge pings, in id order, from each edge's findings (by node).
pub fn statuses(by_edge: &BTreeMap<String, MediaHealth>) -> Vec<MediaServerStatus> {
    let ids: BTreeSet<&str> = by_edge
        .values()
        .flat_map(|h| h.servers.iter().map(|s| s.media_server_id.as_str()))
        .collect();
    ids.into_iter()
        .map(|id| {
            let seen: Vec<(&String, &dialtone_proto::edge::v1::MediaServerHealth)> = by_edge
                .iter()
                .flat_map(|(node, h)| {
                    h.servers
                        .iter()
                        .filter(|s| s.media_server_id == id)
                        .map(move |s| (node, s))
                })
                .collect();
            let up = seen.iter().filter(|(_, s)| s.up).count();
            let state = match up {
                0 => MediaServerState::Down,
                n if n == seen.len() => MediaServerState::Up,
                _ => MediaServerState::Degraded,
            };
            MediaServerStatus {
                media_server_id: id.to_owned(),
                // The address the last edge in node id order reports (they agree once
                // the configuration has reached every edge).
                ng_address: seen
                    .last()
                    .map(|(_, s)| s.ng_address.clone())
                    .unwrap_or_default(),
                state: state as i32,
                active_calls: seen.iter().map(|(_, s)| s.active_calls).sum(),
                edges: seen
                    .iter()
                    .map(|(node, s)| MediaServerEdgeStatus {
                        edge_node_id: (*node).clone(),
                        up: s.up,
                        changed_at_ms: s.changed_at_ms,
                        active_calls: s.active_calls,
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use dialtone_proto::edge::v1::MediaServerHealth;

    use super::*;

    fn health(servers: &[(&str, bool, u32)]) -> MediaHealth {
        MediaHealth {
            servers: servers
                .iter()
                .map(|(id, up, calls)| MediaServerHealth {
                    media_server_id: (*id).into(),
                    ng_address: "10.0.0.5:2223".into(),
                    up: *up,
                    changed_at_ms: 0,
                    active_calls: *calls,
                    rtt_ms: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn a_media_server_is_up_down_or_degraded_over_the_edges() {
        let by_edge: BTreeMap<String, MediaHealth> = [
            (
                "edge-1".to_owned(),
                health(&[("a", true, 2), ("b", false, 0), ("c", true, 1)]),
            ),
            (
                "edge-2".to_owned(),
                health(&[("a", true, 3), ("b", false, 0), ("c", false, 0)]),
            ),
        ]
        .into();
        let got: Vec<(String, MediaServerState, u32, usize)> = statuses(&by_edge)
            .into_iter()
            .map(|s| {
                let state = s.state();
                (s.media_server_id, state, s.active_calls, s.edges.len())
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_owned(), MediaServerState::Up, 5, 2),
                ("b".to_owned(), MediaServerState::Down, 0, 2),
                ("c".to_owned(), MediaServerState::Degraded, 1, 2),
            ]
        );
        assert!(statuses(&BTreeMap::new()).is_empty());
    }
}
