//! SIP transports: UDP datagrams, TCP and TLS streams framed by Content-Length, and
//! WebSocket (RFC 7118) messages. Each hands whole messages to the
//! [`crate::dispatch::Dispatcher`] together with a [`Peer`] to answer through.

pub(crate) mod stream;
pub(crate) mod tls;
pub(crate) mod tls_session;
pub(crate) mod tls_stream;
pub(crate) mod udp;
pub(crate) mod ws;

pub use crate::flow::{NOT_AUTHENTICATED, Peer, Replier, Transport};

use std::{
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
    sync::Arc,
    time::Duration,
};

use dialtone_common::clock::unix_ms;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::watch,
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use crate::dispatch::Dispatcher;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stream connection may stay quiet before a REGISTER over it is authenticated
/// (then the longest registration's lifetime applies): an idle connection nobody proved
/// costs the edge little time.
pub const UNAUTHENTICATED_IDLE: Duration = Duration::from_secs(30);

/// How long a stream connection may stay open at all before a REGISTER over it is
/// authenticated, however often it sends: a trickle of bytes cannot hold a slot for ever.
pub const UNAUTHENTICATED_LIFETIME: Duration = Duration::from_secs(120);

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

/// A connection's bytes: a plain TCP stream inline (an idle phone's connection allocates
/// nothing for it: the box was 32 bytes a TCP phone, measured with heaptrack), anything
/// else (TLS, whose state is large and varies) boxed.
pub(crate) enum Conn {
    /// A plain TCP stream, its own socket.
    Tcp(tokio::net::TcpStream),
    /// Any other stream, with the descriptor of the socket it wraps and owns (none: never
    /// marked). It must be that socket: [`crate::flow::FlowControl::apply_dscp`] marks it
    /// while the stream is borrowed.
    Boxed(Box<dyn Io>, Option<RawFd>),
}

impl Conn {
    /// Its socket, to mark its packets once a phone registers over it (open as long as
    /// the connection is). The edge's own connections to carriers have theirs too, but
    /// nothing marks them: only a phone's authenticated REGISTER sets a connection's DSCP.
    pub fn fd(&self) -> Option<RawFd> {
        match self {
            Conn::Tcp(s) => Some(s.as_raw_fd()),
            Conn::Boxed(_, fd) => *fd,
        }
    }

    /// Its bytes, whichever kind (one call through a vtable for a plain stream too: a
    /// read or write is a system call, next to which that is nothing).
    fn io(self: std::pin::Pin<&mut Self>) -> std::pin::Pin<&mut dyn Io> {
        match self.get_mut() {
            Conn::Tcp(s) => std::pin::Pin::new(s),
            Conn::Boxed(s, _) => std::pin::Pin::new(&mut **s),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.io().poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.io().poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}

/// An accepted connection once it is bytes (after the TLS handshake, if any).
pub(crate) struct Accepted {
    pub io: Conn,
    pub addr: SocketAddr,
    pub transport: Transport,
    /// The names of its client certificate (TLS with `--sip-tls-client-ca` only).
    pub tls_names: Option<Arc<[String]>>,
    pub handler: Arc<Dispatcher>,
    /// Its admission and its place in the open-connections gauge, held while it is served.
    pub held: Held,
}

/// How a transport serves an accepted connection.
pub(crate) trait Serve<Fut>: Fn(Accepted) -> Fut + Copy + Send + 'static {}

impl<F, Fut> Serve<Fut> for F where F: Fn(Accepted) -> Fut + Copy + Send + 'static {}

/// Accepts connections until `stop`, each served by `serve` in its own task: after a TLS
/// handshake as `secure` when `tls` is set, else as `plain`. Used by TCP/TLS and WS/WSS. A
/// banned source, or one past the connection caps, is closed at once.
pub(crate) fn accept<F, Fut>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    (plain, secure): (Transport, Transport),
    handler: Arc<Dispatcher>,
    mut stop: watch::Receiver<bool>,
    serve: F,
) -> JoinHandle<()>
where
    F: Serve<Fut>,
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
            if handler.bans.source_banned(addr.ip(), unix_ms()) {
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
            let open = handler.stats.connection_opened(transport);
            let guards = (permit, open);
            let handler = handler.clone();
            // A connection's task is what `serve` returns and nothing around it (an idle
            // phone's connection is mostly its task): a TLS handshake runs in a task of
            // its own, which spawns the connection's once done.
            match &tls {
                None => {
                    tokio::spawn(serve(Accepted {
                        io: Conn::Tcp(tcp),
                        addr,
                        transport: plain,
                        tls_names: None,
                        handler,
                        held: guards,
                    }));
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let conn = (tcp, addr, secure);
                    tokio::spawn(handshake(conn, acceptor, handler, serve, guards));
                }
            }
        }
    })
}

/// What an accepted connection holds while it is served: its admission and its place in
/// the open-connections gauge.
pub(crate) type Held = (crate::admission::Permit, crate::metrics::OpenConnection);

/// Does an accepted connection's TLS handshake (within [`HANDSHAKE_TIMEOUT`]) and, once
/// done, spawns the task that serves it.
async fn handshake<F, Fut>(
    (tcp, addr, transport): (tokio::net::TcpStream, SocketAddr, Transport),
    acceptor: TlsAcceptor,
    handler: Arc<Dispatcher>,
    serve: F,
    held: Held,
) where
    F: Serve<Fut>,
    Fut: Future<Output = ()> + Send + 'static,
{
    // The socket the TLS stream will own, to mark its packets once a phone registers over
    // it (the connection's task keeps it open while it is served).
    let fd = Some(tcp.as_raw_fd());
    let handshake = tls_stream::accept(tcp, acceptor.config().clone());
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(s)) => {
            // A client certificate (verified against --sip-tls-client-ca) names who this
            // connection is, for the trust boundary.
            let tls_names: Option<Arc<[String]>> = s
                .session()
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| dialtone_tls::certificate_names(c).into());
            tokio::spawn(serve(Accepted {
                io: Conn::Boxed(Box::new(s), fd),
                addr,
                transport,
                tls_names,
                handler,
                held,
            }));
        }
        Ok(Err(e)) => debug!(peer = %addr, error = %e, "tls handshake failed"),
        Err(_) => debug!(peer = %addr, "tls handshake timed out"),
    }
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
