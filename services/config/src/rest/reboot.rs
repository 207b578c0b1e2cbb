//! `/phones/{id}/reboot` and `/phones/reboot`: a phone restarted through its edges, or a
//! paced wave of them, through the same calls as gRPC's `RestartPhone` and `ActOnPhones`.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use dialtone_auth::Permission;
use dialtone_domain::actions::Act;
use dialtone_proto::config::v1 as pb;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{
    RestApi,
    errors::{ApiError, ErrorBody},
};
use crate::error::ConfigError;

/// Bulk waves the REST API runs at once on a node.
pub const MAX_WAVES: usize = 4;

/// Restarts a phone through its edges (a NOTIFY check-sync with reboot).
#[utoipa::path(
    post,
    path = "/api/v2/telephony/providers/edges/phones/{phoneId}/reboot",
    tag = "Phones",
    params(("phoneId" = String, Path, description = "The phone's id")),
    responses(
        (status = 202, description = "An edge holding the phone's registration asked it to restart"),
        (status = 400, description = "The phone is not registered", body = ErrorBody),
        (status = 404, description = "No such phone", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reboot(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let who = api.caller(&headers, Permission::Edit)?;
    let timeout = crate::actions::timeout_of(0)?;
    api.core
        .act_on_phone(&id, Act::Restart, timeout, &format!("rest/{who}"))
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Which phones `POST /phones/reboot` restarts: those listed, or every phone of a site.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhonesReboot {
    /// The phones to restart.
    #[serde(default)]
    pub phone_ids: Vec<String>,
    /// Or every phone of this site.
    #[serde(default)]
    pub site_id: String,
}

/// Restarts many phones, paced as a reload wave, in the background (at most
/// [`MAX_WAVES`] under way from this node; more get 429).
#[utoipa::path(
    post,
    path = "/api/v2/telephony/providers/edges/phones/reboot",
    tag = "Phones",
    request_body = PhonesReboot,
    responses(
        (status = 202, description = "The wave started"),
        (status = 400, description = "Neither or both of phoneIds and siteId", body = ErrorBody),
        (status = 429, description = "Too many waves under way", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reboot_many(
    State(api): State<RestApi>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let who = api.caller(&headers, Permission::Edit)?;
    let body: PhonesReboot = super::json(&body)?;
    let wave = crate::bulk::Wave::of(pb::ActOnPhonesRequest {
        action: pb::BulkAction::Restart as i32,
        site_id: body.site_id,
        phone_ids: body.phone_ids,
        ..Default::default()
    })
    .map_err(|e| match e {
        // The gRPC request's field names are not this body's.
        ConfigError::InvalidArgument { reason, .. } => {
            ApiError::bad_request("phoneIds", format!("give phoneIds or siteId ({reason})"))
        }
        e => e.into(),
    })?;
    if let crate::bulk::Selector::Site(site) = &wave.selector {
        api.core.get_site(site).await?;
    }
    tracing::info!(token_name = %who, act = ?wave.act, "rest api bulk phone reboot");
    let Ok(turn) = api.waves.clone().try_acquire_owned() else {
        return Err(ApiError::route(
            429,
            "too many bulk actions under way on this node; retry when one ends",
        ));
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let core = api.core.clone();
    let by = format!("rest/{who}");
    tokio::spawn(async move { core.act_on_phones(wave, &by, tx).await });
    // The wave stops starting phones when its progress is not read: read it to the end.
    tokio::spawn(async move {
        let _turn = turn;
        while rx.recv().await.is_some() {}
    });
    Ok(StatusCode::ACCEPTED)
}
