//! The cache's own tests: phones and profiles followed, placement, site codes, media
//! sides and stored HA1s.

use dialtone_domain::placement;
use dialtone_proto::config::v1::{EdgeGroup, Line, Site, StoredCredentials};
use dialtone_sip::digest::Algorithm;

use super::*;

/// A phone with a line per (user, HA1): its MD5 HA1 as given, its SHA-256 one doubled.
pub(super) fn phone(id: &str, base: &str, users: &[(&str, &str)]) -> Phone {
    Phone {
        id: id.into(),
        kind: PhoneKind::Unmanaged as i32,
        base_settings_id: base.into(),
        lines: users
            .iter()
            .map(|(u, h)| Line {
                sip_user: (*u).into(),
                credentials: Some(StoredCredentials {
                    realm: "r".into(),
                    ha1_md5: (*h).into(),
                    ha1_sha256: format!("{h}{h}"),
                    generation: 1,
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn base(id: &str, max_bindings: u32, mwi: bool) -> BaseSettings {
    BaseSettings {
        id: id.into(),
        meta_base: MetaBase::GenericSip as i32,
        settings: Some(PhoneSettings {
            max_bindings: Some(max_bindings),
            mwi_enabled: Some(mwi),
            registration_period_s: Some(600),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_phones_media_side_follows_its_profile_and_overrides() {
    use dialtone_media::anchor::Side;
    use dialtone_proto::config::v1::MediaEncryption;
    let mut c = CredentialCache::new(Limits {
        min_expires: 60,
        max_expires: 3600,
        digest_bound: dialtone_sip::offer::Offer::Sha256ThenMd5,
    });
    let sdes = |e: MediaEncryption| PhoneSettings {
        media_encryption: e as i32,
        ..Default::default()
    };
    let profile = |id: &str, meta: MetaBase, s: PhoneSettings| BaseSettings {
        id: id.into(),
        meta_base: meta as i32,
        settings: Some(s),
        ..Default::default()
    };
    c.put_base(&profile(
        "desk",
        MetaBase::GenericSip,
        PhoneSettings::default(),
    ));
    c.put_base(&profile(
        "secure",
        MetaBase::Yealink,
        sdes(MediaEncryption::Sdes),
    ));
    c.put_base(&profile(
        "browser",
        MetaBase::Webrtc,
        PhoneSettings::default(),
    ));
    // (phone, profile, overrides, side)
    let cases = [
        ("p1", "desk", None, Side::Rtp),
        ("p2", "secure", None, Side::Srtp),
        ("p3", "browser", None, Side::WebRtc),
        ("p4", "desk", Some(sdes(MediaEncryption::Sdes)), Side::Srtp),
        ("p5", "secure", Some(sdes(MediaEncryption::None)), Side::Rtp),
        ("p6", "secure", Some(PhoneSettings::default()), Side::Srtp),
    ];
    for (i, (id, base, overrides, want)) in cases.into_iter().enumerate() {
        let mut p = phone(id, base, &[(&format!("u{i}"), "aa")]);
        p.overrides = overrides;
        c.put_phone(&p);
        assert_eq!(c.media_side(id), want, "{id}");
    }
    assert_eq!(c.media_side("nobody"), Side::Rtp);
}

#[test]
fn site_codes_reach_other_sites_extensions() {
    let mut c = CredentialCache::new(Limits {
        min_expires: 60,
        max_expires: 3600,
        digest_bound: dialtone_sip::offer::Offer::Sha256ThenMd5,
    });
    let site = |id: &str, code: &str| Site {
        id: id.into(),
        site_code: code.into(),
        sip_user_prefix: format!("{id}-"),
        ..Default::default()
    };
    c.put_site(&site("hq", "81"));
    c.put_site(&site("br", "8"));
    let at = |id: &str, site: &str, ext: &str, user: &str| {
        let mut p = phone(id, "", &[(user, "aa")]);
        p.site_id = site.into();
        p.assignment = Some(dialtone_proto::config::v1::Assignment {
            mode: Some(Mode::Site(dialtone_proto::config::v1::SiteAssignment {
                extension: ext.into(),
                ..Default::default()
            })),
        });
        p
    };
    c.put_phone(&at("p-hq", "hq", "201", "hq-201"));
    c.put_phone(&at("p-br", "br", "1201", "br-1201"));
    c.put_phone(&at("p-br2", "br", "202", "br-202"));
    fn first(c: &CredentialCache, dialled: &str) -> Option<String> {
        let lines = c.coded_extension_lines(dialled);
        lines.first().map(|l| l.sip_user.clone())
    }
    // (dialled, the line reached)
    let cases = [
        ("81201", Some("hq-201")), // the longest code wins: 81 + 201, not 8 + 1201
        ("8202", Some("br-202")),
        ("81202", None),
        ("201", None),
        ("", None),
        ("9201", None),
    ];
    for (dialled, want) in cases {
        assert_eq!(first(&c, dialled).as_deref(), want, "{dialled}");
    }
    // A REMOTE phone holding hq's 300 is reached the same ways, and redirected.
    let mut remote = at("p-far", "hq", "300", "unused");
    remote.kind = PhoneKind::Remote as i32;
    remote.remote_address = "+15550001234".into();
    c.put_phone(&remote);
    let redirect = "tel:+15550001234".to_owned();
    let target =
        |caller: &str, dialled: &str| c.remote_extension(caller, dialled).map(|r| r.target);
    assert_eq!(target("p-hq", "300"), Some(redirect.clone()));
    assert_eq!(target("p-br", "81300"), Some(redirect));
    assert_eq!(
        c.remote_extension("p-br", "300"),
        None,
        "extensions are per site"
    );
    // hq gives its code up: 81201 is br's 1201 now.
    c.put_site(&site("hq", "82"));
    assert_eq!(first(&c, "81201"), Some("br-1201".into()));
    c.remove_site("hq");
    assert!(c.coded_extension_lines("82201").is_empty());
}

#[test]
fn follows_phones_and_profiles() {
    let mut c = CredentialCache::new(Limits {
        min_expires: 60,
        max_expires: 7200,
        digest_bound: dialtone_sip::offer::Offer::Sha256ThenMd5,
    });
    c.put_base(&base("b", 3, true));
    assert_eq!(
        c.put_phone(&phone("p1", "b", &[("u1", "h1"), ("u2", "h2")])),
        Change::default()
    );
    let e = c.lookup("u2").unwrap();
    assert_eq!(
        (&*e.phone_id, e.line_index, e.ha1(Algorithm::Md5)),
        ("p1", 1, "h2")
    );
    assert_eq!(e.ha1(Algorithm::Sha256), "h2h2");
    assert_eq!(e.policy.max_bindings, 3);
    assert_eq!(e.policy.default_expires, 600);
    assert!(e.mwi);

    // a password change replaces the hash and logs the line out; a renamed line is
    // reported gone
    let ch = c.put_phone(&phone("p1", "b", &[("u1", "h9"), ("u3", "h3")]));
    assert_eq!(ch.lines_gone, vec![0, 1]);
    let same = c.put_phone(&phone("p1", "b", &[("u1", "h9"), ("u3", "h3")]));
    assert_eq!(
        same.lines_gone,
        Vec::<u32>::new(),
        "nothing changed, nothing dropped"
    );
    assert_eq!(c.lookup("u1").unwrap().ha1(Algorithm::Md5), "h9");
    assert!(c.lookup("u2").is_none());

    // a profile change reaches its phones
    c.put_base(&base("b", 5, false));
    let e = c.lookup("u3").unwrap();
    assert_eq!((e.policy.max_bindings, e.mwi), (5, false));

    // overrides win over the profile
    let mut p = phone("p2", "b", &[("v1", "x")]);
    p.overrides = Some(PhoneSettings {
        max_bindings: Some(1),
        ..Default::default()
    });
    c.put_phone(&p);
    assert_eq!(c.lookup("v1").unwrap().policy.max_bindings, 1);

    // delete
    assert!(c.remove_phone("p1").removed);
    assert!(c.lookup("u1").is_none() && c.lookup("u3").is_none());
    assert!(!c.remove_phone("p1").removed);
    assert_eq!(c.lines(), 1);

    // remote phones have nothing to register
    let mut r = phone("p2", "", &[]);
    r.kind = PhoneKind::Remote as i32;
    assert!(c.put_phone(&r).removed);
    assert_eq!(c.lines(), 0);

    // a re-listing after compaction reports what changed meanwhile
    let mut fresh = CredentialCache::new(c.limits());
    fresh.put_base(&base("b", 3, true));
    fresh.put_phone(&phone("p3", "b", &[("w2", "h")]));
    fresh.put_phone(&phone("p4", "b", &[("x1", "h")]));
    let mut before = CredentialCache::new(c.limits());
    before.put_base(&base("b", 3, true));
    before.put_phone(&phone("p2", "b", &[("v1", "x")]));
    before.put_phone(&phone("p3", "b", &[("w1", "h"), ("w3", "h")]));
    before.put_phone(&phone("p4", "b", &[("x1", "h")]));
    let mut got = before.changes_to(&fresh);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (
                "p2".to_owned(),
                Change {
                    removed: true,
                    lines_gone: vec![]
                }
            ),
            (
                "p3".to_owned(),
                Change {
                    removed: false,
                    lines_gone: vec![0, 1]
                }
            ),
        ]
    );

    // a disabled phone is forgotten (its bindings go) until it is enabled again
    let mut d = phone("p3", "b", &[("w1", "h")]);
    c.put_phone(&d);
    d.disabled = true;
    assert!(c.put_phone(&d).removed);
    assert!(c.lookup("w1").is_none() && !c.has_phone("p3"));
    d.disabled = false;
    assert!(!c.put_phone(&d).removed);
    assert!(c.lookup("w1").is_some());
}

#[test]
fn placement_follows_the_site_and_its_group() {
    let mut c = CredentialCache::new(Limits {
        min_expires: 60,
        max_expires: 3600,
        digest_bound: dialtone_sip::offer::Offer::Sha256ThenMd5,
    });
    let mut p = phone("p1", "b", &[("u1", "h1")]);
    p.site_id = "hq".into();
    c.put_phone(&p);
    assert!(c.placement("p1").is_empty(), "no site yet");
    let edges: Vec<Edge> = ["a", "b", "c"]
        .iter()
        .map(|n| Edge {
            node_id: (*n).into(),
            ..Default::default()
        })
        .collect();
    c.put_group(&EdgeGroup {
        id: "g".into(),
        edges: edges.clone(),
        ..Default::default()
    });
    c.put_site(&Site {
        id: "hq".into(),
        edge_group_id: "g".into(),
        ..Default::default()
    });
    let want = placement::place("p1", &edges, true).unwrap();
    assert_eq!(
        c.placement("p1"),
        [
            want.primary.node_id.clone(),
            want.secondary.unwrap().node_id.clone()
        ]
    );
    assert!(c.placement("nobody").is_empty());
    c.remove_group("g");
    assert!(c.placement("p1").is_empty());
    c.put_group(&EdgeGroup {
        id: "g".into(),
        edges,
        ..Default::default()
    });
    c.remove_site("hq");
    assert!(c.placement("p1").is_empty());
}

#[test]
fn stored_ha1s_read_back_and_an_oversized_one_matches_nothing() {
    let hex = "0123456789abcdef".repeat(4);
    assert_eq!(Ha1::new(&hex).as_str(), hex);
    assert_eq!(Ha1::new(&hex[..32]).as_str(), &hex[..32]);
    assert_eq!(Ha1::new("").as_str(), "");
    assert_eq!(Ha1::new(&format!("{hex}0")).as_str(), "");
    assert_eq!(format!("{:?}", Ha1::new(&hex)), "Ha1(..)");
}
