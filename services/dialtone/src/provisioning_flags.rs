//! The provisioning role's flags (part of `dialtone serve`), and their conversion into
//! [`dialtone_provisioning::ProvisioningSettings`].

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::Args;
use dialtone_auth::bans::BanPolicy;
use dialtone_media::turn::{self, TurnSecret};
use dialtone_provisioning::{ProvisioningSettings, ice::Turn};

/// Provisioning server settings.
#[derive(Args, Debug, Clone)]
pub struct ProvisioningFlags {
    /// HTTPS address phones fetch their configuration files from.
    #[arg(
        long,
        env = "DIALTONE_PROVISIONING_HTTPS",
        default_value = "127.0.0.1:8443",
        value_name = "ADDR"
    )]
    pub provisioning_https: SocketAddr,
    /// PEM certificate chain of the HTTPS server. Without it (and --provisioning-tls-key) a
    /// self-signed certificate for localhost is generated into --data-dir/tls (dev mode).
    #[arg(long, env = "DIALTONE_PROVISIONING_TLS_CERT", value_name = "FILE")]
    pub provisioning_tls_cert: Option<PathBuf>,
    /// PEM private key of the HTTPS server.
    #[arg(long, env = "DIALTONE_PROVISIONING_TLS_KEY", value_name = "FILE")]
    pub provisioning_tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) that issue phones' client certificates (mutual TLS). With it,
    /// the HTTPS server asks every client for a certificate; a phone whose certificate names
    /// its MAC address or FQDN (CN or a DNS subjectAltName) is authenticated by it, and a
    /// phone whose base settings turn `mutual_auth` on is served only that way. Without it,
    /// phones with `mutual_auth` on cannot fetch.
    #[arg(long, env = "DIALTONE_PROVISIONING_CLIENT_CA", value_name = "FILE")]
    pub provisioning_client_ca: Option<PathBuf>,
    /// Seconds a digest nonce of the HTTPS server stays valid (then `stale=true`).
    #[arg(
        long,
        env = "DIALTONE_PROVISIONING_NONCE_LIFETIME",
        default_value_t = 300
    )]
    pub provisioning_nonce_lifetime: u64,
    /// Failed authentications from one address within the window that ban it (429); 0: never.
    #[arg(
        long,
        env = "DIALTONE_PROVISIONING_BAN_SOURCE_FAILURES",
        default_value_t = 20
    )]
    pub provisioning_ban_source_failures: u32,
    /// Failed authentications as one device within the window that ban it; 0: never.
    #[arg(
        long,
        env = "DIALTONE_PROVISIONING_BAN_DEVICE_FAILURES",
        default_value_t = 10
    )]
    pub provisioning_ban_device_failures: u32,
    /// Phones per second a dynamic-reload wave resyncs at most on this node (so a profile
    /// change reaching the whole fleet does not storm the edges; with several provisioning
    /// nodes each paces its own share).
    #[arg(long, env = "DIALTONE_PROVISIONING_RESYNC_RATE", default_value_t = 50)]
    pub provisioning_resync_rate: u32,
    /// Milliseconds of quiet after a configuration change before its wave starts.
    #[arg(
        long,
        env = "DIALTONE_PROVISIONING_RESYNC_DEBOUNCE_MS",
        default_value_t = 2000
    )]
    pub provisioning_resync_debounce_ms: u64,
    /// Seconds failures are counted over, and seconds a ban lasts.
    #[arg(long, env = "DIALTONE_PROVISIONING_BAN_SECONDS", default_value_t = 300)]
    pub provisioning_ban_seconds: u64,
    /// File holding the shared secret of the TURN servers the media servers list
    /// (coturn's `static-auth-secret`, with `use-auth-secret`), at least 16 characters. With
    /// it, a WebRTC phone's file and `how-to-register` carry a time-limited TURN credential
    /// of that phone; the secret itself is never served nor logged.
    #[arg(long, env = "DIALTONE_TURN_SECRET_FILE", value_name = "FILE")]
    pub turn_secret_file: Option<PathBuf>,
    /// Seconds a TURN credential lasts (60-604800; it is issued again at every fetch).
    #[arg(long, env = "DIALTONE_TURN_CREDENTIAL_TTL", default_value_t = 86_400)]
    pub turn_credential_ttl: u64,
}

impl ProvisioningFlags {
    /// The role's settings; `dev` allows a generated certificate.
    pub fn settings(
        &self,
        node_id: &str,
        realm: &str,
        dev: bool,
    ) -> anyhow::Result<ProvisioningSettings> {
        let tls = match (&self.provisioning_tls_cert, &self.provisioning_tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) if dev => None,
            (None, None) => bail!(
                "'--provisioning-tls-cert' and '--provisioning-tls-key' are required with '--etcd'"
            ),
            _ => bail!(
                "'--provisioning-tls-cert' and '--provisioning-tls-key' go together: give both"
            ),
        };
        if !(10..=3600).contains(&self.provisioning_nonce_lifetime) {
            bail!(
                "invalid value '{}' for '--provisioning-nonce-lifetime': use 10-3600 seconds",
                self.provisioning_nonce_lifetime
            );
        }
        if !(1..=10_000).contains(&self.provisioning_resync_rate) {
            bail!(
                "invalid value '{}' for '--provisioning-resync-rate': use 1-10000 phones per second",
                self.provisioning_resync_rate
            );
        }
        if !(10..=600_000).contains(&self.provisioning_resync_debounce_ms) {
            bail!(
                "invalid value '{}' for '--provisioning-resync-debounce-ms': use 10-600000",
                self.provisioning_resync_debounce_ms
            );
        }
        if !(60..=604_800).contains(&self.turn_credential_ttl) {
            bail!(
                "invalid value '{}' for '--turn-credential-ttl': use 60-604800 seconds",
                self.turn_credential_ttl
            );
        }
        let turn = match &self.turn_secret_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "invalid value '{}' for '--turn-secret-file'",
                        path.display()
                    )
                })?;
                let Some(secret) = TurnSecret::from_text(&text) else {
                    bail!(
                        "invalid value '{}' for '--turn-secret-file': must hold at least {} characters (e.g. `openssl rand -hex 32`)",
                        path.display(),
                        turn::MIN_SECRET
                    );
                };
                Some(Turn {
                    secret,
                    ttl_s: self.turn_credential_ttl,
                })
            }
        };
        let seconds = Duration::from_secs(self.provisioning_ban_seconds.max(1));
        Ok(ProvisioningSettings {
            listen: self.provisioning_https,
            tls,
            client_ca: self.provisioning_client_ca.clone(),
            realm: realm.to_owned(),
            nonce_lifetime: Duration::from_secs(self.provisioning_nonce_lifetime),
            bans: BanPolicy {
                per_source: self.provisioning_ban_source_failures,
                per_user: self.provisioning_ban_device_failures,
                window: seconds,
                duration: seconds,
            },
            reload: dialtone_provisioning::reload::ReloadSettings {
                rate_per_s: self.provisioning_resync_rate,
                debounce: Duration::from_millis(self.provisioning_resync_debounce_ms),
            },
            node_id: node_id.to_owned(),
            turn,
        })
    }
}
