//! `/phones`: list, create, get, replace, delete and reboot phones, each through the same
//! [`ConfigCore`](crate::ConfigCore) call and permission as its gRPC method.

use std::collections::HashMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
};
use dialtone_auth::Permission;
use dialtone_proto::config::v1::{self as pb, MetaBase, PhoneFilter};

use super::{
    RestApi,
    errors::{ApiError, ErrorBody},
    paging::{self, Query},
    shapes::{self, Listing, Names, Phone, TELEPHONY},
};
use crate::{error::ConfigError, list, phone_status::StatusLookups};

/// The most phones a list filtered by status may match by its other filters (each one's
/// status is read from the store).
pub const MAX_STATUS_FILTERED: usize = 2_000;

const LIST_PARAMS: [&str; 12] = [
    "status.operationalStatus",
    "secondaryStatus.operationalStatus",
    "pageSize",
    "pageNumber",
    "sortBy",
    "sortOrder",
    "name",
    "site.id",
    "phoneBaseSettings.id",
    "phone_hardwareId",
    "kind",
    "expand",
];

/// Lists phones, filtered and sorted, a numbered page at a time.
#[utoipa::path(
    get,
    path = "/api/v2/telephony/providers/edges/phones",
    tag = "Phones",
    params(
        ("pageSize" = Option<u32>, Query, description = "Phones per page, 1-500 (default 25)"),
        ("pageNumber" = Option<u32>, Query, description = "Page, from 1"),
        ("sortBy" = Option<String>, Query, description = "name (default), id, dateCreated or dateModified"),
        ("sortOrder" = Option<String>, Query, description = "ASC (default) or DESC"),
        ("name" = Option<String>, Query, description = "The phone's name; a trailing * matches names starting so"),
        ("site.id" = Option<String>, Query, description = "Phones of this site"),
        ("phoneBaseSettings.id" = Option<String>, Query, description = "Phones of this base settings profile"),
        ("phone_hardwareId" = Option<String>, Query, description = "The phone with this hardware id (MAC)"),
        ("kind" = Option<String>, Query, description = "managed, unmanaged, webrtc or remote"),
        ("expand" = Option<String>, Query, description = "status: each phone's status and secondaryStatus (site and base settings names are always given)"),
        ("status.operationalStatus" = Option<String>, Query, description = "OPERATIONAL, DEGRADED, OFFLINE or NOT_APPLICABLE (at most 2,000 phones matching the other filters)"),
        ("secondaryStatus.operationalStatus" = Option<String>, Query, description = "The secondary edge's share: OPERATIONAL, DEGRADED or OFFLINE"),
    ),
    responses(
        (status = 200, description = "A page of phones", body = Listing<Phone>),
        (status = 400, description = "A bad parameter, or too many phones match", body = ErrorBody),
        (status = 401, description = "No or an unknown bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks telephony:sitesmanagedphones:view", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(api): State<RestApi>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Listing<Phone>>, ApiError> {
    api.caller(&headers, Permission::View)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &LIST_PARAMS)?;
    let sort_by = q.choice(
        "sortBy",
        "name",
        &["name", "id", "dateCreated", "dateModified"],
    )?;
    let descending = q.choice("sortOrder", "ASC", &["ASC", "DESC"])? == "DESC";
    let name = q.get("name").unwrap_or("");
    let (prefix, exact) = match name.strip_suffix('*') {
        Some(p) => (p, None),
        None => (name, (!name.is_empty()).then_some(name)),
    };
    let kind = match q.get("kind") {
        Some(k) => shapes::kind_of_param(k)
            .ok_or_else(|| ApiError::bad_request("kind", "managed, unmanaged, webrtc or remote"))?
            as i32,
        None => 0,
    };
    // A bad page is refused before anything is read.
    paging::check(&q)?;
    let wanted = (
        status_param(&q, "status.operationalStatus")?,
        status_param(&q, "secondaryStatus.operationalStatus")?,
    );
    let filter = PhoneFilter {
        site_id: q.get("site.id").unwrap_or("").to_owned(),
        base_settings_id: q.get("phoneBaseSettings.id").unwrap_or("").to_owned(),
        hardware_id: q.get("phone_hardwareId").unwrap_or("").to_owned(),
        name_prefix: prefix.to_owned(),
        kind,
        sip_user: String::new(),
    };
    let by_status = wanted.0.is_some() || wanted.1.is_some();
    let expand = q.all("expand").any(|e| e.trim() == "status");
    // The default view (every phone, by name) reads its page alone through the name index,
    // however large the fleet; anything else is read whole, sorted and cut below.
    if sort_by == "name" && !descending && exact.is_none() && !by_status && list::is_empty(&filter)
    {
        let (offset, size) = paging::window(&q)?;
        if let Some((phones, total)) = api.core.phones_by_name(offset, size).await? {
            let listing = paging::listing(phones, total, &format!("{TELEPHONY}/phones"), &q)?;
            return shown(&api, listing, expand, HashMap::new()).await;
        }
    }
    let _turn = api.scan_turn().await;
    let mut all = paging::read_all("phones", |token| {
        let (core, filter) = (api.core.clone(), filter.clone());
        async move { core.list_phones(filter, 1000, &token).await }
    })
    .await?;
    all.retain(|p| exact.is_none_or(|n| p.name == n));
    let mut lookups = StatusLookups::default();
    let mut statuses: HashMap<String, shapes::StatusPair> = HashMap::new();
    if by_status {
        if all.len() > MAX_STATUS_FILTERED {
            return Err(ApiError::bad_request(
                "status.operationalStatus",
                format!(
                    "{} phones match the other filters; a status filter takes at most {MAX_STATUS_FILTERED} (add site.id or phoneBaseSettings.id)",
                    all.len()
                ),
            ));
        }
        // Their bindings in a few reads (one per 128 phones on etcd), not one each.
        let views = api.core.phone_statuses(&all, &mut lookups).await?;
        for (p, view) in all.iter().zip(&views) {
            statuses.insert(p.id.clone(), shapes::status_out(p, view, api.core.realm()));
        }
        all.retain(|p| {
            let (primary, secondary) = &statuses[&p.id];
            wanted
                .0
                .is_none_or(|w| primary.operational_status.eq_ignore_ascii_case(w))
                && wanted.1.is_none_or(|w| {
                    secondary
                        .as_ref()
                        .is_some_and(|s| s.operational_status.eq_ignore_ascii_case(w))
                })
        });
    }
    all.sort_by_cached_key(|p| {
        let key = match sort_by {
            "id" => String::new(),
            "dateCreated" => format!("{:020}", p.created_at_ms.max(0)),
            "dateModified" => format!("{:020}", p.updated_at_ms.max(0)),
            // As the unique-name index folds it, so both paths list in one order.
            _ => dialtone_domain::keys::fold_name(&p.name),
        };
        (key, p.id.clone())
    });
    if descending {
        all.reverse();
    }
    let listing = paging::page(all, &format!("{TELEPHONY}/phones"), &q)?;
    shown(&api, listing, expand || by_status, statuses).await
}

/// A page of phones as the API shows them, with their status when `with_status` (taken
/// from `statuses` when already read).
async fn shown(
    api: &RestApi,
    listing: Listing<pb::Phone>,
    with_status: bool,
    mut statuses: HashMap<String, shapes::StatusPair>,
) -> Result<Json<Listing<Phone>>, ApiError> {
    let names = names_of(api, &listing.entities).await?;
    if with_status {
        // The page's statuses not read yet, in one read of their bindings.
        let unread: Vec<pb::Phone> = listing
            .entities
            .iter()
            .filter(|p| !statuses.contains_key(&p.id))
            .cloned()
            .collect();
        let views = api
            .core
            .phone_statuses(&unread, &mut StatusLookups::default())
            .await?;
        for (p, view) in unread.iter().zip(&views) {
            statuses.insert(p.id.clone(), shapes::status_out(p, view, api.core.realm()));
        }
    }
    let mut entities = Vec::with_capacity(listing.entities.len());
    for p in &listing.entities {
        let mut out = shapes::phone_out(p, &names.of(p), &[]);
        // Only a page asked with its status has any.
        if let Some((primary, secondary)) = statuses.remove(&p.id) {
            out.status = Some(primary);
            out.secondary_status = secondary;
        }
        entities.push(out);
    }
    Ok(Json(Listing {
        entities,
        page_size: listing.page_size,
        page_number: listing.page_number,
        total: listing.total,
        page_count: listing.page_count,
        first_uri: listing.first_uri,
        self_uri: listing.self_uri,
        next_uri: listing.next_uri,
        previous_uri: listing.previous_uri,
        last_uri: listing.last_uri,
    }))
}

/// Creates a phone; the answer carries each new line's password, once.
#[utoipa::path(
    post,
    path = "/api/v2/telephony/providers/edges/phones",
    tag = "Phones",
    request_body = Phone,
    responses(
        (status = 200, description = "The phone, with its lines' passwords", body = Phone),
        (status = 400, description = "An invalid field (named in messageParams.field)", body = ErrorBody),
        (status = 409, description = "A phone with this name, hardware id or SIP user exists", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(api): State<RestApi>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Phone>, ApiError> {
    let who = api.caller(&headers, Permission::Add)?;
    let body: Phone = super::json(&body)?;
    check_meta_base(&api, &body).await?;
    let w = api
        .core
        .create_phone(shapes::phone_in(&body, pb::Phone::default())?)
        .await?;
    tracing::info!(token_name = %who, phone = %w.phone.id, "rest api created phone");
    let mut out = answer(&api, &w.phone, &w.lines).await?;
    out.device_credentials = w.device.map(shapes::device_out);
    Ok(Json(out))
}

/// One phone, with its status.
#[utoipa::path(
    get,
    path = "/api/v2/telephony/providers/edges/phones/{phoneId}",
    tag = "Phones",
    params(("phoneId" = String, Path, description = "The phone's id")),
    responses(
        (status = 200, description = "The phone", body = Phone),
        (status = 404, description = "No such phone", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Phone>, ApiError> {
    api.caller(&headers, Permission::View)?;
    let p = api.core.get_phone(&id).await?;
    let mut out = answer(&api, &p, &[]).await?;
    let (primary, secondary) = status_of(&api, &p, &mut StatusLookups::default()).await?;
    out.status = Some(primary);
    out.secondary_status = secondary;
    Ok(Json(out))
}

/// A phone's `status` and `secondaryStatus`.
async fn status_of(
    api: &RestApi,
    p: &pb::Phone,
    lookups: &mut StatusLookups,
) -> Result<shapes::StatusPair, ApiError> {
    let view = api.core.phone_status_with(p, lookups).await?;
    Ok(shapes::status_out(p, &view, api.core.realm()))
}

/// A status filter's value: OPERATIONAL, DEGRADED, OFFLINE or NOT_APPLICABLE.
fn status_param<'a>(q: &'a Query, k: &str) -> Result<Option<&'a str>, ApiError> {
    match q.get(k) {
        None => Ok(None),
        Some(v) => ["OPERATIONAL", "DEGRADED", "OFFLINE", "NOT_APPLICABLE"]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(v))
            .then_some(Some(v))
            .ok_or_else(|| {
                ApiError::bad_request(k, "OPERATIONAL, DEGRADED, OFFLINE or NOT_APPLICABLE")
            }),
    }
}

/// Replaces a phone with the body (what the API does not show, such as overrides and
/// assignment, stays); a stale `version` gets 409.
#[utoipa::path(
    put,
    path = "/api/v2/telephony/providers/edges/phones/{phoneId}",
    tag = "Phones",
    params(("phoneId" = String, Path, description = "The phone's id")),
    request_body = Phone,
    responses(
        (status = 200, description = "The phone as written, with new lines' passwords", body = Phone),
        (status = 400, description = "An invalid field", body = ErrorBody),
        (status = 404, description = "No such phone", body = ErrorBody),
        (status = 409, description = "The version is stale, or a unique value is taken", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn replace(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Phone>, ApiError> {
    let who = api.caller(&headers, Permission::Edit)?;
    let body: Phone = super::json(&body)?;
    if body.id.as_deref().is_some_and(|b| b != id) {
        return Err(ApiError::bad_request(
            "id",
            "differs from the phone id in the path",
        ));
    }
    if body.version.is_none_or(|v| v <= 0) {
        return Err(ApiError::bad_request(
            "version",
            "is required: the version the phone was read at (a stale one gets 409)",
        ));
    }
    check_meta_base(&api, &body).await?;
    let current = api.core.get_phone(&id).await?;
    let w = api
        .core
        .update_phone(shapes::phone_in(&body, current)?)
        .await?;
    tracing::info!(token_name = %who, phone = %id, "rest api replaced phone");
    let mut out = answer(&api, &w.phone, &w.lines).await?;
    out.device_credentials = w.device.map(shapes::device_out);
    Ok(Json(out))
}

/// Deletes a phone (at `version` when given: a stale one gets 409).
#[utoipa::path(
    delete,
    path = "/api/v2/telephony/providers/edges/phones/{phoneId}",
    tag = "Phones",
    params(
        ("phoneId" = String, Path, description = "The phone's id"),
        ("version" = Option<i64>, Query, description = "Delete only at this version"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such phone", body = ErrorBody),
        (status = 409, description = "The version is stale", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(api): State<RestApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    let who = api.caller(&headers, Permission::Delete)?;
    let q = Query::parse(&super::query_pairs(&uri)?, &["version"])?;
    let version = super::version_param(&q)?;
    api.core.delete_phone(&id, version).await?;
    tracing::info!(token_name = %who, phone = %id, "rest api deleted phone");
    Ok(StatusCode::NO_CONTENT)
}

/// The names a page of phones refers to, each read once.
struct NameBook {
    sites: HashMap<String, String>,
    bases: HashMap<String, (String, MetaBase)>,
}

impl NameBook {
    fn of(&self, p: &pb::Phone) -> Names {
        Names {
            site: self.sites.get(&p.site_id).cloned(),
            base: self.bases.get(&p.base_settings_id).cloned(),
        }
    }
}

async fn names_of(api: &RestApi, phones: &[pb::Phone]) -> Result<NameBook, ApiError> {
    let mut book = NameBook {
        sites: HashMap::new(),
        bases: HashMap::new(),
    };
    for p in phones {
        if !p.site_id.is_empty() && !book.sites.contains_key(&p.site_id) {
            match api.core.get_site(&p.site_id).await {
                Ok(s) => {
                    book.sites.insert(s.id, s.name);
                }
                Err(ConfigError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !p.base_settings_id.is_empty() && !book.bases.contains_key(&p.base_settings_id) {
            match api.core.get_base_settings(&p.base_settings_id).await {
                Ok(b) => {
                    let meta = MetaBase::try_from(b.meta_base).unwrap_or_default();
                    book.bases.insert(b.id, (b.name, meta));
                }
                Err(ConfigError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(book)
}

/// A written phone as answered, with the clear passwords of the lines just written.
async fn answer(
    api: &RestApi,
    p: &pb::Phone,
    lines: &[pb::LineCredentials],
) -> Result<Phone, ApiError> {
    let names = names_of(api, std::slice::from_ref(p)).await?;
    let passwords: Vec<(u32, String)> = lines
        .iter()
        .map(|l| (l.line_index, l.password.clone()))
        .collect();
    Ok(shapes::phone_out(p, &names.of(p), &passwords))
}

/// A request naming a meta-base must name its base settings' one.
async fn check_meta_base(api: &RestApi, body: &Phone) -> Result<(), ApiError> {
    let (Some(_), Some(base)) = (&body.phone_meta_base, &body.phone_base_settings) else {
        return Ok(());
    };
    let meta = match api.core.get_base_settings(&base.id).await {
        Ok(b) => MetaBase::try_from(b.meta_base).ok(),
        // The write names the missing reference.
        Err(ConfigError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    Ok(shapes::check_meta_base(body, meta)?)
}
