//! The status reducer: from what a phone is expected to hold (its lines, its primary and
//! secondary edge) and what the edges report (which line is registered where), the
//! operational status and each edge's role. Pure, no clock and no IO.

use dialtone_proto::status::v1::{EdgeRole, OperationalStatus};

/// What the configuration expects of a phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// Number of lines.
    pub lines: u32,
    /// The primary edge (none: nowhere to register).
    pub primary: Option<&'a str>,
    /// The secondary edge, for a dual-registering phone.
    pub secondary: Option<&'a str>,
    /// The phone does not register at all (REMOTE).
    pub remote: bool,
    /// The phone is disabled (its registrations are refused).
    pub disabled: bool,
}

impl<'a> Expected<'a> {
    /// What a phone of `lines` lines holds when placed at `placed` (none: nowhere to
    /// register).
    pub fn placed(
        lines: u32,
        placed: Option<crate::placement::Placement<'a>>,
        remote: bool,
        disabled: bool,
    ) -> Self {
        Expected {
            lines,
            primary: placed.map(|p| p.primary.node_id.as_str()),
            secondary: placed.and_then(|p| p.secondary.map(|e| e.node_id.as_str())),
            remote,
            disabled,
        }
    }
}

/// One edge's share of a phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeShare<'a> {
    /// Node id.
    pub node_id: &'a str,
    /// Its role for the phone.
    pub role: EdgeRole,
    /// Lines registered on it.
    pub lines_registered: u32,
}

/// The reduced status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reduced<'a> {
    /// Operational status.
    pub status: OperationalStatus,
    /// Primary first, secondary second, then unexpected edges in node id order.
    pub edges: Vec<EdgeShare<'a>>,
}

/// Reduces `registered`, the (line index, node id) pairs that hold at least one contact.
///
/// OPERATIONAL: every line is registered on the primary and (when expected) the secondary.
/// DEGRADED: something is registered, not all of that. OFFLINE: nothing is registered, or
/// the phone is disabled. A registration on an unexpected edge keeps the phone reachable
/// (DEGRADED, never OPERATIONAL): it happens after a rebalance until the phone re-registers.
pub fn reduce<'a>(expected: &Expected<'a>, registered: &[(u32, &'a str)]) -> Reduced<'a> {
    let mut edges: Vec<EdgeShare<'a>> = Vec::new();
    for (node, role) in [
        (expected.primary, EdgeRole::Primary),
        (expected.secondary, EdgeRole::Secondary),
    ] {
        if let Some(node_id) = node {
            edges.push(EdgeShare {
                node_id,
                role,
                lines_registered: 0,
            });
        }
    }
    let mut lines_seen: Vec<(u32, &str)> = Vec::with_capacity(registered.len());
    for &(line, node) in registered {
        // Lines past the configured ones (a removed line whose binding lingers) still show.
        if lines_seen.contains(&(line, node)) {
            continue;
        }
        lines_seen.push((line, node));
        match edges.iter_mut().find(|e| e.node_id == node) {
            Some(e) => e.lines_registered += 1,
            None => edges.push(EdgeShare {
                node_id: node,
                role: EdgeRole::Unexpected,
                lines_registered: 1,
            }),
        }
    }
    let assigned =
        usize::from(expected.primary.is_some()) + usize::from(expected.secondary.is_some());
    edges[assigned..].sort_by(|a, b| a.node_id.cmp(b.node_id));
    let status = if expected.remote {
        OperationalStatus::NotApplicable
    } else if expected.disabled || lines_seen.is_empty() {
        OperationalStatus::Offline
    } else if assigned > 0
        && expected.lines > 0
        && edges[..assigned]
            .iter()
            .all(|e| e.lines_registered >= expected.lines)
    {
        OperationalStatus::Operational
    } else {
        OperationalStatus::Degraded
    };
    Reduced { status, edges }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "edge-a";
    const S: &str = "edge-b";
    const X: &str = "edge-x";

    fn dual(lines: u32) -> Expected<'static> {
        Expected {
            lines,
            primary: Some(P),
            secondary: Some(S),
            remote: false,
            disabled: false,
        }
    }

    #[test]
    fn operational_status_table() {
        use OperationalStatus::*;
        let single = Expected {
            secondary: None,
            ..dual(1)
        };
        let nowhere = Expected {
            primary: None,
            secondary: None,
            ..dual(1)
        };
        type Case<'a> = (
            &'a str,
            Expected<'a>,
            &'a [(u32, &'a str)],
            OperationalStatus,
        );
        let cases: &[Case] = &[
            ("dual, both", dual(1), &[(0, P), (0, S)], Operational),
            ("dual, primary only", dual(1), &[(0, P)], Degraded),
            ("dual, secondary only", dual(1), &[(0, S)], Degraded),
            ("dual, none", dual(1), &[], Offline),
            ("single, primary", single, &[(0, P)], Operational),
            ("single, none", single, &[], Offline),
            (
                "two lines, one missing on secondary",
                dual(2),
                &[(0, P), (1, P), (0, S)],
                Degraded,
            ),
            (
                "two lines, all",
                dual(2),
                &[(0, P), (1, P), (0, S), (1, S)],
                Operational,
            ),
            (
                "two lines, one line only, both edges",
                dual(2),
                &[(0, P), (0, S)],
                Degraded,
            ),
            ("unexpected edge only", dual(1), &[(0, X)], Degraded),
            (
                "all expected plus unexpected",
                dual(1),
                &[(0, P), (0, S), (0, X)],
                Operational,
            ),
            (
                "duplicates count once",
                dual(2),
                &[(0, P), (0, P), (0, S), (0, S)],
                Degraded,
            ),
            ("no placement, registered", nowhere, &[(0, X)], Degraded),
            ("no placement, nothing", nowhere, &[], Offline),
            (
                "disabled, still registered",
                Expected {
                    disabled: true,
                    ..dual(1)
                },
                &[(0, P), (0, S)],
                Offline,
            ),
            (
                "remote",
                Expected {
                    remote: true,
                    ..nowhere
                },
                &[],
                NotApplicable,
            ),
            ("no lines", dual(0), &[], Offline),
        ];
        for (name, expected, registered, want) in cases {
            assert_eq!(reduce(expected, registered).status, *want, "{name}");
        }
    }

    #[test]
    fn edges_are_listed_primary_secondary_then_unexpected_by_id() {
        let r = reduce(&dual(2), &[(0, "edge-z"), (1, S), (0, X), (0, S)]);
        let got: Vec<(&str, EdgeRole, u32)> = r
            .edges
            .iter()
            .map(|e| (e.node_id, e.role, e.lines_registered))
            .collect();
        assert_eq!(
            got,
            vec![
                (P, EdgeRole::Primary, 0),
                (S, EdgeRole::Secondary, 2),
                (X, EdgeRole::Unexpected, 1),
                ("edge-z", EdgeRole::Unexpected, 1),
            ]
        );
    }
}
