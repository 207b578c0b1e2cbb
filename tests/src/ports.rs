//! Loopback ports for the processes a test starts, picked free.

use std::net::TcpListener;

/// A free TCP port on 127.0.0.1 (the OS picks it; it is released for the child to bind).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Where a node's SIP edge listens (127.0.0.1, OS-chosen ports; UDP and TCP share one).
#[derive(Clone, Copy, Debug)]
pub struct SipPorts {
    pub udp: u16,
    pub tcp: u16,
    pub tls: u16,
    pub ws: u16,
    pub wss: u16,
}

impl SipPorts {
    /// Free ports for every transport (UDP and TCP on one [`free_port_pair`]).
    pub(crate) fn pick() -> Self {
        let p = free_port_pair();
        SipPorts {
            udp: p,
            tcp: p,
            tls: free_port(),
            ws: free_port(),
            wss: free_port(),
        }
    }
}

/// A port free on both TCP and UDP of 127.0.0.1 (SIP uses the same number for both), and
/// the next one free on TCP too (baresip listens for TLS there). Drawn below Linux's
/// ephemeral range (32768-60999), so the outgoing connections other tests open at the
/// same time cannot take it between this check and the bind of whoever uses it.
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let p = 20_000 + 2 * (rand::random::<u16>() % 6_000);
        let free = std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok();
        if free {
            return p;
        }
    }
    panic!("no port free on both tcp and udp")
}
