//! How `dialtone serve` reaches a secured etcd: TLS with a CA (and a client certificate
//! when the members require one), and etcd user authentication. Read and checked at start,
//! so a missing file or a half-given pair stops the process with the flag's name.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use dialtone_store::EtcdSecurity;

/// etcd TLS and authentication settings.
#[derive(Args, Debug, Clone, Default)]
pub struct EtcdFlags {
    /// PEM CA certificate that signed the etcd members' certificates; turns TLS on (the
    /// endpoints must then be https://).
    #[arg(long, env = "DIALTONE_ETCD_CA_FILE", value_name = "FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// PEM client certificate for etcd's --client-cert-auth (with --etcd-key-file).
    #[arg(long, env = "DIALTONE_ETCD_CERT_FILE", value_name = "FILE")]
    pub etcd_cert_file: Option<PathBuf>,
    /// PEM private key of --etcd-cert-file.
    #[arg(long, env = "DIALTONE_ETCD_KEY_FILE", value_name = "FILE")]
    pub etcd_key_file: Option<PathBuf>,
    /// etcd user (with --etcd-password-file) when etcd authentication is enabled.
    #[arg(long, env = "DIALTONE_ETCD_USER", value_name = "NAME")]
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password (one line).
    #[arg(long, env = "DIALTONE_ETCD_PASSWORD_FILE", value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,
}

fn read(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading '--{flag}' {}", path.display()))
}

impl EtcdFlags {
    /// The checked security settings for these endpoints (default: plain, anonymous).
    pub fn security(&self, endpoints: &[String]) -> anyhow::Result<EtcdSecurity> {
        let mut s = EtcdSecurity::default();
        if let Some(ca) = &self.etcd_ca_file {
            if let Some(e) = endpoints.iter().find(|e| !e.starts_with("https://")) {
                bail!(
                    "invalid value '{e}' for '--etcd': with '--etcd-ca-file' endpoints are https://"
                );
            }
            s.ca_pem = Some(read("etcd-ca-file", ca)?);
        }
        match (&self.etcd_cert_file, &self.etcd_key_file) {
            (Some(c), Some(k)) => {
                if s.ca_pem.is_none() {
                    bail!(
                        "'--etcd-cert-file' needs '--etcd-ca-file' (a client certificate is TLS)"
                    );
                }
                s.client_cert_pem = Some((read("etcd-cert-file", c)?, read("etcd-key-file", k)?));
            }
            (None, None) => {}
            _ => bail!("'--etcd-cert-file' and '--etcd-key-file' go together"),
        }
        match (&self.etcd_user, &self.etcd_password_file) {
            (Some(u), Some(p)) => {
                if let Some(e) = endpoints.iter().find(|e| !e.starts_with("https://")) {
                    bail!(
                        "invalid value '{e}' for '--etcd': '--etcd-user' sends its password with every connection, so endpoints must be https:// (with '--etcd-ca-file')"
                    );
                }
                let password = String::from_utf8(read("etcd-password-file", p)?)
                    .context("'--etcd-password-file' is not UTF-8")?;
                let password = password.trim_end_matches(['\r', '\n']).to_owned();
                if u.is_empty() || password.is_empty() {
                    bail!("'--etcd-user' and its password must not be empty");
                }
                s.user = Some((u.clone(), password));
            }
            (None, None) => {}
            _ => bail!("'--etcd-user' and '--etcd-password-file' go together"),
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_given_or_inconsistent_settings_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pem");
        std::fs::write(&f, "pem\n").unwrap();
        let https = vec!["https://127.0.0.1:2379".to_owned()];
        let http = vec!["http://127.0.0.1:2379".to_owned()];
        let cases: Vec<(EtcdFlags, &Vec<String>, Option<&str>)> = vec![
            (EtcdFlags::default(), &http, None),
            (
                EtcdFlags {
                    etcd_ca_file: Some(f.clone()),
                    ..Default::default()
                },
                &http,
                Some("'--etcd'"),
            ),
            (
                EtcdFlags {
                    etcd_ca_file: Some(f.clone()),
                    ..Default::default()
                },
                &https,
                None,
            ),
            (
                EtcdFlags {
                    etcd_cert_file: Some(f.clone()),
                    ..Default::default()
                },
                &https,
                Some("go together"),
            ),
            (
                EtcdFlags {
                    etcd_cert_file: Some(f.clone()),
                    etcd_key_file: Some(f.clone()),
                    ..Default::default()
                },
                &https,
                Some("needs '--etcd-ca-file'"),
            ),
            (
                EtcdFlags {
                    etcd_user: Some("dialtone".into()),
                    ..Default::default()
                },
                &http,
                Some("go together"),
            ),
            (
                EtcdFlags {
                    etcd_ca_file: Some(dir.path().join("missing.pem")),
                    ..Default::default()
                },
                &https,
                Some("'--etcd-ca-file'"),
            ),
            (
                EtcdFlags {
                    etcd_user: Some("dialtone".into()),
                    etcd_password_file: Some(f.clone()),
                    ..Default::default()
                },
                &http,
                Some("must be https://"),
            ),
            (
                EtcdFlags {
                    etcd_ca_file: Some(f.clone()),
                    etcd_user: Some("dialtone".into()),
                    etcd_password_file: Some(f.clone()),
                    ..Default::default()
                },
                &https,
                None,
            ),
        ];
        for (flags, eps, want) in cases {
            let got = flags.security(eps);
            match want {
                None => assert!(got.is_ok(), "{flags:?}: {:?}", got.err()),
                Some(w) => {
                    let e = format!("{:#}", got.expect_err("refused"));
                    assert!(e.contains(w), "{flags:?}: {e}");
                }
            }
        }
        let s = EtcdFlags {
            etcd_ca_file: Some(f.clone()),
            etcd_user: Some("dialtone".into()),
            etcd_password_file: Some(f),
            ..Default::default()
        }
        .security(&https)
        .unwrap();
        assert_eq!(
            s.user,
            Some(("dialtone".into(), "pem".into())),
            "one line, trimmed"
        );
    }
}
