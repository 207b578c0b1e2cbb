//! `/edgegroups`: edge groups listed, read, created, replaced and deleted, after Genesys
//! Cloud's EdgeGroup (`id`, `name`, `version`, `state`, `selfUri`) with Dialtone's
//! `edges`, each with the SIP addresses phones reach it at and whether it is up (a node
//! is up while its membership lease in the store lives). Writes need
//! `telephony:plugin:all`, as gRPC's.

use std::collections::HashSet;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
};
use dialtone_auth::Permission;
use dialtone_proto::config::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    RestApi,
    catalog::PAGE_PARAMS,
    errors::{ApiError, ErrorBody},
    paging::{self, Query},
    shapes::{self, Listing, TELEPHONY},
};

/// An edge group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeGroup {
    /// Its id (on create: made from the name when empty).
    #[serde(default)]
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its version (a PUT must give the one it read).
    #[serde(default)]
    pub version: i64,
    /// `active` (in answers).
    #[serde(default)]
    pub state: String,
    /// Its edges, in order (1-32).
    pub edges: Vec<EdgeMember>,
    /// Its URI (in answers).
    #[serde(default)]
    pub self_uri: String,
}

/// One edge of a group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeMember {
    /// The edge's node id.
    pub node_id: String,
    /// `host:port` per transport (`udp`, `tcp`, `tls`, `ws`, `wss`; absent: not offered).
    #[serde(default)]
    pub addresses: SipAddresses,
    /// Whether the node is up now (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<bool>,
}

/// An edge's SIP addresses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SipAddresses {
    /// UDP.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub udp: String,
    /// TCP.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tcp: String,
    /// TLS.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tls: String,
    /// WebSocket.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ws: String,
    /// Secure WebSocket.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wss: String,
}

/// The API's form of a group; `up`: the edge nodes that are up.
pub fn group_out(g: &pb::EdgeGroup, up: &HashSet<String>) -> EdgeGroup {
    EdgeGroup {
        id: g.id.clone(),
        name: g.name.clone(),
        version: g.version,
        state: "active".into(),
        edges: g
            .edges
            .iter()
            .map(|e| {
                let a = e.addresses.clone().unwrap_or_default();
                EdgeMember {
                    node_id: e.node_id.clone(),
                    addresses: SipAddresses {
                        udp: a.udp,
                        tcp: a.tcp,
                        tls: a.tls,
                        ws: a.ws,
                        wss: a.wss,
                    },
                    up: Some(up.contains(&e.node_id)),
                }
            })
            .collect(),
        self_uri: format!("{TELEPHONY}/edgegroups/{}", g.id),
    }
}

/// The config model's form of `body`.
pub fn group_in(body: &EdgeGroup) -> pb::EdgeGroup {
    pb::EdgeGroup {
        id: if body.id.is_empty() {
            shapes::slug(&body.name)
        } else {
            body.id.clone()
        },
        name: body.name.trim().to_owned(),
        edges: body
            .edges
            .iter()
            .map(|e| pb::Edge {
                node_id: e.node_id.clone(),
                addresses: Some(pb::SipAddresses {
                    udp: e.addresses.udp.clone(),
                    tcp: e.addresses.tcp.clone(),
                    tls: e.addresses.tls.clone(),
                    ws: e.addresses.ws.clone(),
                    wss: e.addresses.wss.clone(),
                }),
            })
            .collect(),
        version: body.version,
    }
}

/// The edge nodes that are up: those whose membership the store holds.
pub async fn edges_up(api: &RestApi) -> Result<HashSet<String>, ApiError> {
    Ok(api.core.edges_up().await?)
}

/// Lists edge groups.
#[utoipa::path(
    get,
    path = "/api/v2/telephony/providers/edges/edgegroups",
    tag = "Edge Groups",
    params(
        ("pageSize" = Option<u32>, Query, description = "Groups per page, 1-500 (default 25)"),
        ("pageNumber" = Option<u32>, Query, description = "Page, from 1"),
    ),
    responses(
        (status = 200, description = "A page of edge groups", body = Listing<EdgeGroup>),
        (status = 400, description = "A bad parameter", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_groups(
    State(api): State<RestApi>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Listing<EdgeGroup>>, ApiError> {
    api.caller(&headers, Permission::View)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &PAGE_PARAMS)?;
    let _turn = api.scan_turn().await;
    let groups = paging::read_all("edge groups", |t| {
        let core = api.core.clone();
        async move { core.list_edge_groups(1000, &t).await }
    })
    .await?;
    let up = edges_up(&api).await?;
    let out = groups.iter().map(|g| group_out(g, &up)).collect();
    Ok(Json(paging::page(
        out,
        &format!("{TELEPHONY}/edgegroups"),
        &q,
    )?))
}

/// One edge group.
#[utoipa::path(
    get,
    path = "/api/v2/telephony/providers/edges/edgegroups/{edgeGroupId}",
    tag = "Edge Groups",
    params(("edgeGroupId" = String, Path, description = "The group's id")),
    responses(
        (status = 200, description = "The group", body = EdgeGroup),
        (status = 404, description = "No such group", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_group(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<EdgeGroup>, ApiError> {
    api.caller(&headers, Permission::View)?;
    let g = api.core.get_edge_group(&id).await?;
    Ok(Json(group_out(&g, &edges_up(&api).await?)))
}

/// Creates an edge group.
#[utoipa::path(
    post,
    path = "/api/v2/telephony/providers/edges/edgegroups",
    tag = "Edge Groups",
    request_body = EdgeGroup,
    responses(
        (status = 200, description = "The group", body = EdgeGroup),
        (status = 400, description = "An invalid field (named in messageParams.field)", body = ErrorBody),
        (status = 409, description = "A group with this id exists", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_group(
    State(api): State<RestApi>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EdgeGroup>, ApiError> {
    let who = api.caller(&headers, Permission::All)?;
    let body: EdgeGroup = super::json(&body)?;
    let g = api.core.create_edge_group(group_in(&body)).await?;
    tracing::info!(token_name = %who, group = %g.id, "rest api created edge group");
    Ok(Json(group_out(&g, &edges_up(&api).await?)))
}

/// Replaces an edge group (its phones move as placement says), at a required `version`.
#[utoipa::path(
    put,
    path = "/api/v2/telephony/providers/edges/edgegroups/{edgeGroupId}",
    tag = "Edge Groups",
    params(("edgeGroupId" = String, Path, description = "The group's id")),
    request_body = EdgeGroup,
    responses(
        (status = 200, description = "The group as written", body = EdgeGroup),
        (status = 400, description = "An invalid field, or no version", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "The version is stale", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn replace_group(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<EdgeGroup>, ApiError> {
    let who = api.caller(&headers, Permission::All)?;
    let mut body: EdgeGroup = super::json(&body)?;
    if body.version <= 0 {
        return Err(ApiError::bad_request(
            "version",
            "give the version the group was read at",
        ));
    }
    body.id = id;
    let g = api.core.update_edge_group(group_in(&body)).await?;
    tracing::info!(token_name = %who, group = %g.id, "rest api replaced edge group");
    Ok(Json(group_out(&g, &edges_up(&api).await?)))
}

/// Deletes an edge group no site uses (at `version`, when given).
#[utoipa::path(
    delete,
    path = "/api/v2/telephony/providers/edges/edgegroups/{edgeGroupId}",
    tag = "Edge Groups",
    params(
        ("edgeGroupId" = String, Path, description = "The group's id"),
        ("version" = Option<i64>, Query, description = "Delete only at this version"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Sites still use it", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "The version is stale", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_group(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    let who = api.caller(&headers, Permission::All)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &["version"])?;
    let version = super::version_param(&q)?;
    api.core.delete_edge_group(&id, version).await?;
    tracing::info!(token_name = %who, group = %id, "rest api deleted edge group");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_go_out_and_back() {
        let g = pb::EdgeGroup {
            id: "main".into(),
            name: "Main".into(),
            version: 7,
            edges: vec![pb::Edge {
                node_id: "edge-1".into(),
                addresses: Some(pb::SipAddresses {
                    udp: "10.0.0.1:5060".into(),
                    ..Default::default()
                }),
            }],
        };
        let out = group_out(&g, &HashSet::from(["edge-1".to_owned()]));
        assert_eq!(out.edges[0].up, Some(true));
        assert_eq!(
            out.self_uri,
            "/api/v2/telephony/providers/edges/edgegroups/main"
        );
        assert_eq!(group_in(&out), g);
        let named = group_in(&EdgeGroup {
            name: "West Coast".into(),
            ..Default::default()
        });
        assert_eq!(named.id, "west-coast");
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(
            json["edges"][0]["addresses"],
            serde_json::json!({"udp": "10.0.0.1:5060"})
        );
    }
}
