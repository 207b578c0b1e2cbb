//! The REST API's JSON, in Genesys Cloud's telephony shapes (camelCase, entity references
//! `{id, name, selfUri}`, property bags `{"name": {"value": {"instance": ...}}}`), and the
//! pure conversions between them and the config model. No IO.

use dialtone_proto::config::v1::{self as pb, MetaBase, PhoneKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ConfigError, Result};

/// Where every resource lives.
pub const TELEPHONY: &str = "/api/v2/telephony/providers/edges";

/// Where Dialtone's own resources live (where Genesys Cloud has none).
pub const DIALTONE: &str = "/api/v2/dialtone";

/// A reference to another entity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntityRef {
    /// The entity's id.
    pub id: String,
    /// Its name (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its URI (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
}

/// A property's value, as Genesys Cloud wraps it: `{"value": {"instance": ...}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TextProperty {
    /// The value.
    pub value: TextValue,
}

/// See [`TextProperty`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TextValue {
    /// The value itself.
    pub instance: String,
}

impl TextProperty {
    fn of(s: &str) -> Option<Self> {
        (!s.is_empty()).then(|| TextProperty {
            value: TextValue {
                instance: s.to_owned(),
            },
        })
    }
}

fn text(p: &Option<TextProperty>) -> &str {
    p.as_ref().map_or("", |p| p.value.instance.as_str())
}

/// A phone's properties.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PhoneProperties {
    /// The hardware id (MAC address) of a managed phone.
    #[serde(
        rename = "phone_hardwareId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub phone_hardware_id: Option<TextProperty>,
}

/// A line's properties.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LineProperties {
    /// The line's address: its SIP user (empty on create: generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station_identity_address: Option<TextProperty>,
    /// The label the phone shows for the line (its display name).
    #[serde(
        rename = "station_lineLabel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub station_line_label: Option<TextProperty>,
}

/// One line of a phone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    /// `{phoneId}.{index}` (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The line's name: its SIP user (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its address and label.
    #[serde(default)]
    pub properties: LineProperties,
    /// The line's SIP password, in clear: in the answer to the request that created the
    /// line only (Dialtone keeps only its digests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A phone (`/phones`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Phone {
    /// The phone's id (in answers; ignored on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its name, unique in the organisation (trimmed, case-insensitively).
    pub name: String,
    /// The version it was read at: a PUT or DELETE with a stale one gets 409.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// `active`, or `inactive` for a disabled phone (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When it was created, RFC 3339 (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_created: Option<String>,
    /// When it was last changed, RFC 3339 (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_modified: Option<String>,
    /// Its site (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<EntityRef>,
    /// Its base settings profile (required for every kind but remote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_base_settings: Option<EntityRef>,
    /// The meta-base (model family) of its base settings (in answers; a request naming
    /// another one than its base settings' is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_meta_base: Option<EntityRef>,
    /// Its lines (at least one).
    #[serde(default)]
    pub lines: Vec<Line>,
    /// Its hardware id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<PhoneProperties>,
    /// Its registration as seen through its primary edge, and overall (with `expand=status`
    /// in lists; always for one phone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PhoneStatus>,
    /// Its registration at its secondary edge (dual-registering phones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_status: Option<PhoneStatus>,
    /// The credential a phone with a hardware id fetches its configuration with over
    /// HTTPS: in the answer to the request that gave it one only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_credentials: Option<DeviceCredentials>,
    /// Dialtone's kind: `managed` (provisioned, needs a hardware id), `unmanaged`,
    /// `webrtc` or `remote`; default `managed` with a hardware id, else `unmanaged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Dialtone's assignment of the phone (in answers; a PUT keeps it): to a user, as a
    /// site's common-area phone with an extension, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<PhoneAssignment>,
    /// The phone's URI (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
}

/// How a phone is assigned.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneAssignment {
    /// `user` (a user's companion phone), `site` (a common-area phone) or `unassigned`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The user, for `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The extension, for `site`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
}

/// The API's form of an assignment.
pub fn assignment_out(a: Option<&pb::Assignment>) -> Option<PhoneAssignment> {
    use pb::assignment::Mode;
    let (kind, user_id, extension) = match a.and_then(|a| a.mode.as_ref())? {
        Mode::User(u) => ("user", Some(u.user_id.clone()), None),
        Mode::Site(s) => ("site", None, Some(s.extension.clone())),
        Mode::Unassigned(_) => ("unassigned", None, None),
    };
    Some(PhoneAssignment {
        kind: kind.into(),
        user_id,
        extension,
    })
}

/// A phone's provisioning credential (HTTP digest at the provisioning role).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceCredentials {
    /// The user: the phone's hardware id.
    pub username: String,
    /// The digest realm.
    pub realm: String,
    /// The password, in clear (shown once).
    pub password: String,
}

/// The API's form of a device credential.
pub fn device_out(d: pb::DeviceCredentials) -> DeviceCredentials {
    DeviceCredentials {
        username: d.user,
        realm: d.realm,
        password: d.password,
    }
}

/// A page of entities, as Genesys Cloud lists them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listing<T> {
    /// This page's entities.
    pub entities: Vec<T>,
    /// Entities per page.
    pub page_size: u32,
    /// This page (from 1).
    pub page_number: u32,
    /// Entities on every page.
    pub total: u64,
    /// Pages in all.
    pub page_count: u32,
    /// The first page.
    pub first_uri: String,
    /// This page.
    pub self_uri: String,
    /// The next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_uri: Option<String>,
    /// The page before, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_uri: Option<String>,
    /// The last page.
    pub last_uri: String,
}

/// The meta-base id the API uses for `m` (`generic_sip`, `poly_vvx`, ...).
pub fn meta_base_id(m: MetaBase) -> String {
    m.as_str_name()
        .trim_start_matches("META_BASE_")
        .to_ascii_lowercase()
}

/// The meta-base an API id names.
pub fn meta_base_of(id: &str) -> Option<MetaBase> {
    MetaBase::from_str_name(&format!("META_BASE_{}", id.to_ascii_uppercase()))
        .filter(|m| *m != MetaBase::Unspecified)
}

/// A meta-base's human name (`poly_edge_e` → `Poly Edge E`).
pub fn meta_base_name(m: MetaBase) -> String {
    meta_base_id(m)
        .split('_')
        .map(|w| match w {
            "sip" => "SIP".to_owned(),
            "vvx" => "VVX".to_owned(),
            "webrtc" => "WebRTC".to_owned(),
            "audiocodes" => "AudioCodes".to_owned(),
            w => {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A phone kind's API spelling.
pub fn kind_id(k: PhoneKind) -> String {
    k.as_str_name()
        .trim_start_matches("PHONE_KIND_")
        .to_ascii_lowercase()
}

/// The phone kind an API spelling names.
pub fn kind_of_param(s: &str) -> Option<PhoneKind> {
    PhoneKind::from_str_name(&format!("PHONE_KIND_{}", s.to_ascii_uppercase()))
        .filter(|k| *k != PhoneKind::Unspecified)
}

/// Unix milliseconds as RFC 3339 UTC (`2026-12-04T07:55:00.123Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// What a phone's references are called, for its answer.
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// The site's name.
    pub site: Option<String>,
    /// The base settings' name and meta-base.
    pub base: Option<(String, MetaBase)>,
}

/// A phone as the API shows it; `passwords` are the clear passwords of lines this request
/// created, by line index.
pub fn phone_out(p: &pb::Phone, names: &Names, passwords: &[(u32, String)]) -> Phone {
    let uri = format!("{TELEPHONY}/phones/{}", p.id);
    let lines = p
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| Line {
            id: Some(format!("{}.{i}", p.id)),
            name: Some(l.sip_user.clone()),
            properties: LineProperties {
                station_identity_address: TextProperty::of(&l.sip_user),
                station_line_label: TextProperty::of(&l.display_name),
            },
            password: passwords
                .iter()
                .find(|(n, _)| *n as usize == i)
                .map(|(_, pw)| pw.clone()),
        })
        .collect();
    Phone {
        id: Some(p.id.clone()),
        name: p.name.clone(),
        version: Some(p.version),
        state: Some(if p.disabled { "inactive" } else { "active" }.into()),
        date_created: (p.created_at_ms > 0).then(|| rfc3339(p.created_at_ms)),
        date_modified: (p.updated_at_ms > 0).then(|| rfc3339(p.updated_at_ms)),
        site: (!p.site_id.is_empty()).then(|| EntityRef {
            id: p.site_id.clone(),
            name: names.site.clone(),
            self_uri: Some(format!("{TELEPHONY}/sites/{}", p.site_id)),
        }),
        phone_base_settings: (!p.base_settings_id.is_empty()).then(|| EntityRef {
            id: p.base_settings_id.clone(),
            name: names.base.as_ref().map(|(n, _)| n.clone()),
            self_uri: Some(format!(
                "{TELEPHONY}/phonebasesettings/{}",
                p.base_settings_id
            )),
        }),
        phone_meta_base: names.base.as_ref().map(|(_, m)| meta_base_ref(*m)),
        lines,
        properties: Some(PhoneProperties {
            phone_hardware_id: TextProperty::of(&p.hardware_id),
        }),
        kind: PhoneKind::try_from(p.kind).ok().map(kind_id),
        status: None,
        secondary_status: None,
        device_credentials: None,
        assignment: assignment_out(p.assignment.as_ref()),
        self_uri: Some(uri),
    }
}

/// The reference to meta-base `m`.
pub fn meta_base_ref(m: MetaBase) -> EntityRef {
    EntityRef {
        id: meta_base_id(m),
        name: Some(meta_base_name(m)),
        self_uri: None,
    }
}

/// `body` applied to `into` (a new phone: the default; a replaced one: as read, so what
/// the API does not show, such as overrides, assignment and the lines' credentials, stays).
/// Lines are matched by SIP user; a line without one is new (its user generated).
pub fn phone_in(body: &Phone, mut into: pb::Phone) -> Result<pb::Phone> {
    into.name = body.name.clone();
    if let Some(v) = body.version {
        into.version = v;
    }
    into.site_id = body.site.as_ref().map(|s| s.id.clone()).unwrap_or_default();
    into.base_settings_id = body
        .phone_base_settings
        .as_ref()
        .map(|b| b.id.clone())
        .unwrap_or_default();
    into.hardware_id = body
        .properties
        .as_ref()
        .map(|p| text(&p.phone_hardware_id).to_owned())
        .unwrap_or_default();
    if let Some(s) = &body.state {
        into.disabled = match s.as_str() {
            "active" => false,
            "inactive" => true,
            _ => {
                return Err(ConfigError::invalid(
                    "state",
                    "must be 'active' or 'inactive'",
                ));
            }
        };
    }
    let kind = match body.kind.as_deref() {
        Some(k) => kind_of_param(k).ok_or_else(|| {
            ConfigError::invalid("kind", "must be managed, unmanaged, webrtc or remote")
        })?,
        None if into.kind != 0 => PhoneKind::try_from(into.kind).unwrap_or_default(),
        None if into.hardware_id.is_empty() => PhoneKind::Unmanaged,
        None => PhoneKind::Managed,
    };
    into.kind = kind as i32;
    let old = std::mem::take(&mut into.lines);
    for (i, l) in body.lines.iter().enumerate() {
        let user = text(&l.properties.station_identity_address);
        let mut line = old
            .iter()
            .find(|o| !user.is_empty() && o.sip_user == user)
            .cloned()
            .unwrap_or_else(|| pb::Line {
                sip_user: user.to_owned(),
                ..Default::default()
            });
        if l.password.is_some() {
            return Err(ConfigError::invalid(
                format!("lines[{i}].password"),
                "is set by Dialtone (reset it with the line's password reset)",
            ));
        }
        line.display_name = text(&l.properties.station_line_label).to_owned();
        into.lines.push(line);
    }
    Ok(into)
}

/// Whether a request's `phoneMetaBase` agrees with the meta-base of its base settings.
pub fn check_meta_base(body: &Phone, base: Option<MetaBase>) -> Result<()> {
    match (&body.phone_meta_base, base) {
        (Some(r), Some(m)) if meta_base_of(&r.id) != Some(m) => Err(ConfigError::invalid(
            "phoneMetaBase.id",
            format!(
                "'{}' is not the meta-base of the phone's base settings ('{}')",
                r.id,
                meta_base_id(m)
            ),
        )),
        _ => Ok(()),
    }
}

pub use super::sites::{PhoneBase, Site, base_out, site_in, site_out, slug};
pub use super::status::{LineStatus, PhoneStatus, StatusPair, status_out};

#[cfg(test)]
mod tests;
