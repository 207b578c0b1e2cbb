//! Transports and flows (RFC 3261 §18, RFC 7118): which transport a message came over,
//! and the flow (transport and remote address) a binding is reached through.

use std::{fmt, net::SocketAddr, str::FromStr};

/// A SIP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    /// Every transport, in the order metrics list them.
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// Lowercase name, as in `transport=` and binding sources.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// The name in a Via header.
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The transport of a lowercase name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Its position in [`Transport::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the transport runs over a connection (TCP, TLS, WS, WSS).
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }

    /// Whether a flow of this transport only lives as long as its connection, so the
    /// edge cannot reach the phone once it closes (browsers cannot accept connections).
    pub fn connection_bound(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }
}

/// Where a REGISTER came from, and so where its phone is reached: a transport and the
/// peer's address. `Copy`, so a binding carries it without a string to parse back; it is
/// written `transport:ip:port` (`udp:192.0.2.1:5060`, `tcp:[2001:db8::1]:5060`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowSource {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl fmt::Display for FlowSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(48);
        s.push_str(self.transport.name());
        s.push(':');
        crate::response::push_socket_addr(&mut s, self.addr);
        f.write_str(&s)
    }
}

/// Why a text is not a flow source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not transport:ip:port")]
pub struct BadFlowSource(pub String);

impl FromStr for FlowSource {
    type Err = BadFlowSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadFlowSource(s.to_owned());
        let (t, addr) = s.split_once(':').ok_or_else(bad)?;
        Ok(FlowSource {
            transport: Transport::from_name(t).ok_or_else(bad)?,
            addr: addr.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_sources_round_trip() {
        for text in [
            "udp:192.0.2.1:5060",
            "tcp:[2001:db8::1]:5060",
            "wss:127.0.0.1:7443",
        ] {
            let f: FlowSource = text.parse().unwrap();
            assert_eq!(f.to_string(), text);
        }
        for bad in [
            "",
            "udp",
            "sctp:192.0.2.1:5060",
            "udp:192.0.2.1",
            "UDP:192.0.2.1:5060",
        ] {
            assert!(bad.parse::<FlowSource>().is_err(), "{bad}");
        }
        for t in Transport::ALL {
            assert_eq!(Transport::from_name(t.name()), Some(t));
            assert_eq!(Transport::ALL[t.index()], t);
        }
    }
}
