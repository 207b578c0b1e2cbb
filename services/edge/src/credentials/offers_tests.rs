//! Which digest algorithms each line's challenges offer (its profile's, within the edge's
//! bound), and what a user nobody has is offered.

use dialtone_proto::config::v1::{BaseSettings, DigestAlgorithm, MetaBase, Phone, PhoneSettings};
use dialtone_sip::offer::Offer;

use super::{CredentialCache, Limits};

fn cache(bound: Offer) -> CredentialCache {
    CredentialCache::new(Limits {
        min_expires: 60,
        max_expires: 3600,
        digest_bound: bound,
    })
}

fn profile(id: &str, meta: MetaBase, algorithms: &[DigestAlgorithm]) -> BaseSettings {
    BaseSettings {
        id: id.into(),
        meta_base: meta as i32,
        settings: Some(PhoneSettings {
            digest_algorithms: algorithms.iter().map(|a| *a as i32).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A phone with a line per user (HA1s as `tests::phone` makes them).
fn phone(id: &str, base: &str, users: &[&str]) -> Phone {
    let users: Vec<(&str, &str)> = users.iter().map(|u| (*u, "h")).collect();
    super::tests::phone(id, base, &users)
}

fn offer_of(c: &CredentialCache, user: &str) -> Offer {
    c.lookup(user).expect("a line").offer
}

#[test]
fn a_line_offers_its_profiles_algorithms_within_the_edges_bound() {
    use DigestAlgorithm::{Md5, Sha256};
    // (edge's bound, profile's meta-base and list, what the line's challenges offer)
    let cases = [
        // Meta-base defaults: MD5 alone.
        (
            Offer::Sha256ThenMd5,
            MetaBase::GenericSip,
            vec![],
            Offer::Md5,
        ),
        (Offer::Sha256ThenMd5, MetaBase::Yealink, vec![], Offer::Md5),
        (Offer::Sha256ThenMd5, MetaBase::Webrtc, vec![], Offer::Md5),
        (Offer::Sha256ThenMd5, MetaBase::PolyVvx, vec![], Offer::Md5),
        // A profile moving its phones to SHA-256.
        (
            Offer::Sha256ThenMd5,
            MetaBase::Yealink,
            vec![Sha256, Md5],
            Offer::Sha256ThenMd5,
        ),
        (
            Offer::Sha256ThenMd5,
            MetaBase::GenericSip,
            vec![Sha256],
            Offer::Sha256,
        ),
        (
            Offer::Sha256ThenMd5,
            MetaBase::GenericSip,
            vec![Md5, Sha256],
            Offer::Md5ThenSha256,
        ),
        // The edge's bound cuts it.
        (
            Offer::Md5,
            MetaBase::GenericSip,
            vec![Sha256, Md5],
            Offer::Md5,
        ),
        (Offer::Sha256, MetaBase::GenericSip, vec![], Offer::Sha256),
        (Offer::Md5, MetaBase::GenericSip, vec![Sha256], Offer::Md5),
    ];
    for (bound, meta, list, want) in cases {
        let mut c = cache(bound);
        c.put_base(&profile("p", meta, &list));
        c.put_phone(&phone("ph", "p", &["u1"]));
        assert_eq!(offer_of(&c, "u1"), want, "{bound:?} {meta:?} {list:?}");
    }
    // A phone's own override wins over its profile.
    let mut c = cache(Offer::Sha256ThenMd5);
    c.put_base(&profile("p", MetaBase::Yealink, &[]));
    let mut p = phone("ph", "p", &["u1"]);
    p.overrides = Some(PhoneSettings {
        digest_algorithms: vec![Sha256 as i32],
        ..Default::default()
    });
    c.put_phone(&p);
    assert_eq!(offer_of(&c, "u1"), Offer::Sha256);
}

#[test]
fn unknown_users_are_offered_what_the_fleets_lines_are_as_often() {
    let mut c = cache(Offer::Sha256ThenMd5);
    // No lines: the generic SIP default, within the bound.
    assert_eq!(c.unknown_offers().pick(|| 5), Offer::Md5);
    c.put_base(&profile(
        "sha",
        MetaBase::GenericSip,
        &[DigestAlgorithm::Sha256],
    ));
    c.put_base(&profile("desk", MetaBase::Yealink, &[]));
    c.put_phone(&phone("a", "sha", &["a1"]));
    c.put_phone(&phone("b", "desk", &["b1", "b2", "b3"]));
    let drawn = |c: &CredentialCache| {
        let mut n = [0; 2];
        for i in 0..400 {
            // Draws spread over the whole range, as a keyed hash's are (the middle of each
            // 400th).
            match c.unknown_offers().pick(|| (2 * i + 1) * (u64::MAX / 800)) {
                Offer::Sha256 => n[0] += 1,
                Offer::Md5 => n[1] += 1,
                other => panic!("{other:?} is no line's offer"),
            }
        }
        n
    };
    assert_eq!(drawn(&c), [100, 300]);
    // A profile change moves its lines, and the draws follow.
    c.put_base(&profile(
        "desk",
        MetaBase::Yealink,
        &[DigestAlgorithm::Sha256],
    ));
    assert_eq!(drawn(&c), [400, 0]);
    c.remove_phone("a");
    c.remove_phone("b");
    assert_eq!(c.unknown_offers().pick(|| 5), Offer::Md5);
}
