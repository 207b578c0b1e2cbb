//! Sites and base settings profiles in the API's shapes, and their pure conversions.

use dialtone_proto::config::v1::{self as pb, MetaBase};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::shapes::{EntityRef, TELEPHONY, meta_base_ref};

/// A site (`/sites`), as phones refer to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    /// The site's id (on create: optional, the name made a slug when absent; 1-63
    /// lowercase letters, digits and '-').
    #[serde(default)]
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its version: required to replace it (a stale one gets 409).
    #[serde(default)]
    pub version: i64,
    /// `active` (in answers).
    #[serde(default)]
    pub state: String,
    /// The edge group its phones register to (Dialtone's; Genesys Cloud names edges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_group: Option<EntityRef>,
    /// Its media regions, in order of preference.
    #[serde(default)]
    pub media_regions: Vec<String>,
    /// Whether the media regions are ordered by measured latency instead.
    #[serde(default)]
    pub media_regions_use_latency_based: bool,
    /// The caller id of its outbound calls when a line has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
    /// Its URI (in answers).
    #[serde(default)]
    pub self_uri: String,
}

/// A base settings profile (`/phonebasesettings`), as phones refer to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneBase {
    /// The profile's id (on create: made from the name when empty).
    #[serde(default)]
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its version (a PUT must give the one it read).
    #[serde(default)]
    pub version: i64,
    /// `active`.
    #[serde(default)]
    pub state: String,
    /// Its meta-base (model family).
    pub phone_meta_base: EntityRef,
    /// Its settings, as properties (`phone_sip_dscp`, `dialtone_registration_period_s`,
    /// ...; each `{"value": {"instance": ..., "default": ...}}`, the default being the
    /// meta-base template's). A request sets those it gives.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, super::base_properties::Property>,
    /// Its URI (in answers).
    #[serde(default)]
    pub self_uri: String,
}

/// A site as the API shows it.
pub fn site_out(s: &pb::Site) -> Site {
    Site {
        id: s.id.clone(),
        name: s.name.clone(),
        version: s.version,
        state: "active".into(),
        edge_group: (!s.edge_group_id.is_empty()).then(|| EntityRef {
            id: s.edge_group_id.clone(),
            name: None,
            self_uri: None,
        }),
        media_regions: s.media_regions.clone(),
        media_regions_use_latency_based: s.media_region_order
            == pb::MediaRegionOrder::LowestLatency as i32,
        caller_id: (!s.default_outbound_caller_id.is_empty())
            .then(|| s.default_outbound_caller_id.clone()),
        self_uri: format!("{TELEPHONY}/sites/{}", s.id),
    }
}

/// `body` applied to `into` (a new site: the default; a replaced one: as read, so what the
/// API does not show, such as number plans and routes, stays).
pub fn site_in(body: &Site, mut into: pb::Site) -> pb::Site {
    if into.id.is_empty() {
        into.id = if body.id.is_empty() {
            slug(&body.name)
        } else {
            body.id.clone()
        };
    }
    into.name = body.name.clone();
    if body.version > 0 {
        into.version = body.version;
    }
    into.edge_group_id = body
        .edge_group
        .as_ref()
        .map(|g| g.id.clone())
        .unwrap_or_default();
    into.media_regions = body.media_regions.clone();
    into.media_region_order = if body.media_regions_use_latency_based {
        pb::MediaRegionOrder::LowestLatency as i32
    } else {
        pb::MediaRegionOrder::Preference as i32
    };
    into.default_outbound_caller_id = body.caller_id.clone().unwrap_or_default();
    into
}

/// A name as an id: lowercase letters and digits, other runs made one '-', at most 63
/// characters, starting with a letter (`s-` put first otherwise).
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out = out.trim_end_matches('-').to_owned();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert_str(0, "s-");
    }
    out.truncate(63);
    out.trim_end_matches('-').to_owned()
}

/// A base settings profile as the API shows it.
pub fn base_out(b: &pb::BaseSettings) -> PhoneBase {
    let meta = MetaBase::try_from(b.meta_base).unwrap_or_default();
    PhoneBase {
        id: b.id.clone(),
        name: b.name.clone(),
        version: b.version,
        state: "active".into(),
        phone_meta_base: meta_base_ref(meta),
        properties: super::base_properties::properties_out(
            &b.settings.clone().unwrap_or_default(),
            &dialtone_domain::settings::template(meta),
        ),
        self_uri: format!("{TELEPHONY}/phonebasesettings/{}", b.id),
    }
}
