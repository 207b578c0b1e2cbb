use super::*;

fn binding(line: u32, node: &str, at: i64) -> BindingFacts {
    BindingFacts {
        line,
        node_id: node.into(),
        contacts: Box::default(),
        user_agent: "".into(),
        updated_at_ms: at,
    }
}

#[test]
fn a_binding_is_set_in_line_then_edge_order() {
    // (held as (line, edge, written at), set (line, edge), to (written at; none:
    // deleted), held after)
    type Held = &'static [(u32, &'static str, i64)];
    type Case = (Held, (u32, &'static str), Option<i64>, Held);
    let cases: [Case; 13] = [
        (&[], (1, "e1"), Some(5), &[(1, "e1", 5)]),
        (&[], (1, "e1"), None, &[]),
        (
            &[(1, "e2", 1)],
            (1, "e1"),
            Some(5),
            &[(1, "e1", 5), (1, "e2", 1)],
        ),
        (
            &[(1, "e1", 1)],
            (1, "e2"),
            Some(5),
            &[(1, "e1", 1), (1, "e2", 5)],
        ),
        (
            &[(2, "e1", 1)],
            (1, "e9"),
            Some(5),
            &[(1, "e9", 5), (2, "e1", 1)],
        ),
        // Edges in byte order, as the list was sorted before: "e10" before "e9".
        (
            &[(1, "e9", 1)],
            (1, "e10"),
            Some(5),
            &[(1, "e10", 5), (1, "e9", 1)],
        ),
        (
            &[(1, "e1", 1), (1, "e3", 3)],
            (1, "e2"),
            Some(5),
            &[(1, "e1", 1), (1, "e2", 5), (1, "e3", 3)],
        ),
        (
            &[(1, "e1", 1), (1, "e2", 2)],
            (1, "e2"),
            Some(5),
            &[(1, "e1", 1), (1, "e2", 5)],
        ),
        (
            &[(1, "e1", 1), (1, "e2", 2)],
            (1, "e1"),
            None,
            &[(1, "e2", 2)],
        ),
        (
            &[(1, "e1", 1), (1, "e2", 2), (1, "e3", 3)],
            (1, "e2"),
            None,
            &[(1, "e1", 1), (1, "e3", 3)],
        ),
        // Both the line and the edge must match.
        (
            &[(1, "e1", 1), (1, "e2", 2)],
            (2, "e1"),
            None,
            &[(1, "e1", 1), (1, "e2", 2)],
        ),
        (&[(2, "e1", 2)], (1, "e1"), None, &[(2, "e1", 2)]),
        (
            &[(1, "e1", 1), (2, "e1", 2)],
            (2, "e1"),
            None,
            &[(1, "e1", 1)],
        ),
    ];
    for (held, (line, node), to, want) in cases {
        let mut bindings: Box<[BindingFacts]> =
            held.iter().map(|&(l, n, at)| binding(l, n, at)).collect();
        set_binding(
            &mut bindings,
            line,
            node,
            to.map(|at| binding(line, node, at)),
        );
        let got: Vec<(u32, &str, i64)> = bindings
            .iter()
            .map(|b| (b.line, &*b.node_id, b.updated_at_ms))
            .collect();
        assert_eq!(got, want, "{held:?} set ({line}, {node}) to {to:?}");
    }
}
