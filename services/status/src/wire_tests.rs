use dialtone_proto::status::v1::{EdgeStatus, OperationalStatus, PhoneStatus};

use super::*;

fn changes() -> Vec<(&'static str, StatusChange)> {
    let status = PhoneStatus {
        phone_id: "p1".into(),
        name: "Desk".into(),
        site_id: "hq".into(),
        status: OperationalStatus::Degraded as i32,
        edges: vec![EdgeStatus {
            node_id: "edge-a".into(),
            lines_registered: 1,
            ..Default::default()
        }],
        revision: 41,
        ..Default::default()
    };
    let moved = PhoneStatus {
        site_id: "branch".into(),
        ..status.clone()
    };
    vec![
        (
            "a status",
            StatusChange {
                phone_id: "p1".into(),
                revision: 41,
                status: Some(status),
                ..Default::default()
            },
        ),
        (
            "a phone that left hq for branch",
            StatusChange {
                phone_id: "p1".into(),
                revision: 44,
                status: Some(moved),
                left_site: "hq".into(),
                ..Default::default()
            },
        ),
        (
            "a removal",
            StatusChange {
                phone_id: "p2".into(),
                revision: 42,
                removed: true,
                ..Default::default()
            },
        ),
        (
            "the end of a snapshot",
            StatusChange {
                revision: 43,
                synced: true,
                ..Default::default()
            },
        ),
        ("nothing", StatusChange::default()),
    ]
}

#[test]
fn an_encoded_change_goes_out_as_the_change_it_is() {
    for (name, c) in changes() {
        let bytes: Arc<[u8]> = c.encode_to_vec().into();
        for wire in [
            Wire::Message(Box::new(c.clone())),
            Wire::Encoded(bytes.clone()),
        ] {
            assert_eq!(wire.encoded_len(), bytes.len(), "{name}");
            assert_eq!(wire.encode_to_vec(), &bytes[..], "{name}");
            let decoded = Wire::decode(&bytes[..]).unwrap();
            assert_eq!(decoded, Wire::Message(Box::new(c.clone())), "{name}");
            assert_eq!(wire.into_message().unwrap(), c, "{name}");
        }
    }
    let bad = Wire::Encoded(Arc::from(&[0x0a, 0x05, 0x01][..]));
    assert!(bad.into_message().is_err(), "a truncated status");
}

#[test]
fn a_head_reads_what_a_watch_filters_on() {
    for (name, c) in changes() {
        let head = ChangeHead::decode(&c.encode_to_vec()[..]).unwrap();
        assert_eq!(head.phone_id, c.phone_id, "{name}");
        assert_eq!(head.revision, c.revision, "{name}");
        assert_eq!(head.removed, c.removed, "{name}");
        assert_eq!(head.left_site, c.left_site, "{name}");
        for site in ["", "hq", "branch", "annex"] {
            assert_eq!(
                head.in_site(site),
                crate::watch::in_site(&c, site),
                "{name}, site {site:?}"
            );
        }
    }
}

#[test]
fn a_change_takes_a_phone_out_of_the_view_of_the_watchers_it_leaves() {
    let by_name: std::collections::HashMap<_, _> = changes().into_iter().collect();
    let head = |name: &str| ChangeHead::decode(&by_name[name].encode_to_vec()[..]).unwrap();
    // (change, watcher's site, gone from its view)
    let cases = [
        ("a status", "hq", false),
        ("a status", "", false),
        ("a removal", "hq", true),
        ("a removal", "", true),
        ("a phone that left hq for branch", "hq", true),
        ("a phone that left hq for branch", "branch", false),
        ("a phone that left hq for branch", "", false),
    ];
    for (name, site, gone) in cases {
        assert_eq!(head(name).gone_from(site), gone, "{name}, site {site:?}");
    }
}

#[test]
fn a_change_encoded_from_its_parts_is_prosts_encoding_byte_for_byte() {
    let mut buf = vec![0xff; 7]; // left over from the change before: cleared
    for (name, c) in changes() {
        if c.snapshot || c.synced {
            continue; // the view makes neither
        }
        let parts = ChangeParts {
            status: c.status.as_ref(),
            removed: c.removed,
            phone_id: &c.phone_id,
            revision: c.revision,
            left_site: &c.left_site,
        };
        assert_eq!(&parts.encode(&mut buf)[..], c.encode_to_vec(), "{name}");
        assert_eq!(parts.to_change(), c, "{name}");
    }
    // An empty status is still a status (prost writes a present message, however empty).
    let empty = PhoneStatus::default();
    let parts = ChangeParts {
        status: Some(&empty),
        revision: -1,
        ..Default::default()
    };
    assert_eq!(
        &parts.encode(&mut buf)[..],
        parts.to_change().encode_to_vec()
    );
}
