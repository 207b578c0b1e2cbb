//! A [`TlsSession`] against rustls' own (buffered) client, bytes handed across in memory.

use std::io::{Read, Write};

use rustls::{ClientConnection, pki_types::ServerName};

use super::*;

struct Pair {
    client: ClientConnection,
    server: TlsSession,
    /// What the client has read.
    got: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = dialtone_tls::dev_pair(dir.path(), "edge").unwrap();
    let server = dialtone_tls::server_config(&cert, &key, &[]).unwrap();
    let client = dialtone_tls::client_config(&cert).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    Pair {
        client: ClientConnection::new(Arc::new(client), name).unwrap(),
        server: TlsSession::new(Arc::new(server)).unwrap(),
        got: Vec::new(),
        _dir: dir,
    }
}

impl Pair {
    /// Hands the client's TLS bytes to the server, `chunk` bytes at a time (at most a read's
    /// worth), processing after each.
    fn deliver_to_server(&mut self, chunk: usize) -> io::Result<Stop> {
        let mut wire = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut wire).unwrap();
        }
        let mut stop = self.server.process(None, false)?;
        for piece in wire.chunks(chunk.min(READ_SIZE)) {
            self.server.received(piece)?;
            stop = self.server.process(None, false)?;
        }
        Ok(stop)
    }

    /// Hands the server's TLS bytes to the client.
    fn deliver_to_client(&mut self) {
        let wire = self.server.outgoing().to_vec();
        self.server.consume_outgoing(wire.len());
        let mut rd = &wire[..];
        while !rd.is_empty() {
            self.client.read_tls(&mut rd).unwrap();
            self.client.process_new_packets().unwrap();
            let _ = self.client.reader().read_to_end(&mut self.got);
        }
    }

    fn handshake(&mut self) {
        for _ in 0..4 {
            self.deliver_to_server(usize::MAX).unwrap();
            self.deliver_to_client();
        }
        assert!(!self.server.is_handshaking() && !self.client.is_handshaking());
    }

    fn client_reads(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.got)
    }

    /// The server's plaintext, all of it, marked read.
    fn server_reads(&mut self) -> Vec<u8> {
        let got = self.server.plain().to_vec();
        self.server.consume_plain(got.len());
        got
    }
}

/// Whether the session holds no buffer at all (what an idle phone's connection costs).
fn holds_nothing(s: &TlsSession) -> bool {
    s.incoming.capacity() == 0 && s.plain.buf.capacity() == 0 && s.outgoing.buf.capacity() == 0
}

#[test]
fn messages_go_both_ways_and_an_idle_session_holds_no_buffer() {
    let register = b"REGISTER sip:example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    // Whole, a byte at a time (every record split), and in odd pieces.
    for chunk in [usize::MAX, 1, 7, 1000] {
        let mut p = pair();
        p.handshake();
        for msg in [&register[..], &big[..]] {
            p.client.writer().write_all(msg).unwrap();
            assert_eq!(
                p.deliver_to_server(chunk).unwrap(),
                Stop::NeedBytes,
                "chunk {chunk}"
            );
            assert_eq!(p.server_reads(), msg, "chunk {chunk}");
            assert!(p.server.process(Some(msg), false).is_ok());
            p.deliver_to_client();
            assert_eq!(p.client_reads(), msg, "chunk {chunk}");
            assert!(holds_nothing(&p.server), "chunk {chunk}");
        }
    }
}

#[test]
fn data_sent_with_the_clients_last_flight_is_read() {
    let mut p = pair();
    p.deliver_to_server(usize::MAX).unwrap();
    p.deliver_to_client();
    // The client's Finished and its first message leave together.
    p.client.writer().write_all(b"OPTIONS").unwrap();
    for _ in 0..3 {
        p.deliver_to_server(usize::MAX).unwrap();
        p.deliver_to_client();
    }
    assert!(!p.server.is_handshaking());
    assert_eq!(p.server_reads(), b"OPTIONS");
}

#[test]
fn a_key_update_from_the_client_keeps_both_directions_going() {
    let mut p = pair();
    p.handshake();
    p.client.refresh_traffic_keys().unwrap();
    p.client.writer().write_all(b"after the update").unwrap();
    p.deliver_to_server(usize::MAX).unwrap();
    assert_eq!(p.server_reads(), b"after the update");
    p.server.process(Some(b"answer"), false).unwrap();
    p.deliver_to_client();
    assert_eq!(p.client_reads(), b"answer");
}

#[test]
fn close_notify_from_the_peer_ends_its_data_and_ours_closes_the_session() {
    let mut p = pair();
    p.handshake();
    p.client.writer().write_all(b"last words").unwrap();
    p.client.send_close_notify();
    p.deliver_to_server(usize::MAX).unwrap();
    assert!(p.server.peer_closed());
    assert_eq!(p.server_reads(), b"last words");
    // The edge may still answer, then closes.
    p.server.process(Some(b"bye"), true).unwrap();
    assert_eq!(p.server.process(None, false).unwrap(), Stop::Closed);
    let err = p.server.process(Some(b"more"), false).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    p.deliver_to_client();
    assert_eq!(p.client_reads(), b"bye");
}

#[test]
fn bad_input_is_an_error_with_an_alert_for_the_peer_when_rustls_has_one() {
    // (what, bytes, whether rustls queues an alert for it)
    let cases: [(&str, Vec<u8>, bool); 4] = [
        (
            "plain SIP",
            b"REGISTER sip:x SIP/2.0\r\n\r\n".to_vec(),
            true,
        ),
        (
            "a record longer than any",
            vec![0x16, 0x03, 0x01, 0xff, 0xff],
            true,
        ),
        // A handshake message announced past rustls' 64 KiB, in a record of its own: the
        // error comes back without an alert queued (asking for one after it once
        // panicked).
        (
            "a handshake message of 64 KiB",
            vec![0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00],
            false,
        ),
        (
            "application data before any handshake",
            vec![0x17, 0x03, 0x03, 0x00, 0x01, 0x00],
            true,
        ),
    ];
    for (what, bytes, alert) in cases {
        let mut p = pair();
        p.server.received(&bytes).unwrap();
        let err = p.server.process(None, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}");
        p.server.queue_alert();
        let out = p.server.outgoing().to_vec();
        assert_eq!(out.first() == Some(&0x15), alert, "{what}: {out:?}");
        // Asked again, rustls has nothing more to say and nothing breaks; a failed session
        // neither processes (a second fatal alert) nor encrypts any more.
        p.server.queue_alert();
        assert!(p.server.process(None, true).is_err(), "{what}");
        assert!(p.server.process(Some(b"data"), false).is_err(), "{what}");
        assert_eq!(p.server.outgoing(), out, "{what}");
    }
}

#[test]
fn a_handshake_message_over_64_kib_is_refused_before_it_is_whole() {
    let mut p = pair();
    // A ClientHello announced as 64 KiB and one byte, sent as full records of 16 KiB.
    let mut body = vec![0x01, 0x01, 0x00, 0x00];
    body.resize(0x1_0004, 0);
    let mut wire = Vec::new();
    for part in body.chunks(16 * 1024) {
        wire.extend_from_slice(&[0x16, 0x03, 0x01]);
        wire.extend_from_slice(&(part.len() as u16).to_be_bytes());
        wire.extend_from_slice(part);
    }
    let mut fed = 0;
    let err = wire
        .chunks(READ_SIZE)
        .find_map(|piece| {
            fed += piece.len();
            p.server
                .received(piece)
                .and_then(|()| p.server.process(None, false))
                .err()
        })
        .expect("refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(
        fed < wire.len(),
        "refused only once whole ({fed} of {})",
        wire.len()
    );
}

#[test]
fn bytes_that_make_no_record_are_bounded() {
    let mut p = pair();
    let mut held = 0;
    let err = loop {
        match p.server.received(&[0; 1000]) {
            Ok(()) => held += 1000,
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(
        held <= MAX_INCOMING && held + 1000 > MAX_INCOMING,
        "held {held}"
    );
    assert_eq!(
        p.server.incoming.len(),
        held,
        "the refused bytes were not kept"
    );
}

#[test]
fn many_small_records_in_one_read_are_all_read() {
    let mut p = pair();
    p.handshake();
    // One byte per record: rustls stops after each one.
    let mut wire = Vec::new();
    for i in 0..700u32 {
        p.client.writer().write_all(&[(i % 251) as u8]).unwrap();
        while p.client.wants_write() {
            p.client.write_tls(&mut wire).unwrap();
        }
    }
    p.server
        .received(&wire[..wire.len().min(READ_SIZE)])
        .unwrap();
    p.server.process(None, false).unwrap();
    let expected: Vec<u8> = (0..700u32).map(|i| (i % 251) as u8).collect();
    let got = p.server_reads();
    assert!(!got.is_empty() && expected.starts_with(&got));
    p.server
        .received(&wire[READ_SIZE.min(wire.len())..])
        .unwrap();
    p.server.process(None, false).unwrap();
    let mut all = got;
    all.extend(p.server_reads());
    assert_eq!(all, expected);
    assert!(holds_nothing(&p.server));
}
