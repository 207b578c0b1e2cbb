//! SIP over TCP and TLS: one task per connection reads bytes, frames them by Content-Length
//! ([`dialtone_sip::stream::Framer`], which looks at each byte once), answers keep-alive
//! pings, and hands each message to the handler; the same task writes what the handler and
//! the phone actors queue (bounded, each write timed). An idle connection holds one task,
//! its queue and no read buffer: bytes are read through one buffer per runtime thread.

use std::{
    cell::RefCell,
    net::SocketAddr,
    os::fd::RawFd,
    sync::{Arc, atomic::Ordering},
    task::Poll,
};

use dialtone_sip::stream::{Frame, Framer, PONG};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use std::collections::HashMap;

use crate::flow::{FlowControl, FlowSource, write_queue::QueueTx};

use super::{
    Accepted, Io, NOT_AUTHENTICATED, Peer, Replier, Transport, WRITE_TIMEOUT, accept, read_timeout,
};
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
    accept(listener, tls, transports, handler, stop, connection)
}

/// Serves one accepted connection until it closes, fails framing, idles out or stops
/// reading.
async fn connection(
    Accepted {
        io,
        addr,
        transport,
        tls_names,
        handler,
        fd,
    }: Accepted,
) {
    let control = FlowControl::new(NOT_AUTHENTICATED);
    let (_, served) = open(io, addr, transport, tls_names, handler, (control, fd));
    served.await
}

/// Opens the flow of a connection (its queue in the flows table) and returns its queue and
/// the future that serves it; `control` holds its idle timeout from the start
/// ([`NOT_AUTHENTICATED`]: an accepted connection yet to prove itself) and `fd` is its
/// socket, marked when a phone registers over it (none: never marked).
fn open<S: Io>(
    io: S,
    addr: SocketAddr,
    transport: Transport,
    tls_names: Option<Arc<[String]>>,
    handler: Arc<Dispatcher>,
    (control, fd): (Arc<FlowControl>, Option<RawFd>),
) -> (
    crate::flow::write_queue::QueueTx,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = crate::flow::write_queue::queue();
    handler.flows().open(transport, addr, tx.clone());
    let queue = tx.clone();
    let flow = Flow {
        addr,
        transport,
        handler,
        control,
        fd,
    };
    let served = serve_flow(io, tx, rx, tls_names, flow);
    (queue, served)
}

/// One connection's identity and what serves it.
struct Flow {
    addr: SocketAddr,
    transport: Transport,
    handler: Arc<Dispatcher>,
    control: Arc<FlowControl>,
    fd: Option<RawFd>,
}

/// Serves one connection in one task: reads its messages into the handler and writes what
/// the handler and the phone actors queue (each write within [`WRITE_TIMEOUT`]), until it
/// closes, fails framing, idles out, stops reading or its queue closes; then closes its
/// flow. One task, not a reader and a writer: a connection's task is most of what an idle
/// phone over TCP costs. A write holds up reading that connection only, and SIP messages
/// are far smaller than the socket's buffers; a write still stuck after [`WRITE_TIMEOUT`]
/// closes the connection, as before (on a busy carrier trunk, reading its answers waits
/// for that write meanwhile).
async fn serve_flow<S: Io>(
    mut io: S,
    tx: crate::flow::write_queue::QueueTx,
    mut rx: crate::flow::write_queue::QueueRx,
    tls_names: Option<Arc<[String]>>,
    flow: Flow,
) {
    use tokio::io::AsyncWriteExt;
    let Flow {
        addr,
        transport,
        handler,
        control,
        fd,
    } = flow;
    let flows = handler.flows().clone();
    let peer = Peer {
        transport,
        addr,
        tls_names,
        replier: Replier::Stream(tx.clone()),
        control: Some(control.clone()),
    };
    let max = handler.max_message_bytes();
    let mut buf: Vec<u8> = Vec::new();
    let mut framer = Framer::default();
    let mut marked = 0;
    let opened = tokio::time::Instant::now();
    // When the next read must have come: only a read moves it (writes to a peer that
    // never sends do not keep its connection), and before a REGISTER over it is
    // authenticated it never passes the connection's unauthenticated lifetime.
    let read_by = || {
        read_timeout(control.idle_s.load(Ordering::Relaxed), opened.elapsed())
            .map(|t| tokio::time::Instant::now() + t)
    };
    let mut deadline = read_by();
    let mut peer_closed = false;
    'serve: loop {
        let Some(by) = deadline else {
            debug!(peer = %addr, "closing stream: never authenticated");
            break;
        };
        // Both are cancel-safe: a read that lost the race consumed nothing, and a message
        // is taken off the queue only when it is returned.
        let n = tokio::select! {
            r = tokio::time::timeout_at(by, read_some(&mut io, &mut buf)) => match r {
                Ok(Ok(0)) => {
                    peer_closed = true;
                    break;
                }
                Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            },
            out = rx.next() => {
                let Some(bytes) = out else { break };
                // SAFETY: `io` holds the connection open, so `fd` is still its socket.
                unsafe { control.apply_dscp(fd, &mut marked) };
                match tokio::time::timeout(WRITE_TIMEOUT, write_out(&mut io, &bytes)).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) => break,
                    Err(_) => {
                        debug!(peer = %addr, "closing stream: the peer does not read");
                        break;
                    }
                }
            }
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
        deadline = read_by();
    }
    flows.close(transport, addr, &tx);
    drop(peer);
    drop(tx);
    if peer_closed {
        // A peer that only closed its sending side still reads: the answers to its last
        // requests (phone actors answer after the read) go out until every sender is
        // gone, within one write's time.
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
    handler.flow_closed(transport, addr);
}

/// Writes one message and flushes it: over TLS a write may leave encrypted bytes in
/// rustls' buffer when the socket is full, and nothing else would push them out.
async fn write_out<S: Io>(io: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    io.write_all(bytes).await?;
    io.flush().await
}

thread_local! {
    /// Where a runtime thread reads a connection's bytes: one buffer per thread instead of
    /// one per connection (most of which are idle phones), as large as a TLS record.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; 16 * 1024].into_boxed_slice());
}

/// Reads what `rd` has (at least a byte, or 0 at its end) and appends it to `buf`,
/// through the thread's [`SCRATCH`]: a connection keeps only the bytes of a message not
/// yet whole.
async fn read_some<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut chunk = tokio::io::ReadBuf::new(scratch);
            match std::pin::Pin::new(&mut *rd).poll_read(cx, &mut chunk) {
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(chunk.filled());
                    Poll::Ready(Ok(chunk.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
    .await
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
    let io: Box<dyn Io> = match target.transport {
        Transport::Tcp => Box::new(tcp),
        Transport::Tls => {
            let Some(tls) = tls else {
                warn!(target = %addr, "no --sip-trunk-ca roots: a TLS trunk target cannot be reached");
                return None;
            };
            let name = match &tls_name {
                Some(n) => rustls::pki_types::ServerName::try_from(n.to_string()).ok()?,
                None => rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
            };
            match tokio::time::timeout(CONNECT_WITHIN, tls.connect(name, tcp)).await {
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
    let control = (FlowControl::new(idle), None);
    let (tx, served) = open(io, addr, target.transport, None, handler, control);
    tokio::spawn(served);
    Some(tx)
}
