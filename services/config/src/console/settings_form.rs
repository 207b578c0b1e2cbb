//! The base settings form: one table of the fields an admin sets in the console, each
//! with its section, label, type, range and the template's default, and the pure parse of
//! a submitted form into `PhoneSettings` (a value out of range is refused here, naming the
//! field, before the config core validates the whole). Settings the form does not show
//! (softphone audio rules, auto-conference, custom properties, digest algorithms and
//! credentials) keep the template's or the profile's values.

use std::collections::HashMap;

use dialtone_proto::config::v1::{DtmfMode, MediaEncryption, PhoneSettings, Transport};
use serde_json::{Map, Value};

use super::form::FormError;

/// What a field holds.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A checkbox.
    Bool,
    /// A whole number in `min..=max`.
    Int {
        /// Least value.
        min: u32,
        /// Greatest value.
        max: u32,
    },
    /// Free text.
    Text,
    /// A list, comma separated.
    List,
    /// One of an enum's names.
    Choice(fn() -> Vec<&'static str>),
}

/// One field: its proto name (the form's name and the error's field), section, label, kind.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The proto field name (snake_case).
    pub name: &'static str,
    /// The section it is shown under.
    pub section: &'static str,
    /// Its label.
    pub label: &'static str,
    /// What it holds.
    pub kind: Kind,
}

fn names<E>(all: &[E], name: impl Fn(&E) -> &'static str) -> Vec<&'static str> {
    all.iter().map(name).collect()
}

fn dtmf() -> Vec<&'static str> {
    names(
        &[DtmfMode::Rfc4733, DtmfMode::Inband],
        DtmfMode::as_str_name,
    )
}

fn transports() -> Vec<&'static str> {
    names(
        &[
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ],
        Transport::as_str_name,
    )
}

fn encryption() -> Vec<&'static str> {
    names(
        &[MediaEncryption::None, MediaEncryption::Sdes],
        MediaEncryption::as_str_name,
    )
}

const fn f(name: &'static str, section: &'static str, label: &'static str, kind: Kind) -> Field {
    Field {
        name,
        section,
        label,
        kind,
    }
}

const fn int(min: u32, max: u32) -> Kind {
    Kind::Int { min, max }
}

/// Every field of the form, in order (ranges as `PhoneSettings` documents them).
pub const FIELDS: [Field; 22] = [
    f(
        "dynamic_reload",
        "General",
        "Apply changes without a reboot",
        Kind::Bool,
    ),
    f(
        "standalone_features",
        "General",
        "Phone's own hold, transfer and conference",
        Kind::Bool,
    ),
    f("transport", "Line", "Transport", Kind::Choice(transports)),
    f(
        "registration_period_s",
        "Line",
        "Registration period (seconds, 60-86400)",
        int(60, 86_400),
    ),
    f(
        "secondary_registration",
        "Line",
        "Register to the secondary edge too",
        Kind::Bool,
    ),
    f(
        "max_bindings",
        "Line",
        "Simultaneous bindings per line (1-10)",
        int(1, 10),
    ),
    f(
        "persistent_connection",
        "Line",
        "Persistent connection",
        Kind::Bool,
    ),
    f(
        "persistent_connection_timeout_s",
        "Line",
        "Persistent connection idle timeout (seconds, 15-3600)",
        int(15, 3600),
    ),
    f(
        "push_credentials",
        "Line",
        "Push digest credentials while provisioning",
        Kind::Bool,
    ),
    f(
        "mwi_enabled",
        "Line",
        "Message-waiting indication",
        Kind::Bool,
    ),
    f(
        "codecs",
        "Media",
        "Codecs in priority order (comma separated, e.g. audio/opus, audio/PCMU)",
        Kind::List,
    ),
    f("dtmf_mode", "Media", "DTMF mode", Kind::Choice(dtmf)),
    f(
        "dtmf_payload_type",
        "Media",
        "DTMF payload type (96-127)",
        int(96, 127),
    ),
    f(
        "media_encryption",
        "Media",
        "Media encryption",
        Kind::Choice(encryption),
    ),
    f("sip_dscp", "Media", "SIP DSCP (0-63)", int(0, 63)),
    f("media_dscp", "Media", "RTP DSCP (0-63)", int(0, 63)),
    f(
        "rtp_port_start",
        "Media",
        "First RTP port (1024-65535)",
        int(1024, 65_535),
    ),
    f(
        "rtp_port_count",
        "Media",
        "RTP ports (2-10000, even)",
        int(2, 10_000),
    ),
    f(
        "mutual_auth",
        "Security",
        "Client certificate (mutual TLS)",
        Kind::Bool,
    ),
    f(
        "firmware_version",
        "Firmware",
        "Firmware version (empty: leave as is)",
        Kind::Text,
    ),
    f("firmware_url", "Firmware", "Firmware URL", Kind::Text),
    f(
        "e911_enabled",
        "E911",
        "E911 location reporting (HELD)",
        Kind::Bool,
    ),
];

/// Each field's current value in `s`, as the form shows it (`"on"` for a true checkbox).
pub fn values(s: &PhoneSettings) -> HashMap<&'static str, String> {
    let v = serde_json::to_value(s).unwrap_or_default();
    FIELDS
        .iter()
        .map(|fd| {
            let shown = match v.get(fd.name) {
                None | Some(Value::Null) => String::new(),
                Some(Value::Bool(b)) => {
                    if *b {
                        "on".into()
                    } else {
                        String::new()
                    }
                }
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
                Some(other) => other.to_string(),
            };
            (fd.name, shown)
        })
        .collect()
}

/// Field `fd`'s value as typed (`raw`, trimmed), or None when it is empty (a checkbox:
/// `on` or `off`), or why it is refused, naming the field.
pub fn parse(fd: &Field, raw: &str) -> Result<Option<Value>, FormError> {
    let bad = |why: String| FormError {
        status: 400,
        field: fd.name.to_owned(),
        message: format!("{}: {why}", fd.label),
    };
    if raw.is_empty() {
        return Ok(None);
    }
    Ok(Some(match fd.kind {
        Kind::Bool => match raw {
            "on" | "true" => Value::Bool(true),
            "off" | "false" => Value::Bool(false),
            _ => return Err(bad(format!("'{raw}' is neither on nor off"))),
        },
        Kind::Int { min, max } => {
            let n: u32 = raw
                .parse()
                .map_err(|_| bad(format!("'{raw}' is not a whole number")))?;
            if !(min..=max).contains(&n) {
                return Err(bad(format!("{n} is outside {min}-{max}")));
            }
            Value::from(n)
        }
        Kind::Text => Value::String(raw.to_owned()),
        Kind::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        Kind::Choice(options) => {
            if !options().contains(&raw) {
                return Err(bad(format!(
                    "'{raw}' is not one of {}",
                    options().join(", ")
                )));
            }
            Value::String(raw.to_owned())
        }
    }))
}

/// `start` with the form's fields (`form`: name → value as submitted; a checkbox absent is
/// off) set, or the first field out of range.
pub fn apply(
    start: &PhoneSettings,
    form: &HashMap<String, String>,
) -> Result<PhoneSettings, FormError> {
    let mut v = match serde_json::to_value(start) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for fd in FIELDS {
        let raw = form.get(fd.name).map(|s| s.trim()).unwrap_or("");
        let value = match fd.kind {
            Kind::Bool => Some(Value::Bool(!raw.is_empty())),
            Kind::List => Some(parse(&fd, raw)?.unwrap_or_else(|| Value::Array(Vec::new()))),
            _ => parse(&fd, raw)?,
        };
        let key = fd.name.to_owned();
        match value {
            Some(x) => {
                v.insert(key, x);
            }
            None => {
                v.remove(&key);
            }
        }
    }
    serde_json::from_value(Value::Object(v)).map_err(|e| FormError {
        status: 400,
        field: String::new(),
        message: format!("the settings do not fit: {e}"),
    })
}

/// `stored` (what a profile holds, sparse: the rest comes from its template) with only the
/// fields the form changed taken from `after`: a field shown as `before` (the profile over
/// its template) and submitted as it was stays as stored, unset included, so saving a
/// form never writes the template's defaults into the profile.
pub fn changed_only(
    stored: &PhoneSettings,
    before: &PhoneSettings,
    after: &PhoneSettings,
) -> Result<PhoneSettings, FormError> {
    let (was, now) = (values(before), values(after));
    let (Ok(Value::Object(mut out)), Ok(Value::Object(after))) =
        (serde_json::to_value(stored), serde_json::to_value(after))
    else {
        return Ok(stored.clone());
    };
    for fd in FIELDS {
        if was.get(fd.name) != now.get(fd.name) {
            match after.get(fd.name) {
                Some(v) => out.insert(fd.name.to_owned(), v.clone()),
                None => out.remove(fd.name),
            };
        }
    }
    serde_json::from_value(Value::Object(out)).map_err(|e| FormError {
        status: 400,
        field: String::new(),
        message: format!("the settings do not fit: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_domain::settings::template;
    use dialtone_proto::config::v1::MetaBase;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_field_reads_back_what_the_template_says() {
        let t = template(MetaBase::PolyVvx);
        let shown = values(&t);
        // Submitting the template's own values changes nothing the form shows.
        let submitted: HashMap<String, String> = shown
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let back = apply(&t, &submitted).expect("the template is valid");
        assert_eq!(values(&back), shown);
        assert_eq!(
            back.custom_properties, t.custom_properties,
            "hidden settings are kept"
        );
    }

    #[test]
    fn an_unchanged_field_stays_as_stored() {
        use dialtone_domain::settings::effective;
        // A sparse profile: the WebRTC template gives it WSS and dual registration.
        let stored = PhoneSettings {
            sip_dscp: Some(26),
            ..Default::default()
        };
        let before = effective(MetaBase::Webrtc, &stored, None);
        let mut submitted: HashMap<String, String> = values(&before)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        // Submitted as shown: nothing is written, unset stays unset.
        let after = apply(&before, &submitted).unwrap();
        assert_eq!(changed_only(&stored, &before, &after).unwrap(), stored);
        // One field changed: only it is written.
        submitted.insert("media_dscp".into(), "34".into());
        let after = apply(&before, &submitted).unwrap();
        let saved = changed_only(&stored, &before, &after).unwrap();
        assert_eq!(
            saved,
            PhoneSettings {
                sip_dscp: Some(26),
                media_dscp: Some(34),
                ..Default::default()
            }
        );
        assert_eq!(
            effective(MetaBase::Webrtc, &saved, None).transport(),
            before.transport()
        );
    }

    #[test]
    fn values_are_typed_and_ranged() {
        let t = template(MetaBase::GenericSip);
        let ok = apply(
            &t,
            &form(&[
                ("sip_dscp", "46"),
                ("codecs", "audio/opus, audio/PCMU"),
                ("transport", "TRANSPORT_TLS"),
                ("mwi_enabled", "on"),
            ]),
        )
        .unwrap();
        assert_eq!(ok.sip_dscp, Some(46));
        assert_eq!(ok.codecs, vec!["audio/opus", "audio/PCMU"]);
        assert_eq!(ok.transport(), Transport::Tls);
        assert_eq!(ok.mwi_enabled, Some(true));
        assert_eq!(ok.dynamic_reload, Some(false), "an absent checkbox is off");
        let cases = [
            ("sip_dscp", "64", "outside 0-63"),
            ("sip_dscp", "x", "not a whole number"),
            ("registration_period_s", "59", "outside 60-86400"),
            ("transport", "TRANSPORT_SCTP", "not one of"),
        ];
        for (field, value, why) in cases {
            let e = apply(&t, &form(&[(field, value)])).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.message.contains(why), "{field}={value}: {}", e.message);
        }
    }
}
