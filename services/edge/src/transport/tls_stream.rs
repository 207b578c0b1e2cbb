//! An accepted TLS connection as a byte stream ([`tokio::io::AsyncRead`] and
//! [`tokio::io::AsyncWrite`]): the socket IO around a [`TlsSession`]. It replaces
//! tokio-rustls' server stream for the edge's phones, whose buffered rustls connection kept
//! a 4 KiB receive buffer per connection for ever; here an idle connection holds no buffer.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use rustls::ServerConfig;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use super::tls_session::{READ_SIZE, Stop, TlsSession};

/// Encrypted bytes a writer may queue before a write waits for the socket.
const MAX_QUEUED: usize = 64 * 1024;

thread_local! {
    /// Where a runtime thread reads TLS connections' bytes (a record at most), instead of a
    /// buffer per connection. Not the plain streams' buffer: a TLS read happens inside
    /// theirs.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
}

/// A server TLS connection over a TCP socket.
pub struct TlsStream {
    tcp: TcpStream,
    session: TlsSession,
    /// The socket said end of file.
    eof: bool,
}

/// Takes a client's TLS handshake over `tcp` (the caller bounds how long it may take).
pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
    let session = TlsSession::new(config).map_err(io::Error::other)?;
    let mut stream = TlsStream {
        tcp,
        session,
        eof: false,
    };
    std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
    Ok(stream)
}

impl TlsStream {
    /// The session (the client's certificates, once the handshake is done).
    pub fn session(&self) -> &TlsSession {
        &self.session
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let stop = self.process(None, false)?;
            // Our flight goes out before we wait for theirs.
            ready!(self.poll_write_out(cx))?;
            if !self.session.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if stop == Stop::Closed || self.eof {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// [`TlsSession::process`], with the alert for the peer queued (and tried once) when it
    /// fails.
    fn process(&mut self, send: Option<&[u8]>, close: bool) -> io::Result<Stop> {
        self.session.process(send, close).inspect_err(|_| {
            self.session.queue_alert();
            if let Ok(n) = self.tcp.try_write(self.session.outgoing()) {
                self.session.consume_outgoing(n);
            }
        })
    }

    /// Reads what the socket has into the session (`eof` at its end), through the
    /// thread's [`SCRATCH`]: the session keeps only bytes that do not make a record yet.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, session) = (&mut self.tcp, &mut self.session);
        let n = SCRATCH.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            ready!(Pin::new(tcp).poll_read(cx, &mut buf))?;
            session.received(buf.filled())?;
            Poll::Ready(Ok::<_, io::Error>(buf.filled().len()))
        });
        self.eof |= ready!(n)? == 0;
        Poll::Ready(Ok(()))
    }

    /// Writes the session's queued TLS bytes to the socket until none are left.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.session.outgoing().is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, self.session.outgoing()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.session.consume_outgoing(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let plain = this.session.plain();
            if !plain.is_empty() {
                let n = plain.len().min(buf.remaining());
                buf.put_slice(&plain[..n]);
                this.session.consume_plain(n);
                return Poll::Ready(Ok(()));
            }
            if this.session.peer_closed() {
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // A peer may close without close_notify (SIP is framed by its own
                // lengths), but not in the middle of a record.
                return Poll::Ready(match this.session.holds_partial() {
                    false => Ok(()),
                    true => Err(io::ErrorKind::UnexpectedEof.into()),
                });
            }
            // What processing queued (a key update, session tickets) goes out when the
            // socket takes it; else with the next write.
            if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
                return Poll::Ready(Err(e));
            }
            if this.process(None, false)? == Stop::Closed {
                return Poll::Ready(Ok(()));
            }
            if !this.session.plain().is_empty() || this.session.peer_closed() {
                continue;
            }
            ready!(this.poll_fill(cx))?;
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.session.outgoing().len() >= MAX_QUEUED {
            ready!(this.poll_write_out(cx))?;
        }
        // Decrypts nothing a reader waits for: bytes come in only through a read (or the
        // handshake), which processes every whole record before it waits, so what is left
        // is at most the start of one.
        this.process(Some(data), false)?;
        if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // close_notify is queued once; a closed session has nothing more to say.
        let _ = this.session.process(None, true);
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A client over loopback: the handshake, messages both ways (one of many records),
    /// then the client's close_notify ends the server's reads and the server closes too.
    #[tokio::test]
    async fn a_client_talks_to_the_stream_and_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = dialtone_tls::dev_pair(dir.path(), "edge").unwrap();
        let server = Arc::new(dialtone_tls::server_config(&cert, &key, &[]).unwrap());
        let client = Arc::new(dialtone_tls::client_config(&cert).unwrap());
        let listener = dialtone_common::listen::tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let expected = big.clone();
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut s = accept(tcp, server).await.unwrap();
            assert!(s.session().peer_certificates().is_none());
            let mut got = vec![0; expected.len()];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(got, expected);
            s.write_all(&got).await.unwrap();
            s.flush().await.unwrap();
            // The client's close_notify: the end of its data.
            assert_eq!(s.read(&mut got).await.unwrap(), 0);
            s.shutdown().await.unwrap();
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut c = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .unwrap();
        c.write_all(&big).await.unwrap();
        let mut back = vec![0; big.len()];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(back, big);
        c.shutdown().await.unwrap();
        // The server's close_notify, then the end of the socket.
        assert_eq!(c.read(&mut back).await.unwrap(), 0);
        served.await.unwrap();
    }

    /// The edge's acceptor gives a ticket, and a client that reconnects with it resumes
    /// (no certificate sent); the edge served both connections from the ticket alone.
    #[tokio::test]
    async fn a_client_reconnecting_resumes_its_session() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = dialtone_tls::dev_pair(dir.path(), "edge").unwrap();
        let acceptor = crate::transport::tls::acceptor(&cert, &key, None).unwrap();
        let server = acceptor.config().clone();
        assert!(server.ticketer.enabled());
        // Where client certificates are identities, none: each connection checks its own.
        let with_ca = crate::transport::tls::acceptor(&cert, &key, Some(&cert)).unwrap();
        let with_ca = with_ca.config();
        assert!(!with_ca.ticketer.enabled());
        assert!(!with_ca.session_storage.can_cache() && with_ca.send_tls13_tickets == 0);
        let client = Arc::new(dialtone_tls::client_config(&cert).unwrap());
        let listener = dialtone_common::listen::tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut s = accept(tcp, server.clone()).await.unwrap();
                let mut b = [0u8; 5];
                s.read_exact(&mut b).await.unwrap();
                s.write_all(&b).await.unwrap();
                s.flush().await.unwrap();
            }
        });
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut c = tokio_rustls::TlsConnector::from(client.clone())
                .connect(name, tcp)
                .await
                .unwrap();
            c.write_all(b"hello").await.unwrap();
            let mut b = [0u8; 5];
            // Reading the answer takes the ticket sent after the handshake too.
            c.read_exact(&mut b).await.unwrap();
            kinds.push(c.get_ref().1.handshake_kind());
        }
        use rustls::HandshakeKind::{Full, Resumed};
        assert_eq!(kinds, [Some(Full), Some(Resumed)]);
    }

    #[tokio::test]
    async fn a_client_that_is_not_tls_fails_the_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = dialtone_tls::dev_pair(dir.path(), "edge").unwrap();
        let server = Arc::new(dialtone_tls::server_config(&cert, &key, &[]).unwrap());
        let listener = dialtone_common::listen::tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(tcp, server).await.map(|_| ())
        });
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"REGISTER sip:example.com SIP/2.0\r\n\r\n")
            .await
            .unwrap();
        let err = served.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // The alert went back before the server gave up.
        let mut alert = [0u8; 7];
        tcp.read_exact(&mut alert).await.unwrap();
        assert_eq!(alert[0], 0x15, "an alert record");
    }
}
