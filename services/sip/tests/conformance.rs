//! RFC 4475 and RFC 5118 torture messages get the verdicts their manifests give, and every
//! PROTOS c07-sip case is answered or dropped without a panic. The data lives in
//! `testdata/conformance/sip/` of the repository.

use std::{
    io::Read,
    path::PathBuf,
    time::{Duration, Instant},
};

use dialtone_sip::{Verdict, judge};

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/conformance/sip");
    assert!(
        dir.is_dir(),
        "conformance data missing at {} (testdata/ of the repository)",
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

/// Every row of a manifest gets its verdict, and the manifest has at least `min_rows`.
fn assert_manifest(dir: &str, min_rows: usize) {
    let (n, wrong) = run_manifest(dir);
    assert!(n >= min_rows, "only {n} rows");
    assert!(
        wrong.is_empty(),
        "{} of {n} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn rfc4475_torture_messages_get_their_verdicts() {
    assert_manifest("rfc4475", 45);
}

#[test]
fn rfc5118_ipv6_messages_get_their_verdicts() {
    assert_manifest("rfc5118", 12);
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
        let pdu = dialtone_sip::conformance::protos_pdu(&raw);
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
