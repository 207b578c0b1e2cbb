//! Validation of every typed phone setting, and a flat diff of effective settings. The
//! defaults and the layering every role shares live in `dialtone_domain::settings`. Pure
//! functions, no IO.

use std::collections::BTreeMap;

use dialtone_proto::config::v1::{
    CustomProperty, DigestAlgorithm, DtmfMode, MediaEncryption, MetaBase, PhoneSettings,
    PropertyType, Transport,
};

pub(crate) use dialtone_domain::settings::{
    KNOWN_CODECS, META_BASES, effective, of_phone, template,
};

use crate::{
    error::{ConfigError, check},
    validate,
};

/// Validates every set field of `s` for a phone of `meta`; `path` prefixes field names.
pub fn validate_fields(s: &PhoneSettings, meta: MetaBase, path: &str) -> Result<(), ConfigError> {
    let f = |name: &str| format!("{path}.{name}");
    let ranges = [
        ("sip_dscp", s.sip_dscp, 0, 63),
        ("media_dscp", s.media_dscp, 0, 63),
        ("rtp_port_start", s.rtp_port_start, 1024, 65535),
        ("rtp_port_count", s.rtp_port_count, 2, 10000),
        ("dtmf_payload_type", s.dtmf_payload_type, 96, 127),
        (
            "persistent_connection_timeout_s",
            s.persistent_connection_timeout_s,
            15,
            3600,
        ),
        ("registration_period_s", s.registration_period_s, 60, 86400),
        ("max_bindings", s.max_bindings, 1, 10),
    ];
    for (name, value, lo, hi) in ranges {
        if let Some(v) = value {
            check(f(name), validate::range(v, lo, hi))?;
        }
    }
    if s.rtp_port_count.is_some_and(|c| c % 2 != 0) {
        return Err(ConfigError::invalid(
            f("rtp_port_count"),
            "must be even (RTP and RTCP pairs)",
        ));
    }
    if s.codecs.len() > 16 {
        return Err(ConfigError::invalid(f("codecs"), "at most 16 codecs"));
    }
    let mut seen = Vec::new();
    for (i, c) in s.codecs.iter().enumerate() {
        let sub = c.strip_prefix("audio/").unwrap_or("");
        let known = KNOWN_CODECS.iter().find(|k| k.eq_ignore_ascii_case(sub));
        let Some(known) = known else {
            return Err(ConfigError::invalid(
                format!("{path}.codecs[{i}]"),
                format!(
                    "'{c}' is not a known codec; use audio/ and one of {}",
                    KNOWN_CODECS.join(", ")
                ),
            ));
        };
        if seen.contains(known) {
            return Err(ConfigError::invalid(
                format!("{path}.codecs[{i}]"),
                format!("'{c}' is listed twice"),
            ));
        }
        seen.push(*known);
    }
    let mut algorithms = Vec::new();
    for (i, a) in s.digest_algorithms.iter().enumerate() {
        let field = || format!("{path}.digest_algorithms[{i}]");
        match DigestAlgorithm::try_from(*a) {
            Ok(DigestAlgorithm::Md5 | DigestAlgorithm::Sha256) if algorithms.contains(a) => {
                return Err(ConfigError::invalid(field(), "listed twice"));
            }
            Ok(DigestAlgorithm::Md5 | DigestAlgorithm::Sha256) => algorithms.push(*a),
            _ => {
                return Err(ConfigError::invalid(
                    field(),
                    "unknown digest algorithm; use DIGEST_ALGORITHM_MD5 or DIGEST_ALGORITHM_SHA_256",
                ));
            }
        }
    }
    if DtmfMode::try_from(s.dtmf_mode).is_err() {
        return Err(ConfigError::invalid(f("dtmf_mode"), "unknown DTMF mode"));
    }
    let transport = Transport::try_from(s.transport)
        .map_err(|_| ConfigError::invalid(f("transport"), "unknown transport"))?;
    if matches!(meta, MetaBase::Webrtc)
        && !matches!(
            transport,
            Transport::Unspecified | Transport::Ws | Transport::Wss
        )
    {
        return Err(ConfigError::invalid(
            f("transport"),
            "WebRTC phones register over WS or WSS only",
        ));
    }
    let encryption = MediaEncryption::try_from(s.media_encryption)
        .map_err(|_| ConfigError::invalid(f("media_encryption"), "unknown media encryption"))?;
    if matches!(meta, MetaBase::Webrtc) && encryption == MediaEncryption::Sdes {
        return Err(ConfigError::invalid(
            f("media_encryption"),
            "WebRTC phones always use DTLS-SRTP, never SDES",
        ));
    }
    if let Some(pem) = s.tls_ca_pem.as_deref().filter(|p| !p.is_empty())
        && (!pem.contains("-----BEGIN CERTIFICATE-----")
            || !pem.contains("-----END CERTIFICATE-----"))
    {
        return Err(ConfigError::invalid(
            f("tls_ca_pem"),
            "must be PEM certificate(s)",
        ));
    }
    if let Some(u) = s.firmware_url.as_deref().filter(|u| !u.is_empty()) {
        check(f("firmware_url"), validate::url(u, false))?;
    }
    if let Some(v) = s.firmware_version.as_deref() {
        check(f("firmware_version"), validate::name(v, 0, 64))?;
    }
    // Digest credentials go into challenges' answers (the user name quoted) and phone
    // files (Yealink's `user:password`).
    for (name, value, banned) in [
        (
            "digest_auth_user",
            &s.digest_auth_user,
            &['"', '\\', ':'][..],
        ),
        ("digest_auth_password", &s.digest_auth_password, &['"'][..]),
    ] {
        if let Some(v) = value.as_deref()
            && (v.is_empty()
                || v.chars().count() > 64
                || v.chars().any(|c| c.is_control() || banned.contains(&c)))
        {
            let banned: String = banned.iter().collect();
            return Err(ConfigError::invalid(
                f(name),
                format!("must be 1-64 characters, without control characters or any of {banned}"),
            ));
        }
    }
    if let Some(u) = s.e911_lis_url.as_deref().filter(|u| !u.is_empty()) {
        check(f("e911_lis_url"), validate::url(u, true))?;
    }
    if let Some(v) = s.e911_ers_account_id.as_deref() {
        check(f("e911_ers_account_id"), validate::name(v, 0, 128))?;
    }
    validate_custom_properties(&s.custom_properties, meta, &f("custom_properties"))?;
    // "Redundant Proxy Mode": an AudioCodes phone registers to one proxy at a time and
    // fails over to the other; it cannot register to two edges at once.
    if meta == MetaBase::Audiocodes && s.secondary_registration == Some(true) {
        return Err(ConfigError::invalid(
            f("secondary_registration"),
            "AudioCodes phones fail over to the secondary edge; they cannot register to both",
        ));
    }
    if let Some(a) = &s.auto_conference {
        if let Some(pin) = a.pin.as_deref().filter(|p| !p.is_empty()) {
            check(f("auto_conference.pin"), validate::digits(pin, 4, 10))?;
        }
        if let Some(l) = &a.language {
            check(f("auto_conference.language"), validate::language(l))?;
        }
    }
    if let Some(sp) = &s.softphone {
        if meta != MetaBase::DesktopSoftphone {
            return Err(ConfigError::invalid(
                f("softphone"),
                "only desktop softphone profiles have audio-device rules",
            ));
        }
        if let Some(code) = sp.sip_code_when_headset_na {
            check(
                f("softphone.sip_code_when_headset_na"),
                validate::range(code, 400, 699),
            )?;
        }
        for (name, list) in [
            ("headset_name", &sp.headset_name),
            ("audio_in_device", &sp.audio_in_device),
            ("audio_out_device", &sp.audio_out_device),
        ] {
            if list.len() > 16 {
                return Err(ConfigError::invalid(
                    f(&format!("softphone.{name}")),
                    "at most 16 entries",
                ));
            }
            for (i, pattern) in list.iter().enumerate() {
                let field = format!("{path}.softphone.{name}[{i}]");
                check(field.clone(), validate::name(pattern, 1, 200))?;
                // The softphone's own compiler, so the service accepts exactly what it runs.
                dialtone_softphone::Pattern::new(pattern).map_err(|e| {
                    ConfigError::invalid(
                        field,
                        format!("not a device name or regular expression: {e}"),
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// A profile's custom properties; AudioCodes keys are paths, so `/` is allowed there too.
fn validate_custom_properties(
    props: &[CustomProperty],
    meta: MetaBase,
    path: &str,
) -> Result<(), ConfigError> {
    let slash = meta == MetaBase::Audiocodes;
    if props.len() > 64 {
        return Err(ConfigError::invalid(path, "at most 64 custom properties"));
    }
    for (i, p) in props.iter().enumerate() {
        let field = format!("{path}[{i}]");
        let name_ok = (1..=128).contains(&p.name.len())
            && p.name.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || (slash && c == '/')
            });
        if !name_ok {
            return Err(ConfigError::invalid(
                format!("{field}.name"),
                if slash {
                    "must be 1-128 letters, digits, '.', '_', '-' or '/'"
                } else {
                    "must be 1-128 letters, digits, '.', '_' or '-'"
                },
            ));
        }
        if props[..i].iter().any(|q| q.name == p.name) {
            return Err(ConfigError::invalid(
                format!("{field}.name"),
                format!("'{}' is defined twice", p.name),
            ));
        }
        let ty = PropertyType::try_from(p.data_type).unwrap_or(PropertyType::Unspecified);
        let value_ok = match ty {
            PropertyType::Unspecified => {
                return Err(ConfigError::invalid(
                    format!("{field}.data_type"),
                    "must be STRING, INTEGER, BOOLEAN or FLOAT",
                ));
            }
            PropertyType::String => p.value.chars().count() <= 1024,
            PropertyType::Integer => p.value.parse::<i64>().is_ok(),
            PropertyType::Boolean => matches!(p.value.as_str(), "true" | "false"),
            PropertyType::Float => p.value.parse::<f64>().is_ok_and(f64::is_finite),
        };
        if !value_ok {
            return Err(ConfigError::invalid(
                format!("{field}.value"),
                format!(
                    "'{}' is not a valid {}",
                    p.value,
                    ty.as_str_name().trim_start_matches("PROPERTY_TYPE_")
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that only hold on the combined (effective) settings.
pub fn validate_effective(s: &PhoneSettings, path: &str) -> Result<(), ConfigError> {
    if s.media_encryption == MediaEncryption::Sdes as i32 && s.transport != Transport::Tls as i32 {
        return Err(ConfigError::invalid(
            format!("{path}.media_encryption"),
            "SDES carries the SRTP keys in the SDP: it needs transport TLS",
        ));
    }
    let start = s.rtp_port_start.unwrap_or(4000);
    let count = s.rtp_port_count.unwrap_or(0);
    if start + count > 65536 {
        return Err(ConfigError::invalid(
            format!("{path}.rtp_port_count"),
            format!("ports {start}..{} exceed 65535", start + count - 1),
        ));
    }
    if let Some(a) = &s.auto_conference
        && a.enabled == Some(true)
        && a.pin.as_deref().unwrap_or("").is_empty()
    {
        return Err(ConfigError::invalid(
            format!("{path}.auto_conference.pin"),
            "required when auto-conference is on",
        ));
    }
    if s.e911_enabled == Some(true) && s.e911_lis_url.as_deref().unwrap_or("").is_empty() {
        return Err(ConfigError::invalid(
            format!("{path}.e911_lis_url"),
            "required when E911 is on",
        ));
    }
    Ok(())
}

/// Flattens settings to `path → JSON value` (lists stay whole).
pub fn flatten(s: &PhoneSettings) -> BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, v: serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let p = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", serde_json::to_value(s).unwrap_or_default(), &mut out);
    out
}

/// Settings that differ between `before` and `after`: `(path, before, after)` as JSON.
pub fn diff(before: &PhoneSettings, after: &PhoneSettings) -> Vec<(String, String, String)> {
    let a = flatten(before);
    let b = flatten(after);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let null = serde_json::Value::Null;
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null));
            (x != y).then(|| (k.clone(), x.to_string(), y.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use dialtone_domain::settings::merge;
    use dialtone_proto::config::v1::{AutoConference, SoftphoneAudio};

    use super::*;

    fn invalid_field(r: Result<(), ConfigError>) -> String {
        match r {
            Err(ConfigError::InvalidArgument { field, .. }) => field,
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn every_template_is_valid_and_complete() {
        for meta in META_BASES {
            let t = template(meta);
            validate_fields(&t, meta, "t").unwrap();
            validate_effective(&t, "t").unwrap();
            assert!(
                t.rtp_port_start == Some(4000) && !t.codecs.is_empty(),
                "{meta:?}"
            );
            assert_eq!(t.softphone.is_some(), meta == MetaBase::DesktopSoftphone);
        }
        assert_eq!(
            template(MetaBase::DesktopSoftphone)
                .softphone
                .unwrap()
                .sip_code_when_headset_na,
            Some(480)
        );
    }

    #[test]
    fn out_of_range_fields_name_the_field() {
        let base = PhoneSettings::default;
        let cases: Vec<(PhoneSettings, MetaBase, &str)> = vec![
            (
                PhoneSettings {
                    sip_dscp: Some(64),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.sip_dscp",
            ),
            (
                PhoneSettings {
                    media_dscp: Some(99),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.media_dscp",
            ),
            (
                PhoneSettings {
                    rtp_port_start: Some(1023),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.rtp_port_start",
            ),
            (
                PhoneSettings {
                    rtp_port_start: Some(65536),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.rtp_port_start",
            ),
            (
                PhoneSettings {
                    rtp_port_count: Some(101),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.rtp_port_count",
            ),
            (
                PhoneSettings {
                    dtmf_payload_type: Some(95),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.dtmf_payload_type",
            ),
            (
                PhoneSettings {
                    dtmf_payload_type: Some(128),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.dtmf_payload_type",
            ),
            (
                PhoneSettings {
                    dtmf_mode: 9,
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.dtmf_mode",
            ),
            (
                PhoneSettings {
                    persistent_connection_timeout_s: Some(14),
                    ..base()
                },
                MetaBase::Webrtc,
                "s.persistent_connection_timeout_s",
            ),
            (
                PhoneSettings {
                    persistent_connection_timeout_s: Some(3601),
                    ..base()
                },
                MetaBase::Webrtc,
                "s.persistent_connection_timeout_s",
            ),
            (
                PhoneSettings {
                    registration_period_s: Some(59),
                    ..base()
                },
                MetaBase::Yealink,
                "s.registration_period_s",
            ),
            (
                PhoneSettings {
                    max_bindings: Some(0),
                    ..base()
                },
                MetaBase::Yealink,
                "s.max_bindings",
            ),
            (
                PhoneSettings {
                    codecs: vec!["audio/speex".into()],
                    ..base()
                },
                MetaBase::Yealink,
                "s.codecs[0]",
            ),
            (
                PhoneSettings {
                    codecs: vec!["PCMU".into()],
                    ..base()
                },
                MetaBase::Yealink,
                "s.codecs[0]",
            ),
            (
                PhoneSettings {
                    codecs: vec!["audio/PCMU".into(), "audio/pcmu".into()],
                    ..base()
                },
                MetaBase::Yealink,
                "s.codecs[1]",
            ),
            (
                PhoneSettings {
                    digest_algorithms: vec![
                        DigestAlgorithm::Md5 as i32,
                        DigestAlgorithm::Md5 as i32,
                    ],
                    ..base()
                },
                MetaBase::Yealink,
                "s.digest_algorithms[1]",
            ),
            (
                PhoneSettings {
                    digest_algorithms: vec![DigestAlgorithm::Unspecified as i32],
                    ..base()
                },
                MetaBase::Yealink,
                "s.digest_algorithms[0]",
            ),
            (
                PhoneSettings {
                    digest_algorithms: vec![DigestAlgorithm::Sha256 as i32, 7],
                    ..base()
                },
                MetaBase::GenericSip,
                "s.digest_algorithms[1]",
            ),
            (
                PhoneSettings {
                    digest_auth_user: Some(String::new()),
                    ..base()
                },
                MetaBase::Yealink,
                "s.digest_auth_user",
            ),
            (
                PhoneSettings {
                    digest_auth_user: Some("ad:min".into()),
                    ..base()
                },
                MetaBase::Yealink,
                "s.digest_auth_user",
            ),
            (
                PhoneSettings {
                    digest_auth_password: Some("12\"34".into()),
                    ..base()
                },
                MetaBase::Yealink,
                "s.digest_auth_password",
            ),
            (
                PhoneSettings {
                    digest_auth_password: Some("x".repeat(65)),
                    ..base()
                },
                MetaBase::Yealink,
                "s.digest_auth_password",
            ),
            (
                PhoneSettings {
                    transport: Transport::Udp as i32,
                    ..base()
                },
                MetaBase::Webrtc,
                "s.transport",
            ),
            (
                PhoneSettings {
                    transport: 77,
                    ..base()
                },
                MetaBase::Yealink,
                "s.transport",
            ),
            (
                PhoneSettings {
                    media_encryption: MediaEncryption::Sdes as i32,
                    ..base()
                },
                MetaBase::Webrtc,
                "s.media_encryption",
            ),
            (
                PhoneSettings {
                    media_encryption: 9,
                    ..base()
                },
                MetaBase::Yealink,
                "s.media_encryption",
            ),
            (
                PhoneSettings {
                    tls_ca_pem: Some("not pem".into()),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.tls_ca_pem",
            ),
            (
                PhoneSettings {
                    firmware_url: Some("ftp://x/y".into()),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.firmware_url",
            ),
            (
                PhoneSettings {
                    e911_lis_url: Some("http://lis".into()),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.e911_lis_url",
            ),
            (
                PhoneSettings {
                    auto_conference: Some(AutoConference {
                        pin: Some("12a4".into()),
                        ..Default::default()
                    }),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.auto_conference.pin",
            ),
            (
                PhoneSettings {
                    auto_conference: Some(AutoConference {
                        pin: Some("123".into()),
                        ..Default::default()
                    }),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.auto_conference.pin",
            ),
            (
                PhoneSettings {
                    softphone: Some(SoftphoneAudio::default()),
                    ..base()
                },
                MetaBase::PolyVvx,
                "s.softphone",
            ),
            (
                PhoneSettings {
                    softphone: Some(SoftphoneAudio {
                        sip_code_when_headset_na: Some(399),
                        ..Default::default()
                    }),
                    ..base()
                },
                MetaBase::DesktopSoftphone,
                "s.softphone.sip_code_when_headset_na",
            ),
            (
                PhoneSettings {
                    softphone: Some(SoftphoneAudio {
                        sip_code_when_headset_na: Some(700),
                        ..Default::default()
                    }),
                    ..base()
                },
                MetaBase::DesktopSoftphone,
                "s.softphone.sip_code_when_headset_na",
            ),
            (
                PhoneSettings {
                    softphone: Some(SoftphoneAudio {
                        headset_name: vec!["Jabra (".into()],
                        ..Default::default()
                    }),
                    ..base()
                },
                MetaBase::DesktopSoftphone,
                "s.softphone.headset_name[0]",
            ),
        ];
        for (s, meta, want) in cases {
            assert_eq!(invalid_field(validate_fields(&s, meta, "s")), want, "{s:?}");
        }
    }

    #[test]
    fn custom_properties_are_typed() {
        let prop = |name: &str, ty: PropertyType, value: &str| CustomProperty {
            name: name.into(),
            data_type: ty as i32,
            value: value.into(),
        };
        let ok = [
            prop("feature.x", PropertyType::String, "anything"),
            prop("n", PropertyType::Integer, "-42"),
            prop("b", PropertyType::Boolean, "true"),
            prop("f", PropertyType::Float, "2.5"),
        ];
        for p in &ok {
            let s = PhoneSettings {
                custom_properties: vec![p.clone()],
                ..Default::default()
            };
            validate_fields(&s, MetaBase::PolyVvx, "s").unwrap();
        }
        let bad = [
            (
                prop("n", PropertyType::Integer, "4.2"),
                "s.custom_properties[0].value",
            ),
            (
                prop("b", PropertyType::Boolean, "yes"),
                "s.custom_properties[0].value",
            ),
            (
                prop("f", PropertyType::Float, "NaN"),
                "s.custom_properties[0].value",
            ),
            (
                prop("f", PropertyType::Unspecified, "1"),
                "s.custom_properties[0].data_type",
            ),
            (
                prop("bad name", PropertyType::String, "1"),
                "s.custom_properties[0].name",
            ),
        ];
        for (p, want) in bad {
            let s = PhoneSettings {
                custom_properties: vec![p],
                ..Default::default()
            };
            assert_eq!(
                invalid_field(validate_fields(&s, MetaBase::PolyVvx, "s")),
                want
            );
        }
        // AudioCodes keys are paths: a slash is theirs only.
        let path = PhoneSettings {
            custom_properties: vec![prop("voip/media/x", PropertyType::String, "1")],
            ..Default::default()
        };
        validate_fields(&path, MetaBase::Audiocodes, "s").unwrap();
        assert_eq!(
            invalid_field(validate_fields(&path, MetaBase::Yealink, "s")),
            "s.custom_properties[0].name"
        );
        let dup = PhoneSettings {
            custom_properties: vec![ok[0].clone(), ok[0].clone()],
            ..Default::default()
        };
        assert_eq!(
            invalid_field(validate_fields(&dup, MetaBase::PolyVvx, "s")),
            "s.custom_properties[1].name"
        );
    }

    #[test]
    fn effective_checks_combine_fields() {
        let t = template(MetaBase::PolyVvx);
        let over = PhoneSettings {
            rtp_port_start: Some(65000),
            ..Default::default()
        };
        assert_eq!(
            invalid_field(validate_effective(&merge(&t, &over), "s")),
            "s.rtp_port_count"
        );
        let over = PhoneSettings {
            auto_conference: Some(AutoConference {
                enabled: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            invalid_field(validate_effective(&merge(&t, &over), "s")),
            "s.auto_conference.pin"
        );
        let over = PhoneSettings {
            e911_enabled: Some(true),
            ..Default::default()
        };
        assert_eq!(
            invalid_field(validate_effective(&merge(&t, &over), "s")),
            "s.e911_lis_url"
        );
        // SDES over UDP would send the SRTP keys in clear: refused; over TLS it stands.
        let over = PhoneSettings {
            media_encryption: MediaEncryption::Sdes as i32,
            ..Default::default()
        };
        assert_eq!(
            invalid_field(validate_effective(&merge(&t, &over), "s")),
            "s.media_encryption"
        );
        let over = PhoneSettings {
            media_encryption: MediaEncryption::Sdes as i32,
            transport: Transport::Tls as i32,
            ..Default::default()
        };
        validate_effective(&merge(&t, &over), "s").unwrap();
    }

    /// The layering itself is tested with it, in `dialtone_domain::settings`.
    #[test]
    fn diff_lists_what_a_profile_changed() {
        let profile = PhoneSettings {
            codecs: vec!["audio/PCMU".into()],
            mwi_enabled: Some(false),
            ..Default::default()
        };
        let overrides = PhoneSettings {
            mwi_enabled: Some(true),
            sip_dscp: Some(26),
            ..Default::default()
        };
        let eff = effective(MetaBase::Yealink, &profile, Some(&overrides));
        let before = effective(
            MetaBase::Yealink,
            &PhoneSettings::default(),
            Some(&overrides),
        );
        let changes = diff(&before, &eff);
        assert_eq!(
            changes,
            vec![(
                "codecs".to_string(),
                r#"["audio/G722","audio/PCMU","audio/PCMA","audio/G729"]"#.to_string(),
                r#"["audio/PCMU"]"#.to_string()
            )]
        );
        assert!(diff(&eff, &eff).is_empty());
    }
}
