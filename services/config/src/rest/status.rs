//! A phone's `status` and `secondaryStatus` in Genesys Cloud's PhoneStatus shape, from
//! the config role's status view of it. Pure.

use dialtone_proto::config::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::shapes::EntityRef;

/// A phone's registration, as Genesys Cloud's PhoneStatus shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneStatus {
    /// In `status`: the phone's status, the status role's (OPERATIONAL: every line
    /// registered on every edge it should be; DEGRADED: some; OFFLINE: none, or disabled;
    /// NOT_APPLICABLE: a remote phone). In `secondaryStatus`: the secondary edge's share
    /// (OPERATIONAL: every line there, DEGRADED: some, OFFLINE: none).
    pub operational_status: String,
    /// IN_SERVICE (every expected edge holds every line), MIXED_SERVICE (some),
    /// OUT_OF_SERVICE (none) or NO_EDGES (the phone's site has no edge to place it on).
    pub edges_status: String,
    /// PRIMARY or SECONDARY: which edge this status is of.
    pub phone_assignment_to_edge_type: String,
    /// That edge (a Dialtone node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<EntityRef>,
    /// Each line.
    pub line_statuses: Vec<LineStatus>,
}

/// One line's registration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineStatus {
    /// The line's id, `{phoneId}.{index}`.
    pub id: String,
    /// Whether an edge (in `secondaryStatus`: the secondary) holds a contact of it.
    pub reachable: bool,
    /// Its address of record, `sip:{user}@{realm}`.
    pub address_of_record: String,
}

/// A phone's `status` and, when it registers twice, `secondaryStatus`.
pub type StatusPair = (PhoneStatus, Option<PhoneStatus>);

/// `status` and `secondaryStatus` of phone `p` from its status view (`realm`: the SIP
/// realm of its addresses of record).
pub fn status_out(
    p: &pb::Phone,
    v: &crate::phone_status::PhoneStatusView,
    realm: &str,
) -> StatusPair {
    use dialtone_proto::status::v1::{EdgeRole, OperationalStatus};
    let name = |s: OperationalStatus| {
        s.as_str_name()
            .trim_start_matches("OPERATIONAL_STATUS_")
            .to_owned()
    };
    let expected: Vec<&(String, EdgeRole, u32)> = v
        .edges
        .iter()
        .filter(|(_, r, _)| *r != EdgeRole::Unexpected)
        .collect();
    let lines = p.lines.len() as u32;
    let edges_status = if expected.is_empty() {
        "NO_EDGES"
    } else if lines > 0 && expected.iter().all(|(_, _, n)| *n >= lines) {
        "IN_SERVICE"
    } else if expected.iter().any(|(_, _, n)| *n > 0) {
        "MIXED_SERVICE"
    } else {
        "OUT_OF_SERVICE"
    };
    let edge_ref = |node: &str| EntityRef {
        id: node.to_owned(),
        name: Some(node.to_owned()),
        self_uri: None,
    };
    let line_statuses = |on: Option<&str>| {
        p.lines
            .iter()
            .enumerate()
            .map(|(i, l)| LineStatus {
                id: format!("{}.{i}", p.id),
                reachable: v.lines.get(i).is_some_and(|edges| {
                    on.map_or(!edges.is_empty(), |n| edges.iter().any(|e| e == n))
                }),
                address_of_record: format!("sip:{}@{realm}", l.sip_user),
            })
            .collect()
    };
    let of_role = |role: EdgeRole| v.edges.iter().find(|(_, r, _)| *r == role);
    let primary = PhoneStatus {
        operational_status: name(v.status),
        edges_status: edges_status.into(),
        phone_assignment_to_edge_type: "PRIMARY".into(),
        edge: of_role(EdgeRole::Primary).map(|(n, _, _)| edge_ref(n)),
        line_statuses: line_statuses(None),
    };
    let secondary = of_role(EdgeRole::Secondary).map(|(n, _, held)| PhoneStatus {
        operational_status: if *held >= lines && lines > 0 {
            "OPERATIONAL"
        } else if *held > 0 {
            "DEGRADED"
        } else {
            "OFFLINE"
        }
        .into(),
        edges_status: edges_status.into(),
        phone_assignment_to_edge_type: "SECONDARY".into(),
        edge: Some(edge_ref(n)),
        line_statuses: line_statuses(Some(n)),
    });
    (primary, secondary)
}
