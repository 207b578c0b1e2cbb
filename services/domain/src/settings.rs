//! Phone settings as every role computes them: the defaults of each meta-base and the
//! layering template → profile → phone overrides. Pure functions, no IO; the config role
//! validates settings (`dialtone_config::settings`), everyone else only reads them.

use dialtone_proto::config::v1::{
    AutoConference, BaseSettings, DigestAlgorithm, DtmfMode, MediaEncryption, MetaBase,
    PhoneSettings, SoftphoneAudio, Transport,
};

/// Codecs Dialtone knows, as MIME subtypes (RFC 4855 names).
pub const KNOWN_CODECS: [&str; 8] = [
    "opus", "G722", "PCMU", "PCMA", "G729", "iLBC", "AMR-WB", "G726-32",
];

/// The seed's default Digest Authentication password ("Password: 1234"): answers a
/// phone's challenges until a profile sets its own, and is never pushed to phones.
pub const DEFAULT_DIGEST_AUTH_PASSWORD: &str = "1234";

/// Every meta-base a profile may have.
pub const META_BASES: [MetaBase; 7] = [
    MetaBase::GenericSip,
    MetaBase::Webrtc,
    MetaBase::PolyVvx,
    MetaBase::PolyEdgeE,
    MetaBase::Yealink,
    MetaBase::Audiocodes,
    MetaBase::DesktopSoftphone,
];

fn codecs(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("audio/{n}")).collect()
}

/// The defaults of a meta-base, every field set.
pub fn template(meta: MetaBase) -> PhoneSettings {
    use MetaBase as M;
    let mut s = PhoneSettings {
        dynamic_reload: Some(true),
        // "Leave Standalone Features set to Off unless you are creating a conference room
        // phone."
        standalone_features: Some(false),
        sip_dscp: Some(24),
        media_dscp: Some(46),
        rtp_port_start: Some(4000),
        rtp_port_count: Some(1000),
        codecs: codecs(&["G722", "PCMU", "PCMA"]),
        dtmf_mode: DtmfMode::Rfc4733 as i32,
        dtmf_payload_type: Some(101),
        tls_ca_pem: Some(String::new()),
        mutual_auth: Some(false),
        firmware_version: Some(String::new()),
        firmware_url: Some(String::new()),
        e911_enabled: Some(false),
        e911_lis_url: Some(String::new()),
        e911_ers_account_id: Some(String::new()),
        secondary_registration: Some(true),
        mwi_enabled: Some(true),
        custom_properties: Vec::new(),
        persistent_connection: Some(false),
        persistent_connection_timeout_s: Some(300),
        push_credentials: Some(true),
        auto_conference: Some(AutoConference {
            enabled: Some(false),
            pin: Some(String::new()),
            language: Some("en-US".into()),
        }),
        registration_period_s: Some(3600),
        max_bindings: Some(3),
        transport: Transport::Udp as i32,
        softphone: None,
        media_encryption: MediaEncryption::None as i32,
        // MD5 alone: what every family answers. Some clients give up on a 401 carrying
        // any challenge they cannot answer, wherever it stands (baresip 1.0: "Function not
        // implemented"), some read only the first (sipsak), some know MD5 only (JsSIP,
        // SIP.js). A profile moves its phones to SHA-256 when they answer it.
        digest_algorithms: vec![DigestAlgorithm::Md5 as i32],
        digest_auth_user: Some("admin".into()),
        digest_auth_password: Some(DEFAULT_DIGEST_AUTH_PASSWORD.into()),
    };
    match meta {
        M::GenericSip | M::Unspecified => {
            s.codecs = codecs(&["PCMU", "PCMA", "G722"]);
            s.dynamic_reload = Some(false);
            s.push_credentials = Some(false);
        }
        M::Webrtc => {
            s.codecs = codecs(&["opus", "PCMU"]);
            s.transport = Transport::Wss as i32;
            s.registration_period_s = Some(600);
            s.push_credentials = Some(false);
        }
        M::PolyVvx | M::Yealink => s.codecs = codecs(&["G722", "PCMU", "PCMA", "G729"]),
        M::PolyEdgeE => {
            s.codecs = codecs(&["opus", "G722", "PCMU", "PCMA"]);
            s.transport = Transport::Tls as i32;
        }
        // "Redundant Proxy Mode": the phone registers to one proxy at a time and fails over
        // to the other (its provisioning file names the secondary edge as that proxy).
        M::Audiocodes => s.secondary_registration = Some(false),
        M::DesktopSoftphone => {
            s.codecs = codecs(&["opus", "G722", "PCMU"]);
            s.transport = Transport::Tls as i32;
            s.softphone = Some(SoftphoneAudio {
                use_headset: Some(false),
                headset_name: Vec::new(),
                audio_in_device: Vec::new(),
                audio_out_device: Vec::new(),
                auto_answer: Some(false),
                reject_session_when_headset_na: Some(false),
                sip_code_when_headset_na: Some(480),
            });
        }
    }
    s
}

macro_rules! take {
    ($out:ident, $over:ident; $($f:ident),* $(,)?) => {
        $( if $over.$f.is_some() { $out.$f = $over.$f.clone(); } )*
    };
}

/// `over` layered on `base`: set fields win; lists win when non-empty; custom properties
/// merge by name; enums win when specified.
pub fn merge(base: &PhoneSettings, over: &PhoneSettings) -> PhoneSettings {
    let mut out = base.clone();
    take!(out, over; dynamic_reload, standalone_features, sip_dscp, media_dscp, rtp_port_start, rtp_port_count,
        dtmf_payload_type, tls_ca_pem, mutual_auth, firmware_version, firmware_url, e911_enabled, e911_lis_url,
        e911_ers_account_id, secondary_registration, mwi_enabled, persistent_connection,
        persistent_connection_timeout_s, push_credentials, registration_period_s, max_bindings,
        digest_auth_user, digest_auth_password);
    if !over.codecs.is_empty() {
        out.codecs = over.codecs.clone();
    }
    if !over.digest_algorithms.is_empty() {
        out.digest_algorithms = over.digest_algorithms.clone();
    }
    if over.dtmf_mode != 0 {
        out.dtmf_mode = over.dtmf_mode;
    }
    if over.transport != 0 {
        out.transport = over.transport;
    }
    if over.media_encryption != 0 {
        out.media_encryption = over.media_encryption;
    }
    for p in &over.custom_properties {
        match out.custom_properties.iter_mut().find(|q| q.name == p.name) {
            Some(q) => *q = p.clone(),
            None => out.custom_properties.push(p.clone()),
        }
    }
    if let Some(o) = &over.auto_conference {
        let a = out.auto_conference.get_or_insert_with(Default::default);
        take!(a, o; enabled, pin, language);
    }
    if let Some(o) = &over.softphone {
        let a = out.softphone.get_or_insert_with(Default::default);
        take!(a, o; use_headset, auto_answer, reject_session_when_headset_na, sip_code_when_headset_na);
        for (dst, src) in [
            (&mut a.headset_name, &o.headset_name),
            (&mut a.audio_in_device, &o.audio_in_device),
            (&mut a.audio_out_device, &o.audio_out_device),
        ] {
            if !src.is_empty() {
                *dst = src.clone();
            }
        }
    }
    out
}

/// The effective settings of a phone: template, then profile, then the phone's overrides.
pub fn effective(
    meta: MetaBase,
    profile: &PhoneSettings,
    overrides: Option<&PhoneSettings>,
) -> PhoneSettings {
    let s = merge(&template(meta), profile);
    let mut s = match overrides {
        Some(o) => merge(&s, o),
        None => s,
    };
    // An AudioCodes phone fails over to its secondary edge; it never registers to both,
    // whatever an older profile or override says (validation refuses it now).
    if meta == MetaBase::Audiocodes {
        s.secondary_registration = Some(false);
    }
    s
}

/// A phone's meta-base and effective settings from its profile (none: the generic SIP
/// template, as for a phone without one) and its overrides.
pub fn of_phone(
    base: Option<&BaseSettings>,
    overrides: Option<&PhoneSettings>,
) -> (MetaBase, PhoneSettings) {
    let meta = meta_of(base);
    let profile = base.and_then(|b| b.settings.clone()).unwrap_or_default();
    (meta, effective(meta, &profile, overrides))
}

/// The meta-base of a phone with profile `base` (none: generic SIP).
pub fn meta_of(base: Option<&BaseSettings>) -> MetaBase {
    base.and_then(|b| MetaBase::try_from(b.meta_base).ok())
        .unwrap_or(MetaBase::GenericSip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layering_takes_the_phone_then_the_profile_then_the_template() {
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
        assert_eq!(eff.codecs, vec!["audio/PCMU"]);
        assert_eq!(eff.mwi_enabled, Some(true));
        assert_eq!(eff.sip_dscp, Some(26));
        assert_eq!(eff.rtp_port_start, Some(4000));
        let base = BaseSettings {
            meta_base: MetaBase::Yealink as i32,
            settings: Some(profile.clone()),
            ..Default::default()
        };
        assert_eq!(
            of_phone(Some(&base), Some(&overrides)),
            (MetaBase::Yealink, eff)
        );
        assert_eq!(
            of_phone(None, None),
            (MetaBase::GenericSip, template(MetaBase::GenericSip))
        );
    }

    #[test]
    fn softphone_overrides_merge_field_by_field() {
        let t = template(MetaBase::DesktopSoftphone);
        let over = PhoneSettings {
            softphone: Some(SoftphoneAudio {
                use_headset: Some(true),
                headset_name: vec!["Jabra.*".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let sp = merge(&t, &over).softphone.unwrap();
        assert_eq!(sp.use_headset, Some(true));
        assert_eq!(sp.headset_name, vec!["Jabra.*"]);
        assert_eq!(sp.sip_code_when_headset_na, Some(480));
    }

    /// The defaults every meta-base shares, as the seeds state them, by the Genesys Cloud
    /// property name each stands for.
    #[test]
    fn defaults_as_the_seeds_state_them() {
        type Check = (&'static str, fn(&PhoneSettings) -> bool);
        let checks: [Check; 6] = [
            // "Leave Standalone Features set to Off unless you are creating a conference
            // room phone."
            ("phone_standalone", |s| s.standalone_features == Some(false)),
            // Message waiting indication is on unless a profile turns it off.
            ("phone_mwi_enabled", |s| s.mwi_enabled == Some(true)),
            // "Use Secondary Registration: The default setting is Enabled." (AudioCodes
            // phones fail over instead: checked below.)
            ("secondary registration", |s| {
                s.secondary_registration.is_some()
            }),
            // A persistent connection always has its idle timeout, 15-3600 s.
            ("station_persistent_timeout", |s| {
                s.persistent_connection_timeout_s
                    .is_some_and(|t| (15..=3600).contains(&t))
            }),
            // Every family answers MD5; not every one SHA-256.
            ("digest algorithms", |s| {
                s.digest_algorithms == [DigestAlgorithm::Md5 as i32]
            }),
            ("registration period", |s| {
                s.registration_period_s
                    .is_some_and(|p| (60..=86_400).contains(&p))
            }),
        ];
        for meta in META_BASES {
            let t = template(meta);
            for (name, holds) in &checks {
                assert!(holds(&t), "{meta:?}: {name}");
            }
            // "Enable Persistent Connection — Disabled (Default): Do not use persistent
            // connection feature." (A WebRTC phone's flow stays open while it is
            // registered regardless: see tests/tests/persistent_connections.rs.)
            assert_eq!(t.persistent_connection, Some(false), "{meta:?}");
            assert_eq!(
                t.secondary_registration,
                Some(meta != MetaBase::Audiocodes),
                "{meta:?}"
            );
        }
    }
}
