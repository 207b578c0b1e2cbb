//! SIP over TCP and TLS: one task per connection reads bytes, frames them by Content-Length
//! ([`dialtone_sip::stream::next_frame`]), answers keep-alive pings, and hands each message
//! to the handler; a writer task sends what the handler and the phone actors queue.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use dialtone_sip::stream::{Frame, PONG, next_frame};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use super::{Peer, Replier, Transport};
use crate::{error::EdgeError, handler::Handler};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    if let Ok(a) = listener.local_addr() {
        info!(addr = %a, transport = transport.name(), "sip stream listening");
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
            let _ = tcp.set_nodelay(true);
            let handler = handler.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => connection(tcp, addr, Transport::Tcp, handler).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => connection(s, addr, Transport::Tls, handler).await,
                            Ok(Err(e)) => debug!(peer = %addr, error = %e, "tls handshake failed"),
                            Err(_) => debug!(peer = %addr, "tls handshake timed out"),
                        }
                    }
                }
            });
        }
    })
}

/// Serves one connection until it closes, fails framing or idles out.
async fn connection<S>(io: S, addr: SocketAddr, transport: Transport, handler: Arc<Handler>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
