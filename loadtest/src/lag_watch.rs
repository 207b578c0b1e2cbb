//! fleet-bench's status watcher, which reads only what the watch lag is measured from.
//!
//! It shares this machine's two cores with the cluster it measures, as a console on
//! another machine would not, and an edge's death sends it every one of that edge's
//! phones at once. Prost skips the fields a message does not declare, so [`LagChange`]
//! decodes the bytes the status role sends (every `StatusChange` unchanged) with no string
//! built: the phone's names, edges and lines decoded whole cost the bench's own CPU, and a
//! watcher that reads slower falls behind the role's channel, which then resumes it.

use dialtone_proto::status::v1::{StatusChange, WatchPhoneStatusesRequest};
use futures::{StreamExt as _, stream::BoxStream};
use tonic::{codegen::http::uri::PathAndQuery, metadata::MetadataValue, transport::Channel};

/// A `StatusChange` (`dialtone.status.v1`), of which only what the lag needs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LagChange {
    /// `StatusChange.status`.
    #[prost(message, optional, tag = "1")]
    pub status: Option<LagStatus>,
    /// `StatusChange.snapshot`.
    #[prost(bool, tag = "5")]
    pub snapshot: bool,
    /// `StatusChange.synced`.
    #[prost(bool, tag = "6")]
    pub synced: bool,
}

/// A `PhoneStatus`, of which only its edges.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LagStatus {
    /// `PhoneStatus.edges`.
    #[prost(message, repeated, tag = "7")]
    pub edges: Vec<LagEdge>,
}

/// An `EdgeStatus`, of which only its binding's latest write.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LagEdge {
    /// `EdgeStatus.binding_updated_at_ms`.
    #[prost(int64, tag = "6")]
    pub binding_updated_at_ms: i64,
}

impl LagChange {
    /// The latest binding write of the status, when it carries one: the lag is measured
    /// from there.
    pub fn newest_binding_ms(&self) -> Option<i64> {
        self.status
            .as_ref()?
            .edges
            .iter()
            .map(|e| e.binding_updated_at_ms)
            .max()
            .filter(|ms| *ms > 0)
    }
}

/// A change as a watch of the status role sends it, read as a [`LagChange`].
pub type LagStream = BoxStream<'static, Result<LagChange, tonic::Status>>;

/// A status watch from nothing (the whole fleet, then every change) at `grpc_url`, with
/// `token`, read as [`LagChange`]s; with `whole`, every `StatusChange` is decoded whole
/// first, as a console would decode it (`FLEET_BENCH_WATCHER=whole`: a watcher that costs
/// this machine as much as the bench's did before, and falls behind sooner).
pub async fn watch(grpc_url: &str, token: &str, whole: bool) -> anyhow::Result<LagStream> {
    let channel = Channel::from_shared(grpc_url.to_owned())?.connect().await?;
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20);
    grpc.ready().await?;
    let mut req = tonic::Request::new(WatchPhoneStatusesRequest::default());
    req.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}"))?,
    );
    let path = || PathAndQuery::from_static("/dialtone.status.v1.StatusService/WatchPhoneStatuses");
    Ok(if whole {
        let codec = tonic_prost::ProstCodec::<WatchPhoneStatusesRequest, StatusChange>::default();
        let changes = grpc
            .server_streaming(req, path(), codec)
            .await?
            .into_inner();
        changes.map(|c| c.map(LagChange::from)).boxed()
    } else {
        let codec = tonic_prost::ProstCodec::<WatchPhoneStatusesRequest, LagChange>::default();
        grpc.server_streaming(req, path(), codec)
            .await?
            .into_inner()
            .boxed()
    })
}

impl From<StatusChange> for LagChange {
    fn from(c: StatusChange) -> Self {
        Self {
            status: c.status.map(|s| LagStatus {
                edges: s
                    .edges
                    .iter()
                    .map(|e| LagEdge {
                        binding_updated_at_ms: e.binding_updated_at_ms,
                    })
                    .collect(),
            }),
            snapshot: c.snapshot,
            synced: c.synced,
        }
    }
}

#[cfg(test)]
mod tests {
    use dialtone_proto::status::v1::{EdgeStatus, PhoneStatus, StatusChange};
    use prost::Message as _;

    use super::{LagChange, LagEdge, LagStatus};

    #[test]
    fn a_status_change_reads_as_its_lag_fields() {
        let edge = |ms| EdgeStatus {
            node_id: "edge-a".into(),
            binding_updated_at_ms: ms,
            lines_registered: 2,
            since_ms: 7,
            ..Default::default()
        };
        let status = |edges| PhoneStatus {
            phone_id: "p1".into(),
            name: "Desk".into(),
            site_id: "s1".into(),
            edges,
            revision: 9,
            ..Default::default()
        };
        // (change, expected, its newest binding write)
        let cases = [
            (
                StatusChange {
                    status: Some(status(vec![edge(5), edge(0), edge(11)])),
                    phone_id: "p1".into(),
                    revision: 9,
                    ..Default::default()
                },
                LagChange {
                    status: Some(LagStatus {
                        edges: [5, 0, 11]
                            .map(|ms| LagEdge {
                                binding_updated_at_ms: ms,
                            })
                            .into(),
                    }),
                    ..Default::default()
                },
                Some(11),
            ),
            (
                StatusChange {
                    status: Some(status(vec![edge(0)])),
                    snapshot: true,
                    ..Default::default()
                },
                LagChange {
                    status: Some(LagStatus {
                        edges: vec![LagEdge::default()],
                    }),
                    snapshot: true,
                    ..Default::default()
                },
                None,
            ),
            (
                StatusChange {
                    synced: true,
                    revision: 3,
                    ..Default::default()
                },
                LagChange {
                    synced: true,
                    ..Default::default()
                },
                None,
            ),
            (
                StatusChange {
                    removed: true,
                    phone_id: "p2".into(),
                    left_site: "s1".into(),
                    ..Default::default()
                },
                LagChange::default(),
                None,
            ),
        ];
        for (change, want, newest) in cases {
            let read = LagChange::decode(&change.encode_to_vec()[..]).expect("decodes");
            assert_eq!(read, want, "{change:?}");
            assert_eq!(LagChange::from(change.clone()), want, "whole: {change:?}");
            assert_eq!(read.newest_binding_ms(), newest, "{change:?}");
        }
    }
}
