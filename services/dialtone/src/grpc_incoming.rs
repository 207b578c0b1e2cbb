//! The gRPC port's connections over TLS, handed to tonic already shaken hands. Doing the
//! handshakes here (not with tonic's `tls_config`, which holds the certificate it was
//! given at start) serves the certificate `dialtone_tls`'s reloading resolver holds now: a
//! renewed `--grpc-tls-cert` needs no restart.
//!
//! What a client can hold here is bounded: at most [`MAX_HANDSHAKES`] handshakes at once
//! (connections beyond are closed at once), each for at most [`HANDSHAKE_WITHIN`].

use std::{sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

/// Handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 1024;

/// How long a client has to finish its handshake.
pub const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// Accepts on `listener` until the stream returned is dropped (tonic drops it when the
/// server stops); yields each connection once its TLS handshake succeeded.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
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
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                debug!(%peer, "grpc handshakes at their cap; connection closed");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let shaken = tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(tcp)).await;
                drop(slot);
                match shaken {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "grpc tls handshake failed"),
                    Err(_) => debug!(%peer, "grpc tls handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
