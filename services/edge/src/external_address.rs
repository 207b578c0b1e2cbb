//! `--sip-external-address`: where phones and carriers reach this edge when that is not
//! where it listens (a load balancer's address, a NodePort, a NAT), per transport:
//! `udp=203.0.113.7:5060,tls=sip-1.example.net:5061`. A DNS name (a cloud load balancer's
//! hostname) is resolved once at start, the address written into Via, Contact and
//! Record-Route being an IP the edge also recognises in the Routes that come back. Pure:
//! the resolver is passed in.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use crate::flow::Transport;

/// One transport's external address, as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExternalAddress {
    /// An IP address and port.
    Ip(SocketAddr),
    /// A DNS name and port, to resolve at start.
    Name(String, u16),
}

/// Parses `transport=host:port` pairs, comma-separated.
pub fn parse_external(text: &str) -> Result<HashMap<Transport, ExternalAddress>, String> {
    let mut out = HashMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (t, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("'{item}' is not transport=host:port"))?;
        let name = t.trim().to_ascii_lowercase();
        let transport = Transport::from_name(&name)
            .ok_or_else(|| format!("unknown transport '{name}' (udp, tcp, tls, ws, wss)"))?;
        let address = parse_one(addr.trim())?;
        if out.insert(transport, address).is_some() {
            return Err(format!("{} given twice", transport.name()));
        }
    }
    Ok(out)
}

fn parse_one(text: &str) -> Result<ExternalAddress, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if !reachable(addr) {
            return Err(format!("'{addr}' is not an address phones can reach"));
        }
        return Ok(ExternalAddress::Ip(addr));
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("'{text}' is not host:port"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("'{text}' has no port phones can reach"))?;
    if host.parse::<IpAddr>().is_ok() || !is_dns_name(host) {
        return Err(format!(
            "'{text}' is not host:port (an IP, [IPv6] or a DNS name)"
        ));
    }
    Ok(ExternalAddress::Name(host.to_ascii_lowercase(), port))
}

fn reachable(a: SocketAddr) -> bool {
    !a.ip().is_unspecified() && a.port() != 0
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens, at most 253
/// characters, not all digits (that would be a malformed IP).
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.len() <= 253
        && host.split('.').all(label)
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// The addresses to write: names resolved with `resolve` (an IPv4 address preferred, as
/// most phones and carriers reach one), IPs as given. An error names what did not resolve.
pub fn resolve_external(
    given: HashMap<Transport, ExternalAddress>,
    resolve: impl Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
) -> Result<HashMap<Transport, SocketAddr>, String> {
    given
        .into_iter()
        .map(|(t, a)| {
            let addr = match a {
                ExternalAddress::Ip(addr) => addr,
                ExternalAddress::Name(host, port) => {
                    let found = resolve(&host, port)
                        .map_err(|e| format!("'{host}' does not resolve: {e}"))?;
                    let usable = found.into_iter().filter(|a| reachable(*a));
                    let (v4, v6): (Vec<_>, Vec<_>) = usable.partition(SocketAddr::is_ipv4);
                    let first = v4.into_iter().chain(v6).next();
                    let found = first.ok_or_else(|| format!("'{host}' resolves to no address"))?;
                    SocketAddr::new(found.ip(), port)
                }
            };
            Ok((t, addr))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_addresses_are_read_per_transport() {
        let ok = parse_external(
            " udp=203.0.113.7:5060, TLS=[2001:db8::7]:5061, wss=SIP-1.Example.net:443 ",
        )
        .unwrap();
        assert_eq!(
            ok[&Transport::Udp],
            ExternalAddress::Ip("203.0.113.7:5060".parse().unwrap())
        );
        assert_eq!(
            ok[&Transport::Tls],
            ExternalAddress::Ip("[2001:db8::7]:5061".parse().unwrap())
        );
        assert_eq!(
            ok[&Transport::Wss],
            ExternalAddress::Name("sip-1.example.net".into(), 443)
        );
        assert!(parse_external("").unwrap().is_empty());
        for (bad, why) in [
            ("udp", "is not transport=host:port"),
            ("sctp=1.2.3.4:5060", "unknown transport 'sctp'"),
            ("udp=sip.example.com", "is not host:port"),
            ("udp=sip.example.com:0", "has no port"),
            ("udp=sip_1.example.com:5060", "is not host:port"),
            ("udp=-sip.example.com:5060", "is not host:port"),
            ("udp=1.2.3:5060", "is not host:port"),
            ("udp=0.0.0.0:5060", "not an address phones can reach"),
            ("udp=1.2.3.4:0", "not an address phones can reach"),
            ("udp=1.2.3.4:1,udp=1.2.3.4:2", "udp given twice"),
        ] {
            let e = parse_external(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn names_resolve_once_to_an_ipv4_address_first() {
        let resolver = |host: &str, port: u16| -> std::io::Result<Vec<SocketAddr>> {
            let at = |s: &str| SocketAddr::new(s.parse().unwrap(), port);
            match host {
                "lb.example.net" => Ok(vec![at("2001:db8::1"), at("203.0.113.9")]),
                "v6.example.net" => Ok(vec![at("::"), at("2001:db8::2")]),
                "nothing.example.net" => Ok(vec![]),
                _ => Err(std::io::Error::other("no such host")),
            }
        };
        let got = resolve_external(
            parse_external("udp=lb.example.net:5060,tcp=v6.example.net:5060,tls=192.0.2.1:5061")
                .unwrap(),
            resolver,
        )
        .unwrap();
        assert_eq!(got[&Transport::Udp].to_string(), "203.0.113.9:5060");
        assert_eq!(got[&Transport::Tcp].to_string(), "[2001:db8::2]:5060");
        assert_eq!(got[&Transport::Tls].to_string(), "192.0.2.1:5061");
        for (given, why) in [
            ("udp=nothing.example.net:5060", "resolves to no address"),
            (
                "udp=gone.example.net:5060",
                "'gone.example.net' does not resolve: no such host",
            ),
        ] {
            let e = resolve_external(parse_external(given).unwrap(), resolver).unwrap_err();
            assert!(e.contains(why), "{given}: {e}");
        }
    }
}
