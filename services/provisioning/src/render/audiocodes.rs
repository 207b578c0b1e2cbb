//! AudioCodes 400HD-series configuration file (`{mac}.cfg`): `key=value` lines of the
//! phone's own tree (`voip/line/N/...`, `voip/signalling/sip/...`).
//!
//! The keys are those of the AudioCodes 400HD Administrator's Manual (SIP settings:
//! `proxy_timeout`, `use_proxy_ip_port_for_registrar`, `redundant_proxy/symmetric_mode`)
//! and of configuration files exported from these phones (lines, codecs, MWI, check-sync,
//! provisioning, the admin account). These phones register to one proxy at a time: the
//! second edge is their redundant proxy, which they fail over to and come back from
//! (asymmetric mode), never a second registration; the meta-base's profiles therefore do
//! not register twice (see `dialtone_domain::settings`). What the file has no key for
//! (DSCP, RTP ports, DTMF, SRTP keying, TLS trust, E911) is not rendered; a profile's
//! custom properties pass any such key through as is.

use std::fmt::Write;

use dialtone_proto::config::v1::Transport;

use super::codec_name;
use crate::document::{Document, EdgeAddress};

fn kv(out: &mut String, k: &str, v: impl std::fmt::Display) {
    // A value never spans lines.
    let v = v.to_string().replace(['\r', '\n'], "");
    let _ = writeln!(out, "{k}={v}");
}

/// The codec names these phones know, for the codecs Dialtone knows; others are left out.
fn codec_key(c: &str) -> Option<&'static str> {
    Some(match c {
        "PCMU" => "PCMU",
        "PCMA" => "PCMA",
        "G722" => "G722",
        "G729" => "G729",
        _ => return None,
    })
}

fn transport(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
        _ => "UDP",
    }
}

/// The proxy the phone registers to, and the one it fails over to.
fn proxies(out: &mut String, primary: &EdgeAddress, backup: Option<&EdgeAddress>, period: u32) {
    kv(out, "voip/signalling/sip/use_proxy", 1);
    kv(out, "voip/signalling/sip/proxy_address", &primary.host);
    kv(out, "voip/signalling/sip/proxy_port", primary.port);
    kv(
        out,
        "voip/signalling/sip/use_proxy_ip_port_for_registrar",
        1,
    );
    kv(
        out,
        "voip/signalling/sip/transport_protocol",
        transport(primary.transport),
    );
    // The registration's lifetime, in seconds.
    kv(out, "voip/signalling/sip/proxy_timeout", period);
    match backup {
        Some(b) => {
            kv(out, "voip/signalling/sip/redundant_proxy/enabled", 1);
            kv(out, "voip/signalling/sip/redundant_proxy/address", &b.host);
            kv(out, "voip/signalling/sip/redundant_proxy/port", b.port);
            // 0: asymmetric, back to the primary as soon as it answers again.
            kv(out, "voip/signalling/sip/redundant_proxy/symmetric_mode", 0);
        }
        None => kv(out, "voip/signalling/sip/redundant_proxy/enabled", 0),
    }
}

/// The phone's file.
pub fn phone(d: &Document) -> String {
    let s = &d.settings;
    let mut out = format!("# Dialtone configuration for {}\n", d.hardware_id);
    for (n, l) in d.lines.iter().enumerate() {
        let a = |k: &str| format!("voip/line/{n}/{k}");
        kv(&mut out, &a("enabled"), 1);
        kv(&mut out, &a("account_type"), "SIP");
        kv(&mut out, &a("line_mode"), "PRIVATE");
        kv(&mut out, &a("id"), &l.sip_user);
        kv(&mut out, &a("description"), &l.display_name);
        kv(&mut out, &a("auth_name"), &l.sip_user);
        if let Some(pw) = &l.password {
            kv(&mut out, &a("auth_password"), pw);
        }
    }
    if let Some(p) = &d.primary {
        let period = s.registration_period_s.unwrap_or(3600);
        proxies(
            &mut out,
            p,
            d.secondary.as_ref().or(d.backup.as_ref()),
            period,
        );
    }
    let mut n = 0;
    for c in &s.codecs {
        if let Some(name) = codec_key(codec_name(c)) {
            let a = |k: &str| format!("voip/codec/codec_info/{n}/{k}");
            kv(&mut out, &a("name"), name);
            kv(&mut out, &a("enabled"), 1);
            kv(&mut out, &a("ptime"), 20);
            n += 1;
        }
    }
    let mwi = s.mwi_enabled.unwrap_or(false);
    kv(
        &mut out,
        "voip/services/msg_waiting_ind/enabled",
        u8::from(mwi),
    );
    kv(
        &mut out,
        "voip/services/msg_waiting_ind/subscribe",
        u8::from(mwi),
    );
    if let (true, Some(l)) = (mwi, d.lines.first()) {
        kv(
            &mut out,
            "voip/services/msg_waiting_ind/subscribe_address",
            &l.sip_user,
        );
    }
    // A check-sync NOTIFY: re-read the configuration in place (dynamic reload) or reboot.
    kv(
        &mut out,
        "voip/services/notify/check_sync/force_reboot_enabled",
        u8::from(!s.dynamic_reload.unwrap_or(true)),
    );
    let fw_url = s.firmware_url.as_deref().unwrap_or_default();
    let fw_version = s.firmware_version.as_deref().unwrap_or_default();
    if !fw_url.is_empty() && !fw_version.is_empty() {
        kv(
            &mut out,
            "provisioning/firmware/url",
            format!("{}/{fw_version}.img", fw_url.trim_end_matches('/')),
        );
    }
    // Digest Authentication: the phone's administrative account.
    if let Some((user, password)) = super::admin_account(d) {
        kv(&mut out, "system/user_name", user);
        kv(&mut out, "system/password", password);
    }
    for p in &s.custom_properties {
        kv(&mut out, &p.name, &p.value);
    }
    out
}
