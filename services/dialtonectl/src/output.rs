//! Tables and JSON.

use serde::Serialize;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// Canonical proto3 JSON (one document).
    Json,
}

/// Prints rows as aligned columns.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r);
    }
}

/// Prints a value as pretty JSON.
pub fn json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// An enum's proto name as the CLI spells it: `META_BASE_POLY_VVX` → `poly-vvx`.
pub fn enum_name(full: &str, prefix: &str) -> String {
    full.trim_start_matches(prefix)
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// How long ago a Unix-milliseconds time was, e.g. `42s ago` (`never` for 0).
pub fn ms_ago(ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let now = dialtone_common::clock::unix_ms_i64();
    let s = ((now - ms) / 1000).max(0);
    match s {
        0..120 => format!("{s}s ago"),
        120..7200 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}
