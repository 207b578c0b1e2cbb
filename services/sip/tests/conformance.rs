//! RFC 4475 and RFC 5118 torture messages get the verdicts their manifests give, and every
//! PROTOS c07-sip case is answered or dropped without a panic. The data lives in
//! `../shared/conformance/sip/` beside the repository.

use std::{
    io::Read,
    path::PathBuf,
    time::{Duration, Instant},
};

use dialtone_sip::{Verdict, judge};

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/sip");
    assert!(
        dir.is_dir(),
        "conformance data missing at {} (shared/ must sit beside the repository)",
        dir.display()
    );
    dir
}

/// Checks one manifest; returns the rows that got another verdict than expected.
fn run_manifest(suite: &str) -> (usize, Vec<String>) {
    let dir = data_dir().join(suite);
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut wrong = Vec::new();
    let mut n = 0;
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, expected, notes) = (cols[0], cols[3], cols.get(4).copied().unwrap_or(""));
        let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let is_response = bytes.starts_with(b"SIP/");
        let (parsed, verdict) = judge(&bytes);
        n += 1;
        let ok = match expected {
            "valid-must-parse" => parsed.is_some() && verdict == Verdict::Accept,
            "invalid-must-reject-or-400" => match &verdict {
                Verdict::Drop { .. } => is_response,
                Verdict::Reject { code, .. } => {
                    !is_response
                        && (*code == 400
                            || (notes.contains(&code.to_string())
                                && (*code == 505 || *code == 501)))
                }
                Verdict::Accept => false,
            },
            other => {
                let code: u16 = other
                    .strip_prefix("valid-must-parse-then-")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or_else(|| {
                        panic!("{file}: unknown verdict {other}");
                    });
                parsed.is_some()
                    && matches!(&verdict, Verdict::Reject { code: c, .. } if *c == code)
            }
        };
        if !ok {
            wrong.push(format!(
                "{file}: expected {expected}, got {verdict:?} (parsed: {})",
                parsed.is_some()
            ));
        }
    }
    (n, wrong)
}

#[test]
fn rfc4475_torture_messages_get_their_verdicts() {
    let (n, wrong) = run_manifest("rfc4475");
    assert!(n >= 45, "only {n} rows");
    assert!(
        wrong.is_empty(),
        "{} of {n} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn rfc5118_ipv6_messages_get_their_verdicts() {
    let (n, wrong) = run_manifest("rfc5118");
    assert!(n >= 12, "only {n} rows");
    assert!(
        wrong.is_empty(),
        "{} of {n} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// The INVITE of a PROTOS case with its placeholders filled in.
fn protos_pdu(raw: &[u8]) -> Vec<u8> {
    let space = raw.iter().position(|b| *b == b' ').unwrap_or(0);
    let len: usize = std::str::from_utf8(&raw[..space])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(raw.len());
    let pdu = &raw[space + 1..(space + 1 + len).min(raw.len())];
    let mut out = pdu.to_vec();
    for (from, to) in [
        (&b"<To>"[..], &b"user@127.0.0.1"[..]),
        (b"<From>", b"caller@127.0.0.2"),
        (b"<From-Address>", b"127.0.0.2"),
        (b"<From-IP>", b"127.0.0.2"),
        (b"<Local-Port>", b"5060"),
        (b"<Branch-ID>", b"1"),
        (b"<Call-ID>", b"1"),
        (b"<CSeq>", b"1"),
        (b"<Teardown-Method>", b"CANCEL"),
    ] {
        out = replace(&out, from, to);
    }
    let body_len = find(&out, b"\r\n\r\n").map_or(0, |i| out.len() - i - 4);
    replace(&out, b"<Content-Length>", body_len.to_string().as_bytes())
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn replace(h: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(h.len());
    let mut i = 0;
    while i < h.len() {
        if h[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(h[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn protos_cases_are_answered_or_dropped_without_panic() {
    let file = std::fs::File::open(data_dir().join("protos/protos-c07-sip-cases.tar.gz")).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let (mut accepted, mut rejected, mut dropped, mut cases) = (0, 0, 0, 0);
    let t0 = Instant::now();
    let mut slowest = Duration::ZERO;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| path.starts_with("cases") && n.len() == 7)
        else {
            continue;
        };
        let number: usize = name.parse().unwrap();
        let mut raw = Vec::new();
        entry.read_to_end(&mut raw).unwrap();
        let pdu = protos_pdu(&raw);
        let t = Instant::now();
        let (_, verdict) = judge(&pdu);
        slowest = slowest.max(t.elapsed());
        cases += 1;
        match verdict {
            Verdict::Accept => accepted += 1,
            Verdict::Reject { code, .. } => {
                assert!((400..700).contains(&code), "case {number}: code {code}");
                rejected += 1;
            }
            Verdict::Drop { .. } => dropped += 1,
        }
        if number == 0 {
            assert_eq!(
                verdict,
                Verdict::Accept,
                "the valid PROTOS case must be accepted"
            );
        }
        if (255..330).contains(&number) {
            assert_ne!(
                verdict,
                Verdict::Accept,
                "case {number} (bad version) must not be accepted"
            );
        }
        // CRLF corruptions are rejected, except a bare LF, which is accepted on purpose
        // (LF-only lines are tolerated, as many phones send them).
        let bare_lf = pdu
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'\n' && (i == 0 || pdu[i - 1] != b'\r'));
        if (2407..2427).contains(&number) && !bare_lf {
            assert_ne!(
                verdict,
                Verdict::Accept,
                "case {number} (CRLF corruption) must not be accepted"
            );
        }
    }
    println!(
        "protos: {cases} cases, {accepted} accepted, {rejected} rejected, {dropped} dropped in {:?} (slowest {slowest:?})",
        t0.elapsed()
    );
    assert_eq!(cases, 4527);
    assert!(
        slowest < Duration::from_secs(1),
        "one case took {slowest:?}"
    );
}
