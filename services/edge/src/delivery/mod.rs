//! Delivery of requests to registered phones: an INVITE, MESSAGE, NOTIFY or OPTIONS for a
//! line's SIP user that reaches any edge goes to ONE live binding of that line: the one on
//! the phone's primary edge if it lives, else the secondary's, else the freshest elsewhere.
//! A request for a user goes to one binding of each of its phones at once (one branch per
//! line, [`fork`]; [`responses`] picks what goes upstream; the first 2xx cancels the
//! others), under a server transaction ([`transactions`]).
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
mod fork;
pub(crate) mod forwarding;
pub(crate) mod in_dialog;
mod late_offer;
pub(crate) mod media;
pub(crate) mod media_health;
mod responses;
mod targets;
mod transactions;
pub(crate) mod trunk_health;
mod trunks;

use forwarding::{FORWARDED, FORWARDED_CANONICAL, Marked};
use targets::Hints;
use transactions::{Txn, branch_of};

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use dialtone_metrics::Counters;
use dialtone_sip::{Message, StartLine};
use dialtone_store::Store;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use crate::{
    admission::{Admission, SourceLimits},
    credentials::CredentialCache,
    credentials::LineEntry,
    credentials::trunks::DigestAuth,
    flow::{FlowSource, Flows, Replier, Transport},
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
