//! The stateless part of the edge, run on the transport tasks: judge each message, answer
//! what needs no phone state (errors, OPTIONS, challenges, failed authentication), pass
//! requests for phones through the trust boundary ([`crate::dispatch::boundary`]) to delivery, and
//! hand authenticated REGISTERs to the phone's actor. Unknown users get exactly the
//! challenge and the 403 a known user with a wrong password gets, so users cannot be
//! enumerated.

pub(crate) mod boundary;
mod in_dialog;
mod outside;
mod register;
mod subscribe;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use dialtone_common::clock::unix_ms;
use dialtone_sip::{
    Message, StartLine, Verdict, digest::NonceCounts, header::Via, response::Source,
};
use parking_lot::{Mutex, RwLock};
use tracing::warn;

use dialtone_auth::bans::Bans;

use crate::delivery::{Origin, calls::Party};
use crate::{
    admission::{self, Permit},
    credentials::remote::RemoteCall,
    credentials::{CredentialCache, LineEntry},
    delivery::{Delivery, forwarding::Seen},
    dispatch::boundary::Sender,
    flow::{Answer, FlowSource, Flows, Peer, Replier, Transport},
    metrics::Stats,
    metrics::transactions::TxClock,
    registrar::directory::Directory,
    replies::{ALLOW, Listening, Replies, UNASSIGNED_REASON},
    settings::EdgeSettings,
    uac::Uac,
};

/// Who a request for a phone is addressed to.
enum Addressee {
    /// One of our lines, or the lines an extension rings (a site-assigned phone's, or each
    /// companion phone's of a user): delivered to their bindings, each branch retargeted
    /// to its line's SIP user.
    Lines(Vec<Arc<LineEntry>>),
    /// A REMOTE phone: called out through its site's route, or redirected to its address.
    Remote(RemoteCall),
}

/// What the dispatcher hands messages to, and what it answers with.
pub(crate) struct DispatcherParts {
    pub cache: Arc<RwLock<CredentialCache>>,
    pub directory: Arc<Directory>,
    pub delivery: Arc<Delivery>,
    pub flows: Arc<Flows>,
    pub uac: Arc<Uac>,
    pub stats: Arc<Stats>,
    pub settings: Arc<EdgeSettings>,
    pub replies: Arc<Replies>,
    /// Local address of each listener, for the Via and Contact of the edge's requests.
    pub local: Listening,
}

/// The dispatcher shared by every transport task: judges each message and hands it to the
/// wing that handles it.
pub(crate) struct Dispatcher {
    parts: DispatcherParts,
    pub(crate) bans: Bans,
    /// Caps on the stream connections open at once.
    pub(crate) admission: Arc<crate::admission::Admission>,
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
    /// The runtime deliveries of requests read from streams run on (a UDP loop's run on
    /// its own thread: [`Dispatcher::spawn_delivery`]).
    runtime: tokio::runtime::Handle,
}

impl std::ops::Deref for Dispatcher {
    type Target = DispatcherParts;

    fn deref(&self) -> &DispatcherParts {
        &self.parts
    }
}

type FlowKey = (Transport, SocketAddr);

/// Why authentication did not let a request through: the bytes to answer.
pub(crate) type Refusal = Vec<u8>;

impl Dispatcher {
    pub(crate) fn new(parts: DispatcherParts) -> Arc<Self> {
        Arc::new(Dispatcher {
            bans: Bans::new(parts.settings.bans),
            admission: crate::admission::Admission::new(parts.settings.connections),
            parts,
            ws_phones: Mutex::new(HashMap::new()),
            txn_keys: std::hash::RandomState::new(),
            seen_markers: Mutex::new(Seen::new(1 << 16)),
            proxy_nonces: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Who a request is for, by its Request-URI's user: one of our lines, else an extension
    /// of the calling line's site, else `{site code}{extension}` of another, else a REMOTE
    /// phone (lines win over a remote phone
    /// claiming the same user).
    fn addressee(&self, user: &str, dialled: &str, sender: &Sender) -> Option<Addressee> {
        let cache = self.cache.read();
        if let Some(line) = cache.lookup(user) {
            return Some(Addressee::Lines(vec![line]));
        }
        if let Sender::Line(caller) = sender {
            let mut lines = cache.extension_lines(&caller.phone_id, dialled);
            if lines.is_empty() {
                lines = cache.coded_extension_lines(dialled);
            }
            // A companion phone dialling its own user rings the user's other phones.
            if lines.len() > 1 {
                lines.retain(|l| l.phone_id != caller.phone_id);
            }
            if !lines.is_empty() {
                return Some(Addressee::Lines(lines));
            }
        }
        if let Sender::Line(caller) = sender
            && let Some(remote) = cache.remote_extension(&caller.phone_id, dialled)
        {
            return Some(Addressee::Remote(remote));
        }
        cache.remote.call(user).map(Addressee::Remote)
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
        let source = Some(FlowSource { transport: t, addr });
        for p in phones {
            self.directory.forget(&p, None, source);
        }
    }

    /// Handles one message.
    pub fn handle(&self, bytes: &[u8], peer: &Peer) {
        let arrived = std::time::Instant::now();
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
                if verdict == Verdict::Accept && !self.delivery.on_response(&m) {
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
        let reply = Answer::new(
            response_replier(top_via.as_ref(), peer),
            TxClock::start(&method, arrived),
        );
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
        // A request of a dialog the edge record-routed comes back along its Route: the
        // route's token admits it (a CANCEL finds its transaction by branch, as any does).
        if method != "CANCEL"
            && method != "REGISTER"
            && let Some(route) = crate::delivery::in_dialog::route_of(
                &m,
                &self.settings.nonce_key,
                peer.source(),
                |at| self.local.is_own(at),
            )
        {
            // What a phone asserts of its own identity does not pass within a dialog either;
            // a trusted peer's assertions do.
            let trusted = self.trusted_peer(peer).is_some();
            if trusted {
                self.proven(peer);
            }
            self.in_dialog(m, &method, route, src, reply, trusted);
            return;
        }
        // A request for a phone passes the trust boundary first: only an authenticated line
        // or another edge of the group may reach a phone, and whoever it is for, anyone else
        // gets the same answer (nothing tells a line from an unknown user).
        // The Request-URI parsed once here (the verdict checked it, and keeps no part of it),
        // and only for a method delivered to phones: a REGISTER's is the registrar's.
        if crate::delivery::delivered(&method)
            && let Some(user) = m.request_user()
        {
            if self.delivery.retransmission(&m, &src, &reply) {
                return;
            }
            let sender = match self.admit(&m, &method, peer, &src, now_ms) {
                Ok(s) => s,
                Err(bytes) => {
                    reply.send(bytes);
                    return;
                }
            };
            if matches!(sender, Sender::Peer(_)) {
                self.proven(peer);
            }
            // A line's requests are answered with its profile's SIP DSCP.
            let reply = match &sender {
                Sender::Line(line) => reply.marked(line.sip_dscp),
                _ => reply,
            };
            // What was dialled, and what the caller's site makes of it as an outside number
            // (a call from one of our lines): an emergency call is decided before anything
            // else, so no extension or line of the same number and no missing assignment
            // stands in its way.
            let dialled = outside::dialled(user);
            // A carrier's call reaches what its DID names, and nothing else: no other request
            // of a carrier goes to a phone (an OPTIONS is the edge's to answer).
            if let Sender::Peer(id) = &sender
                && self.cache.read().is_trunk_peer(id)
            {
                if &*method != "INVITE" {
                    let (code, extra) = match &*method {
                        "OPTIONS" => (200, vec![("Allow", ALLOW.to_owned())]),
                        _ => (
                            405,
                            vec![("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS".to_owned())],
                        ),
                    };
                    reply.send(self.responder().reply(&m, &src, code, "", extra));
                    return;
                }
                let to_user = m.addressing().ok().and_then(|a| a.to.user);
                let to_number = to_user.map(outside::dialled);
                let lines = self
                    .cache
                    .read()
                    .did_lines(id, &dialled, to_number.as_deref());
                if lines.is_empty() {
                    reply.send(self.responder().reply(&m, &src, 404, "", vec![]));
                    return;
                }
                self.deliver(m, src, peer, reply, lines, &sender);
                return;
            }
            let outside = match &sender {
                Sender::Line(caller) if method == "INVITE" => {
                    Some(self.outside_decision(caller, &dialled))
                }
                _ => None,
            };
            if let (Some(d), Sender::Line(caller)) = (&outside, &sender)
                && outside::is_emergency(d)
            {
                self.outside_call(m, caller, d, src, peer, reply);
                return;
            }
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
            let lines = match self.addressee(user, &dialled, &sender) {
                Some(Addressee::Lines(lines)) => lines,
                Some(Addressee::Remote(remote)) => {
                    // A REMOTE phone: config only. A call from one of our lines goes out
                    // through its site's route when its address is a number the site
                    // routes; anything else is redirected to its address.
                    if let (Sender::Line(caller), Some(number), "INVITE") =
                        (&sender, &remote.number, &*method)
                        && let Some(plan) =
                            self.cache
                                .read()
                                .remote_plan(&remote.site, number, &caller.phone_id)
                    {
                        self.call_out(m, number.clone(), plan, src, peer, reply);
                        return;
                    }
                    let extra = vec![("Contact", format!("<{}>", remote.target))];
                    reply.send(self.responder().reply(&m, &src, 302, "", extra));
                    return;
                }
                None => {
                    match (outside, &sender) {
                        // A call for no one of ours: a number outside.
                        (Some(decision), Sender::Line(caller)) => {
                            self.outside_call(m, caller, &decision, src, peer, reply)
                        }
                        _ => {
                            reply.send(self.responder().reply(&m, &src, 404, "", vec![]));
                        }
                    }
                    return;
                }
            };
            if let [line] = lines.as_slice() {
                span.record("phone.id", &*line.phone_id);
            }
            self.deliver(m, src, peer, reply, lines, &sender);
            return;
        }
        match &*method {
            "CANCEL" => {
                if !self.delivery.cancel(&m, &src, &reply) {
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
            // A request of a dialog the edge did not route (or whose route is not this
            // call's): no such dialog here.
            _ if m.addressing().is_ok_and(|a| a.to.tag.is_some()) => {
                reply.send(self.responder().reply(&m, &src, 481, "", vec![]));
            }
            _ => {
                let extra = vec![("Allow", ALLOW.to_owned())];
                reply.send(self.responder().reply(&m, &src, 405, "", extra));
            }
        }
    }

    /// Delivers `m` to `lines`, if delivery admission lets `sender` have one more.
    fn deliver(
        &self,
        m: Message,
        src: Source,
        peer: &Peer,
        reply: Answer,
        lines: Vec<Arc<LineEntry>>,
        sender: &Sender,
    ) {
        let admission = &self.delivery.admission;
        let admitted = match sender {
            Sender::Edge | Sender::Peer(_) => admission.admit_trusted(),
            Sender::Line(_) => admission.admit(src.ip),
        };
        let Some(permit) = self.permit(admitted, &m, &src, &reply) else {
            return;
        };
        let delivery = self.delivery.clone();
        // The call counts under the caller's site, or for a call in from a carrier the
        // callee's; another edge that handed it over counts it itself.
        let site = match sender {
            Sender::Line(caller) => self.cache.read().site_of(&caller.phone_id),
            Sender::Peer(_) => lines
                .first()
                .and_then(|l| self.cache.read().site_of(&l.phone_id)),
            Sender::Edge => None,
        };
        let caller = match sender {
            Sender::Line(c) => Party::Phone(c.phone_id.clone()),
            Sender::Peer(id) => Party::Peer(id.as_str().into()),
            Sender::Edge => Party::Edge,
        };
        let origin = Origin {
            inbound: peer.source(),
            site,
            caller,
        };
        self.spawn_delivery(delivery.deliver(m, src, origin, reply, lines, permit));
    }

    /// A connection has proved itself (a phone's REGISTER over it was authenticated, or a
    /// trusted peer such as a carrier sent over it): it stays open as long as a
    /// registration lasts.
    pub(super) fn proven(&self, peer: &Peer) {
        if let Some(c) = peer.control() {
            let _ = c.idle_s.compare_exchange(
                crate::flow::NOT_AUTHENTICATED,
                self.stream_idle().as_secs(),
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// Runs a delivery: on this thread when it is a UDP receive loop's (an actor thread),
    /// else on the runtime. A call's messages then mostly stay on the thread that read
    /// them: the delivery's sends join the thread's batch of datagrams, and the answers
    /// this thread reads wake it without crossing threads (a wake-up of another thread, a
    /// futex call on each side, cost more than the work of a message).
    fn spawn_delivery(&self, delivery: impl Future<Output = ()> + Send + 'static) {
        if crate::flow::udp_out::in_loop() {
            tokio::task::spawn_local(delivery);
        } else {
            self.runtime.spawn(delivery);
        }
    }

    /// The permit delivery admission gave, or none after answering 503 (deliveries at
    /// their cap, in all or for this source).
    fn permit(
        &self,
        admitted: Result<Permit, admission::Refused>,
        m: &Message,
        src: &Source,
        reply: &Answer,
    ) -> Option<Permit> {
        match admitted {
            Ok(p) => Some(p),
            Err(why) => {
                warn!(source = %src.ip, ?why, "deliveries at their cap");
                let extra = vec![("Retry-After", "5".to_owned())];
                reply.send(self.responder().reply(m, src, 503, "", extra));
                None
            }
        }
    }

    pub(crate) fn responder(&self) -> &crate::replies::Responder {
        &self.replies.responder
    }
}

/// Where a response goes: over a stream, back on the connection; over UDP, to the source
/// address when the Via asks for rport (RFC 3581) or names no other port, else to the
/// source IP and the Via's port (RFC 3261 §18.2.2).
fn response_replier(top_via: Option<&Via>, peer: &Peer) -> Replier {
    if let (Replier::Udp { socket, to, dscp }, Some(v)) = (&peer.replier, top_via) {
        let rport = v.params.has("rport");
        if let (false, Some(port)) = (rport, v.port) {
            return Replier::Udp {
                socket: socket.clone(),
                to: SocketAddr::new(to.ip(), port),
                dscp: *dscp,
            };
        }
    }
    peer.replier.clone()
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
pub(crate) mod tests;

#[cfg(test)]
mod reason_tests {
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
}
