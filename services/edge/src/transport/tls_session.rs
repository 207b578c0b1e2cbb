//! A server-side TLS session over rustls' unbuffered API, without IO: TLS bytes in,
//! plaintext and TLS bytes out. The edge keeps its own buffers instead of rustls' (whose
//! buffered connection holds a 4 KiB receive buffer for as long as the connection lives):
//! each is empty, holding no allocation, while a phone's connection idles between
//! messages, which is most of the time.
//!
//! [`super::tls_stream`] does the socket IO around it.

use std::{io, sync::Arc};

use rustls::{
    ServerConfig,
    server::UnbufferedServerConnection,
    unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus},
};

/// TLS bytes a session may hold unprocessed: a handshake message may span records up to
/// 64 KiB (rustls' own limit), then one more read.
pub const MAX_INCOMING: usize = 64 * 1024 + READ_SIZE;

/// How much a read from the socket asks for at most: a whole TLS record (16 KiB of data,
/// its header and its AEAD overhead).
pub const READ_SIZE: usize = 16 * 1024 + 512;

/// Where processing stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Everything received was processed: more bytes are needed to go on (a record not yet
    /// whole, or the handshake waiting for the peer). Data given to send was encrypted.
    NeedBytes,
    /// Both sides said close_notify: nothing more flows.
    Closed,
}

/// One server connection's TLS state and its buffers.
pub struct TlsSession {
    conn: UnbufferedServerConnection,
    /// TLS bytes received and not yet processed (a record not yet whole).
    incoming: Vec<u8>,
    /// Decrypted bytes not yet read.
    plain: Drained,
    /// TLS bytes to send.
    outgoing: Drained,
    /// The peer said close_notify: no more data comes.
    peer_closed: bool,
    /// This side's close_notify is queued.
    close_queued: bool,
    /// Processing failed: rustls is not asked again (it would take the same bad record
    /// for a second fatal error).
    failed: bool,
}

impl TlsSession {
    /// A session about to take a client's handshake.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(TlsSession {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            plain: Drained::default(),
            outgoing: Drained::default(),
            peer_closed: false,
            close_queued: false,
            failed: false,
        })
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The client's certificate chain, when it presented one.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// Whether the peer said close_notify (after any data it sent before).
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Takes bytes read from the socket; an error (and nothing kept) when the session
    /// would hold more than [`MAX_INCOMING`] bytes it cannot process.
    pub fn received(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.incoming.len() + bytes.len() > MAX_INCOMING {
            return Err(invalid("tls: too many bytes without a whole record"));
        }
        self.incoming.extend_from_slice(bytes);
        Ok(())
    }

    /// Whether received bytes wait for the rest of their record.
    pub fn holds_partial(&self) -> bool {
        !self.incoming.is_empty()
    }

    /// Decrypted bytes not yet read.
    pub fn plain(&self) -> &[u8] {
        self.plain.pending()
    }

    /// Marks `n` bytes of [`TlsSession::plain`] read.
    pub fn consume_plain(&mut self, n: usize) {
        self.plain.consume(n);
    }

    /// TLS bytes to send.
    pub fn outgoing(&self) -> &[u8] {
        self.outgoing.pending()
    }

    /// Marks `n` bytes of [`TlsSession::outgoing`] sent.
    pub fn consume_outgoing(&mut self, n: usize) {
        self.outgoing.consume(n);
    }

    /// Processes what was received: decrypts data into [`TlsSession::plain`] and queues
    /// what the protocol answers (handshake flights, session tickets, key updates) into
    /// [`TlsSession::outgoing`]; then, once data may flow, encrypts `send` and, with
    /// `close`, queues close_notify (once). Sending once closed is an error.
    pub fn process(&mut self, send: Option<&[u8]>, close: bool) -> io::Result<Stop> {
        if self.failed {
            return Err(invalid("tls: the session failed"));
        }
        // rustls stops after each record; what it is done with is dropped from the front
        // once, at the end, instead of after each record (which would move what is left
        // once per record: quadratic in a read of many small records).
        let mut done = 0;
        let result = self.process_from(&mut done, send, close);
        self.failed = result.is_err();
        self.incoming.drain(..done.min(self.incoming.len()));
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        } else if self.incoming.capacity() > 2 * self.incoming.len() + READ_SIZE {
            // A record's first bytes held after a large read keep no more than they need.
            self.incoming.shrink_to_fit();
        }
        result
    }

    /// [`TlsSession::process`] from `done` bytes into the incoming ones, moving `done` past
    /// what rustls is finished with (on an error too).
    fn process_from(
        &mut self,
        done: &mut usize,
        mut send: Option<&[u8]>,
        close: bool,
    ) -> io::Result<Stop> {
        loop {
            let TlsSession {
                conn,
                incoming,
                plain,
                outgoing,
                peer_closed,
                close_queued,
                ..
            } = self;
            let UnbufferedStatus { discard, state } =
                conn.process_tls_records(&mut incoming[*done..]);
            // Counted now, so an early return below still drops what rustls is done with.
            *done += discard;
            let state = state.map_err(invalid)?;
            let stop = match state {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        let record = record.map_err(invalid)?;
                        *done += record.discard;
                        plain.buf.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::ReadEarlyData(mut r) => {
                    // Never offered (no early data in the configuration); read as data.
                    while let Some(record) = r.next_record() {
                        let record = record.map_err(invalid)?;
                        *done += record.discard;
                        plain.buf.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    encode(&mut outgoing.buf, &mut e)?;
                    None
                }
                // Queued in `outgoing`, which goes out in order before anything queued after
                // it: for rustls that is as good as sent.
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    None
                }
                ConnectionState::Closed => Some(Stop::Closed),
                ConnectionState::BlockedHandshake => Some(Stop::NeedBytes),
                ConnectionState::WriteTraffic(mut w) => {
                    if let Some(data) = send.take() {
                        // A record per 16 KiB, each with a header, a content type and a tag.
                        let room = data.len() + (data.len() / (16 * 1024) + 1) * 64;
                        append(&mut outgoing.buf, room, |buf| {
                            w.encrypt(data, buf).map_err(encrypt_needs)
                        })?;
                    }
                    if close && !*close_queued {
                        append(&mut outgoing.buf, 64, |buf| {
                            w.queue_close_notify(buf).map_err(encrypt_needs)
                        })?;
                        *close_queued = true;
                    }
                    Some(Stop::NeedBytes)
                }
                _ => return Err(invalid("tls: a state the edge does not handle")),
            };
            if let Some(stop) = stop {
                if send.is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "tls: the connection is closed",
                    ));
                }
                return Ok(stop);
            }
        }
    }

    /// After a failed [`TlsSession::process`]: queues what rustls has for the peer (its
    /// alert, behind a key update if one was waiting), so the peer learns why (best
    /// effort). Only while rustls holds records to send: each call then hands one over
    /// before it would look at received bytes again (which, after a fatal error, it must
    /// not: it would deframe the same bad bytes, and an empty buffer would not match its
    /// place in them).
    pub fn queue_alert(&mut self) {
        for _ in 0..4 {
            if !self.conn.wants_write() {
                break;
            }
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
            match state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    if encode(&mut self.outgoing.buf, &mut e).is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
    }
}

/// Bytes written at the end and consumed from the front, given back (no allocation) once
/// all are consumed.
#[derive(Default)]
struct Drained {
    buf: Vec<u8>,
    /// Where the bytes not yet consumed start.
    at: usize,
}

impl Drained {
    fn pending(&self) -> &[u8] {
        &self.buf[self.at..]
    }

    fn consume(&mut self, n: usize) {
        self.at += n;
        if self.at >= self.buf.len() {
            *self = Drained::default();
        }
    }
}

/// Appends the handshake record rustls has ready to `out`.
fn encode<D>(
    out: &mut Vec<u8>,
    e: &mut rustls::unbuffered::EncodeTlsData<'_, D>,
) -> io::Result<()> {
    append(out, 1024, |buf| {
        e.encode(buf).map_err(|e| match e {
            EncodeError::InsufficientSize(s) => Some(s.required_size),
            EncodeError::AlreadyEncoded => None,
        })
    })
}

/// The room an encryption asked for, if that is why it failed.
fn encrypt_needs(e: EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s.required_size),
        EncryptError::EncryptExhausted => None,
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Appends to `out` what `write` puts into a buffer of `room` bytes, growing the room to
/// what `write` says it needs (`Err(Some(size))`) and failing on anything else.
fn append(
    out: &mut Vec<u8>,
    mut room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> io::Result<()> {
    let start = out.len();
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => {
                out.truncate(start);
                return Err(invalid("tls: a record could not be encoded"));
            }
        }
    }
}

#[cfg(test)]
mod tests;
