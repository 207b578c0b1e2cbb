//! The stateless part of the edge, run on the transport tasks: judge each message, answer
//! what needs no phone state (errors, OPTIONS, challenges, failed authentication), pass
//! requests for phones through the trust boundary ([`crate::boundary`]) to delivery, and
//! hand authenticated REGISTERs to the phone's actor. Unknown users get exactly the
//! challenge and the 403 a known user with a wrong password gets, so users cannot be
//! enumerated.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, Hasher},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use dialtone_sip::{
    Message, StartLine, Verdict,
    digest::NonceCounts,
    header::{Via, parse_name_addr},
    response::Source,
};
use parking_lot::{Mutex, RwLock};
use tracing::warn;

use dialtone_auth::bans::Bans;

use crate::{
    boundary::{Sender, request_user},
    credentials::{CredentialCache, LineEntry},
    directory::Directory,
    forwarding::Seen,
    metrics::{Reason, Stats},
    phone::{Forget, Register, RegisterJob},
    replies::{ALLOW, ChallengeKind, Local, OutRequest, UNASSIGNED_REASON, new_branch},
    settings::EdgeSettings,
    transport::{Flows, Peer, Replier, Transport},
    uac::Uac,
    unix_ms,
};

/// Who a request for a phone is addressed to.
enum Addressee {
    /// One of our lines: delivered to its bindings.
    Line(Arc<LineEntry>),
    /// A REMOTE phone: redirected to this address.
    Remote(String),
}

/// The handler shared by every transport task.
pub struct Handler {
    pub(crate) cache: Arc<RwLock<CredentialCache>>,
    pub(crate) directory: Arc<Directory>,
    pub(crate) flows: Arc<Flows>,
    pub(crate) uac: Arc<Uac>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) settings: Arc<EdgeSettings>,
    pub(crate) bans: Bans,
    /// Caps on the stream connections open at once.
    pub(crate) admission: Arc<crate::transport::admission::Admission>,
    /// Local address of each listener, for the Via and Contact of the edge's requests.
    pub(crate) local: HashMap<Transport, SocketAddr>,
    /// Phones registered over each connection-bound flow (WS/WSS), to drop their bindings
    /// when it closes.
    ws_phones: Mutex<HashMap<FlowKey, Vec<Arc<str>>>>,
    /// Random keys of the transaction hash, so no one can craft two requests that collide
    /// (one would be taken for a retransmission of the other).
    txn_keys: std::hash::RandomState,
    /// Forwarding markers used recently (each is good for one request).
    pub(crate) seen_markers: Mutex<Seen>,
    /// Nonce counts of the lines' proxy authentications (each count is good once).
    pub(crate) proxy_nonces: Mutex<HashMap<Arc<str>, NonceCounts>>,
    /// Requests being delivered to phones.
    pub(crate) deliveries: crate::delivery::Deliveries,
    /// The store (where other edges' bindings are found); none in unit tests.
    pub(crate) store: Option<dialtone_store::Store>,
    /// The runtime deliveries run on (the UDP transport calls from actix arbiters).
    runtime: tokio::runtime::Handle,
    /// This handler, for the tasks it spawns.
    me: std::sync::OnceLock<std::sync::Weak<Handler>>,
}

type FlowKey = (Transport, SocketAddr);

/// Why authentication did not let a request through: the bytes to answer.
pub(crate) type Refusal = Vec<u8>;

impl Handler {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cache: Arc<RwLock<CredentialCache>>,
        directory: Arc<Directory>,
        flows: Arc<Flows>,
        uac: Arc<Uac>,
        stats: Arc<Stats>,
        settings: Arc<EdgeSettings>,
        local: HashMap<Transport, SocketAddr>,
        store: Option<dialtone_store::Store>,
    ) -> Arc<Self> {
        let h = Arc::new(Handler {
            bans: Bans::new(settings.bans),
            admission: crate::transport::admission::Admission::new(settings.connections),
            cache,
            directory,
            flows,
            uac,
            stats,
            settings,
            local,
            ws_phones: Mutex::new(HashMap::new()),
            txn_keys: std::hash::RandomState::new(),
            seen_markers: Mutex::new(Seen::new(1 << 16)),
            proxy_nonces: Mutex::new(HashMap::new()),
            deliveries: crate::delivery::Deliveries::default(),
            store,
            runtime: tokio::runtime::Handle::current(),
            me: std::sync::OnceLock::new(),
        });
        let _ = h.me.set(Arc::downgrade(&h));
        h
    }

    /// Who a request is for, by its Request-URI's user: one of our lines, else a REMOTE
    /// phone (lines win over a remote phone claiming the same user).
    fn addressee(&self, m: &Message) -> Option<Addressee> {
        let StartLine::Request { uri, .. } = &m.start else {
            return None;
        };
        let u = dialtone_sip::uri::parse(uri).ok()?;
        let user = u.user?;
        let cache = self.cache.read();
        if let Some(line) = cache.lookup(user) {
            return Some(Addressee::Line(line));
        }
        cache
            .remote
            .target(user)
            .map(|t| Addressee::Remote(t.to_owned()))
    }

    pub fn flows(&self) -> &Arc<Flows> {
        &self.flows
    }

    pub fn max_message_bytes(&self) -> usize {
        self.settings.max_message_bytes
    }

    /// How long an idle stream stays open: a little longer than the longest registration.
    pub fn stream_idle(&self) -> Duration {
        Duration::from_secs(u64::from(self.settings.max_expires) + 60)
    }

    /// A connection closed: bindings that only lived on it (WS/WSS) go with it.
    pub fn flow_closed(&self, t: Transport, addr: SocketAddr) {
        if !t.connection_bound() {
            return;
        }
        let Some(phones) = self.ws_phones.lock().remove(&(t, addr)) else {
            return;
        };
        let source = format!("{}:{addr}", t.name());
        for p in phones {
            self.directory.tell(
                &p,
                Forget {
                    lines: None,
                    source: Some(source.clone()),
                },
            );
        }
    }

    /// Handles one message.
    pub fn handle(&self, bytes: &[u8], peer: &Peer) {
        let now_ms = unix_ms();
        if self.bans.source_banned(peer.addr.ip(), now_ms) {
            return;
        }
        let (msg, verdict) = dialtone_sip::judge(bytes);
        let Some(m) = msg else {
            // Too broken to answer (no Via to answer along): drop.
            self.stats.malformed();
            return;
        };
        let method = match &m.start {
            StartLine::Response { .. } => {
                if verdict == Verdict::Accept && !self.deliveries.on_response(&m) {
                    self.uac.on_response(&m);
                }
                return;
            }
            StartLine::Request { method, .. } => method.clone(),
        };
        self.stats.request(&method);
        // One span per SIP transaction. At debug level: without trace export (whose layer
        // enables it) the callsite is disabled and costs next to nothing.
        let span = tracing::debug_span!(
            "sip",
            otel.name = %method,
            otel.kind = "server",
            sip.method = %method,
            network.transport = peer.transport.name(),
            edge = %self.settings.node_id,
            phone.id = tracing::field::Empty,
        );
        let _in_span = span.enter();
        let src = Source::from(peer.addr);
        let top_via = m.top_via();
        let reply = response_replier(top_via.as_ref(), peer);
        match verdict {
            Verdict::Accept => {}
            Verdict::Drop { .. } => return,
            Verdict::Reject { code, reason } => {
                self.stats.malformed();
                if method != "ACK" {
                    let reason = sanitize_reason(&reason);
                    reply.send(self.responder().reply(&m, &src, code, &reason, vec![]));
                }
                return;
            }
        }
        // A request for a phone passes the trust boundary first: only an authenticated line
        // or another edge of the group may reach a phone, and whoever it is for, anyone else
        // gets the same answer (nothing tells a line from an unknown user).
        if crate::delivery::delivered(&method) && request_user(&m).is_some() {
            if self.delivery_retransmission(&m, &src, &reply) {
                return;
            }
            let sender = match self.admit(&m, &method, peer, &src, now_ms) {
                Ok(s) => s,
                Err(bytes) => {
                    reply.send(bytes);
                    return;
                }
            };
            // Calls and messages from an unassigned phone are refused, whatever they are for
            // (an edge handing one over has checked already).
            if matches!(&*method, "INVITE" | "MESSAGE")
                && matches!(&sender, Sender::Line(l) if l.unassigned)
            {
                reply.send(
                    self.responder()
                        .reply(&m, &src, 403, UNASSIGNED_REASON, vec![]),
                );
                return;
            }
            match self.addressee(&m) {
                Some(Addressee::Line(line)) => {
                    let admission = &self.deliveries.admission;
                    let admitted = match &sender {
                        Sender::Edge | Sender::Peer => admission.admit_trusted(),
                        Sender::Line(_) => admission.admit(src.ip),
                    };
                    let permit = match admitted {
                        Ok(p) => p,
                        Err(why) => {
                            warn!(source = %src.ip, ?why, "deliveries at their cap");
                            let extra = vec![("Retry-After", "5".to_owned())];
                            reply.send(self.responder().reply(&m, &src, 503, "", extra));
                            return;
                        }
                    };
                    if let Some(me) = self.me.get().and_then(std::sync::Weak::upgrade) {
                        span.record("phone.id", &*line.phone_id);
                        self.runtime.spawn(me.deliver(m, src, reply, line, permit));
                    }
                }
                Some(Addressee::Remote(target)) => {
                    // A REMOTE phone: config only, reached at its remote address.
                    let extra = vec![("Contact", format!("<{target}>"))];
                    reply.send(self.responder().reply(&m, &src, 302, "", extra));
                }
                None => {
                    reply.send(self.responder().reply(&m, &src, 404, "", vec![]));
                }
            }
            return;
        }
        match &*method {
            "CANCEL" => {
                if !self.cancel_delivery(&m, &src, &reply) {
                    reply.send(self.responder().reply(&m, &src, 481, "", vec![]));
                }
            }
            "REGISTER" => self.register(m, peer, src, reply, now_ms),
            "OPTIONS" => {
                let extra = vec![
                    ("Allow", ALLOW.to_owned()),
                    ("Accept", "application/sdp".to_owned()),
                    ("Supported", "path, outbound".to_owned()),
                ];
                reply.send(self.responder().reply(&m, &src, 200, "", extra));
            }
            "SUBSCRIBE" => self.subscribe(m, peer, src, reply, now_ms),
            "ACK" => {}
            _ => {
                let extra = vec![("Allow", ALLOW.to_owned())];
                reply.send(self.responder().reply(&m, &src, 405, "", extra));
            }
        }
    }

    /// The edge's own listener of a transport.
    pub(crate) fn local(&self, transport: Transport) -> Option<Local> {
        let addr = *self.local.get(&transport)?;
        Some(Local { transport, addr })
    }

    pub(crate) fn responder(&self) -> &crate::replies::Responder {
        &self.directory.shared().responder
    }

    fn register(&self, m: Message, peer: &Peer, src: Source, reply: Replier, now_ms: u64) {
        let to = parse_name_addr(m.get("to").unwrap_or("")).ok();
        let user = match to.as_ref().map(|a| (&a.uri, a.uri.user)) {
            Some((uri, Some(u))) if uri.is_sip() => u,
            _ => {
                self.stats.rejected(Reason::UnknownDomain);
                reply.send(self.responder().reply(
                    &m,
                    &src,
                    404,
                    "Not a SIP address-of-record",
                    vec![],
                ));
                return;
            }
        };
        let (entry, nonce, nc) = match self.authenticate(
            &m,
            "REGISTER",
            user,
            peer,
            &src,
            now_ms,
            ChallengeKind::Registrar,
        ) {
            Ok(x) => x,
            Err(bytes) => {
                reply.send(bytes);
                return;
            }
        };
        // The flow proved itself: it may stay open as long as a registration lasts.
        if let Some(idle) = &peer.idle {
            let _ = idle.compare_exchange(
                crate::transport::NOT_AUTHENTICATED,
                self.stream_idle().as_secs(),
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        // Only what reaches the phone's actor needs its transaction recognised.
        let txn = transaction_key(&self.txn_keys, &m, m.top_via().as_ref(), peer.addr);
        if peer.transport.connection_bound() {
            let mut map = self.ws_phones.lock();
            let list = map.entry((peer.transport, peer.addr)).or_default();
            if !list.contains(&entry.phone_id) {
                list.push(entry.phone_id.clone());
            }
        }
        let phone_id = entry.phone_id.clone();
        tracing::Span::current().record("phone.id", &*phone_id);
        self.directory.tell_or_start(
            &phone_id,
            Register(Box::new(RegisterJob {
                entry,
                msg: m,
                source: peer.source(),
                nonce,
                nc,
                txn,
                src,
                reply,
                transport: peer.transport,
                idle: peer.idle.clone(),
            })),
        );
    }

    /// SUBSCRIBE: only `message-summary` (MWI) for an authenticated line with MWI on; the
    /// 200 is followed by a NOTIFY of the current state (no voicemail behind the edge yet:
    /// no messages waiting).
    fn subscribe(&self, m: Message, peer: &Peer, src: Source, reply: Replier, now_ms: u64) {
        let event = m
            .get("event")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if !event.eq_ignore_ascii_case("message-summary") {
            let extra = vec![("Allow-Events", "message-summary".to_owned())];
            reply.send(self.responder().reply(&m, &src, 489, "", extra));
            return;
        }
        let from = parse_name_addr(m.get("from").unwrap_or("")).ok();
        let Some(user) = from.as_ref().and_then(|a| a.uri.user) else {
            reply.send(self.responder().reply(&m, &src, 404, "", vec![]));
            return;
        };
        let entry = match self.authenticate(
            &m,
            "SUBSCRIBE",
            user,
            peer,
            &src,
            now_ms,
            ChallengeKind::Registrar,
        ) {
            Ok((e, _, _)) => e,
            Err(bytes) => {
                reply.send(bytes);
                return;
            }
        };
        if !entry.mwi {
            let extra = vec![("Allow-Events", "check-sync".to_owned())];
            reply.send(
                self.responder()
                    .reply(&m, &src, 489, "MWI is off for this phone", extra),
            );
            return;
        }
        let expires = m
            .get("expires")
            .and_then(|e| e.trim().parse::<u32>().ok())
            .unwrap_or(3600)
            .min(self.settings.max_expires);
        let local = self.local(peer.transport);
        let contact = local.map_or_else(String::new, |l| l.contact(None));
        let extra = vec![
            ("Expires", expires.to_string()),
            ("Contact", contact.clone()),
        ];
        reply.send(self.responder().reply(&m, &src, 200, "", extra));
        let Some(target) = m
            .get("contact")
            .and_then(|c| parse_name_addr(c).ok())
            .map(|a| a.uri_text)
        else {
            return;
        };
        let Some(local) = local else { return };
        let to_tag = &self.responder().to_tag;
        let from_hdr = format!("{};tag={to_tag}", m.get("to").unwrap_or(""));
        let state = if expires == 0 {
            "terminated;reason=timeout".to_owned()
        } else {
            format!("active;expires={expires}")
        };
        let body = format!(
            "Messages-Waiting: no\r\nMessage-Account: sip:{user}@{}\r\n",
            self.settings.realm
        );
        let via = local.via();
        let branch = new_branch();
        let notify = OutRequest {
            method: "NOTIFY",
            uri: target,
            via: &via,
            branch: &branch,
            from: &from_hdr,
            to: m.get("from").unwrap_or(""),
            call_id: m.get("call-id").unwrap_or(""),
            cseq: 1,
            extra: vec![
                ("Event", "message-summary".into()),
                ("Subscription-State", state),
                ("Contact", contact),
                ("Content-Type", "application/simple-message-summary".into()),
            ],
            body: body.as_bytes(),
        };
        reply.send(notify.to_bytes());
    }
}

/// Where a response goes: over a stream, back on the connection; over UDP, to the source
/// address when the Via asks for rport (RFC 3581) or names no other port, else to the
/// source IP and the Via's port (RFC 3261 §18.2.2).
fn response_replier(top_via: Option<&Via>, peer: &Peer) -> Replier {
    if let (Replier::Udp { socket, to }, Some(v)) = (&peer.replier, top_via) {
        let rport = v.params.has("rport");
        if let (false, Some(port)) = (rport, v.port) {
            return Replier::Udp {
                socket: socket.clone(),
                to: SocketAddr::new(to.ip(), port),
            };
        }
    }
    peer.replier.clone()
}

/// Identifies a server transaction: top Via branch, source and method (RFC 3261 §17.2.3).
fn transaction_key(
    keys: &std::hash::RandomState,
    m: &Message,
    top_via: Option<&Via>,
    from: SocketAddr,
) -> u64 {
    let mut h = keys.build_hasher();
    top_via.and_then(|v| v.param("branch")).hash(&mut h);
    from.hash(&mut h);
    m.get("call-id").hash(&mut h);
    m.get("cseq").hash(&mut h);
    h.finish()
}

/// A reason phrase must not break the status line.
fn sanitize_reason(r: &str) -> String {
    let s: String = r
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect();
    let mut out = String::with_capacity(s.len());
    let mut first = true;
    for w in s.split_whitespace() {
        if !first {
            out.push(' ');
        }
        first = false;
        if let Some(c) = w.chars().next().filter(|_| out.is_empty()) {
            out.extend(c.to_uppercase());
            out.push_str(&w[c.len_utf8()..]);
        } else {
            out.push_str(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_stay_on_one_line() {
        let cases = [
            ("missing via", "Missing via"),
            ("bad\r\nInjected: x", "Bad Injected: x"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize_reason(input), want);
        }
    }

    #[test]
    fn transactions_are_told_apart() {
        let msg = |branch: &str, cseq: u32| {
            dialtone_sip::parse(format!("REGISTER sip:e SIP/2.0\r\nVia: SIP/2.0/UDP h;branch={branch}\r\nFrom: <sip:u@e>;tag=1\r\nTo: <sip:u@e>\r\nCall-ID: c\r\nCSeq: {cseq} REGISTER\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap()
        };
        let a: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        let keys = std::hash::RandomState::new();
        let key = |m: Message, from| transaction_key(&keys, &m, m.top_via().as_ref(), from);
        let k = key(msg("z9hG4bK1", 1), a);
        assert_eq!(k, key(msg("z9hG4bK1", 1), a));
        assert_ne!(k, key(msg("z9hG4bK2", 1), a));
        assert_ne!(k, key(msg("z9hG4bK1", 2), a));
        assert_ne!(k, key(msg("z9hG4bK1", 1), b));
    }
}
