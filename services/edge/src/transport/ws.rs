//! SIP over WebSocket and secure WebSocket (RFC 7118): the `sip` subprotocol must be
//! offered; each text or binary WebSocket message is one SIP message. The connection's idle
//! timeout follows the line's persistent-connection timeout once a line registers over it.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::{
    Message,
    handshake::server::{ErrorResponse, Request, Response},
    http::{HeaderValue, StatusCode},
    protocol::WebSocketConfig,
};
use tracing::debug;

use super::{
    Accepted, NOT_AUTHENTICATED, Peer, Replier, Transport, WRITE_TIMEOUT, accept, read_timeout,
};
use crate::dispatch::Dispatcher;

/// How long the WebSocket upgrade may take once the connection (and TLS) is up.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts WS (or, with `tls`, WSS) connections until `stop`.
pub fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<Dispatcher>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let transports = (Transport::Ws, Transport::Wss);
    accept(listener, tls, transports, handler, stop, connection)
}

/// Whether an upgrade with this `Origin` may go on: one without (a phone, not a browser
/// page) always; a browser page's only when its origin is listed (or `*` is).
fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    origin.is_none_or(|o| {
        allowed.iter().any(|a| {
            a == "*"
                || a.trim_end_matches('/')
                    .eq_ignore_ascii_case(o.trim_end_matches('/'))
        })
    })
}

/// Accepts the upgrade only from an allowed origin and when the client offers the `sip`
/// subprotocol, and selects it.
#[allow(clippy::result_large_err)] // the signature is tungstenite's
fn select_sip(
    allowed: &[String],
    req: &Request,
    mut resp: Response,
) -> Result<Response, ErrorResponse> {
    let origin = req
        .headers()
        .get("origin")
        .map(|v| v.to_str().unwrap_or("?"));
    if !origin_allowed(origin, allowed) {
        let mut e = ErrorResponse::new(Some("origin not allowed".into()));
        *e.status_mut() = StatusCode::FORBIDDEN;
        return Err(e);
    }
    let offered = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("sip"));
    if !offered {
        let mut e = ErrorResponse::new(Some("the sip websocket subprotocol is required".into()));
        *e.status_mut() = StatusCode::BAD_REQUEST;
        return Err(e);
    }
    resp.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("sip"));
    Ok(resp)
}

async fn connection(
    Accepted {
        io,
        addr,
        transport,
        tls_names,
        handler,
        held: _held,
    }: Accepted,
) {
    let fd = io.fd();
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(handler.max_message_bytes());
    config.max_frame_size = Some(handler.max_message_bytes());
    // The signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let upgrade = |req: &Request, resp| select_sip(&handler.settings.ws_allowed_origins, req, resp);
    let ws = match tokio::time::timeout(
        UPGRADE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async_with_config(io, upgrade, Some(config)),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        _ => {
            debug!(peer = %addr, "websocket handshake failed");
            return;
        }
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = crate::flow::write_queue::queue(NOT_AUTHENTICATED);
    let writer = tokio::spawn(async move {
        let mut marked = 0;
        while let Some(bytes) = rx.next().await {
            // SAFETY: `sink` holds the connection open, so `fd` is still its socket.
            unsafe { rx.control().apply_dscp(fd, &mut marked) };
            let text = String::from_utf8_lossy(&bytes).into_owned();
            match tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::text(text))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    debug!(peer = %addr, "closing websocket: the peer does not read");
                    break;
                }
            }
        }
        drop(rx);
        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
    });
    let flows = handler.flows().clone();
    flows.open(transport, addr, tx.clone());
    let peer = Peer {
        transport,
        addr,
        tls_names,
        replier: Replier::Stream(tx.clone()),
    };
    let opened = tokio::time::Instant::now();
    loop {
        let Some(timeout) = read_timeout(
            tx.control().idle_s.load(Ordering::Relaxed),
            opened.elapsed(),
        ) else {
            debug!(peer = %addr, "closing websocket: never authenticated");
            break;
        };
        let next = tokio::select! {
            n = tokio::time::timeout(timeout, stream.next()) => n,
            // The writer gave up on a peer that does not read.
            _ = tx.closed() => break,
        };
        let msg = match next {
            Ok(Some(Ok(m))) => m,
            Err(_) => {
                debug!(peer = %addr, "websocket flow idle: closing");
                break;
            }
            _ => break,
        };
        match msg {
            Message::Text(t) => handler.handle(t.as_bytes(), &peer),
            Message::Binary(b) => handler.handle(&b, &peer),
            Message::Close(_) => break,
            // Pings are answered by tungstenite; pongs and raw frames carry nothing.
            _ => {}
        }
    }
    flows.close(transport, addr, &tx);
    drop(peer);
    drop(tx);
    let _ = writer.await;
    handler.flow_closed(transport, addr);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let cases = [
            (None, list(&[]), true),
            (Some("https://evil.example"), list(&[]), false),
            (
                Some("https://console.example.com"),
                list(&["https://console.example.com"]),
                true,
            ),
            (
                Some("https://CONSOLE.example.com"),
                list(&["https://console.example.com/"]),
                true,
            ),
            (
                Some("https://console.example.com.evil"),
                list(&["https://console.example.com"]),
                false,
            ),
            (Some("null"), list(&["https://console.example.com"]), false),
            (Some("https://any.example"), list(&["*"]), true),
        ];
        for (origin, allowed, want) in cases {
            assert_eq!(
                origin_allowed(origin, &allowed),
                want,
                "{origin:?} in {allowed:?}"
            );
        }
    }
}
