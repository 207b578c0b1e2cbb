//! How the gRPC port is secured: TLS with a certificate (`--grpc-tls-cert`,
//! `--grpc-tls-key`), optionally requiring client certificates from a CA
//! (`--grpc-client-ca`: mutual TLS between roles and from dialtonectl). Plaintext is for
//! loopback: on any other address API tokens would cross the network in clear, so a
//! plaintext non-loopback listen refuses to start unless `--insecure-grpc` says the network
//! encrypts (a service mesh).

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context, bail};
use clap::Args;

#[derive(Args, Debug, Clone, Default)]
pub struct GrpcTlsFlags {
    /// PEM certificate chain of the gRPC port; with --grpc-tls-key, gRPC is served over TLS.
    #[arg(long, env = "DIALTONE_GRPC_TLS_CERT", value_name = "FILE")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// PEM private key of --grpc-tls-cert.
    #[arg(long, env = "DIALTONE_GRPC_TLS_KEY", value_name = "FILE")]
    pub grpc_tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): gRPC clients must present a certificate it issued (mutual TLS).
    #[arg(long, env = "DIALTONE_GRPC_CLIENT_CA", value_name = "FILE")]
    pub grpc_client_ca: Option<PathBuf>,
    /// Serve gRPC in plaintext on a non-loopback address (API tokens cross the network in
    /// clear): only where the network itself encrypts, e.g. a service mesh.
    #[arg(long, env = "DIALTONE_INSECURE_GRPC")]
    pub insecure_grpc: bool,
}

/// The gRPC port's TLS, checked at start: its certificate is served through
/// `dialtone_tls`'s reloading resolver (see `grpc_incoming`).
#[derive(Clone, Debug)]
pub struct GrpcTls {
    pub config: Arc<rustls::ServerConfig>,
}

impl GrpcTlsFlags {
    /// The TLS to serve `listen` with (none: plaintext), or why these flags cannot be used.
    pub fn tls(&self, listen: SocketAddr) -> anyhow::Result<Option<GrpcTls>> {
        let tls = match (&self.grpc_tls_cert, &self.grpc_tls_key) {
            (Some(c), Some(k)) => {
                // Parsed and matched here, so a bad file stops the process before it
                // announces itself, naming the flags. gRPC is HTTP/2.
                let alpn: &[&[u8]] = &[b"h2"];
                let config = match &self.grpc_client_ca {
                    None => dialtone_tls::server_config(c, k, alpn),
                    Some(ca) => dialtone_tls::server_config_requiring_client_ca(c, k, alpn, ca),
                }
                .context(
                    "invalid value for '--grpc-tls-cert', '--grpc-tls-key' or '--grpc-client-ca'",
                )?;
                Some(GrpcTls {
                    config: Arc::new(config),
                })
            }
            (None, None) => None,
            _ => bail!("'--grpc-tls-cert' and '--grpc-tls-key' go together"),
        };
        if tls.is_none() && self.grpc_client_ca.is_some() {
            bail!(
                "'--grpc-client-ca' needs '--grpc-tls-cert' and '--grpc-tls-key' (client certificates are TLS)"
            );
        }
        if tls.is_none() && !listen.ip().is_loopback() && !self.insecure_grpc {
            bail!(
                "invalid value '{listen}' for '--listen-grpc': plaintext gRPC on a non-loopback address sends API tokens in clear; give '--grpc-tls-cert' and '--grpc-tls-key' (or '--insecure-grpc' where the network encrypts)"
            );
        }
        Ok(tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_only_on_loopback_unless_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = dialtone_tls::dev_pair(dir.path(), "grpc").unwrap();
        let f = dir.path().join("x.pem");
        std::fs::write(&f, "pem\n").unwrap();
        let lo: SocketAddr = "127.0.0.1:7700".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:7700".parse().unwrap();
        let pod: SocketAddr = "10.1.2.3:7700".parse().unwrap();
        let with = |c: bool, k: bool, ca: bool, insecure: bool| GrpcTlsFlags {
            grpc_tls_cert: c.then(|| cert.clone()),
            grpc_tls_key: k.then(|| key.clone()),
            grpc_client_ca: ca.then(|| cert.clone()),
            insecure_grpc: insecure,
        };
        let cases: Vec<(GrpcTlsFlags, SocketAddr, Result<bool, &str>)> = vec![
            (with(false, false, false, false), lo, Ok(false)),
            (
                with(false, false, false, false),
                any,
                Err("sends API tokens in clear"),
            ),
            (
                with(false, false, false, false),
                pod,
                Err("'--listen-grpc'"),
            ),
            (with(false, false, false, true), pod, Ok(false)),
            (with(true, true, false, false), pod, Ok(true)),
            (with(true, true, true, false), any, Ok(true)),
            (with(true, false, false, false), lo, Err("go together")),
            (
                with(false, false, true, false),
                lo,
                Err("needs '--grpc-tls-cert'"),
            ),
        ];
        for (flags, listen, want) in cases {
            let got = flags.tls(listen);
            match want {
                Ok(tls) => assert_eq!(got.unwrap().is_some(), tls, "{flags:?} {listen}"),
                Err(w) => {
                    let e = format!("{:#}", got.unwrap_err());
                    assert!(e.contains(w), "{flags:?} {listen}: {e}");
                }
            }
        }
    }
}
