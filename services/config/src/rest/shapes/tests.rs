use super::*;

fn phone() -> pb::Phone {
    pb::Phone {
        id: "p1".into(),
        name: "Lobby".into(),
        kind: PhoneKind::Managed as i32,
        site_id: "hq".into(),
        base_settings_id: "vvx".into(),
        hardware_id: "0004f2aabb01".into(),
        lines: vec![pb::Line {
            sip_user: "hq-lobby".into(),
            display_name: "Lobby".into(),
            credentials: Some(pb::StoredCredentials {
                realm: "dialtone".into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        version: 7,
        created_at_ms: 1_796_370_900_123,
        updated_at_ms: 0,
        ..Default::default()
    }
}

#[test]
fn a_phone_reads_as_genesys_cloud_shows_one() {
    let names = Names {
        site: Some("Head office".into()),
        base: Some(("VVX desk".into(), MetaBase::PolyVvx)),
    };
    let out = phone_out(&phone(), &names, &[(0, "s3cret".into())]);
    let json = serde_json::to_value(&out).expect("json");
    let cases: [(&str, serde_json::Value); 12] = [
        ("/id", "p1".into()),
        ("/version", 7.into()),
        ("/state", "active".into()),
        ("/site/id", "hq".into()),
        ("/site/name", "Head office".into()),
        (
            "/site/selfUri",
            "/api/v2/telephony/providers/edges/sites/hq".into(),
        ),
        ("/phoneBaseSettings/name", "VVX desk".into()),
        ("/phoneMetaBase/id", "poly_vvx".into()),
        (
            "/lines/0/properties/station_identity_address/value/instance",
            "hq-lobby".into(),
        ),
        ("/lines/0/password", "s3cret".into()),
        (
            "/properties/phone_hardwareId/value/instance",
            "0004f2aabb01".into(),
        ),
        ("/dateCreated", "2026-12-04T07:55:00.123Z".into()),
    ];
    for (pointer, want) in cases {
        assert_eq!(json.pointer(pointer), Some(&want), "{pointer} in {json}");
    }
    assert!(json.get("dateModified").is_none());
    // Without a password for it, a line shows none.
    let plain = serde_json::to_value(phone_out(&phone(), &names, &[])).expect("json");
    assert!(plain.pointer("/lines/0/password").is_none());
}

#[test]
fn a_body_changes_what_it_shows_and_keeps_the_rest() {
    let current = pb::Phone {
        overrides: Some(pb::PhoneSettings {
            mwi_enabled: Some(true),
            ..Default::default()
        }),
        ..phone()
    };
    let mut body = phone_out(&current, &Names::default(), &[]);
    body.name = "Front desk".into();
    body.site = Some(EntityRef {
        id: "branch".into(),
        ..Default::default()
    });
    body.lines.push(Line {
        properties: LineProperties {
            station_line_label: TextProperty::of("Second"),
            ..Default::default()
        },
        ..Default::default()
    });
    let p = phone_in(&body, current.clone()).expect("applies");
    assert_eq!(
        (p.name.as_str(), p.site_id.as_str()),
        ("Front desk", "branch")
    );
    assert_eq!(
        p.overrides, current.overrides,
        "what the API does not show stays"
    );
    assert_eq!(p.lines.len(), 2);
    assert_eq!(
        p.lines[0].credentials, current.lines[0].credentials,
        "a kept line keeps its credentials"
    );
    assert_eq!(
        (
            p.lines[1].sip_user.as_str(),
            p.lines[1].display_name.as_str()
        ),
        ("", "Second")
    );
    assert_eq!(p.version, 7);
}

#[test]
fn a_new_phone_takes_its_kind_from_the_body_or_its_hardware_id() {
    let body = |kind: Option<&str>, mac: &str| Phone {
        name: "x".into(),
        kind: kind.map(Into::into),
        properties: Some(PhoneProperties {
            phone_hardware_id: TextProperty::of(mac),
        }),
        ..Default::default()
    };
    let cases = [
        (None, "0004f2aabb01", Some(PhoneKind::Managed)),
        (None, "", Some(PhoneKind::Unmanaged)),
        (Some("webrtc"), "", Some(PhoneKind::Webrtc)),
        (Some("REMOTE"), "", Some(PhoneKind::Remote)),
        (Some("desk"), "", None),
    ];
    for (kind, mac, want) in cases {
        let got = phone_in(&body(kind, mac), pb::Phone::default())
            .ok()
            .map(|p| PhoneKind::try_from(p.kind).expect("a kind"));
        assert_eq!(got, want, "{kind:?} {mac}");
    }
}

#[test]
fn bad_bodies_are_refused_by_field() {
    let with_state = Phone {
        state: Some("deleted".into()),
        ..Default::default()
    };
    let with_password = Phone {
        lines: vec![Line {
            password: Some("x".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    for (body, field) in [(with_state, "state"), (with_password, "lines[0].password")] {
        match phone_in(&body, pb::Phone::default()) {
            Err(ConfigError::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let named = Phone {
        phone_meta_base: Some(EntityRef {
            id: "yealink".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(check_meta_base(&named, Some(MetaBase::Yealink)).is_ok());
    assert!(check_meta_base(&named, Some(MetaBase::PolyVvx)).is_err());
    assert!(check_meta_base(&Phone::default(), Some(MetaBase::PolyVvx)).is_ok());
}

#[test]
fn meta_bases_and_kinds_round_trip_through_their_ids() {
    for m in dialtone_domain::settings::META_BASES {
        assert_eq!(meta_base_of(&meta_base_id(m)), Some(m));
    }
    assert_eq!(meta_base_id(MetaBase::PolyEdgeE), "poly_edge_e");
    assert_eq!(meta_base_name(MetaBase::PolyEdgeE), "Poly Edge E");
    assert_eq!(meta_base_name(MetaBase::GenericSip), "Generic SIP");
    assert_eq!(meta_base_of("unspecified"), None);
    assert_eq!(
        kind_of_param(&kind_id(PhoneKind::Webrtc)),
        Some(PhoneKind::Webrtc)
    );
}

#[test]
fn timestamps_are_rfc3339_utc() {
    for (ms, want) in [
        (0, "1970-01-01T00:00:00.000Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (1_796_370_900_123, "2026-12-04T07:55:00.123Z"),
    ] {
        assert_eq!(rfc3339(ms), want);
    }
}

#[test]
fn status_reads_as_genesys_cloud_phone_statuses() {
    use crate::phone_status::PhoneStatusView;
    use dialtone_proto::status::v1::{EdgeRole, OperationalStatus as S};
    let p = pb::Phone {
        lines: vec![
            pb::Line {
                sip_user: "a".into(),
                ..Default::default()
            },
            pb::Line {
                sip_user: "b".into(),
                ..Default::default()
            },
        ],
        ..phone()
    };
    let view = |status, edges: &[(&str, EdgeRole, u32)], lines: &[&[&str]]| PhoneStatusView {
        status,
        edges: edges
            .iter()
            .map(|(n, r, c)| ((*n).to_owned(), *r, *c))
            .collect(),
        lines: lines
            .iter()
            .map(|l| l.iter().map(|n| (*n).to_owned()).collect())
            .collect(),
    };
    use EdgeRole::{Primary as P, Secondary as Sec, Unexpected as U};
    // (view, status, edgesStatus, secondary status, line reachability in status)
    let cases = [
        (
            view(
                S::Operational,
                &[("e1", P, 2), ("e2", Sec, 2)],
                &[&["e1", "e2"], &["e1", "e2"]],
            ),
            "OPERATIONAL",
            "IN_SERVICE",
            Some("OPERATIONAL"),
            [true, true],
        ),
        (
            view(
                S::Degraded,
                &[("e1", P, 2), ("e2", Sec, 1)],
                &[&["e1", "e2"], &["e1"]],
            ),
            "DEGRADED",
            "MIXED_SERVICE",
            Some("DEGRADED"),
            [true, true],
        ),
        (
            view(S::Degraded, &[("e1", P, 0), ("e9", U, 1)], &[&["e9"], &[]]),
            "DEGRADED",
            "OUT_OF_SERVICE",
            None,
            [true, false],
        ),
        (
            view(S::Offline, &[("e1", P, 0), ("e2", Sec, 0)], &[&[], &[]]),
            "OFFLINE",
            "OUT_OF_SERVICE",
            Some("OFFLINE"),
            [false, false],
        ),
        (
            view(S::Offline, &[], &[&[], &[]]),
            "OFFLINE",
            "NO_EDGES",
            None,
            [false, false],
        ),
    ];
    for (v, status, edges, secondary, reachable) in cases {
        let (primary, second) = status_out(&p, &v, "dialtone");
        assert_eq!(
            (
                primary.operational_status.as_str(),
                primary.edges_status.as_str()
            ),
            (status, edges),
            "{v:?}"
        );
        assert_eq!(
            second.as_ref().map(|s| s.operational_status.as_str()),
            secondary,
            "{v:?}"
        );
        let got: Vec<bool> = primary.line_statuses.iter().map(|l| l.reachable).collect();
        assert_eq!(got, reachable, "{v:?}");
        assert_eq!(primary.line_statuses[1].address_of_record, "sip:b@dialtone");
        assert_eq!(primary.phone_assignment_to_edge_type, "PRIMARY");
    }
}

#[test]
fn sites_read_and_write_what_the_api_shows() {
    let current = pb::Site {
        id: "hq".into(),
        name: "Head office".into(),
        edge_group_id: "hq-edges".into(),
        number_plan: "nanp".into(),
        version: 4,
        ..Default::default()
    };
    let mut body = site_out(&current);
    assert_eq!(
        body.edge_group.as_ref().map(|g| g.id.as_str()),
        Some("hq-edges")
    );
    body.name = "HQ".into();
    body.media_regions = vec!["eu-west".into()];
    body.media_regions_use_latency_based = true;
    let s = site_in(&body, current.clone());
    assert_eq!((s.id.as_str(), s.name.as_str(), s.version), ("hq", "HQ", 4));
    assert_eq!(s.number_plan, "nanp", "what the API does not show stays");
    assert_eq!(
        s.media_region_order,
        pb::MediaRegionOrder::LowestLatency as i32
    );
    let new = site_in(
        &Site {
            name: "Branch Office #2".into(),
            ..Default::default()
        },
        pb::Site::default(),
    );
    assert_eq!(new.id, "branch-office-2");
    for (name, id) in [("  Lyon ", "lyon"), ("42 Main", "s-42-main"), ("--", "s")] {
        assert_eq!(slug(name), id, "{name}");
    }
}
