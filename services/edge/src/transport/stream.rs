//! SIP over TCP and TLS: one task per connection reads bytes, frames them by Content-Length
//! ([`dialtone_sip::stream::Framer`], which looks at each byte once), answers keep-alive
//! pings, and hands each message to the handler; the same task writes what the handler and
//! the phone actors queue (bounded, each write timed). An idle connection holds one task,
//! its queue and no read buffer: bytes are read through one buffer per runtime thread.

use std::{
    cell::RefCell,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    task::Poll,
};

use dialtone_sip::stream::{Frame, Framer, PONG};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use std::collections::HashMap;

use crate::flow::{
    FlowControl, FlowSource,
    write_queue::{QueueRx, QueueTx},
};

use super::{
    Accepted, Conn, Io, NOT_AUTHENTICATED, Peer, Replier, Transport, WRITE_TIMEOUT, accept,
    read_timeout,
};
use crate::{dispatch::Dispatcher, error::EdgeError};

/// A listener with an accept queue as deep as the kernel allows: a reconnect wave of
/// thousands of phones must not find it full ([`dialtone_common::listen`]).
pub fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, EdgeError> {
    dialtone_common::listen::tcp(addr).map_err(|source| EdgeError::Listen { what, addr, source })
}

/// Accepts TCP (or, with `tls`, TLS) connections until `stop`.
pub fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<Dispatcher>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let transports = (Transport::Tcp, Transport::Tls);
    accept(listener, tls, transports, handler, stop, connection)
}

/// Opens the flow of an accepted connection (its queue in the flows table) and returns the
/// future that serves it until it closes, fails framing, idles out or stops reading: the
/// connection's task, and nothing around it.
fn connection(
    Accepted {
        io,
        addr,
        transport,
        tls_names,
        handler,
        held,
    }: Accepted,
) -> impl Future<Output = ()> + Send + 'static {
    let opened = Opened {
        addr,
        transport,
        tls_names,
        idle_s: NOT_AUTHENTICATED,
        held: Some(held),
    };
    open(io, opened, handler).1
}

/// A connection about to be served.
struct Opened {
    addr: SocketAddr,
    transport: Transport,
    /// The names of its client certificate (TLS with `--sip-tls-client-ca` only).
    tls_names: Option<Arc<[String]>>,
    /// Its idle timeout from the start ([`NOT_AUTHENTICATED`]: an accepted connection yet
    /// to prove itself), kept with its marking in its queue's [`FlowControl`].
    idle_s: u64,
    /// What an accepted connection holds while it is served (none: one the edge dialled).
    held: Option<super::Held>,
}

/// Opens the flow of a connection (its queue in the flows table) and returns its queue and
/// the future that serves it.
fn open(
    io: Conn,
    opened: Opened,
    handler: Arc<Dispatcher>,
) -> (QueueTx, impl Future<Output = ()> + Send + 'static) {
    let (tx, rx) = crate::flow::write_queue::queue(opened.idle_s);
    handler
        .flows()
        .open(opened.transport, opened.addr, tx.clone());
    let queue = tx.clone();
    (queue, serve_flow(io, tx, rx, opened, handler))
}

/// Serves one connection in one task: reads its messages into the handler and writes what
/// the handler and the phone actors queue (each write within [`WRITE_TIMEOUT`]), until it
/// closes, fails framing, idles out, stops reading or its queue closes; then closes its
/// flow. One task, not a reader and a writer: a connection's task is most of what an idle
/// phone over TCP costs. A write holds up reading that connection only, and SIP messages
/// are far smaller than the socket's buffers; a write still stuck after [`WRITE_TIMEOUT`]
/// closes the connection, as before (on a busy carrier trunk, reading its answers waits
/// for that write meanwhile).
///
/// Not an `async fn`: what the task keeps is what the block captures, once (an async fn
/// keeps its arguments and the locals they are moved into), and one timer serves every
/// read's and write's deadline.
fn serve_flow(
    mut io: Conn,
    tx: QueueTx,
    mut rx: QueueRx,
    opened: Opened,
    handler: Arc<Dispatcher>,
) -> impl Future<Output = ()> + Send + 'static {
    let Opened {
        addr,
        transport,
        tls_names,
        idle_s: _,
        held,
    } = opened;
    // The connection's address and transport live in its peer, once.
    let peer = Peer {
        transport,
        addr,
        tls_names,
        replier: Replier::Stream(tx),
    };
    async move {
        let mut buf: Vec<u8> = Vec::new();
        let mut framer = Framer::default();
        let mut marked = 0;
        let opened = tokio::time::Instant::now();
        let mut deadline = read_by(rx.control(), opened);
        let timer = tokio::time::sleep_until(opened);
        tokio::pin!(timer);
        let mut peer_closed = false;
        'serve: loop {
            let Some(by) = deadline else {
                debug!(peer = %peer.addr, "closing stream: never authenticated");
                break;
            };
            timer.as_mut().reset(by);
            // Each is cancel-safe: a read that lost the race consumed nothing, and a
            // message is taken off the queue only when it is returned.
            let queued = tokio::select! {
                r = read_some(&mut io, &mut buf, timer.as_mut()) => match r {
                    Ok(0) => {
                        peer_closed = true;
                        break;
                    }
                    // What was read is framed below.
                    Ok(_) => None,
                    // A failed read, or nothing read within the idle timeout.
                    Err(_) => break,
                },
                out = rx.next() => match out {
                    Some(bytes) => Some(bytes),
                    None => break,
                },
            };
            if let Some(bytes) = queued {
                // SAFETY: `io.fd()` is the socket `io` owns, open while `io` is borrowed
                // here.
                unsafe { rx.control().apply_dscp(io.fd(), &mut marked) };
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + WRITE_TIMEOUT);
                tokio::select! {
                    // A write done in time is not lost to a late look at the timer.
                    biased;
                    r = write_out(&mut io, &bytes) => match r {
                        Ok(()) => continue,
                        Err(_) => break,
                    },
                    () = &mut timer => {
                        debug!(peer = %peer.addr, "closing stream: the peer does not read");
                        break;
                    }
                }
            }
            let mut start = 0;
            loop {
                match framer.next(&buf[start..], handler.max_message_bytes()) {
                    Ok(None) => break,
                    Ok(Some(Frame::Ping(len))) => {
                        peer.replier.send(PONG.to_vec());
                        start += len;
                    }
                    Ok(Some(Frame::Skip(len))) => start += len,
                    Ok(Some(Frame::Message(len))) => {
                        handler.handle(&buf[start..start + len], &peer);
                        start += len;
                    }
                    Err(e) => {
                        debug!(peer = %peer.addr, error = %e, "closing stream: framing");
                        break 'serve;
                    }
                }
            }
            if start == buf.len() {
                // Every byte read was used: an idle connection holds no buffer.
                buf = Vec::new();
            } else {
                buf.drain(..start);
            }
            deadline = read_by(rx.control(), opened);
        }
        let (transport, addr) = (peer.transport, peer.addr);
        if let Some(tx) = peer.replier.queue() {
            handler.flows().close(transport, addr, tx);
        }
        // The connection's own senders go: the queue ends once the deliveries' have.
        drop(peer);
        // Boxed: the task is sized for serving the connection, not for closing it.
        Box::pin(close(io, rx, peer_closed)).await;
        handler.flow_closed(transport, addr);
        drop(held);
    }
}

/// Closes a connection whose flow is closed: a peer that only closed its sending side
/// still reads, so the answers to its last requests (deliveries answer after the read)
/// go out until every sender of `rx` is gone, within one write's time; then its sending
/// side is shut down, within another.
async fn close<S: Io>(mut io: S, mut rx: QueueRx, peer_closed: bool) {
    use tokio::io::AsyncWriteExt;
    if peer_closed {
        let drain = async {
            while let Some(bytes) = rx.next().await {
                if write_out(&mut io, &bytes).await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(WRITE_TIMEOUT, drain).await;
    }
    drop(rx);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, io.shutdown()).await;
}

/// When the next read of a connection open since `opened` must have come (none: close it
/// now): only a read moves it (writes to a peer that never sends do not keep its
/// connection), and before a REGISTER over it is authenticated it never passes the
/// connection's unauthenticated lifetime.
fn read_by(control: &FlowControl, opened: tokio::time::Instant) -> Option<tokio::time::Instant> {
    read_timeout(control.idle_s.load(Ordering::Relaxed), opened.elapsed())
        .map(|t| tokio::time::Instant::now() + t)
}

/// Writes one message and flushes it: over TLS a write may leave encrypted bytes in the
/// stream's buffer when the socket is full, and nothing else would push them out. A
/// `poll_fn`, not an `async fn`: the connection's task holds its state while it waits.
fn write_out<'a, S: Io>(
    io: &'a mut S,
    bytes: &'a [u8],
) -> impl Future<Output = std::io::Result<()>> + 'a {
    let mut written = 0;
    std::future::poll_fn(move |cx| {
        while written < bytes.len() {
            match std::pin::Pin::new(&mut *io).poll_write(cx, &bytes[written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        std::pin::Pin::new(&mut *io).poll_flush(cx)
    })
}

thread_local! {
    /// Where a runtime thread reads a connection's bytes: one buffer per thread instead of
    /// one per connection (most of which are idle phones), as large as a TLS record.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; 16 * 1024].into_boxed_slice());
}

/// Reads what `rd` has (at least a byte, or 0 at its end) and appends it to `buf`,
/// through the thread's [`SCRATCH`]: a connection keeps only the bytes of a message not
/// yet whole. Fails with `TimedOut` once `idle` fires with nothing read; the read is
/// polled first, so bytes that came in time are not lost to a late poll.
fn read_some<'a, R: tokio::io::AsyncRead + Unpin>(
    rd: &'a mut R,
    buf: &'a mut Vec<u8>,
    mut idle: std::pin::Pin<&'a mut tokio::time::Sleep>,
) -> impl Future<Output = std::io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| {
        let read = SCRATCH.with_borrow_mut(|scratch| {
            let mut chunk = tokio::io::ReadBuf::new(scratch);
            match std::pin::Pin::new(&mut *rd).poll_read(cx, &mut chunk) {
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(chunk.filled());
                    Poll::Ready(Ok(chunk.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        });
        match read {
            Poll::Pending => idle
                .as_mut()
                .poll(cx)
                .map(|()| Err(std::io::ErrorKind::TimedOut.into())),
            done => done,
        }
    })
}

/// Connections from the edge to carriers' TCP and TLS trunk targets (the
/// [`crate::flow::Connector`] of the edge's flows): each is served like an accepted one,
/// idle timeout as for a registered phone's, so the carrier's answers and requests over it
/// reach the handler. They are dialled on the main runtime (a delivery may ask from an
/// actor thread), one at a time per target, and reused only while open and, over TLS, for
/// the name they were verified for.
pub struct Outbound {
    /// The handler (weak: it owns the flows that own this).
    pub handler: std::sync::Weak<Dispatcher>,
    /// TLS towards carriers, checked against `--sip-trunk-ca`; none: TLS targets fail.
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// The runtime connections are dialled and served on.
    pub runtime: tokio::runtime::Handle,
    /// The edge's own connection to each target, with the name a TLS one was verified
    /// for (none: its IP). Bounded by the configured targets.
    pub open: parking_lot::Mutex<HashMap<FlowSource, OwnConnection>>,
    /// One dial at a time per target and name, so calls that find no connection open one,
    /// not one each (and a target dialled under a wrong name holds up no other).
    pub dialling: parking_lot::Mutex<HashMap<Dialled, Gate>>,
}

/// Held while a connection to one target under one name is dialled.
pub type Gate = Arc<tokio::sync::Mutex<()>>;

/// A target and the name its TLS certificate must carry.
pub type Dialled = (FlowSource, Option<Arc<str>>);

/// One of the edge's own connections: the name its TLS certificate was verified for (none:
/// its IP, or TCP) and its queue.
pub type OwnConnection = (Option<Arc<str>>, QueueTx);

/// How long opening a connection (and its TLS handshake) may take.
const CONNECT_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

impl Outbound {
    /// The open connection to `target` verified for `name`, if there is one.
    fn reusable(
        &self,
        target: crate::flow::FlowSource,
        name: &Option<Arc<str>>,
    ) -> Option<Replier> {
        let open = self.open.lock();
        let (verified_for, tx) = open.get(&target)?;
        (verified_for == name && !tx.is_closed()).then(|| Replier::Stream(tx.clone()))
    }
}

impl crate::flow::Connector for Outbound {
    fn connect(
        &self,
        target: crate::flow::FlowSource,
        tls_name: Option<Arc<str>>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<Replier>> + Send + '_>> {
        Box::pin(async move {
            if let Some(r) = self.reusable(target, &tls_name) {
                return Some(r);
            }
            let key = (target, tls_name.clone());
            let gate = self.dialling.lock().entry(key).or_default().clone();
            let _one_at_a_time = gate.lock().await;
            if let Some(r) = self.reusable(target, &tls_name) {
                return Some(r);
            }
            let handler = self.handler.upgrade()?;
            let tls = self.tls.clone();
            let name = tls_name.clone();
            let tx = self
                .runtime
                .spawn(dial(handler, tls, target, name))
                .await
                .ok()??;
            self.open.lock().insert(target, (tls_name, tx.clone()));
            Some(Replier::Stream(tx))
        })
    }
}

/// Opens a connection to `target` (TLS: checked for `tls_name`, else its IP) and serves it
/// on this runtime; its queue.
async fn dial(
    handler: Arc<Dispatcher>,
    tls: Option<tokio_rustls::TlsConnector>,
    target: crate::flow::FlowSource,
    tls_name: Option<Arc<str>>,
) -> Option<crate::flow::write_queue::QueueTx> {
    let addr = target.addr;
    let tcp = tokio::time::timeout(CONNECT_WITHIN, tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .inspect_err(|e| debug!(target = %addr, error = %e, "connecting to a trunk target failed"))
        .ok()?;
    let _ = tcp.set_nodelay(true);
    let idle = handler.stream_idle().as_secs();
    let io = match target.transport {
        Transport::Tcp => Conn::Tcp(tcp),
        Transport::Tls => {
            let Some(tls) = tls else {
                warn!(target = %addr, "no --sip-trunk-ca roots: a TLS trunk target cannot be reached");
                return None;
            };
            let name = match &tls_name {
                Some(n) => rustls::pki_types::ServerName::try_from(n.to_string()).ok()?,
                None => rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
            };
            // The socket the TLS stream will own, as an accepted connection's is kept.
            let fd = Some(std::os::fd::AsRawFd::as_raw_fd(&tcp));
            match tokio::time::timeout(CONNECT_WITHIN, tls.connect(name, tcp)).await {
                Ok(Ok(s)) => Conn::Boxed(Box::new(s), fd),
                Ok(Err(e)) => {
                    warn!(target = %addr, error = %e, "a trunk target's TLS handshake failed");
                    return None;
                }
                Err(_) => return None,
            }
        }
        _ => return None,
    };
    let opened = Opened {
        addr,
        transport: target.transport,
        tls_names: None,
        idle_s: idle,
        held: None,
    };
    let (tx, served) = open(io, opened, handler);
    tokio::spawn(served);
    Some(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle phone's connection costs is mostly its task: tokio allocates the
    /// future with 112 bytes of its own, in steps of 128. At 528 bytes (a plain TCP stream
    /// inline in it since 2026-12-06, not boxed beside it) the task takes 640; it took
    /// 1,152 when the accept loop's wrapper, the argument copies of `async fn`s, a timer
    /// for each wait and the closing's state were in it. A change that grows it past a
    /// step costs 128 bytes a phone: make it fit, or change this knowingly.
    #[tokio::test]
    async fn an_idle_connections_task_fits_640_bytes() {
        let h = crate::dispatch::tests::harness(std::time::Duration::from_secs(1));
        let listener = dialtone_common::listen::tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let _phone = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, addr) = listener.accept().await.unwrap();
        let handler = h.dispatcher.clone();
        let held = (
            handler.admission.admit(addr.ip()).unwrap(),
            handler.stats.connection_opened(Transport::Tcp),
        );
        let task = connection(Accepted {
            io: Conn::Tcp(tcp),
            addr,
            transport: Transport::Tcp,
            tls_names: None,
            handler,
            held,
        });
        let size = std::mem::size_of_val(&task);
        assert!(size <= 528, "a connection's task is {size} bytes");
    }
}
