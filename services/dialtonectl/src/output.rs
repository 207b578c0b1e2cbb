//! Tables and documents (JSON, YAML or ids: [`crate::encode`]).

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

use serde::Serialize;

use crate::encode::{Encoding, encode};

/// What a command prints: a table, or a document (its encoding is set once from `-o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// One document, in the encoding `-o` chose.
    Json,
}

/// `-o`: the output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputArg {
    /// Aligned columns.
    Table,
    /// Aligned columns, with more of them (versions, status details).
    Wide,
    /// Canonical proto3 JSON (one document).
    Json,
    /// The same document as YAML.
    Yaml,
    /// Only the ids of what the document holds, one per line (for shell loops).
    Name,
}

static ENCODING: OnceLock<Encoding> = OnceLock::new();
static NO_HEADERS: AtomicBool = AtomicBool::new(false);
static WIDE: AtomicBool = AtomicBool::new(false);

/// Sets the output from the command line, once, before any command prints; returns what
/// commands are given.
pub fn configure(arg: OutputArg, no_headers: bool) -> Format {
    NO_HEADERS.store(no_headers, Ordering::Relaxed);
    WIDE.store(arg == OutputArg::Wide, Ordering::Relaxed);
    let (format, encoding) = match arg {
        OutputArg::Table | OutputArg::Wide => (Format::Table, Encoding::Json),
        OutputArg::Json => (Format::Json, Encoding::Json),
        OutputArg::Yaml => (Format::Json, Encoding::Yaml),
        OutputArg::Name => (Format::Json, Encoding::Name),
    };
    let _ = ENCODING.set(encoding);
    format
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
    if !NO_HEADERS.load(Ordering::Relaxed) {
        line(headers.iter().map(|h| h.to_uppercase()).collect());
    }
    for r in rows {
        line(r);
    }
}

/// Whether tables show their wide columns (`-o wide`).
pub fn wide() -> bool {
    WIDE.load(Ordering::Relaxed)
}

/// Prints one item of a stream: a line of compact JSON (`-o json`: one object per line, as
/// `jq` reads a stream), else as [`json`] prints a document.
pub fn stream_item<T: Serialize>(v: &T) -> anyhow::Result<()> {
    match *ENCODING.get().unwrap_or(&Encoding::Json) {
        Encoding::Json => {
            println!("{}", serde_json::to_string(v)?);
            Ok(())
        }
        _ => json(v),
    }
}

/// Prints a value as one document: pretty JSON, YAML or its ids (`-o`).
pub fn json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    let encoding = *ENCODING.get().unwrap_or(&Encoding::Json);
    print!("{}", encode(&serde_json::to_value(v)?, encoding));
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
