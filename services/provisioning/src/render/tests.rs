//! Golden files: each format rendered from the same phone and compared byte for byte with
//! `tests/golden/`. `UPDATE_GOLDEN=1 cargo test -p dialtone-provisioning` rewrites them
//! (then read the diff).

use std::path::PathBuf;

use dialtone_proto::config::v1::MetaBase;

use super::*;
use crate::document::tests::document;

const MAC: &str = "0004f2aabb01";

fn golden_dir(meta: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(meta)
}

fn check_golden(meta: MetaBase, dir: &str, hw: &str) -> Rendered {
    let r = render(&document(meta, hw));
    let dir = golden_dir(dir);
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for f in &r.files {
        let path = dir.join(&f.name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &f.body).unwrap();
            continue;
        }
        let want = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        assert!(
            want == f.body.as_ref(),
            "{} differs from the golden file:\n{}",
            f.name,
            String::from_utf8_lossy(&f.body)
        );
    }
    r
}

fn attribute<'a>(doc: &'a roxmltree::Document<'_>, name: &str) -> Option<&'a str> {
    doc.root_element().attribute(name)
}

#[test]
fn poly_files_are_golden_well_formed_xml() {
    let r = check_golden(MetaBase::PolyVvx, "poly", MAC);
    let names: Vec<_> = r.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "000000000000.cfg",
            "0004f2aabb01.cfg",
            "0004f2aabb01-registration.cfg",
            "0004f2aabb01-settings.cfg"
        ]
    );
    let d = document(MetaBase::PolyVvx, MAC);
    for f in &r.files {
        let text = std::str::from_utf8(&f.body).unwrap();
        let xml = roxmltree::Document::parse(text)
            .unwrap_or_else(|e| panic!("{} is not well-formed: {e}", f.name));
        match f.name.as_str() {
            "000000000000.cfg" => assert_eq!(
                attribute(&xml, "CONFIG_FILES"),
                Some("[PHONE_MAC_ADDRESS]-registration.cfg, [PHONE_MAC_ADDRESS]-settings.cfg")
            ),
            "0004f2aabb01.cfg" => assert_eq!(
                attribute(&xml, "CONFIG_FILES"),
                Some("0004f2aabb01-registration.cfg, 0004f2aabb01-settings.cfg")
            ),
            "0004f2aabb01-registration.cfg" => {
                // Values survive escaping; both edges, concurrently.
                assert_eq!(
                    attribute(&xml, "reg.1.auth.password"),
                    d.lines[0].password.as_deref()
                );
                assert_eq!(
                    attribute(&xml, "reg.1.server.1.address"),
                    Some(d.primary.as_ref().unwrap().host.as_str())
                );
                assert_eq!(
                    attribute(&xml, "reg.1.server.2.address"),
                    Some(d.secondary.as_ref().unwrap().host.as_str())
                );
                assert_eq!(
                    attribute(&xml, "reg.1.server.1.failOver.concurrentRegistration"),
                    Some("1")
                );
            }
            _ => {
                assert_eq!(attribute(&xml, "voice.codecPref.G722"), Some("1"));
                assert_eq!(attribute(&xml, "feature.example.enabled"), Some("true"));
            }
        }
    }
    // The generic master names no phone and holds no secret.
    let master = std::str::from_utf8(&r.files[0].body).unwrap();
    assert!(!master.contains(MAC) && !master.contains("password"));
}

#[test]
fn escaping_keeps_xml_well_formed() {
    let mut d = document(MetaBase::PolyVvx, MAC);
    d.lines[0].display_name = "A & B <\"quoted\"> 'x'\nnext\u{1}".into();
    let r = render(&d);
    let f = r.get("0004f2aabb01-registration.cfg").unwrap();
    let text = std::str::from_utf8(&f.body).unwrap();
    let xml = roxmltree::Document::parse(text).unwrap();
    assert_eq!(
        attribute(&xml, "reg.1.displayName"),
        Some("A & B <\"quoted\"> 'x'\nnext")
    );
}

#[test]
fn yealink_files_are_golden_key_values() {
    let r = check_golden(MetaBase::Yealink, "yealink", MAC);
    let d = document(MetaBase::Yealink, MAC);
    let phone = std::str::from_utf8(&r.get("0004f2aabb01.cfg").unwrap().body).unwrap();
    let common = std::str::from_utf8(&r.get("y000000000000.cfg").unwrap().body).unwrap();
    for text in [phone, common] {
        assert!(text.starts_with("#!version:1.0.0.1\n"));
        for line in text.lines().skip(1).filter(|l| !l.starts_with('#')) {
            let (k, _) = line.split_once(" = ").unwrap_or_else(|| panic!("{line}"));
            assert!(!k.is_empty() && !k.contains(' '), "{line}");
        }
    }
    let pw = d.lines[1].password.as_deref().unwrap();
    assert!(phone.contains(&format!("account.2.password = {pw}\n")));
    assert!(phone.contains("account.1.fallback.redundancy_type = 0\n"));
    assert!(
        !common.contains("password"),
        "the common file holds no secret"
    );
}

#[test]
fn audiocodes_files_are_golden_key_values() {
    let r = check_golden(MetaBase::Audiocodes, "audiocodes", MAC);
    let names: Vec<_> = r.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["0004f2aabb01.cfg"]);
    let d = document(MetaBase::Audiocodes, MAC);
    // Registers once, to the primary; the secondary edge is its redundant proxy.
    let (primary, backup) = (d.primary.as_ref().unwrap(), d.backup.as_ref().unwrap());
    assert!(d.secondary.is_none());
    assert_ne!(primary.node_id, backup.node_id);
    let text = std::str::from_utf8(&r.files[0].body).unwrap();
    let mut keys = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{line}"));
        assert!(!k.is_empty() && !k.contains(' '), "{line}");
        assert!(keys.insert(k, v).is_none(), "{k} twice");
    }
    let pw = d.lines[1].password.as_deref().unwrap();
    let want = [
        ("voip/line/1/auth_password", pw),
        ("voip/line/0/id", "k7q2x-1001"),
        ("voip/signalling/sip/proxy_address", primary.host.as_str()),
        ("voip/signalling/sip/redundant_proxy/enabled", "1"),
        (
            "voip/signalling/sip/redundant_proxy/address",
            backup.host.as_str(),
        ),
        ("voip/signalling/sip/proxy_timeout", "3600"),
        ("voip/signalling/sip/transport_protocol", "UDP"),
        ("voip/codec/codec_info/0/name", "G722"),
    ];
    for (k, v) in want {
        assert_eq!(keys.get(k).copied(), Some(v), "{k}");
    }
}

#[test]
fn json_documents_are_golden() {
    let r = check_golden(
        MetaBase::DesktopSoftphone,
        "softphone",
        "desk-7.example.com",
    );
    assert_eq!(r.files.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&r.files[0].body).unwrap();
    assert_eq!(v["softphone"]["sip_code_when_headset_na"], 486);
    assert_eq!(v["softphone"]["headset_name"][0], "Jabra.*");
    assert!(v["lines"][0]["auth"]["password"].is_string());
    let r = check_golden(MetaBase::GenericSip, "generic", MAC);
    let v: serde_json::Value = serde_json::from_slice(&r.files[0].body).unwrap();
    assert!(v["softphone"].is_null());
    // A generic profile does not push credentials.
    assert!(v["lines"][0]["auth"]["password"].is_null());
}

#[test]
fn versions_and_etags_follow_content() {
    let a = render(&document(MetaBase::Yealink, MAC));
    let b = render(&document(MetaBase::Yealink, MAC));
    assert_eq!(a, b, "rendering is deterministic");
    let mut d = document(MetaBase::Yealink, MAC);
    d.settings.sip_dscp = Some(10);
    let c = render(&d);
    assert_ne!(a.version, c.version);
    // Only the common file changed, so only its tag did.
    assert_ne!(a.files[0].etag, c.files[0].etag);
    assert_eq!(a.files[1].etag, c.files[1].etag);
    assert!(a.files[0].etag.starts_with('"') && a.files[0].etag.len() == 18);
}

#[test]
fn sdes_is_asked_of_every_vendor_that_has_the_setting() {
    use dialtone_proto::config::v1::MediaEncryption;
    // (meta-base, file, what SDES on renders)
    let cases = [
        (
            MetaBase::Yealink,
            "0004f2aabb01.cfg",
            "account.1.srtp_encryption = 2",
        ),
        (
            MetaBase::Yealink,
            "0004f2aabb01.cfg",
            "account.2.srtp_encryption = 2",
        ),
        (
            MetaBase::PolyVvx,
            "0004f2aabb01-settings.cfg",
            "sec.srtp.require=\"1\"",
        ),
        (
            MetaBase::GenericSip,
            "0004f2aabb01.json",
            "\"encryption\": \"sdes\"",
        ),
    ];
    for (meta, name, want) in cases {
        let mut d = document(meta, MAC);
        d.settings.media_encryption = MediaEncryption::Sdes as i32;
        let r = render(&d);
        let body = std::str::from_utf8(&r.get(name).unwrap().body)
            .unwrap()
            .to_owned();
        assert!(body.contains(want), "{meta:?} {name}: {body}");
        // Off again: the phone is told so (a key left out would keep the old value).
        d.settings.media_encryption = MediaEncryption::None as i32;
        let off = render(&d);
        let body = std::str::from_utf8(&off.get(name).unwrap().body)
            .unwrap()
            .to_owned();
        assert!(!body.contains(want), "{meta:?} {name}: {body}");
    }
}

/// Digest Authentication's credentials are the phone's administrative account: pushed
/// (in the phone's own file) once the profile has a password of its own, never the seed's
/// well-known default, never to softphones and browsers.
#[test]
fn the_admin_account_is_pushed_only_when_the_profile_sets_one() {
    let file = |meta: MetaBase, password: Option<&str>, name: &str| {
        let mut d = document(meta, MAC);
        if let Some(p) = password {
            d.settings.digest_auth_user = Some("ops".into());
            d.settings.digest_auth_password = Some(p.into());
        }
        let r = render(&d);
        String::from_utf8(r.get(name).unwrap().body.to_vec()).unwrap()
    };
    let yealink = |p| file(MetaBase::Yealink, p, "0004f2aabb01.cfg");
    let poly = |p| file(MetaBase::PolyVvx, p, "0004f2aabb01-settings.cfg");
    // (file, whether it names the account)
    let cases = [
        (yealink(None), false),
        (yealink(Some("1234")), false),
        (yealink(Some("n0t-the-default")), true),
        (poly(None), false),
        (poly(Some("n0t-the-default")), true),
    ];
    for (text, pushed) in cases {
        assert_eq!(text.contains("n0t-the-default"), pushed, "{text}");
        assert!(
            !text.contains("1234\n") && !text.contains("\"1234\""),
            "{text}"
        );
    }
    assert!(
        yealink(Some("n0t-the-default")).contains("security.user_password = ops:n0t-the-default\n")
    );
    let json = file(
        MetaBase::DesktopSoftphone,
        Some("n0t-the-default"),
        &format!("{MAC}.json"),
    );
    assert!(!json.contains("n0t-the-default"), "{json}");
}

#[test]
fn auto_conference_is_rendered_with_its_pin_only_while_on() {
    use dialtone_proto::config::v1::AutoConference;
    // (enabled, pin, language) → what the JSON document's features carry.
    let cases = [
        (
            Some(true),
            "4711",
            "fr-CA",
            r#""pin": "4711""#,
            r#""language": "fr-CA""#,
        ),
        (
            Some(false),
            "4711",
            "fr-CA",
            r#""pin": null"#,
            r#""language": null"#,
        ),
        (
            None,
            "4711",
            "fr-CA",
            r#""pin": null"#,
            r#""language": null"#,
        ),
    ];
    for meta in [
        MetaBase::GenericSip,
        MetaBase::Webrtc,
        MetaBase::DesktopSoftphone,
    ] {
        for (enabled, pin, language, want_pin, want_language) in cases {
            let mut d = document(meta, MAC);
            d.settings.auto_conference = Some(AutoConference {
                enabled,
                pin: Some(pin.into()),
                language: Some(language.into()),
            });
            let r = render(&d);
            let body = std::str::from_utf8(&r.files[0].body).unwrap();
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            let a = &v["features"]["auto_conference"];
            assert_eq!(a["enabled"], enabled.unwrap_or(false), "{meta:?} {a}");
            let text = a.to_string().replace(':', ": ");
            assert!(
                text.contains(want_pin) && text.contains(want_language),
                "{meta:?} {a}"
            );
        }
    }
}
