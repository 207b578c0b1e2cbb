//! Yealink configuration files: `key = value` lines after the `#!version:1.0.0.1` marker.
//!
//! The common file carries what the phone's profile says (media, QoS, DTMF, firmware,
//! E911, custom properties); the phone's own file its accounts, credentials and both
//! edges (concurrent registration). A value never spans lines: line breaks are dropped.

use std::fmt::Write;

use dialtone_proto::config::v1::Transport;

use super::{codec_name, rfc4733};
use crate::document::{Document, EdgeAddress};

fn kv(out: &mut String, k: &str, v: impl std::fmt::Display) {
    let v = v.to_string().replace(['\r', '\n'], "");
    let _ = writeln!(out, "{k} = {v}");
}

fn header(d: &Document, what: &str) -> String {
    let mut out = String::from("#!version:1.0.0.1\n");
    let _ = writeln!(out, "## Dialtone {what} for {}", d.hardware_id);
    out
}

/// Yealink's codec key names.
fn codec_key(c: &str) -> Option<&'static str> {
    Some(match c {
        "PCMU" => "pcmu",
        "PCMA" => "pcma",
        "G722" => "g722",
        "G729" => "g729",
        "opus" => "opus",
        "iLBC" => "ilbc",
        "AMR-WB" => "amrwb",
        "G726-32" => "g726_32",
        _ => return None,
    })
}

/// The profile-level settings.
pub fn common(d: &Document) -> String {
    let s = &d.settings;
    let mut out = header(d, "common settings");
    kv(&mut out, "network.qos.signaltos", s.sip_dscp.unwrap_or(24));
    kv(&mut out, "network.qos.audiotos", s.media_dscp.unwrap_or(46));
    let start = s.rtp_port_start.unwrap_or(4000);
    kv(&mut out, "network.port.min_rtpport", start);
    kv(
        &mut out,
        "network.port.max_rtpport",
        start + s.rtp_port_count.unwrap_or(1000) - 1,
    );
    let fw_url = s.firmware_url.as_deref().unwrap_or_default();
    let fw_version = s.firmware_version.as_deref().unwrap_or_default();
    if !fw_url.is_empty() && !fw_version.is_empty() {
        kv(
            &mut out,
            "static.firmware.url",
            format!("{}/{fw_version}.rom", fw_url.trim_end_matches('/')),
        );
    }
    kv(
        &mut out,
        "static.auto_provision.dynamic_reload",
        u8::from(s.dynamic_reload.unwrap_or(true)),
    );
    if s.mutual_auth.unwrap_or(false) {
        kv(&mut out, "static.security.mutual_tls_enable", 1);
    }
    if s.e911_enabled.unwrap_or(false) {
        kv(&mut out, "features.e911.enable", 1);
        kv(
            &mut out,
            "features.e911.held.server",
            s.e911_lis_url.as_deref().unwrap_or_default(),
        );
        kv(
            &mut out,
            "features.e911.ers.account_id",
            s.e911_ers_account_id.as_deref().unwrap_or_default(),
        );
    }
    for p in &s.custom_properties {
        kv(&mut out, &p.name, &p.value);
    }
    out
}

fn server(out: &mut String, line: usize, n: usize, e: &EdgeAddress, period: u32) {
    let p = format!("account.{line}.sip_server.{n}");
    kv(out, &format!("{p}.address"), &e.host);
    kv(out, &format!("{p}.port"), e.port);
    let t = match e.transport {
        Transport::Tcp => 1,
        Transport::Tls => 2,
        _ => 0,
    };
    kv(out, &format!("{p}.transport_type"), t);
    kv(out, &format!("{p}.expires"), period);
}

/// The phone's accounts.
pub fn phone(d: &Document) -> String {
    let s = &d.settings;
    let mut out = header(d, "accounts");
    let period = s.registration_period_s.unwrap_or(3600);
    // Digest Authentication: the phone's administrative account, whose credentials answer
    // what the phone challenges (here, never in the common file every phone reads).
    if let Some((user, password)) = super::admin_account(d) {
        kv(&mut out, "security.user_name.admin", user);
        kv(
            &mut out,
            "security.user_password",
            format!("{user}:{password}"),
        );
    }
    for (i, l) in d.lines.iter().enumerate() {
        let n = i + 1;
        let a = |k: &str| format!("account.{n}.{k}");
        kv(&mut out, &a("enable"), 1);
        kv(&mut out, &a("label"), &l.display_name);
        kv(&mut out, &a("display_name"), &l.display_name);
        kv(&mut out, &a("auth_name"), &l.sip_user);
        kv(&mut out, &a("user_name"), &l.sip_user);
        if let Some(pw) = &l.password {
            kv(&mut out, &a("password"), pw);
        }
        if let Some(p) = &d.primary {
            server(&mut out, n, 1, p, period);
        }
        if let Some(sec) = &d.secondary {
            server(&mut out, n, 2, sec, period);
            // 0: concurrent registration to both servers.
            kv(&mut out, &a("fallback.redundancy_type"), 0);
        }
        for (prio, c) in s.codecs.iter().enumerate() {
            if let Some(k) = codec_key(codec_name(c)) {
                kv(&mut out, &a(&format!("codec.{k}.enable")), 1);
                kv(&mut out, &a(&format!("codec.{k}.priority")), prio + 1);
            }
        }
        // 0: plain RTP; 2: SRTP compulsory (SDES).
        kv(
            &mut out,
            &a("srtp_encryption"),
            if super::sdes(d) { 2 } else { 0 },
        );
        kv(&mut out, &a("dtmf.type"), u8::from(rfc4733(d)));
        kv(
            &mut out,
            &a("dtmf.dtmf_payload"),
            s.dtmf_payload_type.unwrap_or(101),
        );
        kv(
            &mut out,
            &a("subscribe_mwi"),
            u8::from(s.mwi_enabled.unwrap_or(false)),
        );
        if s.mwi_enabled.unwrap_or(false) {
            kv(&mut out, &a("subscribe_mwi_to_vm"), 1);
        }
    }
    if s.persistent_connection.unwrap_or(false) {
        kv(&mut out, "sip.tcp_keepalive.enable", 1);
        kv(
            &mut out,
            "sip.tcp_keepalive.interval",
            s.persistent_connection_timeout_s.unwrap_or(300) / 2,
        );
    }
    out
}
