//! `dialtonectl base-settings explain`: what a desktop softphone of a profile does with a
//! given set of audio devices, computed by the same library the softphones' rules are
//! (`dialtone-softphone`) from the profile's effective settings (its meta-base's defaults
//! under its own). Pure but for the printing.

use anyhow::Context;
use dialtone_proto::config::v1 as pb;
use dialtone_softphone::{Devices, Incoming, Rules, ShouldAnswer};
use serde::Serialize;

/// What the rules make of one set of devices.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Explained {
    pub input: Option<String>,
    pub output: Option<String>,
    pub headset_present: bool,
    /// `yes`, `no` or `unknown` (ring: the user decides).
    pub should_answer: &'static str,
    /// `auto-answer`, `ring` or `reject CODE`.
    pub incoming: String,
    pub outgoing_allowed: bool,
}

/// Runs profile `base`'s softphone rules over `devices`.
pub fn explain(base: &pb::BaseSettings, devices: Devices) -> anyhow::Result<Explained> {
    let meta = pb::MetaBase::try_from(base.meta_base).unwrap_or(pb::MetaBase::GenericSip);
    let profile = base.settings.clone().unwrap_or_default();
    let settings = dialtone_domain::settings::effective(meta, &profile, None);
    let audio = settings.softphone.unwrap_or_default();
    let rules = Rules::from_settings(&audio).context("the profile's device rules")?;
    let sel = rules.select(&devices);
    Ok(Explained {
        should_answer: match rules.should_answer(&sel) {
            ShouldAnswer::Yes => "yes",
            ShouldAnswer::No => "no",
            ShouldAnswer::Unknown => "unknown",
        },
        incoming: match rules.incoming(&sel) {
            Incoming::AutoAnswer => "auto-answer".into(),
            Incoming::Ring => "ring".into(),
            Incoming::Reject(code) => format!("reject {code}"),
        },
        outgoing_allowed: rules.outgoing_allowed(&sel),
        headset_present: sel.headset_present,
        input: sel.input,
        output: sel.output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(audio: pb::SoftphoneAudio) -> pb::BaseSettings {
        pb::BaseSettings {
            id: "agents".into(),
            meta_base: pb::MetaBase::DesktopSoftphone as i32,
            settings: Some(pb::PhoneSettings {
                softphone: Some(audio),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn devices(inputs: &[&str], outputs: &[&str]) -> Devices {
        Devices {
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_profile_explains_what_its_softphones_do() {
        let headset = profile(pb::SoftphoneAudio {
            use_headset: Some(true),
            headset_name: vec!["Jabra".into()],
            auto_answer: Some(true),
            reject_session_when_headset_na: Some(true),
            sip_code_when_headset_na: Some(486),
            ..Default::default()
        });
        let e = explain(&headset, devices(&["Jabra Evolve2"], &["Jabra Evolve2"])).unwrap();
        assert_eq!(
            (e.should_answer, e.incoming.as_str()),
            ("yes", "auto-answer")
        );
        let e = explain(&headset, devices(&["Built-in"], &["Built-in"])).unwrap();
        assert_eq!((e.should_answer, e.incoming.as_str()), ("no", "reject 486"));
        assert!(!e.outgoing_allowed);
        // The meta-base's defaults under a profile that sets only auto-answer: no devices,
        // nothing to answer with.
        let plain = profile(pb::SoftphoneAudio {
            auto_answer: Some(true),
            ..Default::default()
        });
        let e = explain(&plain, devices(&[], &[])).unwrap();
        assert_eq!((e.should_answer, e.incoming.as_str()), ("unknown", "ring"));
        // A broken entry is named.
        let broken = profile(pb::SoftphoneAudio {
            audio_in_device: vec!["(".into()],
            ..Default::default()
        });
        let err = explain(&broken, devices(&[], &[])).unwrap_err();
        assert!(format!("{err:#}").contains("audio_in_device[0]"), "{err:#}");
    }
}
