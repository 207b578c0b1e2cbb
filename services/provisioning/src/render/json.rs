//! The JSON document of generic SIP phones, WebRTC clients and the desktop softphone: one
//! self-describing file (keys sorted, so the bytes are stable).

use dialtone_proto::config::v1::{DtmfMode, MetaBase};
use serde_json::{Value, json};

use super::{codec_name, transport};
use crate::document::{Document, EdgeAddress};

/// A proto enum value's name as the document writes it: `TRANSPORT_TLS` → `tls`.
fn name(proto_name: &str, prefix: &str) -> String {
    proto_name.trim_start_matches(prefix).to_ascii_lowercase()
}

fn edge(e: &Option<EdgeAddress>) -> Value {
    match e {
        None => Value::Null,
        Some(e) => json!({
            "node_id": e.node_id,
            "host": e.host,
            "port": e.port,
            "transport": name(e.transport.as_str_name(), "TRANSPORT_"),
        }),
    }
}

fn opt(s: &Option<String>) -> Value {
    match s.as_deref() {
        None | Some("") => Value::Null,
        Some(v) => Value::String(v.to_owned()),
    }
}

/// The line appearance's auto-conference: whether it is on, its PIN and prompt language
/// (null while off: a PIN is not handed out for a feature that is not used).
fn auto_conference(s: &dialtone_proto::config::v1::PhoneSettings) -> Value {
    let a = s.auto_conference.clone().unwrap_or_default();
    let on = a.enabled.unwrap_or(false);
    json!({
        "enabled": on,
        "pin": if on { opt(&a.pin) } else { Value::Null },
        "language": if on { opt(&a.language) } else { Value::Null },
    })
}

/// The document.
pub fn document(d: &Document) -> String {
    let s = &d.settings;
    let lines: Vec<Value> = d
        .lines
        .iter()
        .map(|l| {
            json!({
                "sip_user": l.sip_user,
                "display_name": l.display_name,
                "aor": format!("sip:{}@{}", l.sip_user, d.realm),
                "auth": {
                    "realm": d.realm,
                    "username": l.sip_user,
                    "password": l.password,
                },
            })
        })
        .collect();
    let softphone = match (d.meta, &s.softphone) {
        (MetaBase::DesktopSoftphone, Some(sp)) => json!({
            "use_headset": sp.use_headset.unwrap_or(false),
            "headset_name": sp.headset_name,
            "audio_in_device": sp.audio_in_device,
            "audio_out_device": sp.audio_out_device,
            "auto_answer": sp.auto_answer.unwrap_or(false),
            "reject_session_when_headset_na": sp.reject_session_when_headset_na.unwrap_or(false),
            "sip_code_when_headset_na": sp.sip_code_when_headset_na.unwrap_or(480),
        }),
        _ => Value::Null,
    };
    let start = s.rtp_port_start.unwrap_or(4000);
    // A WebRTC phone's ICE servers: the URLs here (configuration, versioned); the
    // provisioning server adds each phone's time-limited TURN credential as it serves the
    // file (`crate::ice`), which changes no version.
    // Other phones' documents have no `ice` key at all (their versions stay as they were).
    let ice = crate::document::uses_ice(d.meta).then(|| {
        json!({
            "servers": d.ice_servers.iter().map(|urls| json!({ "urls": urls })).collect::<Vec<_>>(),
            "transport_policy": crate::ice::transport_policy(d.relay),
        })
    });
    let mut doc = json!({
        "format": "dialtone-phone-config/1",
        "phone": {
            "id": d.phone_id,
            "name": d.name,
            "hardware_id": d.hardware_id,
            "meta_base": name(d.meta.as_str_name(), "META_BASE_"),
        },
        "lines": lines,
        "registration": {
            "primary": edge(&d.primary),
            "secondary": edge(&d.secondary),
            "dual_registration": d.secondary.is_some(),
            "period_s": s.registration_period_s.unwrap_or(3600),
            "transport": name(transport(d).as_str_name(), "TRANSPORT_"),
            "persistent_connection": s.persistent_connection.unwrap_or(false),
            "persistent_connection_timeout_s": s.persistent_connection_timeout_s.unwrap_or(300),
        },
        "media": {
            "codecs": s.codecs.iter().map(|c| codec_name(c)).collect::<Vec<_>>(),
            "dtmf": if s.dtmf_mode == DtmfMode::Inband as i32 { "inband" } else { "rfc4733" },
            "dtmf_payload_type": s.dtmf_payload_type.unwrap_or(101),
            "sip_dscp": s.sip_dscp.unwrap_or(24),
            "media_dscp": s.media_dscp.unwrap_or(46),
            "rtp_port_start": start,
            "rtp_port_end": start + s.rtp_port_count.unwrap_or(1000) - 1,
            "encryption": if super::sdes(d) { "sdes" } else { "none" },
        },
        "security": {
            "tls_ca_pem": opt(&s.tls_ca_pem),
            "mutual_auth": s.mutual_auth.unwrap_or(false),
        },
        "firmware": {
            "version": opt(&s.firmware_version),
            "url": opt(&s.firmware_url),
        },
        "e911": {
            "enabled": s.e911_enabled.unwrap_or(false),
            "lis_url": opt(&s.e911_lis_url),
            "ers_account_id": opt(&s.e911_ers_account_id),
        },
        "features": {
            "auto_conference": auto_conference(s),
            "mwi": s.mwi_enabled.unwrap_or(false),
            "dynamic_reload": s.dynamic_reload.unwrap_or(true),
            "standalone_features": s.standalone_features.unwrap_or(false),
        },
        "custom_properties": s.custom_properties.iter().map(|p| json!({
            "name": p.name,
            "type": name(p.data_type().as_str_name(), "PROPERTY_TYPE_"),
            "value": p.value,
        })).collect::<Vec<_>>(),
        "softphone": softphone,
    });
    if let (Some(ice), Some(o)) = (ice, doc.as_object_mut()) {
        o.insert("ice".into(), ice);
    }
    let mut out = serde_json::to_string_pretty(&doc).expect("a json value always serialises");
    out.push('\n');
    out
}
