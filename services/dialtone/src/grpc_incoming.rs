//! The gRPC port's connections over TLS, handed to tonic already shaken hands. Doing the
//! handshakes here (not with tonic's `tls_config`, which holds the certificate it was
//! given at start) serves the certificate `dialtone_tls`'s reloading resolver holds now: a
//! renewed `--grpc-tls-cert` needs no restart.
//!
//! What a client can hold here is bounded: at most [`MAX_HANDSHAKES`] handshakes at once,
//! [`MAX_HANDSHAKES_PER_SOURCE`] of them from one address (an IPv6 /64), each for at most
//! [`HANDSHAKE_WITHIN`], counted until tonic takes the connection; connections beyond are
//! closed at once. So one host opening idle connections cannot keep other clients out.

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use parking_lot::Mutex;

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

/// Handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 1024;

/// Handshakes in progress at once from one source address.
pub const MAX_HANDSHAKES_PER_SOURCE: u32 = 32;

/// How long a client has to finish its handshake.
pub const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// Handshakes in progress per source; an entry lives while its count is above zero.
#[derive(Default)]
struct PerSource(Mutex<HashMap<IpAddr, u32>>);

/// One handshake counted against its source until dropped.
struct SourceSlot {
    sources: Arc<PerSource>,
    source: IpAddr,
}

impl PerSource {
    fn take(self: &Arc<Self>, source: IpAddr) -> Option<SourceSlot> {
        let mut counts = self.0.lock();
        let n = counts.entry(source).or_default();
        if *n >= MAX_HANDSHAKES_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            sources: self.clone(),
            source,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self.sources.0.lock();
        if let Some(n) = counts.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

/// An address's source: the address, or for IPv6 its /64 (one host's addresses).
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("mapped")),
        v4 => v4,
    }
}

/// Accepts on `listener` until the stream returned is dropped (tonic drops it when the
/// server stops); yields each connection once its TLS handshake succeeded.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let sources = Arc::new(PerSource::default());
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, mostly: wait for some to close.
                    warn!(error = %e, "grpc accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(from_source) = sources.take(source_of(peer.ip())) else {
                debug!(%peer, "grpc handshakes from this source at their cap; connection closed");
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                debug!(%peer, "grpc handshakes at their cap; connection closed");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            // Dead peers found by the kernel too (HTTP/2 pings find them at the call level).
            let _ = socket2::SockRef::from(&tcp).set_keepalive(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let shaken = tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(tcp)).await;
                match shaken {
                    Ok(Ok(tls)) => {
                        // Counted until tonic takes it (the channel holds at most 64).
                        let _ = tx.send(Ok(tls)).await;
                        drop((slot, from_source));
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "grpc tls handshake failed"),
                    Err(_) => debug!(%peer, "grpc tls handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_counted_and_capped() {
        let sources = Arc::new(PerSource::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<SourceSlot> = (0..MAX_HANDSHAKES_PER_SOURCE)
            .map(|_| sources.take(a).expect("under the cap"))
            .collect();
        assert!(sources.take(a).is_none(), "the source's cap");
        assert!(sources.take("192.0.2.2".parse().unwrap()).is_some());
        drop(held);
        assert!(
            sources.0.lock().is_empty(),
            "no entry outlives its handshakes"
        );
        // One IPv6 host's addresses are one source; a mapped IPv4 address is its IPv4.
        assert_eq!(
            source_of("2001:db8:1:2:aaaa::1".parse().unwrap()),
            source_of("2001:db8:1:2:bbbb::2".parse().unwrap())
        );
        assert_eq!(source_of("::ffff:192.0.2.1".parse().unwrap()), a);
    }
}
