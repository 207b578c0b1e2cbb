//! The house's structure as a test: no import loop among the top-level modules of any
//! crate (a `crate::x` path, in code or in a doc link, is an edge from the module that
//! writes it to `x`), and no role crate depending on another role crate (shared vocabulary
//! lives in `dialtone-domain`). `docs/architecture.md` draws the floors this keeps.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

const ROLES: [&str; 4] = [
    "dialtone-config",
    "dialtone-edge",
    "dialtone-status",
    "dialtone-provisioning",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module → the top-level modules it names through `crate::`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let uses = graph.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::{a, b::c}`: every name at the first level of the braces.
            if name.is_empty() && rest.starts_with('{') {
                let mut depth = 0;
                let mut current = String::new();
                for c in rest[1..].chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            uses.insert(first_segment(&current));
                            current.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        current.push(c);
                    }
                }
                uses.insert(first_segment(&current));
            } else if !name.is_empty() {
                uses.insert(name);
            }
        }
        uses.retain(|u| !u.is_empty() && *u != module);
    }
    graph
}

fn first_segment(s: &str) -> String {
    s.trim()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("")
        .to_owned()
}

/// A cycle through `start` if there is one (depth-first).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_owned());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in g.get(node).into_iter().flatten() {
            if g.contains_key(next)
                && let Some(c) = visit(g, next, path, done)
            {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|k| visit(graph, k, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_loop_between_its_modules() {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(repo().join("services"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    crates.extend([
        repo().join("proto/src"),
        repo().join("loadtest/phonesim/src"),
    ]);
    crates.sort();
    assert!(crates.len() >= 14, "{crates:?}");
    for src in crates {
        let graph = module_graph(&src);
        if let Some(c) = cycle(&graph) {
            panic!(
                "{}: modules import each other: {}",
                src.display(),
                c.join(" -> ")
            );
        }
    }
}

#[test]
fn the_checker_sees_a_loop() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a", "d"][..]),
        ("d", &[][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
    .collect();
    assert_eq!(cycle(&g).unwrap().join(" "), "a b c a");
    let mut acyclic = g.clone();
    acyclic.get_mut("c").unwrap().remove("a");
    assert_eq!(cycle(&acyclic), None);
    assert_eq!(
        first_segment(" registrar::{directory::Directory, pending}"),
        "registrar"
    );
}

#[test]
fn no_role_depends_on_another_role() {
    for role in ROLES {
        let dir = role.trim_start_matches("dialtone-");
        let manifest =
            std::fs::read_to_string(repo().join("services").join(dir).join("Cargo.toml")).unwrap();
        let deps = manifest
            .split("\n[")
            .find(|s| s.starts_with("dependencies]"))
            .unwrap_or("");
        for other in ROLES.iter().filter(|r| **r != role) {
            assert!(
                !deps.lines().any(|l| l.trim_start().starts_with(other)),
                "{role} depends on {other}: shared vocabulary belongs in dialtone-domain"
            );
        }
    }
}
