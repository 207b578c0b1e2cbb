//! SIP over TCP and TLS: one task per connection reads bytes, frames them by Content-Length
//! ([`dialtone_sip::stream::next_frame`]), answers keep-alive pings, and hands each message
//! to the handler; a writer task sends what the handler and the phone actors queue.

use std::{net::SocketAddr, sync::Arc};

use dialtone_sip::stream::{Frame, PONG, next_frame};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use super::{Io, Peer, Replier, Transport, accept};
use crate::{error::EdgeError, handler::Handler};

pub async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, EdgeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| EdgeError::Listen { what, addr, source })
}

/// Accepts TCP (or, with `tls`, TLS) connections until `stop`.
pub fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<Handler>,
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

/// Serves one connection until it closes, fails framing or idles out.
async fn connection<S: Io>(io: S, addr: SocketAddr, transport: Transport, handler: Arc<Handler>) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let flows = handler.flows().clone();
    flows.open(transport, addr, tx.clone());
    let peer = Peer {
        transport,
        addr,
        replier: Replier::Stream(tx.clone()),
        idle: None,
    };
    let max = handler.max_message_bytes();
    let idle = handler.stream_idle();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match tokio::time::timeout(idle, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        loop {
            match next_frame(&buf[start..], max) {
                Ok(None) => break,
                Ok(Some(Frame::Ping(len))) => {
                    let _ = tx.send(PONG.to_vec());
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
    }
    flows.close(transport, addr);
    drop(peer);
    drop(tx);
    let _ = writer.await;
    handler.flow_closed(transport, addr);
}
