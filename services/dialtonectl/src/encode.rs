//! How `-o json|yaml|name` print a document: pretty JSON (canonical proto3 JSON), YAML of
//! the same value, or only the ids it holds, one per line (for `xargs` and shell loops).
//! Pure: a JSON value in, text out.

use serde_json::Value;

/// The encoding of a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Yaml,
    Name,
}

/// `v` in `encoding`, ending with a newline (empty for `Name` when it holds no id).
pub fn encode(v: &Value, encoding: Encoding) -> String {
    match encoding {
        Encoding::Json => {
            let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
            s.push('\n');
            s
        }
        Encoding::Yaml => {
            // Each document marked: a command that prints several (a summary, then the
            // phones) still prints one valid YAML stream.
            let mut s = String::from("---\n");
            yaml(v, 0, &mut s);
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        }
        Encoding::Name => ids(v).into_iter().map(|id| id + "\n").collect(),
    }
}

/// The keys that name an object, in order: its `id`, else the id of what it describes
/// (a phone's status, a member node, a media server's status, a site's summary).
const NAMING_KEYS: [&str; 5] = ["id", "phone_id", "node_id", "media_server_id", "site_id"];

/// The ids a document names: its own (a [`NAMING_KEYS`] key), or that of the one object it
/// wraps (`{"phone": {...}}`), or those of the objects of its list (`[...]`, or `{"phones":
/// [...], "next_page_token"}`).
fn ids(v: &Value) -> Vec<String> {
    let m = match v {
        Value::Object(m) => m,
        Value::Array(items) => return items.iter().flat_map(ids).collect(),
        _ => return Vec::new(),
    };
    if let Some(id) = NAMING_KEYS
        .iter()
        .find_map(|k| m.get(*k).and_then(Value::as_str))
    {
        return vec![id.to_owned()];
    }
    let lists: Vec<&Vec<Value>> = m.values().filter_map(Value::as_array).collect();
    if let [list] = lists.as_slice() {
        return list.iter().flat_map(ids).collect();
    }
    let objects: Vec<&Value> = m.values().filter(|v| v.is_object()).collect();
    if let [one] = objects.as_slice() {
        return ids(one);
    }
    Vec::new()
}

/// A scalar as YAML: strings quoted when YAML would read them as something else.
fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let plain = !s.is_empty()
                && !s.starts_with(|c: char| {
                    c.is_ascii_digit() || "-+.!&*?|>'\"%@`#,[]{}:~ \t".contains(c)
                })
                && !s.ends_with([' ', '\t', ':'])
                && !s.contains(": ")
                && !s.contains(":\t")
                && !s.contains(" #")
                && !s.chars().any(char::is_control)
                && !matches!(
                    s.to_ascii_lowercase().as_str(),
                    "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~"
                );
            if plain {
                s.clone()
            } else {
                serde_json::to_string(s).unwrap_or_default()
            }
        }
        Value::Array(_) | Value::Object(_) => unreachable!("not a scalar"),
    }
}

fn empty(v: &Value) -> Option<&'static str> {
    match v {
        Value::Array(a) if a.is_empty() => Some("[]"),
        Value::Object(m) if m.is_empty() => Some("{}"),
        Value::Array(_) | Value::Object(_) => None,
        _ => None,
    }
}

fn yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                out.push_str(&format!("{pad}{}:", scalar(&Value::String(k.clone()))));
                match (v, empty(v)) {
                    (_, Some(e)) => out.push_str(&format!(" {e}\n")),
                    (Value::Object(_), _) => {
                        out.push('\n');
                        yaml(v, indent + 2, out);
                    }
                    (Value::Array(_), _) => {
                        out.push('\n');
                        yaml(v, indent, out);
                    }
                    _ => out.push_str(&format!(" {}\n", scalar(v))),
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                match (item, empty(item)) {
                    (_, Some(e)) => out.push_str(&format!("{pad}- {e}\n")),
                    (Value::Object(_) | Value::Array(_), _) => {
                        // The item's first line follows the dash; the rest align under it.
                        let mut inner = String::new();
                        yaml(item, indent + 2, &mut inner);
                        out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                }
            }
        }
        _ => out.push_str(&format!(
            "{pad}{}\n",
            empty(v).map_or_else(|| scalar(v), str::to_owned)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_print_as_yaml() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"id": "p1", "name": "Desk 1"}),
                "id: p1\nname: Desk 1\n",
            ),
            (
                json!({"phone": {"id": "p1", "lines": [{"sip_user": "u1"}, {"sip_user": "u2"}]}}),
                "phone:\n  id: p1\n  lines:\n  - sip_user: u1\n  - sip_user: u2\n",
            ),
            (
                json!({"tags": ["a", "b"], "none": [], "map": {}}),
                "map: {}\nnone: []\ntags:\n- a\n- b\n",
            ),
            (
                json!({"count": 5, "ok": true, "nothing": null, "y": 1}),
                "count: 5\nnothing: null\nok: true\n\"y\": 1\n",
            ),
            // Strings YAML would read as something else are quoted.
            (
                json!({"a": "true", "b": "0004f2aabb01", "c": "x: y", "d": "", "e": "-1", "f": "two\nlines"}),
                "a: \"true\"\nb: \"0004f2aabb01\"\nc: \"x: y\"\nd: \"\"\ne: \"-1\"\nf: \"two\\nlines\"\n",
            ),
            (
                json!([{"id": "a", "v": [1, 2]}, [3]]),
                "- id: a\n  v:\n  - 1\n  - 2\n- - 3\n",
            ),
            (json!("plain"), "plain\n"),
            // Ends with a colon, holds a tab after one, a control character, or edges of
            // white space: quoted.
            (
                json!({"a": "fe80::", "b": "x:\ty", "c": "a\rb", "d": " pad", "e": "\tx"}),
                "a: \"fe80::\"\nb: \"x:\\ty\"\nc: \"a\\rb\"\nd: \" pad\"\ne: \"\\tx\"\n",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(encode(&v, Encoding::Yaml), format!("---\n{want}"), "{v}");
        }
    }

    #[test]
    fn names_are_the_ids_a_document_holds() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"id": "p1", "name": "x"}), "p1\n"),
            (json!({"phone": {"id": "p1"}}), "p1\n"),
            (
                json!({"phones": [{"id": "a"}, {"id": "b"}], "next_page_token": "t"}),
                "a\nb\n",
            ),
            (json!({"phones": [], "next_page_token": ""}), ""),
            (json!({"a": [1], "b": [2]}), ""),
            (json!([{"id": "hq"}, {"id": "branch"}]), "hq\nbranch\n"),
            (
                json!([{"phone": {"id": "p1"}, "status": "OPERATIONAL"}]),
                "p1\n",
            ),
            (json!(3), ""),
            // Members by node, statuses by phone (not by the site they also name).
            (
                json!({"members": [{"node_id": "edge-1", "role": "edge"}]}),
                "edge-1\n",
            ),
            (
                json!({"statuses": [{"phone_id": "p1", "site_id": "hq"}], "revision": 4}),
                "p1\n",
            ),
            (json!({"sites": [{"site_id": "hq", "total": 3}]}), "hq\n"),
        ];
        for (v, want) in cases {
            assert_eq!(encode(&v, Encoding::Name), want, "{v}");
        }
    }
}
