//! Poly UC Software (VVX, Edge E) configuration files: XML, parameters as attributes.
//!
//! The master file lists the per-phone files in `CONFIG_FILES` (Poly substitutes
//! `[PHONE_MAC_ADDRESS]` in the generic master); the registration file carries the lines
//! and both edges (concurrent registration), the settings file everything else.

use std::fmt::Write;

use dialtone_proto::config::v1::Transport;

use super::{codec_name, rfc4733, transport};
use crate::document::{Document, EdgeAddress};

/// Escapes an XML attribute value.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Writes `<tag a="v" ... />` with one attribute per line.
fn element(tag: &str, attrs: &[(String, String)]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n");
    let _ = write!(out, "<{tag}");
    for (k, v) in attrs {
        let _ = write!(out, "\n  {k}=\"{}\"", esc(v));
    }
    out.push_str("\n/>\n");
    out
}

/// The generic master (`own`: false; every Poly phone's fallback, naming no phone: Poly
/// substitutes `[PHONE_MAC_ADDRESS]`) or the phone's own master (`own`: true).
pub fn master(d: &Document, own: bool) -> String {
    let mac = if own {
        d.hardware_id.clone()
    } else {
        "[PHONE_MAC_ADDRESS]".to_owned()
    };
    let firmware = match (
        d.settings.firmware_url.as_deref().unwrap_or_default(),
        d.settings.firmware_version.as_deref().unwrap_or_default(),
    ) {
        ("", _) | (_, "") => String::new(),
        (url, version) => format!(
            "{}/{version}/[PHONE_PART_NUMBER].sip.ld",
            url.trim_end_matches('/')
        ),
    };
    element(
        "APPLICATION",
        &[
            ("APP_FILE_PATH".into(), firmware),
            (
                "CONFIG_FILES".into(),
                format!("{mac}-registration.cfg, {mac}-settings.cfg"),
            ),
            ("MISC_FILES".into(), String::new()),
            ("LOG_FILE_DIRECTORY".into(), String::new()),
            ("OVERRIDES_DIRECTORY".into(), String::new()),
            ("CONTACTS_DIRECTORY".into(), String::new()),
        ],
    )
}

fn poly_transport(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "TCPOnly",
        Transport::Tls => "TLS",
        _ => "UDPOnly",
    }
}

fn server(attrs: &mut Vec<(String, String)>, line: usize, n: usize, e: &EdgeAddress, d: &Document) {
    let p = format!("reg.{line}.server.{n}");
    let period = d.settings.registration_period_s.unwrap_or(3600);
    attrs.push((format!("{p}.address"), e.host.clone()));
    attrs.push((format!("{p}.port"), e.port.to_string()));
    attrs.push((format!("{p}.transport"), poly_transport(e.transport).into()));
    attrs.push((format!("{p}.expires"), period.to_string()));
    attrs.push((format!("{p}.register"), "1".into()));
}

/// Lines, credentials and both edges.
pub fn registration(d: &Document) -> String {
    let mut a: Vec<(String, String)> = Vec::new();
    for (i, l) in d.lines.iter().enumerate() {
        let n = i + 1;
        a.push((
            format!("reg.{n}.address"),
            format!("{}@{}", l.sip_user, d.realm),
        ));
        a.push((format!("reg.{n}.displayName"), l.display_name.clone()));
        a.push((format!("reg.{n}.label"), l.display_name.clone()));
        a.push((format!("reg.{n}.auth.userId"), l.sip_user.clone()));
        if let Some(pw) = &l.password {
            a.push((format!("reg.{n}.auth.password"), pw.clone()));
        }
        if let Some(p) = &d.primary {
            server(&mut a, n, 1, p, d);
        }
        if let Some(s) = &d.secondary {
            server(&mut a, n, 2, s, d);
            // Register to both at once (dual registration), not only on failure.
            a.push((
                format!("reg.{n}.server.1.failOver.concurrentRegistration"),
                "1".into(),
            ));
        }
        if d.settings.mwi_enabled.unwrap_or(false) {
            a.push((format!("msg.mwi.{n}.subscribe"), l.sip_user.clone()));
        }
    }
    if d.settings.persistent_connection.unwrap_or(false) {
        a.push(("voIpProt.SIP.persistentConnection".into(), "1".into()));
        a.push((
            "voIpProt.SIP.persistentConnection.timeout".into(),
            d.settings
                .persistent_connection_timeout_s
                .unwrap_or(300)
                .to_string(),
        ));
    }
    if transport(d) == Transport::Tls {
        a.push((
            "sec.TLS.SIP.strictCertCommonNameValidation".into(),
            "1".into(),
        ));
    }
    element("polycomConfig", &a)
}

/// Media, QoS, DTMF, security, E911 and custom properties.
pub fn settings(d: &Document) -> String {
    let s = &d.settings;
    let mut a: Vec<(String, String)> = Vec::new();
    for (i, c) in s.codecs.iter().enumerate() {
        let name = match codec_name(c) {
            "PCMU" => "G711_Mu",
            "PCMA" => "G711_A",
            "G729" => "G729_AB",
            "opus" => "OPUS",
            "AMR-WB" => "AMRWB",
            "G726-32" => "G726",
            other => other,
        };
        a.push((format!("voice.codecPref.{name}"), (i + 1).to_string()));
    }
    // SRTP keyed by SDES: offered and required (never plain RTP), or off.
    let srtp = if super::sdes(d) { "1" } else { "0" };
    for key in ["sec.srtp.enable", "sec.srtp.offer", "sec.srtp.require"] {
        a.push((key.into(), srtp.into()));
    }
    a.push((
        "qos.ip.callControl.dscp".into(),
        s.sip_dscp.unwrap_or(24).to_string(),
    ));
    a.push((
        "qos.ip.rtp.dscp".into(),
        s.media_dscp.unwrap_or(46).to_string(),
    ));
    let start = s.rtp_port_start.unwrap_or(4000);
    let count = s.rtp_port_count.unwrap_or(1000);
    a.push((
        "tcpIpApp.port.rtp.mediaPortRangeStart".into(),
        start.to_string(),
    ));
    a.push((
        "tcpIpApp.port.rtp.mediaPortRangeEnd".into(),
        (start + count - 1).to_string(),
    ));
    if rfc4733(d) {
        a.push(("tone.dtmf.viaRtp".into(), "1".into()));
        a.push((
            "tone.dtmf.rfc2833Payload".into(),
            s.dtmf_payload_type.unwrap_or(101).to_string(),
        ));
    } else {
        a.push(("tone.dtmf.viaRtp".into(), "0".into()));
    }
    let ca = s.tls_ca_pem.as_deref().unwrap_or_default();
    if !ca.is_empty() {
        a.push(("device.sec.TLS.customCaCert1.set".into(), "1".into()));
        a.push(("device.sec.TLS.customCaCert1".into(), ca.to_owned()));
    }
    if s.mutual_auth.unwrap_or(false) {
        a.push(("sec.TLS.profile.1.deviceCert".into(), "Builtin".into()));
    }
    // Digest Authentication: the phone's administrative password (Poly's admin user name
    // is fixed).
    if let Some((_, password)) = super::admin_account(d) {
        a.push(("device.auth.localAdminPassword.set".into(), "1".into()));
        a.push(("device.auth.localAdminPassword".into(), password.to_owned()));
    }
    a.push((
        "feature.enhancedFeatureKeys.enabled".into(),
        b(s.standalone_features.unwrap_or(false)),
    ));
    a.push((
        "voIpProt.SIP.specialEvent.checkSync.alwaysReboot".into(),
        "0".into(),
    ));
    a.push((
        "device.prov.dynamicReload".into(),
        b(s.dynamic_reload.unwrap_or(true)),
    ));
    if s.e911_enabled.unwrap_or(false) {
        a.push(("feature.E911.enabled".into(), "1".into()));
        a.push((
            "feature.E911.HELD.server".into(),
            s.e911_lis_url.clone().unwrap_or_default(),
        ));
        a.push((
            "feature.E911.ERS.accountId".into(),
            s.e911_ers_account_id.clone().unwrap_or_default(),
        ));
    }
    for p in &s.custom_properties {
        a.push((p.name.clone(), p.value.clone()));
    }
    element("polycomConfig", &a)
}

fn b(v: bool) -> String {
    if v { "1" } else { "0" }.into()
}
