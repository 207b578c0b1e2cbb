//! Delivery of requests to registered phones: an INVITE, MESSAGE, NOTIFY or OPTIONS for a
//! line's SIP user that reaches any edge goes to ONE live binding of that line: the one on
//! the phone's primary edge if it lives, else the secondary's, else the freshest elsewhere.
//! When that binding is on another edge, the request goes there (marked, so that edge
//! delivers it over its own flow and never forwards again): TCP, TLS and WS flows can only
//! be used by the edge that holds them.
//!
//! The edge proxies statefully (RFC 3261 §16) and record-routes every INVITE, so the
//! dialog's later requests come back through it ([`in_dialog`]): its Via on top,
//! provisional and final responses relayed back, retransmissions of the upstream request
//! absorbed and answered with the last response, CANCEL passed on, non-2xx finals to an
//! INVITE acknowledged hop by hop. No answer at all gives 408; ringing without an answer
//! past the INVITE timeout is cancelled and gives 480; no live binding gives 480.
//!
//! The pure message rewriting lives in `dialtone_sip::proxy`.

pub(crate) mod calls;
pub(crate) mod forwarding;
pub(crate) mod in_dialog;

use forwarding::{FORWARDED, FORWARDED_CANONICAL, Marked};

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU16, Ordering::Relaxed},
    },
    time::Duration,
};

use dialtone_common::clock::unix_ms;
use dialtone_domain::keys;
use dialtone_metrics::Counters;
use dialtone_proto::{config::v1::Member, edge::v1::Binding};
use dialtone_sip::{
    Message, StartLine,
    proxy::{ForwardError, Routing, ack_for, cancel_for, forward_response, forward_routed},
    response::Source,
};
use dialtone_store::Store;
use parking_lot::{Mutex, RwLock};
use prost::Message as _;
use tokio::sync::mpsc;
use tracing::debug;

use crate::{
    admission::{Admission, Permit, SourceLimits},
    credentials::CredentialCache,
    credentials::LineEntry,
    flow::{FlowSource, Flows, Replier, Transport},
    registrar::{directory::Directory, phone::Contacts},
    replies::{Listening, Replies, new_branch},
    settings::EdgeSettings,
};

/// Methods delivered to phones.
pub fn delivered(method: &str) -> bool {
    matches!(
        method,
        "INVITE" | "MESSAGE" | "NOTIFY" | "OPTIONS" | "INFO" | "UPDATE" | "REFER"
    )
}

/// One upstream request being delivered (keyed by its top Via branch).
struct Txn {
    /// Where the request came from, and its Call-ID and CSeq: a CANCEL must match all
    /// three, not the branch alone (which the callee sees).
    origin: (Source, String, String),
    /// The last response sent upstream (answers a retransmission).
    last: Mutex<Option<Vec<u8>>>,
    /// The request as forwarded and where it went (for CANCEL).
    downstream: Mutex<Option<(Message, Replier)>>,
    /// The status code of the final answer sent upstream (0 until there is one).
    final_code: AtomicU16,
}

impl Txn {
    /// Keeps `bytes`, a final answer with `code`, to answer retransmissions.
    fn finished(&self, code: u16, bytes: Vec<u8>) {
        *self.last.lock() = Some(bytes);
        self.final_code.store(code, Relaxed);
    }
}

/// A request's Call-ID and CSeq number (a CANCEL's CSeq method differs).
fn call_and_number(m: &Message) -> (String, String) {
    let number = m
        .get("cseq")
        .and_then(|c| c.split_whitespace().next())
        .unwrap_or("");
    (m.get("call-id").unwrap_or("").to_owned(), number.to_owned())
}

/// Requests being delivered (or kept to answer retransmissions) at once, in all and per
/// source: past them a request for a phone gets 503 with Retry-After.
pub const DELIVERY_LIMITS: SourceLimits = SourceLimits {
    total: 20_000,
    per_source: 500,
};

/// What delivery works with, from the floors below it.
pub(crate) struct DeliveryParts {
    pub cache: Arc<RwLock<CredentialCache>>,
    pub directory: Arc<Directory>,
    pub flows: Arc<Flows>,
    pub settings: Arc<EdgeSettings>,
    pub replies: Arc<Replies>,
    /// Local address of each listener, for the Via of forwarded requests.
    pub local: Listening,
    /// The store (where other edges' bindings are found); none in unit tests.
    pub store: Option<Store>,
}

/// The delivery service: deliveries under way, their counts, and what it needs to find a
/// phone's bindings here or on another edge.
pub(crate) struct Delivery {
    /// Caps on the transactions held at once.
    pub(crate) admission: Arc<Admission>,
    txns: Mutex<HashMap<String, Arc<Txn>>>,
    /// Our branch → the responses of the request we forwarded.
    clients: Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>,
    /// By [`Outcome`], in its order.
    counts: Counters<6>,
    /// Calls up and how INVITEs ended, for metrics.
    pub(crate) calls: calls::Calls,
    parts: DeliveryParts,
}

impl std::ops::Deref for Delivery {
    type Target = DeliveryParts;

    fn deref(&self) -> &DeliveryParts {
        &self.parts
    }
}

impl Delivery {
    pub(crate) fn new(parts: DeliveryParts) -> Self {
        Self {
            parts,
            admission: Admission::new(DELIVERY_LIMITS),
            txns: Mutex::default(),
            clients: Mutex::default(),
            calls: calls::Calls::default(),
            counts: Counters::new(
                "dialtone_edge_deliveries_total",
                "Requests for phones by outcome: delivered over a local flow, handed to the edge holding the binding, no live binding, no answer, ringing past the INVITE timeout, relayed within a dialog along the edge's Record-Route.",
                "outcome",
                [
                    "local",
                    "via_edge",
                    "no_binding",
                    "no_answer",
                    "ring_timeout",
                    "in_dialog",
                ],
            ),
        }
    }
}

/// Delivered over a local flow, handed to another edge, no live binding (480), no answer
/// (408), ringing past the INVITE timeout (480), relayed within a dialog: the labels of
/// `Delivery::counts`.
#[derive(Clone, Copy)]
enum Outcome {
    Local = 0,
    ViaEdge = 1,
    NoBinding = 2,
    NoAnswer = 3,
    RingTimeout = 4,
    InDialog = 5,
}

impl Delivery {
    fn count(&self, o: Outcome) {
        self.counts.count_at(o as usize);
    }

    /// A response for a request this edge forwarded: relayed to its transaction. Returns
    /// whether it was one.
    pub fn on_response(&self, m: &Message) -> bool {
        let Some(branch) = branch_of(m) else {
            return false;
        };
        match self.clients.lock().get(&branch) {
            Some(tx) => {
                let _ = tx.send(m.clone());
                true
            }
            None => false,
        }
    }

    /// Prometheus text.
    pub fn render(&self, node: &str, out: &mut String) {
        self.counts.render(Some(node), out);
        self.calls.render(node, out);
    }
}

/// How long another edge has to answer anything before the next binding is tried.
const HOP_TIMEOUT: Duration = Duration::from_millis(1500);

/// One hop of a delivery.
struct Hop<'a> {
    uri: Option<&'a str>,
    transport: Transport,
    replier: Replier,
    /// The edge the request is handed to (none: a phone's own flow).
    to_edge: Option<String>,
    wait: Duration,
    /// This edge's Record-Route values (a dialog-creating request) and how many of the
    /// request's Route entries are this edge's own (an in-dialog one).
    record_route: Vec<String>,
    pop_routes: usize,
}

/// Where a request goes.
enum Target {
    /// A contact of this edge, over its flow.
    Local {
        uri: String,
        source: FlowSource,
        transport: Transport,
        replier: Replier,
    },
    /// The edge holding the binding.
    Edge { node: String, addr: SocketAddr },
}

fn cseq_method(m: &Message) -> Option<&str> {
    m.get("cseq")?.split_whitespace().nth(1)
}

fn branch_of(m: &Message) -> Option<String> {
    m.top_via()
        .and_then(|v| v.param("branch").map(str::to_owned))
}

impl Delivery {
    /// CANCEL for a request being delivered: 200, and the CANCEL passed on. False when no
    /// delivery matches (the caller answers 481).
    pub(crate) fn cancel(&self, m: &Message, src: &Source, reply: &Replier) -> bool {
        let Some(txn) = self.delivery_of(m, src) else {
            return false;
        };
        reply.send(self.replies.responder.reply(m, src, 200, "", vec![]));
        if let Some((sent, replier)) = txn.downstream.lock().as_ref()
            && let Some(c) = cancel_for(sent)
        {
            replier.send(c);
        }
        true
    }

    /// The delivery `m` (a retransmission or a CANCEL) belongs to: same top branch, and
    /// from the same source with the same Call-ID and CSeq number.
    fn delivery_of(&self, m: &Message, src: &Source) -> Option<Arc<Txn>> {
        let txn = self.txns.lock().get(&branch_of(m)?).cloned()?;
        let (call_id, number) = call_and_number(m);
        (txn.origin == (*src, call_id, number)).then_some(txn)
    }

    /// Whether `m` belongs to a transaction under way or kept (an ACK for its non-2xx
    /// answer, or a retransmission).
    pub(crate) fn is_under_way(&self, m: &Message, src: &Source) -> bool {
        self.delivery_of(m, src).is_some()
    }

    /// A retransmission of a request being delivered, from where it first came: answered
    /// with the last answer (or nothing yet) before the trust boundary, which counts each
    /// nonce and marker once. True when it was one.
    pub(crate) fn retransmission(&self, m: &Message, src: &Source, upstream: &Replier) -> bool {
        let Some(txn) = self.delivery_of(m, src) else {
            return false;
        };
        if let Some(last) = txn.last.lock().clone() {
            upstream.send(last);
        }
        true
    }

    /// Opens the transaction of a request to relay: its key and state, or none when it is a
    /// retransmission of one under way (answered here with the last answer, if any).
    fn open(&self, m: &Message, src: Source, upstream: &Replier) -> Option<(String, Arc<Txn>)> {
        let key = branch_of(m)?;
        let mut txns = self.txns.lock();
        if let Some(t) = txns.get(&key) {
            // A retransmission: the last answer again, or nothing yet.
            if let Some(last) = t.last.lock().clone() {
                upstream.send(last);
            }
            return None;
        }
        let (call_id, number) = call_and_number(m);
        let t = Arc::new(Txn {
            origin: (src, call_id, number),
            last: Mutex::default(),
            downstream: Mutex::default(),
            final_code: AtomicU16::new(0),
        });
        txns.insert(key.clone(), t.clone());
        Some((key, t))
    }

    /// Delivers `m` (for `line`, come over `inbound`) and relays the answers along
    /// `upstream`; `permit` (from [`Delivery::admission`]) is held until the transaction is
    /// forgotten. An INVITE is record-routed (see [`in_dialog`]).
    pub(crate) async fn deliver(
        self: Arc<Self>,
        m: Message,
        src: Source,
        inbound: FlowSource,
        upstream: Replier,
        line: Arc<LineEntry>,
        permit: Permit,
    ) {
        let Some((key, txn)) = self.open(&m, src, &upstream) else {
            return;
        };
        let invite = matches!(&m.start, StartLine::Request { method, .. } if method == "INVITE");
        let answer = |code: u16, reason: &str| {
            let r = self.replies.responder.reply(&m, &src, code, reason, vec![]);
            txn.finished(code, r.clone());
            upstream.send(r);
        };
        // 100 at once to an INVITE, and to anything another edge handed over: it tells that
        // edge this one is alive, so it does not try the next binding.
        let from_edge = m.get(FORWARDED_CANONICAL).is_some();
        if invite || from_edge {
            upstream.send(self.replies.responder.reply(&m, &src, 100, "", vec![]));
        }
        let targets = self.targets(from_edge, &line).await;
        let last = targets.len().saturating_sub(1);
        let mut done = false;
        for (i, target) in targets.into_iter().enumerate() {
            // Another edge that does not answer at all (it may have just died, its bindings
            // not yet expired) is passed over quickly for the next binding.
            let (uri, outbound, transport, replier, to_edge, wait) = match target {
                Target::Local {
                    uri,
                    source,
                    transport,
                    replier,
                } => (
                    Some(uri),
                    source,
                    transport,
                    replier,
                    None,
                    self.settings.notify_timeout,
                ),
                Target::Edge { node, addr } => {
                    debug!(edge = %node, "handing a request to the edge holding the binding");
                    let flow = FlowSource {
                        transport: Transport::Udp,
                        addr,
                    };
                    let Some((_, Replier::Udp { socket, .. })) = self.flows.replier(flow) else {
                        continue;
                    };
                    let wait = if i < last {
                        HOP_TIMEOUT
                    } else {
                        self.settings.notify_timeout
                    };
                    (
                        None,
                        flow,
                        Transport::Udp,
                        Replier::Udp { socket, to: addr },
                        Some(node),
                        wait,
                    )
                }
            };
            let outcome = if to_edge.is_some() {
                Outcome::ViaEdge
            } else {
                Outcome::Local
            };
            let record_route = if invite {
                self.record_route(&m, inbound, outbound)
            } else {
                Vec::new()
            };
            let hop = Hop {
                uri: uri.as_deref(),
                transport,
                replier,
                to_edge,
                wait,
                record_route,
                pop_routes: 0,
            };
            if self.proxy(&m, hop, &txn, &upstream, &answer).await || i == last {
                self.count(outcome);
                done = true;
                break;
            }
        }
        if !done {
            self.count(Outcome::NoBinding);
            answer(480, "No live registration");
        }
        if invite {
            let code = txn.final_code.load(Relaxed);
            let call_id = m.get("call-id").unwrap_or("");
            self.calls.invite_ended(call_id, code, true, unix_ms());
        }
        self.linger(key).await;
        drop(permit);
    }

    /// Keeps a finished transaction a while to answer retransmissions, then forgets it.
    async fn linger(&self, key: String) {
        tokio::time::sleep(Duration::from_secs(32)).await;
        self.txns.lock().remove(&key);
    }

    /// Forwards `m` one hop and relays what comes back. Returns false when nothing at all
    /// came back within the hop's wait (nothing was sent upstream: the next binding may be
    /// tried); true otherwise (an answer, relayed or generated, went upstream).
    async fn proxy(
        &self,
        m: &Message,
        hop: Hop<'_>,
        txn: &Txn,
        upstream: &Replier,
        answer: &(dyn Fn(u16, &str) + Sync),
    ) -> bool {
        let Hop {
            uri,
            transport,
            replier,
            to_edge,
            wait,
            record_route,
            pop_routes,
        } = hop;
        let Some(local) = self.local.of(transport) else {
            answer(503, "No listener for the flow's transport");
            return true;
        };
        let branch = new_branch();
        let via = format!("{};branch={branch}", local.via());
        let marker = to_edge.as_deref().map(|to_node| {
            let marked = Marked::of(m, &branch, to_node);
            let now_s = unix_ms() / 1000;
            forwarding::marker(
                &self.settings.nonce_key,
                &self.settings.node_id,
                now_s,
                &marked,
            )
        });
        let extra: Vec<(&str, &str)> = marker
            .as_deref()
            .map(|v| vec![(FORWARDED, v)])
            .unwrap_or_default();
        // What the edges of the group consumed stays with them: the line's credentials and
        // the marker of the edge that handed the request over.
        let strip = ["proxy-authorization", FORWARDED_CANONICAL];
        let routing = Routing {
            record_route: &record_route,
            pop_routes,
        };
        let bytes = match forward_routed(m, uri, &via, &strip, &extra, routing) {
            Ok(b) => b,
            Err(ForwardError::TooManyHops) => {
                answer(483, "");
                return true;
            }
            Err(ForwardError::NotARequest) => return true,
        };
        let Ok(sent) = dialtone_sip::parse(&bytes) else {
            answer(500, "Could not forward the request");
            return true;
        };
        let StartLine::Request { method, .. } = &sent.start else {
            return true;
        };
        let method = method.clone();
        let invite = method == "INVITE";
        #[expect(
            clippy::disallowed_methods,
            reason = "responses to one forwarded request, matched by its branch; the client transaction drains them as they come and ends within Timer B/F"
        )]
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.clients.lock().insert(branch.clone(), tx);
        *txn.downstream.lock() = Some((sent.clone(), replier.clone()));
        replier.send(bytes.clone());

        let relay = |resp: &Message| {
            if let Some(b) = forward_response(resp) {
                if let StartLine::Response { code, .. } = resp.start
                    && code >= 200
                {
                    txn.finished(code, b.clone());
                }
                upstream.send(b);
            }
        };
        let start = tokio::time::Instant::now();
        let mut deadline = start + wait;
        let mut resend = tokio::time::Instant::now() + Duration::from_millis(500);
        let mut interval = Duration::from_millis(500);
        let mut answered = false;
        let mut cancelled = false;
        loop {
            let wake = if answered || transport != Transport::Udp {
                deadline
            } else {
                resend.min(deadline)
            };
            match tokio::time::timeout_at(wake, rx.recv()).await {
                Ok(Some(resp)) => {
                    let StartLine::Response { code, .. } = resp.start else {
                        continue;
                    };
                    // The answer to our CANCEL shares the branch: not the request's answer.
                    if cseq_method(&resp).is_none_or(|m| m != method) {
                        continue;
                    }
                    answered = true;
                    if code < 200 {
                        deadline = if invite {
                            // Timer C (RFC 3261 §16.6 step 11): reset by every provisional.
                            tokio::time::Instant::now() + self.settings.invite_timeout
                        } else {
                            // The next hop is alive: the whole wait for the final answer.
                            deadline.max(start + self.settings.notify_timeout)
                        };
                        if code > 100 && !cancelled {
                            relay(&resp);
                        }
                        continue;
                    }
                    if invite
                        && code >= 300
                        && let Some(ack) = ack_for(&sent, &resp)
                    {
                        replier.send(ack);
                    }
                    if !cancelled {
                        relay(&resp);
                    }
                    break;
                }
                Ok(None) => break,
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    if cancelled {
                        break;
                    }
                    if invite && answered {
                        self.count(Outcome::RingTimeout);
                        if let Some(c) = cancel_for(&sent) {
                            replier.send(c);
                        }
                        answer(480, "No answer");
                        // Wait a little for the 487, to acknowledge it.
                        cancelled = true;
                        deadline = tokio::time::Instant::now() + Duration::from_secs(4);
                        continue;
                    }
                    self.clients.lock().remove(&branch);
                    if to_edge.is_some() && wait == HOP_TIMEOUT && !answered {
                        // That edge may still be alive but slow: make sure it rings no one.
                        if invite && let Some(c) = cancel_for(&sent) {
                            replier.send(c);
                        }
                        return false;
                    }
                    self.count(Outcome::NoAnswer);
                    answer(408, "");
                    return true;
                }
                Err(_) => {
                    replier.send(bytes.clone());
                    interval = (interval * 2).min(Duration::from_secs(4));
                    resend = tokio::time::Instant::now() + interval;
                }
            }
        }
        self.clients.lock().remove(&branch);
        true
    }

    /// The bindings a request for `line` may go to, best first: the primary edge's, the
    /// secondary's, then the freshest others (a request from another edge: local only).
    async fn targets(&self, from_edge: bool, line: &LineEntry) -> Vec<Target> {
        let local = match self.directory.ask(&line.phone_id, Contacts) {
            None => Vec::new(),
            Some(r) => r.await.unwrap_or_default(),
        };
        let local_target = || {
            let c = local.iter().find(|c| c.sip_user == line.sip_user)?;
            let (transport, replier) = self.flows.replier(c.source)?;
            Some(Target::Local {
                uri: c.uri.clone(),
                source: c.source,
                transport,
                replier,
            })
        };
        if from_edge {
            return local_target().into_iter().collect();
        }
        let Some(store) = &self.store else {
            return local_target().into_iter().collect();
        };
        let me = self.settings.node_id.as_str();
        let prefix = keys::line_bindings(&line.phone_id, line.line_index);
        let mut holders: Vec<(String, i64)> = store
            .range(&prefix, None, 64)
            .await
            .map(|p| p.kvs)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| {
                let node = kv.key.strip_prefix(&prefix)?.to_owned();
                let b = Binding::decode(kv.value.as_slice()).ok()?;
                (!b.contacts.is_empty() && node != me).then_some((node, b.updated_at_ms))
            })
            .collect();
        if local_target().is_some() {
            holders.push((me.to_owned(), i64::MAX));
        }
        let order = self.cache.read().placement(&line.phone_id);
        holders.sort_by_key(|(node, at)| {
            (
                order.iter().position(|o| o == node).unwrap_or(usize::MAX),
                std::cmp::Reverse(*at),
            )
        });
        let mut out = Vec::new();
        for (node, _) in holders {
            if node == me {
                out.extend(local_target());
            } else if let Some(addr) = edge_udp_address(store, &node).await {
                out.push(Target::Edge { node, addr });
            }
        }
        out
    }
}

/// Where another edge takes SIP over UDP, from its member record.
async fn edge_udp_address(store: &Store, node: &str) -> Option<SocketAddr> {
    let kv = store.get(&keys::member("edge", node)).await.ok()??;
    let m = Member::decode(kv.value.as_slice()).ok()?;
    m.sip_addresses?.udp.parse().ok()
}
