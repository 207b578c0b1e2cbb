//! The edge role's settings (read by `dialtone serve` from flags, `DIALTONE_*` environment
//! and its file; validated here so every bad value is named).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

pub use dialtone_auth::bans::BanPolicy;

use dialtone_sip::{
    digest::{Algorithm, NonceKey},
    offer::Offer,
};

use crate::error::EdgeError;

/// Where the edge listens. `None` turns a transport off.
#[derive(Clone, Debug, Default)]
pub struct Listeners {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    pub ws: Option<SocketAddr>,
    pub wss: Option<SocketAddr>,
}

impl Listeners {
    /// Where `transport` listens, if it does.
    pub fn of(&self, transport: dialtone_sip::transport::Transport) -> Option<SocketAddr> {
        use dialtone_sip::transport::Transport;
        match transport {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp,
            Transport::Tls => self.tls,
            Transport::Ws => self.ws,
            Transport::Wss => self.wss,
        }
    }
}

/// Everything the edge needs.
#[derive(Clone, Debug)]
pub struct EdgeSettings {
    /// This node's id (binding keys end with it).
    pub node_id: String,
    pub listeners: Listeners,
    /// The IP this edge is reached at when a listener binds an unspecified address
    /// (`0.0.0.0`, `::`): written into its member record (other edges forward to it there)
    /// and into the Via and Contact of the requests it sends. A pod's IP in Kubernetes.
    pub advertise_ip: Option<std::net::IpAddr>,
    /// Where phones and carriers reach each transport when that differs from the listener
    /// (a load balancer's or NAT's address): written into the Via, Contact and
    /// Record-Route of what the edge sends them. Other edges still use the listener.
    pub external: std::collections::HashMap<crate::flow::Transport, std::net::SocketAddr>,
    /// PEM certificate chain and key for TLS and WSS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA whose client certificates TLS and WSS clients may present: their names
    /// identify trusted peers (`Peer.tls_names`).
    pub tls_client_ca: Option<PathBuf>,
    /// PEM CA bundle that carriers' TLS trunk targets are checked against (none: the
    /// system's bundle).
    pub trunk_ca: Option<PathBuf>,
    /// Digest realm (the one the config role hashed the passwords with).
    pub realm: String,
    /// The edge group's nonce key.
    pub nonce_key: NonceKey,
    /// How long a nonce stays valid before `stale=true`.
    pub nonce_lifetime: Duration,
    /// The digest algorithms this edge accepts at all: each phone's profile chooses which
    /// its challenges offer and in what order, within these.
    pub digest_bound: Offer,
    /// Shortest registration accepted (423 below it).
    pub min_expires: u32,
    /// Longest registration granted (longer requests are clamped).
    pub max_expires: u32,
    /// Largest SIP message accepted on a stream or WebSocket.
    pub max_message_bytes: usize,
    pub bans: BanPolicy,
    /// Server header value; none by default (it only helps attackers pick exploits).
    pub server_header: Option<String>,
    /// Actor threads: one UDP socket and receive loop each, and the checks of their share of
    /// the phone shards.
    pub shards: usize,
    /// How long a NOTIFY waits for the phone's answer; also how long a request delivered to
    /// a phone waits for any answer before 408.
    pub notify_timeout: Duration,
    /// How long a delivered INVITE may ring without a final answer before it is cancelled
    /// (480 upstream).
    pub invite_timeout: Duration,
    /// Origins whose pages may open SIP WebSockets (`*`: any); none besides an upgrade
    /// without Origin by default, so no web page can use a visitor's browser against the edge.
    pub ws_allowed_origins: Vec<String>,
    /// Caps on stream connections (TCP, TLS, WS, WSS) open at once.
    pub connections: crate::admission::SourceLimits,
    /// How far the bindings' publication may fall behind the store before REGISTERs are
    /// answered 503 with Retry-After (`registrar::backlog`).
    pub register_backlog: crate::registrar::backlog::BacklogLimit,
}

impl EdgeSettings {
    /// Checks values that flags cannot type.
    pub fn validate(&self) -> Result<(), EdgeError> {
        let l = &self.listeners;
        if [l.udp, l.tcp, l.tls, l.ws, l.wss]
            .iter()
            .all(Option::is_none)
        {
            return Err(EdgeError::invalid(
                "--sip-udp",
                "",
                "at least one transport must listen",
            ));
        }
        if self.min_expires == 0 || self.min_expires > self.max_expires {
            return Err(EdgeError::invalid(
                "--sip-min-expires",
                &self.min_expires.to_string(),
                "must be between 1 and --sip-max-expires",
            ));
        }
        if !(1..=64).contains(&self.shards) {
            return Err(EdgeError::invalid(
                "--sip-shards",
                &self.shards.to_string(),
                "must be 1-64",
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err(EdgeError::invalid(
                "--sip-max-message-bytes",
                &self.max_message_bytes.to_string(),
                "must be at least 1024",
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(EdgeError::invalid(
                "--sip-tls-cert",
                "",
                "give both --sip-tls-cert and --sip-tls-key",
            ));
        }
        Ok(())
    }
}

/// Parses `sha-256,md5` into an offer (in that order; each once).
pub fn parse_algorithms(s: &str) -> Result<Offer, EdgeError> {
    let list = s
        .split(',')
        .map(|a| match a.trim().to_ascii_lowercase().as_str() {
            "sha-256" | "sha256" => Ok(Algorithm::Sha256),
            "md5" => Ok(Algorithm::Md5),
            other => Err(EdgeError::invalid(
                "--sip-digest-algorithms",
                other,
                "expected sha-256 or md5",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Offer::of(&list).ok_or_else(|| {
        EdgeError::invalid(
            "--sip-digest-algorithms",
            s,
            "name sha-256, md5 or both, each once",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms() {
        assert_eq!(
            parse_algorithms("SHA-256, md5").unwrap(),
            Offer::Sha256ThenMd5
        );
        assert_eq!(parse_algorithms("md5").unwrap(), Offer::Md5);
        for (bad, named) in [("md5,sha1", "sha1"), ("md5,md5", "md5,md5")] {
            let e = parse_algorithms(bad).unwrap_err().to_string();
            assert!(
                e.contains("--sip-digest-algorithms") && e.contains(named),
                "{e}"
            );
        }
    }
}
