//! SIP transports: UDP datagrams, TCP and TLS streams framed by Content-Length, and
//! WebSocket (RFC 7118) messages. Each hands whole messages to the
//! [`crate::handler::Handler`] together with a [`Peer`] to answer through.

pub mod stream;
pub mod tls;
pub mod udp;
pub mod ws;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
};

use dialtone_proto::edge::v1::SipTransport;
use parking_lot::Mutex;
use tokio::{net::UdpSocket, sync::mpsc};

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

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            "ws" => Transport::Ws,
            "wss" => Transport::Wss,
            _ => return None,
        })
    }

    pub fn proto(self) -> SipTransport {
        match self {
            Transport::Udp => SipTransport::Udp,
            Transport::Tcp => SipTransport::Tcp,
            Transport::Tls => SipTransport::Tls,
            Transport::Ws => SipTransport::Ws,
            Transport::Wss => SipTransport::Wss,
        }
    }

    /// Whether a flow of this transport only lives as long as its connection, so the
    /// edge cannot reach the phone once it closes (browsers cannot accept connections).
    pub fn connection_bound(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }
}

/// A way back to a peer.
#[derive(Clone, Debug)]
pub enum Replier {
    /// A datagram to `to` from the edge's socket.
    Udp {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
    },
    /// A message queued on a connection's writer.
    Stream(mpsc::UnboundedSender<Vec<u8>>),
}

impl Replier {
    /// Sends a message; false when the flow is gone or the socket is full (the peer
    /// retransmits over UDP; a stream is closing anyway).
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        match self {
            Replier::Udp { socket, to } => socket.try_send_to(&bytes, *to).is_ok(),
            Replier::Stream(tx) => tx.send(bytes).is_ok(),
        }
    }
}

/// Where a message came from and how to answer it.
#[derive(Clone, Debug)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub replier: Replier,
    /// A connection's idle timeout in seconds, which a registration may set from its
    /// line's persistent-connection timeout (WS/WSS only).
    pub idle: Option<Arc<AtomicU64>>,
}

impl Peer {
    /// `transport:ip:port`, the source recorded in bindings.
    pub fn source(&self) -> String {
        format!("{}:{}", self.transport.name(), self.addr)
    }
}

type FlowSender = mpsc::UnboundedSender<Vec<u8>>;

/// The edge's open flows, so requests to phones (NOTIFY) can use the connection a phone
/// registered over.
#[derive(Default)]
pub struct Flows {
    udp: Mutex<Option<Arc<UdpSocket>>>,
    streams: Mutex<HashMap<(Transport, SocketAddr), FlowSender>>,
}

impl Flows {
    pub fn set_udp(&self, socket: Arc<UdpSocket>) {
        *self.udp.lock() = Some(socket);
    }

    pub fn open(&self, t: Transport, addr: SocketAddr, tx: mpsc::UnboundedSender<Vec<u8>>) {
        self.streams.lock().insert((t, addr), tx);
    }

    pub fn close(&self, t: Transport, addr: SocketAddr) {
        self.streams.lock().remove(&(t, addr));
    }

    /// A replier for a binding's source (`transport:ip:port`).
    pub fn replier(&self, source: &str) -> Option<(Transport, Replier)> {
        let (t, addr) = source.split_once(':')?;
        let t = Transport::from_name(t)?;
        let addr: SocketAddr = addr.parse().ok()?;
        let r = match t {
            Transport::Udp => Replier::Udp {
                socket: self.udp.lock().clone()?,
                to: addr,
            },
            _ => Replier::Stream(self.streams.lock().get(&(t, addr))?.clone()),
        };
        Some((t, r))
    }

    /// Open stream flows, for metrics.
    pub fn open_streams(&self) -> usize {
        self.streams.lock().len()
    }
}
