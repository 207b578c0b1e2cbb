//! Table tests of `reduce.rs`: a phone's published edges rebuilt.

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
