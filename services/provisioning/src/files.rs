//! The file names phones really ask for, parsed from a request path. Pure.
//!
//! - Poly: `000000000000.cfg` (the master every Poly phone tries), `{mac}.cfg` (its own
//!   master), and the per-phone files the masters list: `{mac}-registration.cfg` and
//!   `{mac}-settings.cfg`.
//! - Yealink: `y0000000000xx.cfg` (the common file; `xx` names the model) and `{mac}.cfg`.
//! - AudioCodes: `{mac}.cfg`.
//! - Everything else (generic SIP, WebRTC, the desktop softphone): `{hw}.json`, where `hw`
//!   is the MAC or the FQDN the phone was created with.

/// A file by what it is; the per-phone ones carry the hardware id from the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// `000000000000.cfg`.
    PolyMaster,
    /// `y0000000000xx.cfg`, any model.
    YealinkCommon,
    /// `{mac}.cfg`: a Poly phone's own master, a Yealink or an AudioCodes phone's file.
    PhoneCfg(String),
    /// `{mac}-registration.cfg` (Poly).
    PolyRegistration(String),
    /// `{mac}-settings.cfg` (Poly).
    PolySettings(String),
    /// `{hw}.json`.
    Json(String),
}

/// The name of Poly's generic master file.
pub const POLY_MASTER: &str = "000000000000.cfg";
/// The name Dialtone gives Yealink's common file (every model's request maps to it).
pub const YEALINK_COMMON: &str = "y000000000000.cfg";

impl Requested {
    /// The hardware id the name carries, when it is a per-phone file.
    pub fn hardware_id(&self) -> Option<&str> {
        match self {
            Requested::PolyMaster | Requested::YealinkCommon => None,
            Requested::PhoneCfg(h)
            | Requested::PolyRegistration(h)
            | Requested::PolySettings(h)
            | Requested::Json(h) => Some(h),
        }
    }

    /// The name of the file in a phone's rendered set.
    pub fn canonical(&self) -> String {
        match self {
            Requested::PolyMaster => POLY_MASTER.into(),
            Requested::YealinkCommon => YEALINK_COMMON.into(),
            Requested::PhoneCfg(h) => format!("{h}.cfg"),
            Requested::PolyRegistration(h) => format!("{h}-registration.cfg"),
            Requested::PolySettings(h) => format!("{h}-settings.cfg"),
            Requested::Json(h) => format!("{h}.json"),
        }
    }
}

fn is_mac(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_fqdn(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        })
}

/// Parses the path of a request (`/name`, query ignored); None for anything else.
pub fn parse(path: &str) -> Option<Requested> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let name = path.strip_prefix('/')?;
    if name.contains('/') || name.len() > 300 {
        return None;
    }
    let name = name.to_ascii_lowercase();
    if name == POLY_MASTER {
        return Some(Requested::PolyMaster);
    }
    if let Some(model) = name
        .strip_prefix("y0000000000")
        .and_then(|r| r.strip_suffix(".cfg"))
        && model.len() == 2
        && model.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Some(Requested::YealinkCommon);
    }
    if let Some(stem) = name.strip_suffix(".json") {
        return is_fqdn(stem).then(|| Requested::Json(stem.to_owned()));
    }
    let stem = name.strip_suffix(".cfg")?;
    if let Some(mac) = stem.strip_suffix("-registration") {
        return is_mac(mac).then(|| Requested::PolyRegistration(mac.to_owned()));
    }
    if let Some(mac) = stem.strip_suffix("-settings") {
        return is_mac(mac).then(|| Requested::PolySettings(mac.to_owned()));
    }
    is_mac(stem).then(|| Requested::PhoneCfg(stem.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_phones_ask_for() {
        use Requested::*;
        let mac = || "0004f2aabb01".to_string();
        let cases: &[(&str, Option<Requested>)] = &[
            ("/000000000000.cfg", Some(PolyMaster)),
            ("/0004f2aabb01.cfg", Some(PhoneCfg(mac()))),
            ("/0004F2AABB01.cfg", Some(PhoneCfg(mac()))),
            (
                "/0004f2aabb01-registration.cfg",
                Some(PolyRegistration(mac())),
            ),
            ("/0004f2aabb01-settings.cfg?x=1", Some(PolySettings(mac()))),
            ("/y000000000044.cfg", Some(YealinkCommon)),
            ("/y000000000000.cfg", Some(YealinkCommon)),
            ("/0004f2aabb01.json", Some(Json(mac()))),
            (
                "/desk-7.corp.example.com.json",
                Some(Json("desk-7.corp.example.com".into())),
            ),
            // Not ours.
            ("/", None),
            ("/index.html", None),
            ("/0004f2aabb0.cfg", None),
            ("/0004f2aabb011.cfg", None),
            ("/0004f2aabbzz.cfg", None),
            ("/a/0004f2aabb01.cfg", None),
            ("/../0004f2aabb01.cfg", None),
            ("/y0000000000445.cfg", None),
            ("/-bad.json", None),
            ("/a..b.json", None),
            ("0004f2aabb01.cfg", None),
            ("/0004f2aabb01-other.cfg", None),
        ];
        for (path, want) in cases {
            assert_eq!(&parse(path), want, "{path}");
        }
        assert_eq!(
            PolyRegistration(mac()).canonical(),
            "0004f2aabb01-registration.cfg"
        );
        assert_eq!(YealinkCommon.canonical(), YEALINK_COMMON);
        assert_eq!(PolyMaster.hardware_id(), None);
        assert_eq!(Json(mac()).hardware_id(), Some("0004f2aabb01"));
    }
}
