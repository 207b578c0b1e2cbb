//! Table tests of `reduce.rs`: a phone's published edges rebuilt, and its fingerprint.

use super::*;

#[test]
fn published_edges_are_rebuilt_in_the_new_order_keeping_the_names_they_had() {
    let edge = |id: &str, lines: u32, since: i64| EdgeStatus {
        node_id: id.into(),
        lines_registered: lines,
        since_ms: since,
        ..Default::default()
    };
    // (edge, lines registered there, since when)
    type Edges = &'static [(&'static str, u32, i64)];
    // (edges published before, edges now, names given out for edges new to the list)
    let cases: [(&[&str], Edges, &[&str]); 10] = [
        (&["a", "b"], &[("b", 1, 20)], &[]),
        (&["a", "b"], &[("b", 2, 20), ("a", 1, 10)], &[]),
        // A dead edge stays placed, with no line registered there.
        (&["a", "b"], &[("a", 0, 30), ("b", 1, 20)], &[]),
        (&["a", "b"], &[("a", 1, 10), ("a", 1, 10)], &["a"]),
        (&["a", "a"], &[("a", 1, 10), ("a", 1, 10)], &[]),
        (&["a"], &[("a", 1, 10), ("b", 1, 30)], &["b"]),
        (&["a", "b", "c"], &[("c", 1, 5)], &[]),
        (&["a", "b"], &[("c", 1, 5), ("b", 1, 6)], &["c"]),
        (&[], &[("a", 1, 1)], &["a"]),
        (&["a", "b"], &[], &[]),
    ];
    for (before, now, fresh) in cases {
        let old: Vec<(Arc<str>, u32, i64)> =
            before.iter().map(|n| (Arc::from(*n), 9, 99)).collect();
        let names = old.clone();
        let now_edges: Vec<EdgeStatus> = now.iter().map(|(n, l, s)| edge(n, *l, *s)).collect();
        let (was_at, in_place) = (
            old.as_ptr(),
            !now.is_empty() && fresh.is_empty() && now.len() == before.len(),
        );
        let mut given = Vec::new();
        let got = reuse_edges(old, &now_edges, |id| {
            given.push(id.to_owned());
            Arc::from(id)
        });
        let plain: Vec<(&str, u32, i64)> = got.iter().map(|(n, l, s)| (&**n, *l, *s)).collect();
        assert_eq!(plain, now, "{before:?} -> {now:?}");
        assert_eq!(given, fresh, "{before:?} -> {now:?}: names asked for");
        assert_eq!(
            got.as_ptr() == was_at,
            in_place,
            "{before:?} -> {now:?}: rebuilt in the list it was in"
        );
        // Every edge not given a name kept the one it had.
        let kept = got
            .iter()
            .filter(|(n, ..)| names.iter().any(|(k, ..)| Arc::ptr_eq(k, n)))
            .count();
        assert_eq!(
            kept,
            now.len() - fresh.len(),
            "{before:?} -> {now:?}: names kept"
        );
    }
}

#[test]
fn a_fingerprint_moves_with_any_field_however_deep() {
    use dialtone_proto::status::v1::{LineContact, LineStatus, ProvisioningStatus};
    let base = || PhoneStatus {
        phone_id: "p1".into(),
        site_id: "s1".into(),
        edges: vec![EdgeStatus {
            node_id: "e1".into(),
            lines_registered: 1,
            ..Default::default()
        }],
        lines: vec![LineStatus {
            contacts: vec![LineContact {
                uri: "sip:a@10.0.0.1".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        provisioning: Some(ProvisioningStatus::default()),
        ..Default::default()
    };
    type Change = fn(&mut PhoneStatus);
    // Each changes one field, at every depth of the message.
    let cases: [(&str, Change); 13] = [
        ("name", |s| s.name = "desk".into()),
        ("status", |s| s.status = OperationalStatus::Degraded as i32),
        ("an edge's lines", |s| s.edges[0].lines_registered = 2),
        ("an edge's role", |s| s.edges[0].role = 2),
        ("an edge's registered", |s| s.edges[0].registered = true),
        ("a line's index", |s| s.lines[0].line_index = 1),
        ("a line's reachable", |s| s.lines[0].reachable = true),
        ("a contact's transport", |s| {
            s.lines[0].contacts[0].transport = 2
        }),
        ("a contact's source", |s| {
            s.lines[0].contacts[0].source = "10.0.0.9:5060".into()
        }),
        ("an edge more", |s| s.edges.push(EdgeStatus::default())),
        ("a contact's uri", |s| {
            s.lines[0].contacts[0].uri = "sip:a@10.0.0.2".into()
        }),
        ("provisioning's drift", |s| {
            s.provisioning.as_mut().unwrap().drift = true
        }),
        ("no provisioning", |s| s.provisioning = None),
    ];
    let same = fingerprint(&base());
    assert_eq!(
        same,
        fingerprint(&base()),
        "the same status, the same fingerprint"
    );
    for (what, change) in cases {
        let mut st = base();
        change(&mut st);
        assert_ne!(fingerprint(&st), same, "{what}");
    }
}
