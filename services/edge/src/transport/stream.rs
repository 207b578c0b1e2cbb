//! SIP over TCP and TLS: one task per connection reads bytes, frames them by Content-Length
//! ([`dialtone_sip::stream::Framer`], which looks at each byte once), answers keep-alive
//! pings, and hands each message to the handler; a writer task sends what the handler and
//! the phone actors queue (bounded, each write timed).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use dialtone_sip::stream::{Frame, Framer, PONG};
use tokio::{io::AsyncReadExt, net::TcpListener, sync::watch, task::JoinHandle};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::{Io, NOT_AUTHENTICATED, Peer, Replier, Transport, accept, read_timeout, write_queued};
use crate::{dispatch::Dispatcher, error::EdgeError};

pub async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, EdgeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| EdgeError::Listen { what, addr, source })
}

/// Accepts TCP (or, with `tls`, TLS) connections until `stop`.
pub fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<Dispatcher>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let transports = (Transport::Tcp, Transport::Tls);
    accept(
        listener,
        tls,
        transports,
        handler,
        stop,
        connection::<Box<dyn Io>>,
    )
}

/// Serves one accepted connection until it closes, fails framing, idles out or stops
/// reading.
async fn connection<S: Io>(
    io: S,
    addr: SocketAddr,
    transport: Transport,
    tls_names: Option<Arc<[String]>>,
    handler: Arc<Dispatcher>,
) {
    let (_, served) = open(io, addr, transport, tls_names, handler, NOT_AUTHENTICATED);
    served.await
}

/// Opens the flow of a connection (its writer started, its queue in the flows table) and
/// returns its queue and the future that reads it; `idle_s` is its idle timeout from the
/// start ([`NOT_AUTHENTICATED`]: an accepted connection yet to prove itself).
fn open<S: Io>(
    io: S,
    addr: SocketAddr,
    transport: Transport,
    tls_names: Option<Arc<[String]>>,
    handler: Arc<Dispatcher>,
    idle_s: u64,
) -> (
    crate::flow::write_queue::QueueTx,
    impl Future<Output = ()> + Send + 'static,
) {
    let (rd, wr) = tokio::io::split(io);
    let (tx, rx) = crate::flow::write_queue::queue();
    let writer = tokio::spawn(write_queued(wr, rx, addr));
    handler.flows().open(transport, addr, tx.clone());
    let queue = tx.clone();
    let served = read(rd, tx, writer, addr, transport, tls_names, handler, idle_s);
    (queue, served)
}

/// Reads one connection's messages into the handler until it closes, fails framing, idles
/// out or stops reading; then closes its flow.
#[expect(
    clippy::too_many_arguments,
    reason = "one connection's parts, each used once"
)]
async fn read<R: tokio::io::AsyncRead + Unpin>(
    mut rd: R,
    tx: crate::flow::write_queue::QueueTx,
    writer: JoinHandle<()>,
    addr: SocketAddr,
    transport: Transport,
    tls_names: Option<Arc<[String]>>,
    handler: Arc<Dispatcher>,
    idle_s: u64,
) {
    let flows = handler.flows().clone();
    let idle = Arc::new(AtomicU64::new(idle_s));
    let peer = Peer {
        transport,
        addr,
        tls_names,
        replier: Replier::Stream(tx.clone()),
        idle: Some(idle.clone()),
    };
    let max = handler.max_message_bytes();
    let mut buf: Vec<u8> = Vec::new();
    let mut framer = Framer::default();
    let opened = tokio::time::Instant::now();
    'read: loop {
        // Read straight into the buffer: no per-connection read chunk besides it.
        buf.reserve(4096);
        let Some(timeout) = read_timeout(idle.load(Ordering::Relaxed), opened.elapsed()) else {
            debug!(peer = %addr, "closing stream: never authenticated");
            break;
        };
        let n = tokio::select! {
            r = tokio::time::timeout(timeout, rd.read_buf(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            },
            // The writer gave up on a peer that does not read.
            _ = tx.closed() => break,
        };
        debug_assert!(n > 0);
        let mut start = 0;
        loop {
            match framer.next(&buf[start..], max) {
                Ok(None) => break,
                Ok(Some(Frame::Ping(len))) => {
                    tx.send(PONG.to_vec());
                    start += len;
                }
                Ok(Some(Frame::Skip(len))) => start += len,
                Ok(Some(Frame::Message(len))) => {
                    handler.handle(&buf[start..start + len], &peer);
                    start += len;
                }
                Err(e) => {
                    debug!(peer = %addr, error = %e, "closing stream: framing");
                    break 'read;
                }
            }
        }
        buf.drain(..start);
        if buf.is_empty() && buf.capacity() > 64 * 1024 {
            // A large message went through: give its room back.
            buf = Vec::new();
        }
    }
    flows.close(transport, addr);
    drop(peer);
    drop(tx);
    let _ = writer.await;
    handler.flow_closed(transport, addr);
}

/// Connections from the edge to carriers' TCP and TLS trunk targets (the
/// [`crate::flow::Connector`] of the edge's flows): each is served like an accepted one,
/// idle timeout as for a registered phone's, so the carrier's answers and requests over it
/// reach the handler.
pub struct Outbound {
    /// The handler (weak: it owns the flows that own this).
    pub handler: std::sync::Weak<Dispatcher>,
    /// TLS towards carriers, checked against `--sip-trunk-ca`; none: TLS targets fail.
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// The name each TLS connection's certificate was verified for (none: its IP), by
    /// target: a connection is reused only for the same name.
    pub verified: parking_lot::Mutex<std::collections::HashMap<SocketAddr, Option<Arc<str>>>>,
}

/// How long opening a connection (and its TLS handshake) may take.
const CONNECT_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

impl crate::flow::Connector for Outbound {
    fn connect(
        &self,
        target: crate::flow::FlowSource,
        tls_name: Option<Arc<str>>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<Replier>> + Send + '_>> {
        Box::pin(async move {
            let handler = self.handler.upgrade()?;
            let addr = target.addr;
            let open_for = self.verified.lock().get(&addr).cloned();
            if open_for.as_ref() == Some(&tls_name)
                && let Some((_, r)) = handler.flows().replier(target)
            {
                return Some(r);
            }
            let tcp = tokio::time::timeout(CONNECT_WITHIN, tokio::net::TcpStream::connect(addr))
                .await
                .ok()?
                .inspect_err(
                    |e| debug!(target = %addr, error = %e, "connecting to a trunk target failed"),
                )
                .ok()?;
            let _ = tcp.set_nodelay(true);
            let idle = handler.stream_idle().as_secs();
            let io: Box<dyn Io> = match target.transport {
                Transport::Tcp => Box::new(tcp),
                Transport::Tls => {
                    let Some(tls) = &self.tls else {
                        warn!(target = %addr, "no --sip-trunk-ca roots: a TLS trunk target cannot be reached");
                        return None;
                    };
                    let name = match &tls_name {
                        Some(n) => rustls::pki_types::ServerName::try_from(n.to_string()).ok()?,
                        None => rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
                    };
                    let handshake = tls.connect(name, tcp);
                    match tokio::time::timeout(CONNECT_WITHIN, handshake).await {
                        Ok(Ok(s)) => Box::new(s),
                        Ok(Err(e)) => {
                            warn!(target = %addr, error = %e, "a trunk target's TLS handshake failed");
                            return None;
                        }
                        Err(_) => return None,
                    }
                }
                _ => return None,
            };
            if target.transport == Transport::Tls {
                self.verified.lock().insert(addr, tls_name);
            }
            let (tx, served) = open(io, addr, target.transport, None, handler, idle);
            tokio::spawn(served);
            Some(Replier::Stream(tx))
        })
    }
}
