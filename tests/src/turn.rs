//! A TURN client (RFC 8656 over UDP, long-term credentials) as small as the tests need: it
//! allocates a relay on a real coturn, permits a peer, sends through the relay with Send
//! indications and reads what comes back in Data indications. The tests use it to do what
//! a browser holding a TURN credential could do.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

const MAGIC: u32 = 0x2112_A442;
const ALLOCATE: u16 = 0x0003;
const CREATE_PERMISSION: u16 = 0x0008;
const SEND_INDICATION: u16 = 0x0016;
const DATA_INDICATION: u16 = 0x0017;
const SUCCESS: u16 = 0x0100;
const ERROR: u16 = 0x0110;

const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const XOR_PEER_ADDRESS: u16 = 0x0012;
const DATA: u16 = 0x0013;
const REALM: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const XOR_RELAYED_ADDRESS: u16 = 0x0016;
const REQUESTED_TRANSPORT: u16 = 0x0019;

/// A STUN message: its type, transaction id and attributes.
struct Message {
    kind: u16,
    txid: [u8; 12],
    attrs: Vec<(u16, Vec<u8>)>,
}

impl Message {
    fn new(kind: u16) -> Self {
        Message {
            kind,
            txid: rand::random(),
            attrs: Vec::new(),
        }
    }

    fn attr(mut self, kind: u16, value: Vec<u8>) -> Self {
        self.attrs.push((kind, value));
        self
    }

    fn get(&self, kind: u16) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }

    /// The bytes, with MESSAGE-INTEGRITY under `key` last when there is one.
    fn encode(&self, key: Option<&[u8]>) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in &self.attrs {
            put_attr(&mut body, *kind, value);
        }
        let integrity_len = if key.is_some() { 24 } else { 0 };
        let mut out = Vec::with_capacity(20 + body.len() + integrity_len);
        out.extend_from_slice(&self.kind.to_be_bytes());
        out.extend_from_slice(&((body.len() + integrity_len) as u16).to_be_bytes());
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&self.txid);
        out.extend_from_slice(&body);
        if let Some(key) = key {
            // RFC 8489 §14.5: the HMAC covers the message up to the attribute, with the
            // length already counting it.
            let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("hmac takes any key");
            mac.update(&out);
            put_attr(&mut out, MESSAGE_INTEGRITY, &mac.finalize().into_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 20 || u32::from_be_bytes(bytes[4..8].try_into().ok()?) != MAGIC {
            return None;
        }
        let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
        let len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
        let body = bytes.get(20..20 + len)?;
        let mut attrs = Vec::new();
        let mut at = 0;
        while at + 4 <= body.len() {
            let k = u16::from_be_bytes([body[at], body[at + 1]]);
            let l = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
            attrs.push((k, body.get(at + 4..at + 4 + l)?.to_vec()));
            at += 4 + l.div_ceil(4) * 4;
        }
        Some(Message {
            kind,
            txid: bytes[8..20].try_into().ok()?,
            attrs,
        })
    }
}

fn put_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (4 - value.len() % 4) % 4, 0);
}

fn xor_address(addr: SocketAddr) -> Vec<u8> {
    let IpAddr::V4(ip) = addr.ip() else {
        panic!("the TURN client speaks IPv4 only")
    };
    let mut v = vec![0, 1];
    v.extend_from_slice(&(addr.port() ^ (MAGIC >> 16) as u16).to_be_bytes());
    v.extend_from_slice(&(u32::from(ip) ^ MAGIC).to_be_bytes());
    v
}

fn read_xor_address(v: &[u8]) -> Option<SocketAddr> {
    (v.len() == 8 && v[1] == 1).then(|| {
        let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
        let ip = u32::from_be_bytes(v[4..8].try_into().expect("4 bytes")) ^ MAGIC;
        SocketAddr::new(IpAddr::V4(ip.into()), port)
    })
}

/// A relay allocated on a TURN server, kept for its lifetime (10 minutes).
pub struct TurnRelay {
    socket: UdpSocket,
    server: SocketAddr,
    /// The relayed transport address the server gave.
    pub relayed: SocketAddr,
    username: String,
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: Vec<u8>,
}

impl TurnRelay {
    /// Allocates a UDP relay on `server` through `socket` with the long-term credential
    /// `(username, password)`.
    pub fn allocate(
        socket: UdpSocket,
        server: SocketAddr,
        (username, password): (&str, &str),
    ) -> anyhow::Result<Self> {
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let transport = vec![17, 0, 0, 0];
        let first = Message::new(ALLOCATE).attr(REQUESTED_TRANSPORT, transport.clone());
        let challenge = transact(&socket, server, &first.encode(None), first.txid)?;
        ensure!(
            challenge.kind == ALLOCATE | ERROR && error_code(&challenge) == Some(401),
            "expected a 401 challenge to the first Allocate"
        );
        let realm = challenge.get(REALM).context("no REALM")?.to_vec();
        let nonce = challenge.get(NONCE).context("no NONCE")?.to_vec();
        let key =
            Md5::digest([username.as_bytes(), b":", &realm, b":", password.as_bytes()].concat())
                .to_vec();
        let mut relay = TurnRelay {
            socket,
            server,
            relayed: server,
            username: username.into(),
            realm,
            nonce,
            key,
        };
        let answer = relay.authenticated(
            Message::new(ALLOCATE).attr(REQUESTED_TRANSPORT, transport),
            ALLOCATE,
        )?;
        relay.relayed = answer
            .get(XOR_RELAYED_ADDRESS)
            .and_then(read_xor_address)
            .context("no XOR-RELAYED-ADDRESS")?;
        Ok(relay)
    }

    /// Lets `peer` be sent to (and heard from) through the relay.
    pub fn permit(&self, peer: SocketAddr) -> anyhow::Result<()> {
        self.authenticated(
            Message::new(CREATE_PERMISSION).attr(XOR_PEER_ADDRESS, xor_address(peer)),
            CREATE_PERMISSION,
        )
        .map(drop)
    }

    /// Sends `data` to `peer` through the relay (a Send indication).
    pub fn send(&self, peer: SocketAddr, data: &[u8]) -> anyhow::Result<()> {
        let m = Message::new(SEND_INDICATION)
            .attr(XOR_PEER_ADDRESS, xor_address(peer))
            .attr(DATA, data.to_vec());
        self.socket.send_to(&m.encode(None), self.server)?;
        Ok(())
    }

    /// The first datagram relayed back from `peer` within `wait`, if any.
    pub fn receive_from(&self, peer: SocketAddr, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let Ok((n, _)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let Some(m) = Message::decode(&buf[..n]) else {
                continue;
            };
            if m.kind == DATA_INDICATION
                && m.get(XOR_PEER_ADDRESS).and_then(read_xor_address) == Some(peer)
            {
                return m.get(DATA).map(<[u8]>::to_vec);
            }
        }
        None
    }

    /// Sends `m` with the credential and returns the success answer to `method`.
    fn authenticated(&self, m: Message, method: u16) -> anyhow::Result<Message> {
        let m = m
            .attr(USERNAME, self.username.as_bytes().to_vec())
            .attr(REALM, self.realm.clone())
            .attr(NONCE, self.nonce.clone());
        let answer = transact(
            &self.socket,
            self.server,
            &m.encode(Some(&self.key)),
            m.txid,
        )?;
        if answer.kind != method | SUCCESS {
            bail!(
                "TURN method {method:#06x} refused with {:?}",
                error_code(&answer)
            );
        }
        Ok(answer)
    }
}

/// Sends `bytes` (retransmitted every 200 ms, 3 s in all) and returns the answer to `txid`.
fn transact(
    socket: &UdpSocket,
    server: SocketAddr,
    bytes: &[u8],
    txid: [u8; 12],
) -> anyhow::Result<Message> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket.send_to(bytes, server)?;
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && let Some(m) = Message::decode(&buf[..n])
            && m.txid == txid
        {
            return Ok(m);
        }
    }
    bail!("no answer from the TURN server {server}")
}

fn error_code(m: &Message) -> Option<u16> {
    m.get(ERROR_CODE)
        .filter(|v| v.len() >= 4)
        .map(|v| u16::from(v[2]) * 100 + u16::from(v[3]))
}
