//! Delivery of requests to registered phones: an INVITE, MESSAGE, NOTIFY or OPTIONS for a
//! line's SIP user that reaches any edge goes to ONE live binding of that line: the one on
//! the phone's primary edge if it lives, else the secondary's, else the freshest elsewhere.
//! A request for a user goes to one binding of each of its phones at once (one branch per
//! line, [`responses`] picks what goes upstream; the first 2xx cancels the others).
//! When that binding is on another edge, the request goes there (marked, so that edge
//! delivers it over its own flow and never forwards again): TCP, TLS and WS flows can only
//! be used by the edge that holds them.
//!
//! The edge proxies statefully (RFC 3261 §16) and record-routes every INVITE, so the
//! dialog's later requests come back through it ([`in_dialog`]): its Via on top,
//! provisional and final responses relayed back, retransmissions of the upstream request
//! absorbed and answered with the last response, CANCEL passed on ([`client`]), non-2xx
//! finals to an INVITE acknowledged hop by hop. No answer at all gives 408; ringing without an answer
//! past the INVITE timeout is cancelled and gives 480; no live binding gives 480.
//!
//! The pure message rewriting lives in `dialtone_sip::proxy`.

pub(crate) mod calls;
mod client;
pub(crate) mod forwarding;
pub(crate) mod in_dialog;
mod late_offer;
pub(crate) mod media;
pub(crate) mod media_health;
mod responses;
mod targets;
pub(crate) mod trunk_health;
mod trunks;

use forwarding::{FORWARDED, FORWARDED_CANONICAL, Marked};
use responses::Responses;
use targets::Hints;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU16, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use dialtone_domain::keys;
use dialtone_metrics::Counters;
use dialtone_proto::{config::v1::Member, edge::v1::Binding};
use dialtone_sip::{Message, StartLine, response::Source};
use dialtone_store::Store;
use parking_lot::{Mutex, RwLock};
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::{
    admission::{Admission, Permit, SourceLimits},
    credentials::CredentialCache,
    credentials::LineEntry,
    credentials::trunks::DigestAuth,
    flow::{Answer, FlowSource, Flows, Replier, Transport},
    registrar::directory::Directory,
    replies::{Listening, Replies},
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
    /// The status code of the final answer sent upstream (0 until there is one).
    final_code: AtomicU16,
    /// Set once the delivery is cancelled (an upstream CANCEL, a 2xx or 6xx on another
    /// branch), with the `Reason` its branches' CANCELs carry.
    cancel: watch::Sender<Option<Option<String>>>,
}

impl Txn {
    /// Keeps `bytes`, a final answer with `code`, to answer retransmissions.
    fn finished(&self, code: u16, bytes: Vec<u8>) {
        *self.last.lock() = Some(bytes);
        self.final_code.store(code, Relaxed);
    }

    /// Cancels the branches still pending (the first reason given stays).
    fn cancel_branches(&self, reason: Option<String>) {
        self.cancel.send_if_modified(|c| {
            let first = c.is_none();
            if first {
                *c = Some(reason);
            }
            first
        });
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

/// Requests being delivered at once, in all and per source: past them a request for a
/// phone gets 503 with Retry-After.
pub const DELIVERY_LIMITS: SourceLimits = SourceLimits {
    total: 20_000,
    per_source: 500,
};

/// Finished transactions kept to answer retransmissions (each holds its last answer,
/// about a kilobyte), in all and per source: one source keeps at most a fifth of them, so
/// no one can push everyone else's out.
pub const LINGERING_LIMITS: SourceLimits = SourceLimits {
    total: 100_000,
    per_source: 20_000,
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
    /// The main runtime, where store reads run (a delivery may run on an actor thread).
    pub runtime: tokio::runtime::Handle,
    /// The `ng` client of the media servers; none in unit tests.
    pub ng: Option<Arc<dialtone_media::client::NgClient>>,
}

/// The delivery service: deliveries under way, their counts, and what it needs to find a
/// phone's bindings here or on another edge.
pub(crate) struct Delivery {
    /// Caps on the transactions under way at once.
    pub(crate) admission: Arc<Admission>,
    /// Cap on the finished transactions kept for retransmissions.
    pub(crate) lingering: Arc<Admission>,
    txns: Mutex<HashMap<String, Arc<Txn>>>,
    /// Our branch → the responses of the request we forwarded.
    clients: Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>,
    /// By [`Outcome`], in its order.
    counts: Counters<9>,
    /// Calls up and how INVITEs ended, for metrics.
    pub(crate) calls: calls::Calls,
    /// Which carrier trunk targets answer their keep-alives.
    pub(crate) trunk_health: trunk_health::TrunkHealth,
    /// Which media servers answer their pings.
    pub(crate) media_health: media_health::MediaHealth,
    /// Late offers whose answer (in the ACK) the media server waits for.
    pub(crate) late_answers: late_offer::LateAnswers,
    /// What the edge lately learnt of the store and of the other edges.
    hints: Hints,
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
            lingering: Admission::new(LINGERING_LIMITS),
            txns: Mutex::default(),
            clients: Mutex::default(),
            calls: calls::Calls::default(),
            trunk_health: trunk_health::TrunkHealth::default(),
            media_health: media_health::MediaHealth::default(),
            late_answers: late_offer::LateAnswers::default(),
            hints: Hints::default(),
            counts: Counters::new(
                "dialtone_edge_deliveries_total",
                "Requests for phones by outcome: delivered over a local flow, handed to the edge holding the binding, no live binding, no answer, ringing past the INVITE timeout, relayed within a dialog along the edge's Record-Route; calls out: sent to a carrier trunk target, moved on to the next target (408, 5xx, no answer); handed to another edge that answered nothing in time (the next binding is tried, and that edge last for a while).",
                "outcome",
                [
                    "local",
                    "via_edge",
                    "no_binding",
                    "no_answer",
                    "ring_timeout",
                    "in_dialog",
                    "trunk",
                    "trunk_failover",
                    "edge_unanswered",
                ],
            ),
        }
    }
}

/// Delivered over a local flow, handed to another edge, no live binding (480), no answer
/// (408), ringing past the INVITE timeout (480), relayed within a dialog, sent to a trunk
/// target, moved on from one, handed to an edge that answered nothing in time: the labels
/// of `Delivery::counts`.
#[derive(Clone, Copy)]
enum Outcome {
    Local = 0,
    ViaEdge = 1,
    NoBinding = 2,
    NoAnswer = 3,
    RingTimeout = 4,
    InDialog = 5,
    Trunk = 6,
    TrunkFailover = 7,
    EdgeUnanswered = 8,
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
        self.trunk_health.render(node, out);
        self.media_health.render(node, out);
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
    /// How long an INVITE may ring (Timer C); none: `--sip-invite-timeout`.
    ring: Option<Duration>,
    /// The caller's identity as the next hop is told it (a carrier): the phone's own
    /// identity headers are replaced by these.
    identity: Option<Identity>,
    /// A carrier trunk's credentials: its challenges are answered here (a phone's are
    /// answered with its profile's, read when it challenges).
    auth: Option<Arc<DigestAuth>>,
    /// How much higher the request's CSeq number is on the next hop's side (an in-dialog
    /// request of a dialog whose INVITE was re-sent with credentials); its answers come back
    /// that much lower.
    cseq_shift: u8,
    /// How much lower the `id` of an `Event: refer` goes on (see `Onward::refer_back`).
    refer_back: u8,
    /// The request comes from a phone: its own identity assertions are dropped.
    untrusted_identity: bool,
    /// The next hop is a phone: the identity assertions of its answers are dropped.
    untrusted_answers: bool,
    /// The Record-Route token of a dialog-creating request (to record-route it again,
    /// with its CSeq shift, when it is re-sent with credentials).
    route_token: Option<dialtone_sip::route::FlowToken>,
    /// The phone the hop rings (for the record of calls: who answered).
    phone: Option<Arc<str>>,
    /// The hop's media, anchored at a media server: its answers' SDP goes there too.
    media: Option<media::MediaLeg>,
}

/// What a carrier is told of the caller.
#[derive(Clone, Debug, Default)]
pub(crate) struct Identity {
    /// `P-Asserted-Identity` value.
    pub asserted: Option<String>,
    /// `Privacy: id`: the carrier withholds it from the called party.
    pub private: bool,
    /// `Geolocation` by reference (RFC 6442), with `Geolocation-Routing: yes`: an
    /// emergency call's location.
    pub location: Option<String>,
}

/// Where a request to deliver came from.
pub(crate) struct Origin {
    /// The flow it came over (its Record-Route entry).
    pub inbound: FlowSource,
    /// The site its call counts under (none: another edge counts it).
    pub site: Option<Arc<str>>,
    /// Who sends it: one of our lines (a phone; its identity assertions are dropped), a
    /// trusted peer or another edge.
    pub caller: calls::Party,
}

/// One line a delivery rings, and what its hops need to know.
struct Branch<'a> {
    /// The request, addressed to the line's SIP user.
    m: &'a Message,
    line: &'a LineEntry,
    /// The flow the request came over (its Record-Route entry).
    inbound: FlowSource,
    from_edge: bool,
    /// From one of our lines (its identity assertions are dropped).
    from_line: bool,
    invite: bool,
    /// The call's media context, when the edge may anchor it.
    media: Option<&'a media::CallMedia>,
    /// The media servers the delivery's branches offered the call's SDP to.
    anchored_at: &'a Mutex<Vec<SocketAddr>>,
}

/// `m` addressed to `sip_user` (RFC 3261 §16.5: a request for an extension or a user is
/// retargeted to each line it rings, so an edge holding a line's binding finds the line
/// without knowing the caller's site); none when it already is. Pure.
fn retargeted(m: &Message, sip_user: &str) -> Option<Message> {
    let user = m.request_user()?;
    let StartLine::Request { uri, .. } = &m.start else {
        return None;
    };
    if user == sip_user {
        return None;
    }
    let mut to_line = m.clone();
    if let StartLine::Request { uri: target, .. } = &mut to_line.start {
        // The user follows the scheme's colon, the first colon of a URI.
        *target = uri.replacen(&format!(":{user}@"), &format!(":{sip_user}@"), 1);
    }
    Some(to_line)
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

fn branch_of(m: &Message) -> Option<String> {
    m.top_via()
        .and_then(|v| v.param("branch").map(str::to_owned))
}

impl Delivery {
    /// CANCEL for a request being delivered: 200, and the CANCEL passed on to every
    /// branch, with the CANCEL's `Reason`. False when no delivery matches (the caller
    /// answers 481).
    pub(crate) fn cancel(&self, m: &Message, src: &Source, reply: &Answer) -> bool {
        let Some(txn) = self.delivery_of(m, src) else {
            return false;
        };
        reply.send(self.replies.responder.reply(m, src, 200, "", vec![]));
        txn.cancel_branches(m.get("reason").map(str::to_owned));
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
    pub(crate) fn retransmission(&self, m: &Message, src: &Source, upstream: &Answer) -> bool {
        let Some(txn) = self.delivery_of(m, src) else {
            return false;
        };
        if let Some(last) = txn.last.lock().clone() {
            upstream.resend(last);
        }
        true
    }

    /// Opens the transaction of a request to relay: its key and state, or none when it is a
    /// retransmission of one under way (answered here with the last answer, if any).
    fn open(&self, m: &Message, src: Source, upstream: &Answer) -> Option<(String, Arc<Txn>)> {
        let key = branch_of(m)?;
        let mut txns = self.txns.lock();
        if let Some(t) = txns.get(&key) {
            // A retransmission: the last answer again, or nothing yet.
            if let Some(last) = t.last.lock().clone() {
                upstream.resend(last);
            }
            return None;
        }
        let (call_id, number) = call_and_number(m);
        let t = Arc::new(Txn {
            origin: (src, call_id, number),
            last: Mutex::default(),
            final_code: AtomicU16::new(0),
            cancel: watch::Sender::new(None),
        });
        txns.insert(key.clone(), t.clone());
        Some((key, t))
    }

    /// Delivers `m` (for `lines`: one, or each phone of a user, all at once; come over
    /// `inbound`, from one of our lines when `from_line`) and relays the answers along
    /// `upstream`; `permit` (from [`Delivery::admission`]) is held until the final answer
    /// has gone. An INVITE is record-routed (see [`in_dialog`]). What a line asserts about
    /// its own identity (P-Asserted-Identity, P-Preferred-Identity, Remote-Party-ID) never
    /// reaches the callee: only a trusted peer or another edge may assert one (RFC 3325
    /// §5: the edge's trust domain ends at the phone).
    pub(crate) async fn deliver(
        self: Arc<Self>,
        m: Message,
        src: Source,
        origin: Origin,
        upstream: Answer,
        lines: Vec<Arc<LineEntry>>,
        permit: Permit,
    ) {
        let Origin {
            inbound,
            site,
            caller,
        } = origin;
        let from_line = matches!(caller, calls::Party::Phone(_));
        let Some((key, txn)) = self.open(&m, src, &upstream) else {
            return;
        };
        let invite = matches!(&m.start, StartLine::Request { method, .. } if method == "INVITE");
        // 100 at once to an INVITE, and to anything another edge handed over: it tells that
        // edge this one is alive, so it does not try the next binding.
        let from_edge = m.get(FORWARDED_CANONICAL).is_some();
        if invite || from_edge {
            upstream.send(self.replies.responder.reply(&m, &src, 100, "", vec![]));
        }
        let responses = Responses::new(&m, src, &txn, &upstream, &self.replies.responder);
        let to_lines: Vec<Option<Message>> =
            lines.iter().map(|l| retargeted(&m, &l.sip_user)).collect();
        // The edge the call entered through anchors its media, if it needs it (one
        // another edge handed over was anchored there).
        let call_media = (invite && !from_edge)
            .then(|| {
                let kind = match &caller {
                    calls::Party::Phone(id) => {
                        media::CallerKind::phone(self.cache.read().media_side(id))
                    }
                    // A carrier's call in is anchored like a call out through its trunk.
                    calls::Party::Peer(peer) => media::CallerKind {
                        trusted: true,
                        profile: dialtone_media::anchor::Side::Rtp,
                        fixed_address: self.cache.read().peer_anchors_media(peer),
                    },
                    _ => media::CallerKind::phone(dialtone_media::anchor::Side::Rtp),
                };
                self.call_media(&m, src.ip, site.as_ref(), kind)
            })
            .flatten();
        let anchored_at = Mutex::new(Vec::new());
        let (this, responses_ref) = (&*self, &responses);
        let branches = lines.iter().zip(&to_lines).map(|(line, to_line)| {
            let branch = Branch {
                m: to_line.as_ref().unwrap_or(&m),
                line,
                inbound,
                from_edge,
                from_line,
                invite,
                media: call_media.as_ref(),
                anchored_at: &anchored_at,
            };
            this.branch(branch, responses_ref)
        });
        futures::future::join_all(branches).await;
        let anchored_at = anchored_at.into_inner();
        let call_id = m.get("call-id").unwrap_or("");
        // A call that failed leaves no media session, deleted before its final answer
        // goes (a caller that tries again at once with the same Call-ID finds its new
        // session alone).
        let answered = (200..300).contains(&txn.final_code.load(Relaxed));
        if invite && !answered {
            self.media_leftovers(&anchored_at, None, call_id);
        }
        responses.finish();
        if invite {
            let code = txn.final_code.load(Relaxed);
            let won = responses.answered();
            // The branches anchored elsewhere than the answering one leave nothing.
            let won_at = won.media.as_ref().map(|a| a.server);
            if answered {
                self.media_leftovers(&anchored_at, won_at, call_id);
            }
            let parties = calls::Parties {
                caller,
                callee: won.phone.map_or(calls::Party::Unknown, calls::Party::Phone),
                site,
                dialled: m.request_user().unwrap_or_default().to_owned(),
                media: won.media,
                to_tag: won.to_tag,
            };
            self.call_ended(call_id, code, parties);
        }
        self.linger(key, permit).await;
    }

    /// One branch: the line's bindings tried best first until one answers.
    async fn branch(&self, b: Branch<'_>, responses: &Responses<'_>) {
        let Branch {
            m,
            line,
            inbound,
            from_edge,
            from_line,
            invite,
            media: call_media,
            anchored_at,
        } = b;
        let targets = self.targets(from_edge, line).await;
        let last = targets.len().saturating_sub(1);
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
                        Replier::Udp {
                            socket,
                            to: addr,
                            dscp: 0,
                        },
                        Some(node),
                        wait,
                    )
                }
            };
            let to_phone = to_edge.is_none();
            let outcome = if to_edge.is_some() {
                Outcome::ViaEdge
            } else {
                Outcome::Local
            };
            let record_route = if invite {
                self.record_route(m, inbound, outbound)
            } else {
                Vec::new()
            };
            // The offer for this target, when the call is anchored: its SDP rewritten for
            // what the callee speaks.
            let mut offered = None;
            if let Some(call) = call_media {
                let side = self.cache.read().media_side(&line.phone_id);
                let callee = media::party(side, transport, outbound.addr);
                let via_branch = format!("{}-{i}", line.sip_user);
                offered = self
                    .media_offer(m, call, callee, via_branch, to_phone, anchored_at)
                    .await;
            }
            let (m, leg) = match &offered {
                Some((o, leg)) => (o, Some(leg.clone())),
                None => (m, None),
            };
            // A phone that challenges the request is answered with its profile's Digest
            // Authentication credentials (`client.rs`); a call re-sent so is
            // record-routed again with its CSeq shift.
            let route_token = (invite && to_phone).then_some(dialtone_sip::route::FlowToken {
                inbound,
                outbound,
                cseq_shift: 0,
                outbound_server: false,
            });
            let hop = Hop {
                uri: uri.as_deref(),
                transport,
                replier,
                to_edge,
                wait,
                record_route,
                pop_routes: 0,
                ring: None,
                identity: None,
                auth: None,
                cseq_shift: 0,
                refer_back: 0,
                route_token,
                untrusted_identity: from_line,
                untrusted_answers: to_phone,
                phone: Some(line.phone_id.clone()),
                media: leg,
            };
            if self.proxy(m, hop, responses).await || i == last {
                self.count(outcome);
                return;
            }
        }
        self.count(Outcome::NoBinding);
        responses.generated(480, "No live registration");
    }

    /// Keeps a finished transaction a while to answer retransmissions (64×T1, RFC 3261
    /// §17.2 and RFC 6026), then forgets it. Its delivery `permit`, which counts against
    /// its source, goes at once: a source's cap bounds the requests it has under way, not
    /// those it finished (an office behind one NAT address places many calls). The kept
    /// answers have a cap of their own, for all sources together; past it a transaction is
    /// forgotten at once (a retransmission of it is then taken as a new request, which its
    /// spent nonce count refuses).
    async fn linger(&self, key: String, permit: Permit) {
        drop(permit);
        let source = self.txns.lock().get(&key).map(|t| t.origin.0.ip);
        let kept = match source {
            Some(ip) => self.lingering.admit(ip),
            None => return,
        };
        let Ok(kept) = kept else {
            self.txns.lock().remove(&key);
            return;
        };
        tokio::time::sleep(Duration::from_secs(32)).await;
        self.txns.lock().remove(&key);
        drop(kept);
    }

    /// The bindings a request for `line` may go to, best first: the primary edge's, the
    /// secondary's, then the freshest others (a request from another edge: local only).
    /// What is asked of the store, and the order, are [`targets`]'s.
    async fn targets(&self, from_edge: bool, line: &LineEntry) -> Vec<Target> {
        let local = self.directory.contacts(&line.phone_id);
        let local_target = || {
            let c = local.iter().find(|c| c.sip_user == line.sip_user)?;
            let (transport, replier) = self.flows.replier(c.source)?;
            Some(Target::Local {
                uri: c.uri.clone(),
                source: c.source,
                transport,
                replier: replier.marked(line.sip_dscp),
            })
        };
        let me = self.settings.node_id.as_str();
        let placement = self.cache.read().placement(&line.phone_id);
        let now = Instant::now();
        let facts = targets::Facts {
            from_edge,
            has_store: self.store.is_some(),
            primary_here: placement.first().is_some_and(|o| o == me),
            local: local_target().is_some(),
            store_quiet: self.hints.store_quiet(now),
        };
        let (Some(store), Some(wait)) = (&self.store, targets::lookup(facts).wait()) else {
            return local_target().into_iter().collect();
        };
        let prefix = keys::line_bindings(&line.phone_id, line.line_index);
        // Store reads run on the main runtime: this may be an actor thread, which must never
        // wait on the embedded store's lock while it syncs a write. Only one task, which
        // does every read, so that a bounded wait covers them all and cancels them all.
        let found = {
            let (store, prefix, me) = (store.clone(), prefix.clone(), me.to_owned());
            self.runtime
                .spawn(async move { other_bindings(&store, &prefix, &me).await })
        };
        let found = match wait {
            Some(d) => targets::bounded(found, d).await,
            None => found.await.ok(),
        };
        let others = match found {
            Some(Ok(others)) => others,
            _ => {
                self.hints.store_failed(Instant::now());
                Vec::new()
            }
        };
        let mut holders: Vec<(String, i64)> = others
            .iter()
            .map(|(node, at, _)| (node.clone(), *at))
            .collect();
        if local_target().is_some() {
            holders.push((me.to_owned(), i64::MAX));
        }
        let mut out = Vec::new();
        for node in targets::order(holders, &placement, |n| self.hints.is_silent(n, now)) {
            if node == me {
                out.extend(local_target());
            } else if let Some((_, _, Some(addr))) = others.iter().find(|(n, ..)| *n == node) {
                out.push(Target::Edge { node, addr: *addr });
            }
        }
        out
    }
}

/// The other edges holding a live binding under `prefix` (a line's): each with its
/// binding's last write and the address it takes SIP over UDP at (none when its member
/// record cannot be read).
async fn other_bindings(
    store: &Store,
    prefix: &str,
    me: &str,
) -> Result<Vec<(String, i64, Option<SocketAddr>)>, dialtone_store::StoreError> {
    let page = store.range(prefix, None, 64).await?;
    let mut out = Vec::new();
    for kv in page.kvs {
        let Some(node) = kv.key.strip_prefix(prefix) else {
            continue;
        };
        let Ok(b) = Binding::decode(kv.value.as_slice()) else {
            continue;
        };
        if !b.contacts.is_empty() && node != me {
            let addr = edge_udp_address(store, node).await;
            out.push((node.to_owned(), b.updated_at_ms, addr));
        }
    }
    Ok(out)
}

/// Where another edge takes SIP over UDP, from its member record.
async fn edge_udp_address(store: &Store, node: &str) -> Option<SocketAddr> {
    let kv = store.get(&keys::member("edge", node)).await.ok()??;
    let m = Member::decode(kv.value.as_slice()).ok()?;
    m.sip_addresses?.udp.parse().ok()
}
