//! A minimal HTTP/1.1 client over TLS with keep-alive, as a managed phone fetches its
//! configuration: GET only, `Content-Length` bodies (what provisioning servers and nginx
//! send for files), HTTP digest (RFC 7616) with an incrementing nonce count, and
//! `If-None-Match`. Small on purpose: the provisioning benchmark drives Dialtone and nginx
//! with it, so the client costs the same against both.

use std::{io, net::SocketAddr, sync::Arc};

use dialtone_sip::digest;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

/// Largest response head accepted.
const MAX_HEAD: usize = 16 << 10;
/// Largest body accepted.
const MAX_BODY: usize = 4 << 20;

/// A shared TLS client configuration.
pub type TlsConfig = Arc<rustls::ClientConfig>;

/// A TLS client configuration trusting the certificates of `ca_pem`.
pub fn client_config(ca_pem: &[u8]) -> io::Result<TlsConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| io::Error::other(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One response.
#[derive(Debug, Default, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `ETag`, as sent (quoted).
    pub etag: Option<String>,
    /// `WWW-Authenticate` values, in order.
    pub challenges: Vec<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// Where the head ends and what it says: (head length, status, content length, etag,
/// challenges). Pure; `None` until the head is complete.
#[allow(clippy::type_complexity)]
fn parse_head(buf: &[u8]) -> io::Result<Option<(usize, u16, usize, Option<String>, Vec<String>)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
    let (mut length, mut etag, mut challenges) = (0usize, None, Vec::new());
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value
                    .parse()
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad length"))?;
            }
            "etag" => etag = Some(value.to_owned()),
            "www-authenticate" => challenges.push(value.to_owned()),
            "transfer-encoding" => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "chunked bodies are not supported",
                ));
            }
            _ => {}
        }
    }
    if length > MAX_BODY {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
    }
    Ok(Some((end + 4, status, length, etag, challenges)))
}

/// A kept-alive connection.
pub struct Connection {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
    host: String,
}

impl Connection {
    /// Connects to `addr`, verifying the certificate for `server_name`.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: TlsConfig,
    ) -> io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let stream = TlsConnector::from(config).connect(name, tcp).await?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(8192),
            host: format!("{server_name}:{}", addr.port()),
        })
    }

    /// GET `path` with extra `headers`; reads the whole response.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: dialtone-phonesim\r\n",
            self.host
        );
        for (n, v) in headers {
            req.push_str(n);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.stream.write_all(req.as_bytes()).await?;
        loop {
            if let Some((head, status, length, etag, challenges)) = parse_head(&self.buf)? {
                while self.buf.len() < head + length {
                    self.fill().await?;
                }
                let body = self.buf[head..head + length].to_vec();
                self.buf.drain(..head + length);
                return Ok(Response {
                    status,
                    etag,
                    challenges,
                    body,
                });
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// A device credential and the digest state that goes with it: the last challenge and the
/// nonce count, so one challenge serves many requests (as phones do).
#[derive(Debug, Clone)]
pub struct Device {
    /// User (the phone's MAC or FQDN).
    pub user: String,
    /// Password.
    pub password: String,
    challenge: Option<String>,
    nc: u32,
}

impl Device {
    /// A device that has not been challenged yet.
    pub fn new(user: &str, password: &str) -> Self {
        Device {
            user: user.to_owned(),
            password: password.to_owned(),
            challenge: None,
            nc: 0,
        }
    }

    /// A device holding `challenge` already (it sends `Authorization` from the first
    /// request on).
    pub fn primed(user: &str, password: &str, challenge: &str) -> Self {
        Device {
            challenge: Some(challenge.to_owned()),
            ..Device::new(user, password)
        }
    }

    /// The challenge it answers.
    pub fn challenge(&self) -> Option<&str> {
        self.challenge.as_deref()
    }

    /// The `Authorization` for the next request to `path`, when a challenge is known.
    pub fn authorization(&mut self, path: &str) -> Option<String> {
        let ch = self.challenge.as_ref()?;
        self.nc += 1;
        let cnonce = format!("{:016x}", rand::random::<u64>());
        digest::answer(
            ch,
            &self.user,
            &self.password,
            "GET",
            path,
            self.nc,
            &cnonce,
        )
        .ok()
    }

    /// Fetches `path` (conditionally on `etag`), answering one challenge (a first request,
    /// or a stale nonce) with the strongest algorithm offered.
    pub async fn fetch(
        &mut self,
        conn: &mut Connection,
        path: &str,
        etag: Option<&str>,
    ) -> io::Result<Response> {
        let mut last = Response::default();
        for _ in 0..3 {
            let auth = self.authorization(path);
            let mut headers = Vec::with_capacity(2);
            if let Some(a) = &auth {
                headers.push(("Authorization", a.as_str()));
            }
            if let Some(e) = etag {
                headers.push(("If-None-Match", e));
            }
            let r = conn.get(path, &headers).await?;
            if r.status != 401 || r.challenges.is_empty() {
                return Ok(r);
            }
            // Only a new challenge is worth answering: the same one failing means the
            // credential is wrong.
            let first = r.challenges.first().cloned();
            if auth.is_some() && !r.challenges.iter().any(|c| c.contains("stale=true")) {
                return Ok(r);
            }
            self.challenge = first;
            self.nc = 0;
            last = r;
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_head;

    #[test]
    fn heads_parse_or_wait_for_more() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: \"ab\"\r\n\
            WWW-Authenticate: Digest a\r\nwww-authenticate: Digest b\r\n\r\nxyz";
        let (head, status, len, etag, ch) = parse_head(full).unwrap().unwrap();
        assert_eq!((status, len, etag.as_deref()), (200, 3, Some("\"ab\"")));
        assert_eq!(&full[head..], b"xyz");
        assert_eq!(ch, ["Digest a", "Digest b"]);
        assert!(
            parse_head(b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n")
                .unwrap()
                .is_none()
        );
        let (_, status, len, _, _) = parse_head(b"HTTP/1.1 304 Not Modified\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((status, len), (304, 0));
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(&vec![b'a'; 20 << 10]).is_err());
    }
}
