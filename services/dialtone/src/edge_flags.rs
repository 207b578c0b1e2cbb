//! The edge role's flags (part of `dialtone serve`), and their conversion into
//! [`dialtone_edge::EdgeSettings`].

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Args;
use dialtone_edge::{BanPolicy, EdgeSettings, Listeners, settings::parse_algorithms};
use dialtone_sip::digest::NonceKey;

/// File in the data dir holding the generated nonce key (dev mode, mode 0600).
pub const NONCE_KEY_FILE: &str = "sip-nonce-key";

/// SIP edge settings.
#[derive(Args, Debug, Clone)]
pub struct EdgeFlags {
    /// SIP over UDP: ADDR, or `off`.
    #[arg(
        long,
        env = "DIALTONE_SIP_UDP",
        default_value = "127.0.0.1:5060",
        value_name = "ADDR|off"
    )]
    pub sip_udp: String,
    /// SIP over TCP: ADDR, or `off`.
    #[arg(
        long,
        env = "DIALTONE_SIP_TCP",
        default_value = "127.0.0.1:5060",
        value_name = "ADDR|off"
    )]
    pub sip_tcp: String,
    /// SIP over TLS: ADDR, or `off`.
    #[arg(
        long,
        env = "DIALTONE_SIP_TLS",
        default_value = "127.0.0.1:5061",
        value_name = "ADDR|off"
    )]
    pub sip_tls: String,
    /// SIP over WebSocket (RFC 7118): ADDR, or `off`.
    #[arg(
        long,
        env = "DIALTONE_SIP_WS",
        default_value = "127.0.0.1:5066",
        value_name = "ADDR|off"
    )]
    pub sip_ws: String,
    /// SIP over secure WebSocket: ADDR, or `off`.
    #[arg(
        long,
        env = "DIALTONE_SIP_WSS",
        default_value = "127.0.0.1:7443",
        value_name = "ADDR|off"
    )]
    pub sip_wss: String,
    /// PEM certificate chain for TLS and WSS. Without it (and --sip-tls-key) a self-signed
    /// certificate for localhost is generated into --data-dir/tls (dev mode only).
    #[arg(long, env = "DIALTONE_SIP_TLS_CERT", value_name = "FILE")]
    pub sip_tls_cert: Option<PathBuf>,
    /// PEM private key for TLS and WSS.
    #[arg(long, env = "DIALTONE_SIP_TLS_KEY", value_name = "FILE")]
    pub sip_tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): TLS and WSS clients may present a certificate it issued, and
    /// its names (DNS names, else the common name) identify trusted peers (`dialtonectl peers
    /// create --client-cert-name`). Clients without one still connect.
    #[arg(long, env = "DIALTONE_SIP_TLS_CLIENT_CA", value_name = "FILE")]
    pub sip_tls_client_ca: Option<PathBuf>,
    /// PEM CA bundle that carriers' TLS trunk targets must present a certificate from
    /// (default: the system's, /etc/ssl/certs/ca-certificates.crt).
    #[arg(long, env = "DIALTONE_SIP_TRUNK_CA", value_name = "FILE")]
    pub sip_trunk_ca: Option<PathBuf>,
    /// File with the edge group's nonce key (64 hex digits), shared by every edge of the
    /// group so a phone may authenticate on either. Required with --etcd; in dev mode one is
    /// generated into --data-dir/sip-nonce-key.
    #[arg(long, env = "DIALTONE_SIP_NONCE_KEY_FILE", value_name = "FILE")]
    pub sip_nonce_key_file: Option<PathBuf>,
    /// Seconds a nonce stays valid (then `stale=true`).
    #[arg(long, env = "DIALTONE_SIP_NONCE_LIFETIME", default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=3600))]
    pub sip_nonce_lifetime: u64,
    /// Digest algorithms this edge accepts at all (`sha-256`, `md5`). Each phone's profile
    /// chooses what its challenges offer and in what order (`digest_algorithms`; MD5 first
    /// by default, which every common client answers), cut to these; a profile left with
    /// none gets these, in this order. `sha-256` alone refuses MD5 fleet-wide.
    #[arg(
        long,
        env = "DIALTONE_SIP_DIGEST_ALGORITHMS",
        default_value = "sha-256,md5"
    )]
    pub sip_digest_algorithms: String,
    /// Shortest registration accepted, seconds (423 Interval Too Brief below it).
    #[arg(long, env = "DIALTONE_SIP_MIN_EXPIRES", default_value_t = 60)]
    pub sip_min_expires: u32,
    /// Longest registration granted, seconds (longer requests are shortened).
    #[arg(long, env = "DIALTONE_SIP_MAX_EXPIRES", default_value_t = 7200)]
    pub sip_max_expires: u32,
    /// Largest SIP message accepted on TCP, TLS, WS and WSS.
    #[arg(long, env = "DIALTONE_SIP_MAX_MESSAGE_BYTES", default_value_t = 65535)]
    pub sip_max_message_bytes: usize,
    /// Failed authentications from one address within the window that ban it (0: off).
    #[arg(long, env = "DIALTONE_SIP_BAN_SOURCE_FAILURES", default_value_t = 10)]
    pub sip_ban_source_failures: u32,
    /// Failed authentications for one SIP user within the window that ban it (0: off).
    #[arg(long, env = "DIALTONE_SIP_BAN_USER_FAILURES", default_value_t = 20)]
    pub sip_ban_user_failures: u32,
    /// Window the failures are counted in, seconds.
    #[arg(long, env = "DIALTONE_SIP_BAN_WINDOW", default_value_t = 60)]
    pub sip_ban_window: u64,
    /// How long a ban lasts, seconds.
    #[arg(long, env = "DIALTONE_SIP_BAN_DURATION", default_value_t = 300)]
    pub sip_ban_duration: u64,
    /// The IP other edges (and phones answering this edge's requests) reach this edge at,
    /// when a --sip-* listener binds 0.0.0.0 or :: (e.g. the pod IP in Kubernetes). Written
    /// into the edge's member record, Via and Contact.
    #[arg(long, env = "DIALTONE_SIP_ADVERTISE_IP", value_name = "IP")]
    pub sip_advertise_ip: Option<std::net::IpAddr>,
    /// Where phones and carriers reach this edge when that differs from its listeners and
    /// --sip-advertise-ip (a load balancer's or NAT's address, a NodePort), per transport:
    /// `udp=203.0.113.7:5060,tls=sip-1.example.net:5061`. Written into the Via, Contact and
    /// Record-Route of what the edge sends them; other edges keep using the member record.
    /// A DNS name is resolved once, at start (an IPv4 address preferred).
    #[arg(
        long,
        env = "DIALTONE_SIP_EXTERNAL_ADDRESS",
        value_name = "TRANSPORT=HOST:PORT,..."
    )]
    pub sip_external_address: Option<String>,
    /// Server header on responses (none by default).
    #[arg(long, env = "DIALTONE_SIP_SERVER_HEADER")]
    pub sip_server_header: Option<String>,
    /// Origins whose browser pages may open SIP WebSocket (WS/WSS) connections, comma-
    /// separated (`https://console.example.com`); `*` allows any. An upgrade without an
    /// Origin (non-browser phones) is always allowed; any other Origin gets 403.
    #[arg(
        long,
        env = "DIALTONE_SIP_WS_ALLOWED_ORIGINS",
        value_name = "ORIGINS",
        default_value = ""
    )]
    pub sip_ws_allowed_origins: String,
    /// Stream connections (TCP, TLS, WS, WSS together) open at once; more are closed at
    /// accept.
    #[arg(long, env = "DIALTONE_SIP_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub sip_max_connections: usize,
    /// Stream connections open at once from one IP address (raise it for offices whose
    /// phones reach the edge over TCP/TLS from one NAT address).
    #[arg(
        long,
        env = "DIALTONE_SIP_MAX_CONNECTIONS_PER_SOURCE",
        default_value_t = 256
    )]
    pub sip_max_connections_per_source: u32,
    /// Actor threads phones are sharded over (1-64).
    #[arg(long, env = "DIALTONE_SIP_SHARDS", default_value_t = 2)]
    pub sip_shards: usize,
    /// Seconds a NOTIFY check-sync, or any request delivered to a phone, waits for the
    /// phone's first answer (then 408).
    #[arg(long, env = "DIALTONE_SIP_NOTIFY_TIMEOUT", default_value_t = 8)]
    pub sip_notify_timeout: u64,
    /// Seconds a delivered INVITE may ring without a final answer before the edge cancels
    /// it and answers 480.
    #[arg(long, env = "DIALTONE_SIP_INVITE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub sip_invite_timeout: u64,
    /// Seconds the edge's queue of binding writes may take to reach the store (the time the
    /// write being sent has been hanging, plus the queue at the rate the store has recently
    /// taken writes) before it sheds load: REGISTERs of phones with no state on the edge are
    /// then answered 503 with a Retry-After of the time the queue takes to write at that
    /// rate (at least this limit), before any digest is checked, so the phones come back
    /// paced (after a power cut, a whole site at once) and no more registrations are
    /// acknowledged than the store can keep up with. 0: never shed (0-600).
    #[arg(long, env = "DIALTONE_SIP_REGISTER_BACKLOG", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub sip_register_backlog: u64,
}

fn listener(flag: &str, v: &str) -> anyhow::Result<Option<SocketAddr>> {
    if v == "off" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| anyhow::anyhow!("invalid value '{v}' for '{flag}': expected ADDR:PORT or off"))
}

impl EdgeFlags {
    /// Parses the listener addresses (checked at start-up for every role set).
    pub fn check(&self) -> anyhow::Result<()> {
        self.listeners().map(|_| ())?;
        parse_algorithms(&self.sip_digest_algorithms)?;
        Ok(())
    }

    fn listeners(&self) -> anyhow::Result<Listeners> {
        Ok(Listeners {
            udp: listener("--sip-udp", &self.sip_udp)?,
            tcp: listener("--sip-tcp", &self.sip_tcp)?,
            tls: listener("--sip-tls", &self.sip_tls)?,
            ws: listener("--sip-ws", &self.sip_ws)?,
            wss: listener("--sip-wss", &self.sip_wss)?,
        })
    }

    /// The edge's settings; `dev` allows generating the nonce key into `data`.
    pub fn settings(
        &self,
        node_id: &str,
        realm: &str,
        data: &Path,
        dev: bool,
    ) -> anyhow::Result<EdgeSettings> {
        let nonce_key = NonceKey::new(crate::secret_file::load(
            self.sip_nonce_key_file.as_deref(),
            "--sip-nonce-key-file",
            data,
            NONCE_KEY_FILE,
            dev,
        )?);
        let listeners = self.listeners()?;
        let external = match &self.sip_external_address {
            Some(text) => {
                let refused = |e: String| {
                    anyhow::anyhow!("invalid value '{text}' for '--sip-external-address': {e}")
                };
                let given = dialtone_edge::parse_external(text).map_err(refused)?;
                // DNS names (a cloud load balancer's hostname) resolved once, here.
                dialtone_edge::resolve_external(given, |host, port| {
                    use std::net::ToSocketAddrs;
                    (host, port).to_socket_addrs().map(Iterator::collect)
                })
                .map_err(refused)?
            }
            None => Default::default(),
        };
        for t in external.keys() {
            anyhow::ensure!(
                listeners.of(*t).is_some(),
                "invalid value for '--sip-external-address': {} is not listened on (--sip-{})",
                t.name(),
                t.name()
            );
        }
        let s = EdgeSettings {
            node_id: node_id.to_owned(),
            listeners,
            external,
            advertise_ip: self.sip_advertise_ip,
            tls_cert: self.sip_tls_cert.clone(),
            tls_key: self.sip_tls_key.clone(),
            tls_client_ca: self.sip_tls_client_ca.clone(),
            trunk_ca: self.sip_trunk_ca.clone(),
            realm: realm.to_owned(),
            nonce_key,
            nonce_lifetime: Duration::from_secs(self.sip_nonce_lifetime),
            digest_bound: parse_algorithms(&self.sip_digest_algorithms)?,
            min_expires: self.sip_min_expires,
            max_expires: self.sip_max_expires,
            max_message_bytes: self.sip_max_message_bytes,
            bans: BanPolicy {
                per_source: self.sip_ban_source_failures,
                per_user: self.sip_ban_user_failures,
                window: Duration::from_secs(self.sip_ban_window.max(1)),
                duration: Duration::from_secs(self.sip_ban_duration.max(1)),
            },
            server_header: self.sip_server_header.clone().filter(|s| !s.is_empty()),
            shards: self.sip_shards,
            notify_timeout: Duration::from_secs(self.sip_notify_timeout.clamp(1, 64)),
            invite_timeout: Duration::from_secs(self.sip_invite_timeout),
            connections: dialtone_edge::SourceLimits {
                total: self.sip_max_connections,
                per_source: self.sip_max_connections_per_source,
            },
            register_backlog: dialtone_edge::BacklogLimit {
                wait: Duration::from_secs(self.sip_register_backlog),
            },
            ws_allowed_origins: self
                .sip_ws_allowed_origins
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        s.validate()?;
        Ok(s)
    }
}
