//! The REST API's listener: HTTP/1.1 with keep-alive (hyper), over TLS (rustls) when the
//! node has a certificate. Slow or silent clients are cut off by timeouts, and
//! connections are bounded.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

/// Time a client has to finish the TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Time a client has to send a request's headers (also the keep-alive idle limit).
const HEADERS: Duration = Duration::from_secs(30);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 1024;

/// Serves `router` on `listener` (over TLS with `tls`) until `stop` turns true.
pub fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            // Waiting for a free slot still hears the stop.
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => return,
                },
                _ = stop.changed() => return,
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(error = %e, "rest api accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let (tls, router) = (tls.clone(), router.clone());
            tokio::spawn(async move {
                let _slot = slot;
                match tls {
                    Some(tls) => {
                        let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE, tls.accept(tcp)).await
                        else {
                            return;
                        };
                        connection(stream, peer, router).await;
                    }
                    None => connection(tcp, peer, router).await,
                }
            });
        }
    })
}

async fn connection<S>(stream: S, peer: SocketAddr, router: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Each request knows its peer (`ConnectInfo`), for the console's login bans.
    let router = tower::util::MapRequest::new(
        router,
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            req
        },
    );
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADERS)
        .keep_alive(true)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    if let Err(e) = conn.await {
        debug!(error = %e, peer = %peer, "rest api connection ended");
    }
}
