//! How the OTLP exporters reach a collector, from the standard variables: headers
//! (`OTEL_EXPORTER_OTLP_HEADERS`, e.g. an `authorization` a SaaS collector wants) and TLS
//! (`OTEL_EXPORTER_OTLP_CERTIFICATE`: the CA to verify an `https://` endpoint with, default
//! the system's bundle; `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `_CLIENT_KEY`: a client
//! certificate for collectors that ask for one). Each also per signal
//! (`OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE`, …), which
//! wins over the general one.
//!
//! Parsing is pure (a variable lookup in, values or an error naming the variable out), and
//! `dialtone serve` runs it at start, so a bad value stops the process instead of silently
//! exporting nothing. Header values are secrets: never logged.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// Which exporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        }
    }
}

/// The signal's own variable for `what`, else the general one: (its name, its value).
fn lookup(
    signal: Signal,
    what: &str,
    var: &impl Fn(&str) -> Option<String>,
) -> Option<(String, String)> {
    [
        format!("OTEL_EXPORTER_OTLP_{}_{what}", signal.name()),
        format!("OTEL_EXPORTER_OTLP_{what}"),
    ]
    .into_iter()
    .find_map(|name| {
        let v = var(&name).filter(|v| !v.trim().is_empty())?;
        Some((name, v.trim().to_owned()))
    })
}

/// The collector's endpoint for `signal` (the signal's own variable, else the general one).
pub fn endpoint(signal: Signal, var: &impl Fn(&str) -> Option<String>) -> Option<String> {
    lookup(signal, "ENDPOINT", var).map(|(_, v)| v)
}

/// The headers to send with every export: `key=value` pairs separated by commas, values
/// percent-decoded (W3C Baggage's format, as the OpenTelemetry specification says).
pub fn headers(
    signal: Signal,
    var: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<(String, String)>> {
    let Some((name, text)) = lookup(signal, "HEADERS", var) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, pair) in text.split(',').enumerate() {
        if pair.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = pair.split_once('=') else {
            bail!("invalid {name}: entry {} is not key=value", i + 1);
        };
        let key = key.trim().to_ascii_lowercase();
        let valid_key = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_key {
            bail!("invalid {name}: entry {} has no valid header name", i + 1);
        }
        let value = percent_decode(value.trim())
            .with_context(|| format!("invalid {name}: the value of '{key}'"))?;
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            bail!("invalid {name}: the value of '{key}' holds a character a header cannot carry");
        }
        out.push((key, value));
    }
    Ok(out)
}

/// `%XX` escapes decoded (a value may carry commas and spaces that way).
fn percent_decode(s: &str) -> anyhow::Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .context("a '%' not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("not UTF-8 once decoded")
}

/// The TLS files for an `https://` endpoint, each with the variable that named it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<(String, PathBuf)>,
    pub client: Option<((String, PathBuf), (String, PathBuf))>,
}

/// The system's CA bundle (Debian's), used when no CA is named.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The TLS files the variables name (a client certificate and its key go together).
pub fn tls_files(
    signal: Signal,
    var: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<TlsFiles> {
    let file = |what| lookup(signal, what, var).map(|(n, v)| (n, PathBuf::from(v)));
    let client = match (file("CLIENT_CERTIFICATE"), file("CLIENT_KEY")) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some((n, _)), None) | (None, Some((n, _))) => bail!(
            "invalid {n}: a client certificate and its key go together \
             (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY)"
        ),
    };
    Ok(TlsFiles {
        ca: file("CERTIFICATE"),
        client,
    })
}

/// Tonic's TLS settings from the files (read now; an unreadable one is named).
pub fn client_tls(files: &TlsFiles) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |(name, path): &(String, PathBuf)| {
        std::fs::read(path).with_context(|| format!("invalid {name}: reading {}", path.display()))
    };
    let ca = match &files.ca {
        Some(f) => read(f)?,
        None => read(&("the system's CA bundle".into(), SYSTEM_ROOTS.into()))?,
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = &files.client {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(tls)
}

/// Checks every variable both exporters would read (called at start): headers, and the
/// TLS files of an `https://` endpoint (the system's bundle when no CA is named) or any
/// named at all.
pub fn check(var: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    for signal in [Signal::Traces, Signal::Metrics] {
        headers(signal, var)?;
        let files = tls_files(signal, var)?;
        let https = endpoint(signal, var).is_some_and(|v| v.starts_with("https://"));
        if https || files.ca.is_some() || files.client.is_some() {
            client_tls(&files)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn headers_parse_per_signal_and_are_refused_naming_the_variable() {
        type Case = (
            &'static [(&'static str, &'static str)],
            Signal,
            Result<&'static [(&'static str, &'static str)], &'static str>,
        );
        let cases: &[Case] = &[
            (&[], Signal::Traces, Ok(&[])),
            (
                &[(
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "Authorization=Bearer%20s3cret, x-tenant = acme",
                )],
                Signal::Metrics,
                Ok(&[("authorization", "Bearer s3cret"), ("x-tenant", "acme")]),
            ),
            // The signal's own wins.
            (
                &[
                    ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
                    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
                ],
                Signal::Traces,
                Ok(&[("b", "2")]),
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
                    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
                ],
                Signal::Metrics,
                Ok(&[("a", "1")]),
            ),
            (
                &[("OTEL_EXPORTER_OTLP_HEADERS", "a=x%2Cy,,")],
                Signal::Traces,
                Ok(&[("a", "x,y")]),
            ),
            (
                &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")],
                Signal::Traces,
                Err("invalid OTEL_EXPORTER_OTLP_HEADERS: entry 1 is not key=value"),
            ),
            (
                &[("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "a=1,b c=2")],
                Signal::Metrics,
                Err("invalid OTEL_EXPORTER_OTLP_METRICS_HEADERS: entry 2 has no valid header name"),
            ),
            (
                &[("OTEL_EXPORTER_OTLP_HEADERS", "a=%zz")],
                Signal::Traces,
                Err("invalid OTEL_EXPORTER_OTLP_HEADERS: the value of 'a'"),
            ),
            (
                &[("OTEL_EXPORTER_OTLP_HEADERS", "a=x%0Ay")],
                Signal::Traces,
                Err("invalid OTEL_EXPORTER_OTLP_HEADERS: the value of 'a' holds a character"),
            ),
        ];
        for (env, signal, want) in cases {
            let got = headers(*signal, &vars(env));
            match want {
                Ok(want) => {
                    let want: Vec<(String, String)> = want
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    assert_eq!(got.unwrap(), want, "{env:?}");
                }
                Err(prefix) => {
                    let e = format!("{:#}", got.unwrap_err());
                    assert!(e.starts_with(prefix), "{env:?}: {e}");
                    assert!(!e.contains("s3cret"));
                }
            }
        }
    }

    #[test]
    fn tls_files_per_signal_and_client_pairs() {
        let f = tls_files(
            Signal::Metrics,
            &vars(&[
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
                ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "/metrics-ca.pem"),
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/c.pem"),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(
            f.ca,
            Some((
                "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE".into(),
                "/metrics-ca.pem".into()
            ))
        );
        assert!(f.client.is_some());
        let e = tls_files(
            Signal::Traces,
            &vars(&[("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/k.pem")]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY: a client"),
            "{e}"
        );
        let e = check(&vars(&[(
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "/nowhere/ca.pem",
        )]))
        .unwrap_err();
        assert!(
            format!("{e:#}")
                .starts_with("invalid OTEL_EXPORTER_OTLP_CERTIFICATE: reading /nowhere"),
            "{e:#}"
        );
    }
}
