//! `/api/v2/dialtone/trunks`: carriers' trunks listed and read (written with
//! `dialtonectl trunks` or gRPC), never with their passwords.

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, Uri},
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
    shapes::{DIALTONE, Listing},
};

/// A carrier's SIP trunk, as read (its password is never shown).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trunk {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The trusted peer the carrier's requests come from.
    pub peer_id: String,
    /// Where calls go, in order: `address` and `transport`.
    pub targets: Vec<TrunkTarget>,
    /// The numbers the carrier delivers (an E.164 number or a range).
    pub dids: Vec<String>,
    /// Whether calls through it are anchored at a media server.
    pub anchor_media: bool,
    /// Whether the edges register at the carrier.
    pub registers: bool,
    /// Whether a password is stored for the carrier's challenges.
    pub has_password: bool,
    /// Its version.
    pub version: i64,
    /// Its URI.
    pub self_uri: String,
}

/// One address of a trunk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrunkTarget {
    /// `ip:port`.
    pub address: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: String,
}

/// The API's form of a trunk.
pub fn trunk_out(t: &pb::Trunk) -> Trunk {
    Trunk {
        id: t.id.clone(),
        name: t.name.clone(),
        peer_id: t.peer_id.clone(),
        targets: t
            .targets
            .iter()
            .map(|x| TrunkTarget {
                address: x.address.clone(),
                transport: if x.transport.is_empty() {
                    "udp".into()
                } else {
                    x.transport.clone()
                },
            })
            .collect(),
        dids: t.dids.iter().map(|d| d.numbers.clone()).collect(),
        anchor_media: t.anchor_media,
        registers: t.registration.is_some(),
        has_password: t
            .credentials
            .as_ref()
            .is_some_and(|c| c.has_password || !c.password.is_empty()),
        version: t.version,
        self_uri: format!("{DIALTONE}/trunks/{}", t.id),
    }
}

/// Lists trunks.
#[utoipa::path(get, path = "/api/v2/dialtone/trunks", tag = "Dialtone",
    params(("pageSize" = Option<u32>, Query, description = "Trunks per page, 1-500 (default 25)"), ("pageNumber" = Option<u32>, Query, description = "Page, from 1")),
    responses((status = 200, description = "A page of trunks", body = Listing<Trunk>), (status = 400, description = "A bad parameter", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_trunks(
    State(api): State<RestApi>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Listing<Trunk>>, ApiError> {
    api.caller(&headers, Permission::View)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &PAGE_PARAMS)?;
    let _turn = api.scan_turn().await;
    let all = paging::read_all("trunks", |t| {
        let core = api.core.clone();
        async move { core.list_trunks(1000, &t).await }
    })
    .await?;
    Ok(Json(paging::page(
        all.iter().map(trunk_out).collect(),
        &format!("{DIALTONE}/trunks"),
        &q,
    )?))
}

/// One trunk.
#[utoipa::path(get, path = "/api/v2/dialtone/trunks/{trunkId}", tag = "Dialtone",
    params(("trunkId" = String, Path, description = "The trunk's id")),
    responses((status = 200, description = "The trunk", body = Trunk), (status = 404, description = "No such trunk", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_trunk(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Trunk>, ApiError> {
    api.caller(&headers, Permission::View)?;
    Ok(Json(trunk_out(&api.core.get_trunk(&id).await?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunks_never_show_their_password() {
        let t = pb::Trunk {
            id: "carrier".into(),
            targets: vec![pb::TrunkTarget {
                address: "192.0.2.1:5060".into(),
                ..Default::default()
            }],
            credentials: Some(pb::TrunkCredentials {
                username: "u".into(),
                password: "secret".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = trunk_out(&t);
        assert!(out.has_password && out.targets[0].transport == "udp");
        assert!(!serde_json::to_string(&out).unwrap().contains("secret"));
    }
}
