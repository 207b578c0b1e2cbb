//! Loopback ports for the processes a test starts, picked free.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::net::{TcpListener, UdpSocket};

/// Ports this test process has handed out, so that it never hands one out twice.
static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port free on TCP and UDP of 127.0.0.1, released for the child to bind. Drawn from
/// 10000-19999, below Linux's ephemeral range (32768-60999) and below
/// [`free_port_pair`]'s: a port the OS picks for `bind(0)` is an ephemeral one, which the
/// kernel may give to any outgoing connection (a node's own etcd client, say) between its
/// release here and the child's bind, and that once failed a node with EADDRINUSE.
pub fn free_port() -> u16 {
    let mut given = GIVEN.lock();
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..500 {
        let p = 10_000 + rand::random::<u16>() % 10_000;
        if given.contains(&p) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p)).is_ok() && UdpSocket::bind(("127.0.0.1", p)).is_ok()
        {
            given.insert(p);
            return p;
        }
    }
    panic!("no free port below the ephemeral range")
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
