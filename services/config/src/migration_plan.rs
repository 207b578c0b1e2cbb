//! What moving a phone to another profile does to its settings, across meta-bases too (a
//! model upgrade such as Poly VVX to Edge E): the phone's overrides the target meta-base
//! cannot take are dropped, and every effective setting that changes is said to change,
//! fall back to the target's default, or be dropped. Pure: the caller loads the profiles.

use std::collections::BTreeSet;

use dialtone_domain::settings::{effective, merge};
use dialtone_proto::config::v1::{
    BaseSettings, MetaBase, PhoneSettings, SettingChange, SettingChangeKind,
};

use crate::{
    error::ConfigError,
    settings::{diff, flatten, validate_effective, validate_fields},
};

/// A phone's move from one profile to another.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The overrides the phone keeps (none: it had none, or none is left).
    pub overrides: Option<PhoneSettings>,
    /// Every effective setting that changes, in path order.
    pub changes: Vec<SettingChange>,
}

/// The phone's overrides `over` without what meta-base `to` refuses, and the names of the
/// fields it touched (top-level, e.g. `softphone`, `transport`), in the order found: a
/// refused field goes whole, but of the custom properties only those refused (an
/// AudioCodes path name a Yealink cannot take). What is left may still be refused (a field
/// this cannot remove): the caller validates it.
pub fn carry_over(over: &PhoneSettings, to: MetaBase) -> (PhoneSettings, Vec<String>) {
    let mut kept = over.clone();
    let mut dropped: Vec<String> = Vec::new();
    // Each round removes one field or one property: at most 64 properties and a few dozen
    // fields.
    for _ in 0..128 {
        let Err(ConfigError::InvalidArgument { field, .. }) = validate_fields(&kept, to, "o")
        else {
            break;
        };
        let rest = field.trim_start_matches("o.");
        let top = rest.split(['.', '[']).next().unwrap_or_default().to_owned();
        let property = rest
            .strip_prefix("custom_properties[")
            .and_then(|r| r.split(']').next())
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < kept.custom_properties.len());
        match property {
            Some(i) => {
                kept.custom_properties.remove(i);
            }
            None => match without_field(&kept, &top) {
                Some(without) => kept = without,
                None => break,
            },
        }
        if !dropped.contains(&top) {
            dropped.push(top);
        }
    }
    (kept, dropped)
}

/// `s` with top-level field `name` unset; none when it has no such field set.
fn without_field(s: &PhoneSettings, name: &str) -> Option<PhoneSettings> {
    let mut v = serde_json::to_value(s).ok()?;
    v.as_object_mut()?.remove(name)?;
    serde_json::from_value(v).ok()
}

/// The plan for a phone with `overrides` moving from profile `from` to `to`; an error
/// when its settings would be invalid on the target.
pub fn plan(
    from: &BaseSettings,
    to: &BaseSettings,
    overrides: Option<&PhoneSettings>,
) -> Result<Plan, ConfigError> {
    let meta = |b: &BaseSettings| MetaBase::try_from(b.meta_base).unwrap_or(MetaBase::Unspecified);
    let (from_meta, to_meta) = (meta(from), meta(to));
    let from_settings = from.settings.clone().unwrap_or_default();
    let to_settings = to.settings.clone().unwrap_or_default();
    let (kept, dropped) = match overrides {
        Some(o) => {
            let (kept, dropped) = carry_over(o, to_meta);
            validate_fields(&kept, to_meta, "phone.overrides")?;
            (Some(kept), dropped)
        }
        None => (None, Vec::new()),
    };
    let before = effective(from_meta, &from_settings, overrides);
    let after = effective(to_meta, &to_settings, kept.as_ref());
    validate_effective(&after, "phone.overrides")?;
    // What the target profile and the kept overrides set themselves (canonical JSON omits
    // what is unset); anything else comes from the target meta-base's defaults.
    let set_here = merge(
        &merge(&PhoneSettings::default(), &to_settings),
        &kept.clone().unwrap_or_default(),
    );
    let explicit: BTreeSet<String> = flatten(&set_here).into_keys().collect();
    let changes = diff(&before, &after)
        .into_iter()
        .map(|(path, before, after)| {
            let kind = if dropped
                .iter()
                .any(|d| path == *d || path.starts_with(&format!("{d}.")))
            {
                SettingChangeKind::Dropped
            } else if explicit.contains(&path) {
                SettingChangeKind::Changed
            } else {
                SettingChangeKind::Defaulted
            };
            SettingChange {
                path,
                before,
                after,
                kind: kind as i32,
            }
        })
        .collect();
    let overrides = kept.filter(|k| *k != PhoneSettings::default());
    Ok(Plan { overrides, changes })
}

#[cfg(test)]
mod tests {
    use dialtone_proto::config::v1::{MediaEncryption, SoftphoneAudio, Transport};

    use super::*;

    fn profile(meta: MetaBase, settings: PhoneSettings) -> BaseSettings {
        BaseSettings {
            id: "p".into(),
            meta_base: meta as i32,
            settings: Some(settings),
            ..Default::default()
        }
    }

    /// The kinds of change by path.
    fn kinds(p: &Plan) -> Vec<(String, SettingChangeKind)> {
        p.changes
            .iter()
            .map(|c| (c.path.clone(), c.kind()))
            .collect()
    }

    #[test]
    fn overrides_the_target_refuses_are_dropped_and_named() {
        use MetaBase as M;
        let softphone = PhoneSettings {
            softphone: Some(SoftphoneAudio {
                use_headset: Some(true),
                ..Default::default()
            }),
            sip_dscp: Some(30),
            ..Default::default()
        };
        let udp_sdes = PhoneSettings {
            transport: Transport::Udp as i32,
            media_encryption: MediaEncryption::Sdes as i32,
            ..Default::default()
        };
        // (overrides, target, what is kept, what is dropped)
        let cases = [
            (softphone.clone(), M::Webrtc, Some(30), vec!["softphone"]),
            (softphone.clone(), M::DesktopSoftphone, Some(30), vec![]),
            (
                udp_sdes.clone(),
                M::Webrtc,
                None,
                vec!["transport", "media_encryption"],
            ),
            (udp_sdes.clone(), M::Yealink, None, vec![]),
            (PhoneSettings::default(), M::PolyEdgeE, None, vec![]),
        ];
        for (over, to, dscp, want) in cases {
            let (kept, dropped) = carry_over(&over, to);
            assert_eq!(dropped, want, "{to:?} {over:?}");
            assert_eq!(kept.sip_dscp, dscp, "{to:?}");
            assert!(validate_fields(&kept, to, "o").is_ok(), "{to:?} {kept:?}");
        }
        // Of the custom properties, only those the target refuses go.
        let prop = |name: &str| dialtone_proto::config::v1::CustomProperty {
            name: name.into(),
            data_type: dialtone_proto::config::v1::PropertyType::String as i32,
            value: "1".into(),
        };
        let audiocodes = PhoneSettings {
            custom_properties: vec![prop("a.b"), prop("voip/x/y"), prop("c_d")],
            ..Default::default()
        };
        let (kept, dropped) = carry_over(&audiocodes, M::Yealink);
        assert_eq!(dropped, ["custom_properties"]);
        let names: Vec<_> = kept
            .custom_properties
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["a.b", "c_d"]);
    }

    #[test]
    fn a_model_upgrade_says_what_changes_defaults_or_is_dropped() {
        use MetaBase as M;
        use SettingChangeKind as K;
        // VVX with its own codecs and DSCP → Edge E setting only DSCP: the codecs fall
        // back to the Edge E defaults, the DSCP changes, the transport's default differs.
        let vvx = profile(
            M::PolyVvx,
            PhoneSettings {
                codecs: vec!["audio/G722".into()],
                sip_dscp: Some(26),
                ..Default::default()
            },
        );
        let edge_e = profile(
            M::PolyEdgeE,
            PhoneSettings {
                sip_dscp: Some(34),
                ..Default::default()
            },
        );
        let p = plan(&vvx, &edge_e, None).unwrap();
        assert_eq!(
            kinds(&p),
            [
                ("codecs".to_owned(), K::Defaulted),
                ("sip_dscp".to_owned(), K::Changed),
                ("transport".to_owned(), K::Defaulted),
            ]
        );
        assert_eq!(p.overrides, None);

        // A desktop softphone with its own audio rules → WebRTC: the rules are dropped,
        // the phone's own DSCP override carries over and so does not change.
        let desktop = profile(M::DesktopSoftphone, PhoneSettings::default());
        let webrtc = profile(M::Webrtc, PhoneSettings::default());
        let over = PhoneSettings {
            softphone: Some(SoftphoneAudio {
                auto_answer: Some(true),
                ..Default::default()
            }),
            sip_dscp: Some(40),
            ..Default::default()
        };
        let p = plan(&desktop, &webrtc, Some(&over)).unwrap();
        let k = kinds(&p);
        assert!(
            k.iter()
                .filter(|(path, _)| path.starts_with("softphone"))
                .all(|(_, kind)| *kind == K::Dropped),
            "{k:?}"
        );
        assert!(
            k.iter().any(|(path, _)| path.starts_with("softphone")),
            "{k:?}"
        );
        assert!(!k.iter().any(|(path, _)| path == "sip_dscp"), "{k:?}");
        assert_eq!(p.overrides.unwrap().sip_dscp, Some(40));

        // A phone's SDES override with the profile's TLS → a profile over UDP: invalid.
        let tls = profile(
            M::PolyVvx,
            PhoneSettings {
                transport: Transport::Tls as i32,
                ..Default::default()
            },
        );
        let sdes = PhoneSettings {
            media_encryption: MediaEncryption::Sdes as i32,
            ..Default::default()
        };
        let yealink = profile(M::Yealink, PhoneSettings::default());
        assert!(plan(&tls, &yealink, Some(&sdes)).is_err());
    }
}
