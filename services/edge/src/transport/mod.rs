//! SIP transports: UDP datagrams, TCP and TLS streams framed by Content-Length, and
//! WebSocket (RFC 7118) messages. Each hands whole messages to the
//! [`crate::handler::Handler`] together with a [`Peer`] to answer through.

pub mod admission;
pub mod stream;
pub mod tls;
pub mod udp;
mod udp_batch;
pub mod udp_out;
pub mod write_queue;
pub mod ws;

use std::{
    collections::HashMap,
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use dialtone_proto::edge::v1::SipTransport;
use parking_lot::Mutex;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, UdpSocket},
    sync::watch,
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use crate::handler::Handler;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stream connection may stay quiet before a REGISTER over it is authenticated
/// (then the longest registration's lifetime applies): an idle connection nobody proved
/// costs the edge little time.
pub const UNAUTHENTICATED_IDLE: Duration = Duration::from_secs(30);

/// How long a stream connection may stay open at all before a REGISTER over it is
/// authenticated, however often it sends: a trickle of bytes cannot hold a slot for ever.
pub const UNAUTHENTICATED_LIFETIME: Duration = Duration::from_secs(120);

/// [`Peer::idle`] of a stream connection no REGISTER over has authenticated yet. No real
/// timeout is 0 (a line's persistent-connection timeout is at least 15 s), so a connection
/// whose timeout happens to equal [`UNAUTHENTICATED_IDLE`] is not taken for unproven.
pub const NOT_AUTHENTICATED: u64 = 0;

/// How long the next read of a stream connection open for `open` may wait: its idle
/// timeout once a REGISTER over it is authenticated; before that [`UNAUTHENTICATED_IDLE`],
/// cut short by [`UNAUTHENTICATED_LIFETIME`], and None once that lifetime is over (close
/// it).
pub(crate) fn read_timeout(idle_s: u64, open: Duration) -> Option<Duration> {
    if idle_s != NOT_AUTHENTICATED {
        return Some(Duration::from_secs(idle_s));
    }
    let left = UNAUTHENTICATED_LIFETIME.checked_sub(open)?;
    (!left.is_zero()).then(|| UNAUTHENTICATED_IDLE.min(left))
}

/// How long one message may take to write before the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection's bytes, plain or under TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Accepts connections until `stop`, each served by `serve` in its own task: after a TLS
/// handshake as `secure` when `tls` is set, else as `plain`. Used by TCP/TLS and WS/WSS. A
/// banned source, or one past the connection caps, is closed at once.
pub(crate) fn accept<F, Fut>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    (plain, secure): (Transport, Transport),
    handler: Arc<Handler>,
    mut stop: watch::Receiver<bool>,
    serve: F,
) -> JoinHandle<()>
where
    F: Fn(Box<dyn Io>, SocketAddr, Transport, Option<Arc<[String]>>, Arc<Handler>) -> Fut
        + Copy
        + Send
        + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let transport = if tls.is_some() { secure } else { plain };
    if let Ok(a) = listener.local_addr() {
        info!(addr = %a, transport = transport.name(), "sip listening");
    }
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
                },
                _ = stop.changed() => return,
            };
            if handler.bans.source_banned(addr.ip(), crate::unix_ms()) {
                continue;
            }
            let permit = match handler.admission.admit(addr.ip()) {
                Ok(p) => p,
                Err(why) => {
                    debug!(peer = %addr, ?why, "connection refused");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let handler = handler.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tls {
                    None => serve(Box::new(tcp), addr, plain, None, handler).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => {
                                // A client certificate (verified against --sip-tls-client-ca)
                                // names who this connection is, for the trust boundary.
                                let names: Option<Arc<[String]>> = s
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .map(|c| dialtone_tls::certificate_names(c).into());
                                serve(Box::new(s), addr, secure, names, handler).await
                            }
                            Ok(Err(e)) => debug!(peer = %addr, error = %e, "tls handshake failed"),
                            Err(_) => debug!(peer = %addr, "tls handshake timed out"),
                        }
                    }
                }
            });
        }
    })
}

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
    /// A message queued on a connection's writer (bounded in bytes: see
    /// [`write_queue`]).
    Stream(write_queue::QueueTx),
}

impl Replier {
    /// Sends a message; false when the flow is gone or the socket is full (the peer
    /// retransmits over UDP; a stream is closing anyway). A datagram queued for a batch
    /// counts as sent: a full socket drops it later, as it would have now.
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        match self {
            // Batched when sent from the socket's own actor thread (see `udp_out`).
            Replier::Udp { socket, to } => match udp_out::queue(socket.as_raw_fd(), *to, bytes) {
                Ok(()) => true,
                Err(bytes) => socket.try_send_to(&bytes, *to).is_ok(),
            },
            // A full queue means a peer that does not read: its connection is closed.
            Replier::Stream(tx) => tx.send(bytes),
        }
    }
}

/// Where a message came from and how to answer it.
#[derive(Clone, Debug)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub replier: Replier,
    /// The names of the verified client certificate a TLS or WSS connection presented
    /// (none otherwise; UDP peers are made per datagram, so this costs them nothing).
    pub tls_names: Option<Arc<[String]>>,
    /// A stream connection's idle timeout in seconds: [`NOT_AUTHENTICATED`] until a
    /// REGISTER over it is authenticated, then the handler's stream idle, which a line's
    /// persistent-connection timeout may set (WS/WSS). None over UDP.
    pub idle: Option<Arc<AtomicU64>>,
}

impl Peer {
    /// `transport:ip:port`, the source recorded in bindings.
    pub fn source(&self) -> String {
        let name = self.transport.name();
        let mut s = String::with_capacity(name.len() + 48);
        s.push_str(name);
        s.push(':');
        dialtone_sip::response::push_socket_addr(&mut s, self.addr);
        s
    }
}

type FlowSender = write_queue::QueueTx;

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

    pub fn open(&self, t: Transport, addr: SocketAddr, tx: FlowSender) {
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

/// A stream connection's writer: writes what is queued, each message within
/// [`WRITE_TIMEOUT`], until the queue says to close or a write fails or stalls; then shuts
/// the connection down (its reader sees the queue closed and stops too).
pub(crate) async fn write_queued<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: write_queue::QueueRx,
    addr: SocketAddr,
) {
    use tokio::io::AsyncWriteExt;
    while let Some(bytes) = rx.next().await {
        match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                debug!(peer = %addr, "closing stream: the peer does not read");
                break;
            }
        }
    }
    drop(rx);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, wr.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthenticated_connections_get_a_short_life() {
        let s = Duration::from_secs;
        let unauth = NOT_AUTHENTICATED;
        let cases = [
            (unauth, s(0), Some(UNAUTHENTICATED_IDLE)),
            (unauth, s(100), Some(s(20))),
            (unauth, s(120), None),
            (unauth, s(500), None),
            (7260, s(500), Some(s(7260))),
            // A line's persistent timeout of 30 s is a proven flow's, not an unproven one.
            (30, s(500), Some(s(30))),
        ];
        for (idle, open, want) in cases {
            assert_eq!(read_timeout(idle, open), want, "idle {idle} open {open:?}");
        }
    }
}
