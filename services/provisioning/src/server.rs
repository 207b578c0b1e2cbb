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
                // A client certificate (verified by rustls against --provisioning-client-ca)
                // says which device this connection is, for every request on it.
                let device: Arc<[String]> = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| device_ids(&dialtone_tls::certificate_names(c)))
                    .unwrap_or_default()
                    .into();
                serve(stream, peer, device, handler).await;
            });
        }
    })
}

/// The hardware ids a certificate's names can be, as the catalog knows them: MAC
/// addresses lowercased without separators (`00:04:F2:AA:BB:01` → `0004f2aabb01`), other
/// names (FQDNs) lowercased. Pure.
pub fn device_ids(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .map(|n| {
            let n = n.trim().to_ascii_lowercase();
            let bare: String = n
                .chars()
                .filter(|c| !matches!(c, ':' | '-' | '.'))
                .collect();
            if bare.len() == 12 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
                bare
            } else {
                n
            }
        })
        .filter(|n| !n.is_empty())
        .collect();
    out.dedup();
    out
}

async fn serve<S>(stream: S, peer: SocketAddr, device: Arc<[String]>, handler: Arc<Handler>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let (handler, device) = (handler.clone(), device.clone());
        async move {
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .to_owned();
            Ok::<_, Infallible>(
                handler
                    .handle(req.method(), &target, req.headers(), peer, &device)
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

#[cfg(test)]
mod tests {
    use super::device_ids;

    #[test]
    fn certificate_names_become_hardware_ids() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let cases: &[(&[&str], &[&str])] = &[
            (&["0004f2aabb01"], &["0004f2aabb01"]),
            (&["00:04:F2:AA:BB:01"], &["0004f2aabb01"]),
            (&["00-04-f2-aa-bb-01"], &["0004f2aabb01"]),
            (&["0004.f2aa.bb01"], &["0004f2aabb01"]),
            (&["Agent-7.Example.com"], &["agent-7.example.com"]),
            (&["0004f2aabb01", "0004f2aabb01"], &["0004f2aabb01"]),
            (&["", " "], &[]),
            (&["0004f2aabb0"], &["0004f2aabb0"]),
        ];
        for (names, want) in cases {
            assert_eq!(device_ids(&s(names)), s(want), "{names:?}");
        }
    }
}
