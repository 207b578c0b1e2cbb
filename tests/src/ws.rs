//! A SIP phone over a WebSocket (RFC 7118): connects to a node's WS or WSS listener with
//! the `sip` subprotocol (WSS trusting the certificate the dev mode generated) and
//! registers with digest.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest},
};

use crate::{
    Node,
    sip::{RegisterSpec, authorization, headers, status},
};

/// A phone's WebSocket connection.
pub type WsPhone = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connection to `node`'s WS listener, or its WSS one when `secure`; with `sip`, asking
/// for the `sip` subprotocol (without it the edge refuses the upgrade).
pub async fn connect(
    node: &Node,
    secure: bool,
    sip: bool,
) -> Result<WsPhone, tokio_tungstenite::tungstenite::Error> {
    let url = if secure {
        format!("wss://localhost:{}", node.sip.wss)
    } else {
        format!("ws://127.0.0.1:{}", node.sip.ws)
    };
    let mut request = url.into_client_request()?;
    if sip {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "sip".parse().expect("a header value"),
        );
    }
    if !secure {
        return Ok(tokio_tungstenite::connect_async(request).await?.0);
    }
    let pem = std::fs::read(node.data_dir.join("tls/edge-cert.pem")).expect("the dev cert");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("a PEM certificate")).expect("a root");
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(config));
    Ok(
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector))
            .await?
            .0,
    )
}

/// The next text message within `wait` (pings and pongs passed over); None when the
/// connection closed or nothing came.
pub async fn next_text(ws: &mut WsPhone, wait: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                return None;
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// A REGISTER/401/REGISTER exchange for `(user, password)` (outbound, one instance);
/// returns the final answer. `cseq` numbers the first REGISTER (the second is the next).
pub async fn register(
    ws: &mut WsPhone,
    (user, password): (&str, &str),
    expires: u32,
    cseq: u32,
) -> String {
    let text = |cseq: u32, auth: Option<&str>| {
        RegisterSpec {
            user,
            server: "dialtone",
            local: "df7jal23ls0d.invalid",
            transport: "WS",
            call_id: &format!("ws-{user}"),
            cseq,
            branch: &format!("z9hG4bKws{cseq}"),
            expires,
            contact: &format!(
                "<sip:{user}@df7jal23ls0d.invalid;transport=ws>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000000000001>\";reg-id=1"
            ),
            authorization: auth,
        }
        .text()
    };
    ws.send(Message::text(text(cseq, None)))
        .await
        .expect("sent");
    let ch = next_text(ws, Duration::from_secs(3))
        .await
        .expect("a challenge");
    assert_eq!(status(&ch), 401, "{ch}");
    let md5 = headers(&ch, "www-authenticate")[0].to_owned();
    let a = authorization(user, password, "REGISTER", "sip:dialtone", &md5, 1);
    ws.send(Message::text(text(cseq + 1, Some(&a))))
        .await
        .expect("sent");
    next_text(ws, Duration::from_secs(3))
        .await
        .expect("an answer to the REGISTER")
}
