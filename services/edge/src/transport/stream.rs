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
use tracing::debug;

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

/// Serves one connection until it closes, fails framing, idles out or stops reading.
async fn connection<S: Io>(
    io: S,
    addr: SocketAddr,
    transport: Transport,
    tls_names: Option<Arc<[String]>>,
    handler: Arc<Dispatcher>,
) {
    let (mut rd, wr) = tokio::io::split(io);
    let (tx, rx) = crate::flow::write_queue::queue();
    let writer = tokio::spawn(write_queued(wr, rx, addr));
    let flows = handler.flows().clone();
    flows.open(transport, addr, tx.clone());
    let idle = Arc::new(AtomicU64::new(NOT_AUTHENTICATED));
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
