//! The HTTPS listener: TLS (rustls) then HTTP/1.1 with keep-alive (hyper), every request
//! answered by the [`Handler`]. Slow or silent clients are cut off by timeouts.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::http::Handler;

/// Time a client has to finish the TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Time a client has to send a request's headers (also the keep-alive idle limit).
const HEADERS: Duration = Duration::from_secs(30);

/// Accepts connections until `stop` turns true.
pub fn spawn(
    listener: TcpListener,
    tls: TlsAcceptor,
    handler: Arc<Handler>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(error = %e, "provisioning accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let (tls, handler) = (tls.clone(), handler.clone());
            tokio::spawn(async move {
                let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE, tls.accept(tcp)).await else {
                    return;
                };
                serve(stream, peer, handler).await;
            });
        }
    })
}

async fn serve<S>(stream: S, peer: SocketAddr, handler: Arc<Handler>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let handler = handler.clone();
        async move {
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .to_owned();
            Ok::<_, Infallible>(
                handler
                    .handle(req.method(), &target, req.headers(), peer)
                    .await,
            )
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADERS)
        .keep_alive(true)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        debug!(error = %e, peer = %peer, "provisioning connection ended");
    }
}
