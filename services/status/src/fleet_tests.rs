use dialtone_domain::placement;
use dialtone_proto::{
    config::v1::{BaseSettings, Edge, Line, MetaBase, Phone, PhoneKind, PhoneSettings, Site},
    edge::v1::{Binding, Contact},
    provisioning::v1::ProvisionState,
    status::v1::EdgeRole,
};
use prost::Message;

use super::{absorb::Touched, *};

const PHONE: &str = "p1";

fn phone(lines: &[&str]) -> Vec<u8> {
    Phone {
        name: "Desk".into(),
        ..phone_of(PHONE, "hq", PhoneKind::Unmanaged, lines)
    }
    .encode_to_vec()
}

/// Phone `id` of site `site` and profile desk, with these lines' SIP users.
fn phone_of(id: &str, site: &str, kind: PhoneKind, lines: &[&str]) -> Phone {
    Phone {
        id: id.into(),
        name: format!("Phone {id}"),
        site_id: site.into(),
        base_settings_id: "desk".into(),
        kind: kind as i32,
        lines: lines
            .iter()
            .map(|u| Line {
                sip_user: (*u).into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn binding(ua: &str) -> Vec<u8> {
    Binding {
        phone_id: PHONE.into(),
        contacts: vec![Contact {
            uri: "sip:1001@10.0.0.9:5060".into(),
            user_agent: ua.into(),
            expires_at_s: 1,
            ..Default::default()
        }],
        updated_at_ms: 1_500,
        ..Default::default()
    }
    .encode_to_vec()
}

/// Group main: edges a, b, c.
fn group() -> EdgeGroup {
    group_of(&["a", "b", "c"])
}

/// Group main with these edges, in this order.
fn group_of(edges: &[&str]) -> EdgeGroup {
    EdgeGroup {
        id: "main".into(),
        edges: edges
            .iter()
            .map(|n| Edge {
                node_id: (*n).into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Site hq on group main.
fn site() -> Site {
    Site {
        id: "hq".into(),
        edge_group_id: "main".into(),
        ..Default::default()
    }
}

/// A fleet with site hq → group main (edges a, b, c, each with its membership record),
/// profile desk and phone p1.
fn fleet() -> (Fleet, String, String) {
    let mut f = Fleet::new("example.com");
    let group = group();
    let p = placement::place(PHONE, &group.edges, true).unwrap();
    let (primary, secondary) = (
        p.primary.node_id.clone(),
        p.secondary.unwrap().node_id.clone(),
    );
    let site = site();
    let base = BaseSettings {
        id: "desk".into(),
        meta_base: MetaBase::GenericSip as i32,
        ..Default::default()
    };
    let changes = f.apply(
        [
            ("config/edge-groups/main", Some(&group.encode_to_vec()[..])),
            ("config/sites/hq", Some(&site.encode_to_vec()[..])),
            ("config/base-settings/desk", Some(&base.encode_to_vec()[..])),
            ("config/phones/p1", Some(&phone(&["1001"])[..])),
            ("members/edge/a", Some(&b"m"[..])),
            ("members/edge/b", Some(&b"m"[..])),
            ("members/edge/c", Some(&b"m"[..])),
        ],
        10,
        1_000,
    );
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].status.as_ref().unwrap().status(),
        OperationalStatus::Offline
    );
    (f, primary, secondary)
}

/// The keys of p1's line on its primary and its secondary edge.
fn binding_keys(primary: &str, secondary: &str) -> (String, String) {
    (
        keys::binding(PHONE, 0, primary),
        keys::binding(PHONE, 0, secondary),
    )
}

/// Registers p1's line on both its edges (binding `b`, revision 11): OPERATIONAL. Returns
/// the two binding keys.
fn registered_twice(f: &mut Fleet, primary: &str, secondary: &str, b: &[u8]) -> (String, String) {
    let (key_p, key_s) = binding_keys(primary, secondary);
    f.apply(
        [(key_p.as_str(), Some(b)), (key_s.as_str(), Some(b))],
        11,
        2_000,
    );
    assert_eq!(status(f).status(), OperationalStatus::Operational);
    (key_p, key_s)
}

/// The status of the one change `ch` holds.
fn the_one_status(ch: &[StatusChange]) -> OperationalStatus {
    assert_eq!(ch.len(), 1, "{ch:?}");
    ch[0].status.as_ref().unwrap().status()
}

fn status(f: &Fleet) -> PhoneStatus {
    f.get(PHONE).unwrap()
}

#[test]
fn dual_registration_goes_degraded_then_operational_and_back() {
    let (mut f, primary, secondary) = fleet();
    let b = binding("Poly/1");
    let key_p = keys::binding("p1", 0, &primary);
    let key_s = keys::binding("p1", 0, &secondary);

    let ch = f.apply([(key_p.as_str(), Some(&b[..]))], 11, 2_000);
    assert_eq!(ch.len(), 1);
    let st = status(&f);
    assert_eq!(st.status(), OperationalStatus::Degraded);
    assert_eq!(st.status_since_ms, 2_000);
    assert_eq!(st.revision, 11);
    assert_eq!(st.user_agent, "Poly/1");
    assert!(st.lines[0].reachable);
    assert_eq!(st.lines[0].aor, "sip:1001@example.com");
    assert_eq!(st.edges[0].node_id, primary);
    assert_eq!(st.edges[0].role(), EdgeRole::Primary);
    assert!(st.edges[0].registered);
    assert_eq!(st.edges[0].since_ms, 2_000);
    assert_eq!(st.edges[0].binding_updated_at_ms, 1_500);
    assert_eq!(
        f.take_binding_writes(),
        [1_500],
        "the write time, for the lag metric"
    );
    assert!(f.take_binding_writes().is_empty());
    assert!(!st.edges[1].registered);
    assert_eq!(st.edges[1].binding_updated_at_ms, 0);

    f.apply([(key_s.as_str(), Some(&b[..]))], 12, 3_000);
    let st = status(&f);
    assert_eq!(st.status(), OperationalStatus::Operational);
    assert_eq!(
        st.edges[0].since_ms, 2_000,
        "the primary's since-time holds"
    );
    assert_eq!(st.edges[1].since_ms, 3_000);
    assert_eq!(st.lines[0].contacts.len(), 2);

    // A refresh that only moves the expiry changes nothing.
    let refreshed = Binding {
        contacts: vec![Contact {
            expires_at_s: 999,
            ..Binding::decode(&b[..]).unwrap().contacts[0].clone()
        }],
        updated_at_ms: 3_900,
        ..Binding::decode(&b[..]).unwrap()
    }
    .encode_to_vec();
    assert!(
        f.apply([(key_s.as_str(), Some(&refreshed[..]))], 13, 4_000)
            .is_empty()
    );
    assert_eq!(status(&f).revision, 12);
    assert_eq!(
        status(&f).edges[1].binding_updated_at_ms,
        3_900,
        "shown, not a change"
    );

    // The primary's lease expires.
    let ch = f.apply([(key_p.as_str(), None)], 14, 5_000);
    assert_eq!(
        ch[0].status.as_ref().unwrap().status(),
        OperationalStatus::Degraded
    );
    assert_eq!(f.counts()["hq"], [0, 1, 0, 0, 0]);
    f.apply([(key_s.as_str(), None)], 15, 6_000);
    assert_eq!(status(&f).status(), OperationalStatus::Offline);
    assert_eq!(f.counts()["hq"], [0, 0, 1, 0, 0]);
}

#[test]
fn secondary_registration_off_expects_the_primary_only() {
    let (mut f, primary, _) = fleet();
    let base = BaseSettings {
        id: "desk".into(),
        meta_base: MetaBase::GenericSip as i32,
        settings: Some(PhoneSettings {
            secondary_registration: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    f.apply(
        [("config/base-settings/desk", Some(&base.encode_to_vec()[..]))],
        11,
        2_000,
    );
    let key_p = keys::binding("p1", 0, &primary);
    f.apply([(key_p.as_str(), Some(&binding("x")[..]))], 12, 3_000);
    let st = status(&f);
    assert_eq!(st.status(), OperationalStatus::Operational);
    assert_eq!(st.edges.len(), 1);
}

#[test]
fn a_binding_on_an_unassigned_edge_is_unexpected() {
    let (mut f, primary, secondary) = fleet();
    let other = ["a", "b", "c"]
        .into_iter()
        .find(|n| *n != primary && *n != secondary)
        .unwrap();
    let key = keys::binding("p1", 0, other);
    f.apply([(key.as_str(), Some(&binding("x")[..]))], 11, 2_000);
    let st = status(&f);
    assert_eq!(st.status(), OperationalStatus::Degraded);
    assert_eq!(st.edges[2].role(), EdgeRole::Unexpected);
}

#[test]
fn deleting_the_phone_reports_removal_and_bindings_alone_show_nothing() {
    let (mut f, primary, _) = fleet();
    let ch = f.apply([("config/phones/p1", None)], 11, 2_000);
    assert!(ch[0].removed);
    assert!(f.get(PHONE).is_none());
    assert!(f.is_empty());
    let key = keys::binding("p1", 0, &primary);
    assert!(
        f.apply([(key.as_str(), Some(&binding("x")[..]))], 12, 3_000)
            .is_empty()
    );
    assert!(f.get(PHONE).is_none());
    f.apply([(key.as_str(), None)], 13, 4_000);
    assert_eq!(f.ids_after("").count(), 0);
}

#[test]
fn a_binding_of_a_phone_the_view_lacks_touches_nothing_when_deleted_or_undecodable() {
    let (mut f, primary, _) = fleet();
    let held = f.phones.len();
    let key = keys::binding("p9", 0, &primary);
    assert!(matches!(f.absorb(&key, None), Touched::Nothing));
    assert!(matches!(
        f.absorb(&key, Some(b"\xff\xff")),
        Touched::Nothing
    ));
    assert_eq!(f.phones.len(), held, "no entry made for p9");
    // Written as it decodes, it is held (and touches p9).
    assert!(matches!(
        f.absorb(&key, Some(&binding("x"))),
        Touched::Phone(_)
    ));
    assert_eq!(f.phones.len(), held + 1);
}

#[test]
fn placement_problems_are_named() {
    let (mut f, _, _) = fleet();
    f.apply([("config/edge-groups/main", None)], 11, 2_000);
    assert_eq!(
        status(&f).placement_problem,
        "edge group main does not exist"
    );
    f.apply([("config/sites/hq", None)], 12, 3_000);
    assert_eq!(status(&f).placement_problem, "site hq does not exist");
}

/// A listing of [`fleet`]'s inputs with `group` and p1's binding `key`.
fn listed(group: &EdgeGroup, key: &str) -> Fleet {
    let mut fresh = Fleet::new("");
    let (g, s, p, b) = (
        group.encode_to_vec(),
        site().encode_to_vec(),
        phone(&["1001"]),
        binding("x"),
    );
    fresh.load([
        ("config/phones/p1", &p[..]),
        ("config/edge-groups/main", &g[..]),
        ("config/sites/hq", &s[..]),
        (key, &b[..]),
        ("members/edge/a", b"m"),
        ("members/edge/b", b"m"),
        ("members/edge/c", b"m"),
    ]);
    fresh
}

#[test]
fn a_relisting_reports_only_real_differences() {
    let (mut f, primary, _) = fleet();
    let key = keys::binding("p1", 0, &primary);
    f.apply([(key.as_str(), Some(&binding("x")[..]))], 11, 2_000);
    let before = status(&f);
    // The same inputs listed again: nothing changed.
    let ch = f.replace_inputs(listed(&group(), &key), 20, 9_000);
    assert!(ch.is_empty(), "{ch:?}");
    assert_eq!(status(&f), before);
}

#[test]
fn a_binding_counts_only_while_its_edge_has_a_membership_record() {
    let (mut f, primary, secondary) = fleet();
    // The group's third edge holds none of p1's bindings.
    let third = ["a", "b", "c"]
        .into_iter()
        .find(|n| *n != primary && *n != secondary)
        .map(|n| keys::member("edge", n))
        .unwrap();
    let b = binding("Poly/1");
    let (key_p, _) = registered_twice(&mut f, &primary, &secondary, &b);
    let (member_p, member_s) = (
        keys::member("edge", &primary),
        keys::member("edge", &secondary),
    );

    let m: &[u8] = b"member";
    // (what happens, the key, its value, the phone's status after it: none when no
    // change is published)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a [u8]>,
        Option<OperationalStatus>,
    );
    let cases: Vec<Case> = vec![
        (
            "the primary's lease expires",
            &member_p,
            None,
            Some(OperationalStatus::Degraded),
        ),
        ("its bindings then expire too", &key_p, None, None),
        (
            "the secondary's lease expires",
            &member_s,
            None,
            Some(OperationalStatus::Offline),
        ),
        (
            "the secondary comes back, bindings kept",
            &member_s,
            Some(m),
            Some(OperationalStatus::Degraded),
        ),
        ("its record is written again", &member_s, Some(m), None),
        (
            "an edge with no binding of the phone goes",
            &third,
            None,
            None,
        ),
        (
            "a binding on an edge with no record",
            &key_p,
            Some(&b[..]),
            None,
        ),
        (
            "that edge's record comes",
            &member_p,
            Some(m),
            Some(OperationalStatus::Operational),
        ),
    ];
    for (i, (name, key, value, want)) in cases.into_iter().enumerate() {
        let ch = f.apply([(key, value)], 12 + i as i64, 3_000);
        match want {
            Some(want) => {
                assert_eq!(ch.len(), 1, "{name}");
                assert_eq!(ch[0].status.as_ref().unwrap().status(), want, "{name}");
            }
            None => assert!(ch.is_empty(), "{name}: {ch:?}"),
        }
    }
    f.apply([(member_p.as_str(), None)], 30, 4_000);
    let st = status(&f);
    assert_eq!(
        st.lines[0].contacts.len(),
        1,
        "a gone edge's contact is not shown"
    );
    assert_eq!(st.lines[0].contacts[0].node_id, secondary);
}

#[test]
fn only_the_wide_prefixes_touch_many_phones() {
    // Each key of the view, as written and as deleted: absorb says it touches many phones
    // (an edge's or everyone's) exactly when the hub is told so.
    let mut f = Fleet::new("");
    let puts: Vec<(String, Vec<u8>)> = vec![
        (format!("{}edge-1", keys::EDGE_MEMBERS), Vec::new()),
        (format!("{}hq", keys::SITES), Vec::new()),
        (format!("{}eg", keys::EDGE_GROUPS), Vec::new()),
        (format!("{}desk", keys::BASE_SETTINGS), Vec::new()),
        (format!("{}{PHONE}", keys::PHONES), phone(&["1001"])),
        (format!("{}{PHONE}/0/edge-1", keys::BINDINGS), binding("ua")),
        (format!("{}{PHONE}", keys::PROVISION), Vec::new()),
        (format!("{}edge-1", keys::TRUNK_HEALTH), Vec::new()),
        (format!("{}edge-1", keys::MEDIA_HEALTH), Vec::new()),
        ("actions/x".to_owned(), Vec::new()),
    ];
    for (key, value) in &puts {
        for v in [Some(&value[..]), None] {
            let many = matches!(f.absorb(key, v), Touched::Edge(_) | Touched::Everyone);
            assert_eq!(
                many,
                touches_many_phones(key),
                "{key} ({})",
                if v.is_some() { "put" } else { "delete" }
            );
        }
    }
}

/// `n` phones `p0000…` with one line each, bound to their primary and secondary edge of
/// the fleet of [`fleet`] (every edge with its record): the keys and values, in id order.
fn many_bound_phones(n: usize) -> Vec<(String, Vec<u8>)> {
    let group = group();
    let mut kvs = Vec::new();
    for i in 0..n {
        let id = format!("p{i:04}");
        let p = Phone {
            id: id.clone(),
            name: format!("Desk {i}"),
            site_id: "hq".into(),
            base_settings_id: "desk".into(),
            lines: vec![Line {
                sip_user: format!("{}", 2000 + i),
                ..Default::default()
            }],
            ..Default::default()
        };
        kvs.push((keys::phone(&id), p.encode_to_vec()));
        for node in placement::node_ids(&id, &group.edges, true) {
            kvs.push((keys::binding(&id, 0, &node), binding("Poly/1")));
        }
    }
    kvs
}

#[test]
fn an_edge_leaving_many_phones_reads_as_each_phone_leaving_alone() {
    // Enough phones that a departed edge's are re-reduced on several threads
    // (crate::republish); the same fleet re-reduced phone by phone is the reference.
    let phones = many_bound_phones(3_000);
    let build = || {
        let (mut f, ..) = fleet();
        f.apply(
            phones.iter().map(|(k, v)| (k.as_str(), Some(&v[..]))),
            11,
            2_000,
        );
        f
    };
    let (mut together, mut alone) = (build(), build());
    let bound_to_a: Vec<&str> = phones
        .iter()
        .filter(|(k, _)| k.starts_with(keys::BINDINGS) && k.ends_with("/a"))
        .map(|(k, _)| keys::parse_binding(k).unwrap().0)
        .collect();
    assert!(bound_to_a.len() > 1_500, "{}", bound_to_a.len());

    let changes = together.apply([("members/edge/a", None)], 12, 3_000);
    let ids: Vec<&str> = changes.iter().map(|c| c.phone_id.as_str()).collect();
    assert_eq!(ids, bound_to_a, "one change a bound phone, in id order");

    // The reference: the record gone from a fleet where the phones are then touched one
    // at a time (a rewrite of each phone's configuration re-reduces it alone).
    alone.members.remove("a");
    for id in &bound_to_a {
        let (k, v) = phones.iter().find(|(k, _)| *k == keys::phone(id)).unwrap();
        let one = alone.apply([(k.as_str(), Some(&v[..]))], 12, 3_000);
        assert_eq!(one.len(), 1, "{id}");
        assert_eq!(one[0], changes[ids.binary_search(id).unwrap()], "{id}");
    }
    assert_eq!(together.counts(), alone.counts());
    let site = together.counts()["hq"];
    assert_eq!(site[1] as usize, bound_to_a.len(), "DEGRADED: {site:?}");
    assert_eq!(site[0] as usize, 3_000 - bound_to_a.len(), "{site:?}");
    assert_eq!(site[2], 1, "p1, never registered, OFFLINE: {site:?}");
    for (k, _) in phones.iter().filter(|(k, _)| k.starts_with(keys::PHONES)) {
        let id = &k[keys::PHONES.len()..];
        assert_eq!(together.get(id), alone.get(id), "{id}");
    }
}

/// Phone p1's (primary, secondary) as its status shows them.
fn roles(f: &Fleet) -> (String, String) {
    let st = status(f);
    let of = |role| {
        st.edges
            .iter()
            .find(|e| e.role() == role)
            .map(|e| e.node_id.clone())
            .unwrap_or_default()
    };
    (of(EdgeRole::Primary), of(EdgeRole::Secondary))
}

#[test]
fn a_group_change_or_a_relisting_moves_cached_placements() {
    let (mut f, primary, secondary) = fleet();
    let key_p = keys::binding("p1", 0, &primary);
    f.apply([(key_p.as_str(), Some(&binding("x")[..]))], 11, 2_000);
    assert_eq!(roles(&f), (primary.clone(), secondary.clone()));
    // The same edges in another order place the phone on the same edges, at other places
    // in the list: a placement cached as places in the old list would swap them.
    for (i, order) in [["c", "b", "a"], ["b", "c", "a"], ["a", "b", "c"]]
        .into_iter()
        .enumerate()
    {
        let g = group_of(&order).encode_to_vec();
        f.apply(
            [("config/edge-groups/main", Some(&g[..]))],
            12 + i as i64,
            3_000,
        );
        assert_eq!(roles(&f), (primary.clone(), secondary.clone()), "{order:?}");
    }
    // Edges d and e only: the phone moves to them.
    let g = group_of(&["d", "e"]);
    f.apply(
        [("config/edge-groups/main", Some(&g.encode_to_vec()[..]))],
        20,
        4_000,
    );
    let want = placement::node_ids(PHONE, &g.edges, true);
    assert_eq!(roles(&f), (want[0].clone(), want[1].clone()));

    // A relisting with the group reversed again: placements found before it do not hold.
    f.replace_inputs(listed(&group_of(&["c", "b", "a"]), &key_p), 30, 9_000);
    assert_eq!(roles(&f), (primary, secondary));
}

#[test]
fn a_phone_moved_to_another_site_names_the_site_it_left() {
    let (mut f, _, _) = fleet();
    let branch = Site {
        id: "branch".into(),
        ..site()
    };
    f.apply(
        [("config/sites/branch", Some(&branch.encode_to_vec()[..]))],
        11,
        2_000,
    );
    assert_eq!(f.last_move_from("hq"), 0);
    let moved = Phone {
        site_id: "branch".into(),
        ..Phone::decode(&phone(&["1001"])[..]).unwrap()
    };
    let ch = f.apply(
        [("config/phones/p1", Some(&moved.encode_to_vec()[..]))],
        12,
        3_000,
    );
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].left_site, "hq");
    assert_eq!(ch[0].status.as_ref().unwrap().site_id, "branch");
    // A site's watcher resuming from before cannot read the departure from the view.
    assert_eq!((f.last_move_from("hq"), f.last_removal()), (12, 0));
    assert_eq!(
        f.last_move_from("branch"),
        0,
        "a phone that came is not news"
    );
    // The watchers of both sites hear of it; another site's do not.
    for (site, heard) in [("hq", true), ("branch", true), ("annex", false), ("", true)] {
        assert_eq!(crate::watch::in_site(&ch[0], site), heard, "{site:?}");
    }
    // A change that keeps the site names none.
    let renamed = Phone {
        name: "Desk 2".into(),
        ..moved
    };
    let ch = f.apply(
        [("config/phones/p1", Some(&renamed.encode_to_vec()[..]))],
        13,
        4_000,
    );
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].left_site, "");
    assert_eq!(f.last_move_from("hq"), 12);
}

#[test]
fn a_status_built_over_another_phones_equals_one_built_afresh() {
    // Phones of different shapes: two lines, one with two contacts; no binding; a site
    // that does not exist; a provisioning record; remote; one line with a binding on an
    // edge without a membership record; disabled. Each built over a status stamped as
    // re-reducing leaves the thread's scratch.
    let (mut f, primary, secondary) = fleet();
    let two_contacts = Binding {
        phone_id: "p2".into(),
        contacts: ["sip:2001@10.0.0.7:5060", "sip:2001@10.0.0.8:5062"]
            .iter()
            .map(|uri| Contact {
                uri: (*uri).into(),
                source: "10.0.0.7:5060".into(),
                user_agent: "Yealink".into(),
                expires_at_s: 1,
                ..Default::default()
            })
            .collect(),
        updated_at_ms: 2_000,
        ..Default::default()
    };
    let with = |id: &str, site: &str, kind: PhoneKind, lines: &[&str]| {
        phone_of(id, site, kind, lines).encode_to_vec()
    };
    let provisioned = ProvisionState {
        applied_version: "v3".into(),
        desired_version: "v4".into(),
        last_error: "timed out".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let kvs: Vec<(String, Vec<u8>)> = vec![
        (keys::binding("p1", 0, &primary), binding("Poly/1")),
        (keys::binding("p1", 0, &secondary), binding("Poly/2")),
        (
            keys::phone("p2"),
            with("p2", "hq", PhoneKind::Unmanaged, &["2001", "2002"]),
        ),
        (
            keys::binding("p2", 1, &primary),
            two_contacts.encode_to_vec(),
        ),
        (
            keys::phone("p3"),
            with("p3", "hq", PhoneKind::Unmanaged, &[]),
        ),
        (
            keys::phone("p4"),
            with("p4", "nowhere", PhoneKind::Unmanaged, &["4001"]),
        ),
        (keys::provision("p4"), provisioned),
        (
            keys::phone("p5"),
            with("p5", "hq", PhoneKind::Remote, &["5001"]),
        ),
        (
            keys::phone("p6"),
            with("p6", "hq", PhoneKind::Unmanaged, &["6001"]),
        ),
        (keys::binding("p6", 0, "gone"), binding("Poly/6")),
        (
            keys::phone("p7"),
            Phone {
                disabled: true,
                ..phone_of("p7", "hq", PhoneKind::Unmanaged, &["7001"])
            }
            .encode_to_vec(),
        ),
    ];
    f.apply(
        kvs.iter().map(|(k, v)| (k.as_str(), Some(&v[..]))),
        20,
        2_000,
    );
    let ids = ["p1", "p2", "p3", "p4", "p5", "p6", "p7"];
    let context = f.context();
    let afresh = |id: &str| {
        let entry = &f.phones[id];
        context
            .compute(id, entry, &mut entry.placed.clone())
            .unwrap()
    };
    for before in ids {
        for id in ids {
            // As re-reducing leaves it: stamped with since-times, revision, binding times.
            let mut st = afresh(before);
            st.status_since_ms = 7;
            st.revision = 7;
            for e in &mut st.edges {
                (e.since_ms, e.binding_updated_at_ms) = (7, 7);
            }
            let entry = &f.phones[id];
            assert!(context.compute_into(id, entry, &mut entry.placed.clone(), &mut st));
            assert_eq!(st, afresh(id), "{id} built over {before}");
        }
    }
    assert!(!afresh("p4").placement_problem.is_empty());
    assert_eq!(afresh("p2").lines[1].contacts.len(), 2);
    assert!(afresh("p4").provisioning.is_some());
    assert!(afresh("p7").disabled);
    assert!(!afresh("p1").edges.is_empty());
}

#[test]
fn a_binding_on_an_edge_without_its_record_touches_no_phone() {
    // A dead edge's bindings go seconds after its record, hundreds of thousands at once:
    // none of them changes a status, so none is re-reduced, unless it was the last thing
    // the view knew of its phone (then the phone goes from the view).
    let (mut f, primary, secondary) = fleet();
    let b = binding("Poly/1");
    let (key_p, key_s) = binding_keys(&primary, &secondary);
    let member_p = keys::member("edge", &primary);
    let touches = |f: &mut Fleet, key: &str, value: Option<&[u8]>| {
        matches!(f.absorb(key, value), Touched::Phone(_))
    };
    // (what happens, the key, its value, whether the phone is re-reduced)
    let cases: Vec<(&str, &str, Option<&[u8]>, bool)> = vec![
        (
            "a binding on an edge with its record",
            &key_p,
            Some(&b),
            true,
        ),
        ("another edge's", &key_s, Some(&b), true),
        ("the first edge's record goes", &member_p, None, false),
        (
            "its binding is refreshed meanwhile",
            &key_p,
            Some(&b),
            false,
        ),
        ("its binding expires", &key_p, None, false),
        ("the other edge's binding expires", &key_s, None, true),
        (
            "a binding written before its edge's record",
            &key_p,
            Some(&b),
            false,
        ),
    ];
    for (name, key, value, want) in cases {
        assert_eq!(touches(&mut f, key, value), want, "{name}");
    }
    // The record comes: the binding written before it counts.
    let ch = f.apply([(member_p.as_str(), Some(&b"m"[..]))], 20, 2_000);
    assert_eq!(the_one_status(&ch), OperationalStatus::Degraded);

    // A phone deleted while a dead edge still held its binding: that binding's expiry is
    // the last the view knew of it, and the phone goes.
    f.apply([(member_p.as_str(), None)], 21, 3_000);
    f.apply([("config/phones/p1", None)], 22, 3_000);
    assert_eq!(f.phones.len(), 1, "the binding keeps an entry");
    f.apply([(key_p.as_str(), None)], 23, 4_000);
    assert_eq!(f.phones.len(), 0, "the last binding went");
}

#[test]
fn an_edge_and_its_binding_gone_in_one_part_still_move_the_phone() {
    // A watch that fell behind hands over the record's deletion and, revisions later, the
    // binding's in one batch: the phone bound to that edge is found at the part's end,
    // when the binding is gone already, and must be re-reduced all the same.
    let (mut f, primary, secondary) = fleet();
    let b = binding("Poly/1");
    let (key_p, _) = registered_twice(&mut f, &primary, &secondary, &b);
    let member_p = keys::member("edge", &primary);
    let ch = f.apply(
        [(member_p.as_str(), None), (key_p.as_str(), None)],
        12,
        3_000,
    );
    assert_eq!(the_one_status(&ch), OperationalStatus::Degraded);
    // Gone and back in one part (a lost lease replaced), the binding rewritten between.
    let ch = f.apply(
        [
            (key_p.as_str(), Some(&b[..])),
            (member_p.as_str(), Some(&b"m"[..])),
        ],
        13,
        4_000,
    );
    assert_eq!(the_one_status(&ch), OperationalStatus::Operational);
}
