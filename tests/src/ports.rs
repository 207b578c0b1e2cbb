//! Loopback ports for the processes a test starts, picked free.
//!
//! nextest runs every test in a process of its own, so a port one test picked and released
//! for its child (or freed for a moment by restarting a node on it) could be picked by
//! another test's process at the same time: that once failed a restarted node with
//! EADDRINUSE. A port handed out here is therefore also reserved for as long as this test
//! process lives, by an abstract Unix socket named after it (Linux frees the name when the
//! process exits, however it exits, and leaves no file behind); another test process skips
//! a reserved port without touching it.

use parking_lot::Mutex;
use std::net::{TcpListener, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};

/// The reservations this test process holds, kept open until it exits.
static RESERVED: Mutex<Vec<UnixListener>> = Mutex::new(Vec::new());

/// Reserves the name `name` for this process among every test process on the machine
/// (none: one, this one included, already holds it). Keep what it returns for as long as
/// the reservation should hold.
fn reserve_name(name: &str) -> Option<UnixListener> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).ok()?;
    UnixListener::bind_addr(&addr).ok()
}

/// Keeps `reservation` until this process exits.
fn keep(reservation: UnixListener) {
    RESERVED.lock().push(reservation);
}

/// The name that reserves a single port.
fn port_name(port: u16) -> String {
    format!("dialtone-test-port-{port}")
}

/// The name that reserves the block of `size` ports from `base`.
fn block_name(base: u16, size: u16) -> String {
    format!("dialtone-test-block-{base}-{size}")
}

/// Whether `port` can be bound on TCP and UDP of 127.0.0.1 right now.
fn bindable(port: u16) -> bool {
    tcp_bindable(port) && UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// Whether `port` can be bound on TCP of 127.0.0.1 right now.
#[expect(
    clippy::disallowed_methods,
    reason = "a probe, closed at once: nothing connects to it, so its accept queue does not matter"
)]
fn tcp_bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port free on TCP and UDP of 127.0.0.1, released for the child to bind and reserved
/// for this test process. Drawn from 10000-19999, below Linux's ephemeral range
/// (32768-60999) and below [`free_port_pair`]'s: a port the OS picks for `bind(0)` is an
/// ephemeral one, which the kernel may give to any outgoing connection (a node's own etcd
/// client, say) between its release here and the child's bind.
pub fn free_port() -> u16 {
    for _ in 0..500 {
        let p = 10_000 + rand::random::<u16>() % 10_000;
        let Some(reservation) = reserve_name(&port_name(p)) else {
            continue;
        };
        // A port held by something outside the tests is let go, not handed out.
        if bindable(p) {
            keep(reservation);
            return p;
        }
    }
    panic!("no free port below the ephemeral range")
}

/// The first port of a block of `size` ports, one of `blocks` from `first` on, that no
/// other test process holds (a media daemon's port range: rtpengine's, coturn's relays),
/// reserved for this test process as [`free_port`]'s are (under the block's own name: no
/// block overlaps the ranges single ports are drawn from). The ports are not bound to
/// check them: the daemon binds what it needs within the block as it goes.
pub fn free_block(first: u16, blocks: u16, size: u16) -> u16 {
    // Every block is tried once, from a random one on.
    let from = rand::random::<u16>() % blocks;
    (0..blocks)
        .map(|i| first + size * ((from + i) % blocks))
        .find(|base| reserve_name(&block_name(*base, size)).map(keep).is_some())
        .unwrap_or_else(|| {
            panic!("every block of {size} ports from {first} is held by another test")
        })
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
/// the next one free on TCP too (baresip listens for TLS there), both reserved for this
/// test process as [`free_port`]'s are. Drawn below Linux's
/// ephemeral range (32768-60999), so the outgoing connections other tests open at the
/// same time cannot take it between this check and the bind of whoever uses it.
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let p = 20_000 + 2 * (rand::random::<u16>() % 6_000);
        // Both reserved (p is even, so no other pair holds p + 1); a pair held by
        // something outside the tests is let go, not handed out.
        let (Some(first), Some(second)) =
            (reserve_name(&port_name(p)), reserve_name(&port_name(p + 1)))
        else {
            continue;
        };
        if bindable(p) && tcp_bindable(p + 1) {
            keep(first);
            keep(second);
            return p;
        }
    }
    panic!("no port free on both tcp and udp")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether another reservation of `name` fails (this process already holds it).
    fn held(name: String) -> bool {
        reserve_name(&name).is_none()
    }

    // The abstract socket namespace is the machine's (its network namespace's), so a
    // name this process holds cannot be bound again by this process or any other.
    #[test]
    fn a_port_handed_out_stays_reserved_until_the_process_exits() {
        let p = free_port();
        assert!(held(port_name(p)), "port {p}");
        let pair = free_port_pair();
        assert!(held(port_name(pair)), "pair {pair}");
        assert!(held(port_name(pair + 1)), "pair {pair}");
        let others: Vec<u16> = (0..50).map(|_| free_port()).collect();
        assert!(!others.contains(&p), "port {p} handed out twice");
    }

    // Blocks of a size no test uses, so the other tests' blocks are left alone.
    #[test]
    fn every_block_is_handed_out_once_then_none_is_left() {
        let mut blocks: Vec<u16> = (0..8).map(|_| free_block(1_000, 8, 7)).collect();
        for b in &blocks {
            assert!(held(block_name(*b, 7)), "block {b}");
        }
        blocks.sort_unstable();
        assert_eq!(blocks, (0..8).map(|i| 1_000 + 7 * i).collect::<Vec<_>>());
        assert!(std::panic::catch_unwind(|| free_block(1_000, 8, 7)).is_err());
    }
}
