//! Trusted SIP peers: what their `addresses` and `transports` mean, shared by the config
//! role (which validates them, `dialtone_config::peers`) and the edges (which match each
//! request's source against them). Pure.

use std::net::{IpAddr, SocketAddr};

use dialtone_proto::config::v1::Peer;

use crate::error::PeerAddressError;

/// Transports a peer may name.
pub const TRANSPORTS: [&str; 5] = ["udp", "tcp", "tls", "ws", "wss"];

/// One entry of a peer's `addresses`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAddress {
    /// A network (an address alone is its /32 or /128).
    Net { ip: IpAddr, prefix: u8 },
    /// One address and the one port it sends from.
    Exact(SocketAddr),
}

/// Widest networks a peer may name: trust is for a peer's own addresses, not a provider's.
const MIN_PREFIX_V4: u8 = 16;
const MIN_PREFIX_V6: u8 = 48;

impl PeerAddress {
    /// Parses `192.0.2.10`, `192.0.2.0/28`, `192.0.2.10:5060`, `2001:db8::1`,
    /// `2001:db8::/64` or `[2001:db8::1]:5060`.
    pub fn parse(s: &str) -> Result<Self, PeerAddressError> {
        let s = s.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(PeerAddress::Exact(normal_addr(a)));
        }
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| PeerAddressError::NotAnAddress(s.to_owned()))?;
        let ip = normal_ip(ip);
        let (max, min) = match ip {
            IpAddr::V4(_) => (32, MIN_PREFIX_V4),
            IpAddr::V6(_) => (128, MIN_PREFIX_V6),
        };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                PeerAddressError::Prefix {
                    address: s.to_owned(),
                    max,
                }
            })?,
        };
        if prefix < min {
            return Err(PeerAddressError::TooWide {
                address: s.to_owned(),
                min,
            });
        }
        if masked(ip, prefix) != ip {
            return Err(PeerAddressError::HostBits {
                address: s.to_owned(),
                network: masked(ip, prefix),
                prefix,
            });
        }
        Ok(PeerAddress::Net { ip, prefix })
    }

    /// Whether a request from `from` comes from here.
    pub fn contains(&self, from: SocketAddr) -> bool {
        let from = normal_addr(from);
        match *self {
            PeerAddress::Exact(a) => a == from,
            PeerAddress::Net { ip, prefix } => {
                std::mem::discriminant(&ip) == std::mem::discriminant(&from.ip())
                    && masked(from.ip(), prefix) == ip
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 addresses they are.
fn normal_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn normal_addr(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(normal_ip(a.ip()), a.port())
}

fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// Whether `name` can be a certificate's DNS name or common name (1-253 characters of
/// letters, digits, '.', '-', '_' and a leading '*.').
pub fn is_tls_name(name: &str) -> bool {
    let body = name.strip_prefix("*.").unwrap_or(name);
    (1..=253).contains(&name.len())
        && !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A peer as the edges match it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedPeer {
    pub id: String,
    addresses: Vec<PeerAddress>,
    /// Lowercase.
    tls_names: Vec<String>,
    /// Empty: any.
    transports: Vec<String>,
}

impl TrustedPeer {
    /// The peer's matcher; entries that do not parse (written by something other than the
    /// config role) match nothing.
    pub fn new(p: &Peer) -> Self {
        TrustedPeer {
            id: p.id.clone(),
            addresses: p
                .addresses
                .iter()
                .filter_map(|a| PeerAddress::parse(a).ok())
                .collect(),
            tls_names: p.tls_names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            transports: p.transports.clone(),
        }
    }

    /// Whether a request from `from` over `transport` (as [`TRANSPORTS`] names it), on a
    /// connection whose verified client certificate has `cert_names`, is this peer's.
    pub fn matches(&self, from: SocketAddr, transport: &str, cert_names: &[String]) -> bool {
        let by_name = matches!(transport, "tls" | "wss")
            && cert_names
                .iter()
                .any(|n| self.tls_names.iter().any(|t| t.eq_ignore_ascii_case(n)));
        (self.transports.is_empty() || self.transports.iter().any(|t| t == transport))
            && (by_name || self.addresses.iter().any(|a| a.contains(from)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_match() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        type Case<'a> = (&'a str, &'a [(&'a str, bool)]);
        let cases: &[Case] = &[
            (
                "192.0.2.10",
                &[
                    ("192.0.2.10:5060", true),
                    ("192.0.2.10:1", true),
                    ("192.0.2.11:5060", false),
                    ("[::ffff:192.0.2.10]:5060", true),
                ],
            ),
            (
                "192.0.2.0/28",
                &[("192.0.2.15:5060", true), ("192.0.2.16:5060", false)],
            ),
            (
                "192.0.2.10:5060",
                &[("192.0.2.10:5060", true), ("192.0.2.10:5061", false)],
            ),
            (
                "2001:db8::/64",
                &[
                    ("[2001:db8::1]:5060", true),
                    ("[2001:db8:0:1::1]:5060", false),
                    ("192.0.2.1:5060", false),
                ],
            ),
            (
                "[2001:db8::1]:5060",
                &[("[2001:db8::1]:5060", true), ("[2001:db8::1]:5061", false)],
            ),
        ];
        for (text, froms) in cases {
            let a = PeerAddress::parse(text).unwrap();
            for (from, want) in *froms {
                assert_eq!(a.contains(at(from)), *want, "{text} vs {from}");
            }
        }
        for (bad, why) in [
            ("example.com", "not an IP address"),
            ("10.0.0.0/8", "wider than /16"),
            ("2001:db8::/32", "wider than /48"),
            ("192.0.2.1/24", "host bits"),
            ("192.0.2.0/33", "prefix must be 0-32"),
            ("", "not an IP address"),
        ] {
            let e = PeerAddress::parse(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn peers_match_by_address_transport_or_certificate_name() {
        let p = Peer {
            id: "pbx".into(),
            addresses: vec!["192.0.2.10".into(), "not an address".into()],
            transports: vec!["udp".into(), "tls".into()],
            ..Default::default()
        };
        let t = TrustedPeer::new(&p);
        let from = "192.0.2.10:5060".parse().unwrap();
        assert!(
            t.matches(from, "udp", &[])
                && t.matches(from, "tls", &[])
                && !t.matches(from, "tcp", &[])
        );
        // By its certificate's name, over TLS or WSS only, from anywhere.
        let sbc = Peer {
            id: "carrier".into(),
            tls_names: vec!["SBC.example.com".into()],
            ..Default::default()
        };
        let t = TrustedPeer::new(&sbc);
        let anywhere = "198.51.100.7:40000".parse().unwrap();
        let names = ["sbc.example.com".to_owned()];
        assert!(t.matches(anywhere, "tls", &names) && t.matches(anywhere, "wss", &names));
        assert!(
            !t.matches(anywhere, "tcp", &names),
            "a name is only proven over TLS"
        );
        assert!(!t.matches(anywhere, "tls", &["other.example.com".to_owned()]));
        assert!(!t.matches(anywhere, "tls", &[]));
        for (name, ok) in [
            ("sbc.example.com", true),
            ("*.example.com", true),
            ("a b", false),
            ("", false),
            ("*.", false),
        ] {
            assert_eq!(is_tls_name(name), ok, "{name}");
        }
    }
}
