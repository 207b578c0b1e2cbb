//! The dispatcher and the delivery service on their own: a real dispatcher, directory,
//! delivery and credentials cache, no store and no sockets. Phones are in-memory stream
//! flows ([`Phone`]): what the edge sends one is read from its write queue. Digest answers
//! are computed as a phone computes them, so the trust boundary is the real one. The
//! dispatcher's own tests are here; the delivery service's are in [`delivery`].

mod delivery;
mod forking;
mod lockout;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use dialtone_domain::credentials::ha1;
use dialtone_proto::config::v1::{
    Assignment, CallRestrictions, Line, Phone as PhoneRecord, PhoneKind, Site, SiteAssignment,
    User, UserAssignment, assignment::Mode,
};
use dialtone_sip::digest::{NonceKey, answer};
use parking_lot::RwLock;

use crate::{
    credentials::{CredentialCache, Limits},
    delivery::{Delivery, DeliveryParts},
    dispatch::{Dispatcher, DispatcherParts},
    flow::{Flows, Peer, Replier, Transport, write_queue},
    metrics::Stats,
    registrar::{
        directory::{Directory, SharedParts},
        publisher::Publisher,
    },
    replies::{Listening, Replies, Responder},
    settings::{EdgeSettings, Listeners},
    uac::Uac,
};

pub(crate) const REALM: &str = "dialtone";
const EDGE: &str = "127.0.0.1:5060";

/// The lines the harness knows, all of site `hq`: (phone id, SIP user, password, the
/// extension of a site-assigned phone or none for an unassigned one).
const LINES: [(&str, &str, &str, Option<&str>); 3] = [
    ("p-alice", "alice", "alice-secret", Some("201")),
    ("p-bob", "bob", "bob-secret", Some("202")),
    ("p-lobby", "lobby", "lobby-secret", None),
];

/// User `carol` of site `hq`, at extension 300, and her two companion phones: (phone id,
/// SIP user, password).
const CAROL: [(&str, &str, &str); 2] = [
    ("p-carol-desk", "carol-desk", "desk-secret"),
    ("p-carol-soft", "carol-soft", "soft-secret"),
];

pub(crate) struct Harness {
    pub dispatcher: Arc<Dispatcher>,
    pub flows: Arc<Flows>,
    /// The bindings the registrar publishes (kept open, so the backlog counts them).
    _published: tokio::sync::mpsc::UnboundedReceiver<crate::registrar::publisher::Change>,
}

fn settings(notify_timeout: Duration) -> EdgeSettings {
    EdgeSettings {
        node_id: "edge-a".into(),
        listeners: Listeners {
            tcp: Some(EDGE.parse().unwrap()),
            ..Default::default()
        },
        advertise_ip: None,
        external: Default::default(),
        tls_cert: None,
        tls_key: None,
        tls_client_ca: None,
        trunk_ca: None,
        realm: REALM.into(),
        nonce_key: NonceKey::new([9; 32]),
        nonce_lifetime: Duration::from_secs(300),
        digest_bound: dialtone_sip::offer::Offer::Md5,
        min_expires: 60,
        max_expires: 7200,
        max_message_bytes: 65_535,
        bans: Default::default(),
        server_header: None,
        shards: 1,
        notify_timeout,
        invite_timeout: Duration::from_secs(30),
        ws_allowed_origins: Vec::new(),
        connections: crate::admission::SourceLimits {
            total: 100,
            per_source: 100,
        },
        register_backlog: crate::registrar::backlog::BacklogLimit {
            wait: Duration::from_secs(5),
        },
    }
}

pub(crate) fn harness(notify_timeout: Duration) -> Harness {
    let settings = Arc::new(settings(notify_timeout));
    let mut cache = CredentialCache::new(Limits {
        min_expires: settings.min_expires,
        max_expires: settings.max_expires,
        digest_bound: settings.digest_bound,
    });
    // Site hq dials by the NANP plan, national calls allowed, international ones not.
    cache.put_site(&Site {
        id: "hq".into(),
        number_plan: "nanp".into(),
        call_restrictions: Some(CallRestrictions {
            allow_external: true,
            allow_international: false,
            allow_premium: false,
        }),
        ..Default::default()
    });
    for (id, user, password, extension) in LINES {
        let mode = match extension {
            Some(e) => Mode::Site(SiteAssignment {
                extension: e.into(),
                ..Default::default()
            }),
            None => Mode::Unassigned(Default::default()),
        };
        cache.put_phone(&PhoneRecord {
            id: id.into(),
            site_id: "hq".into(),
            kind: PhoneKind::Unmanaged as i32,
            assignment: Some(Assignment { mode: Some(mode) }),
            lines: vec![Line {
                sip_user: user.into(),
                credentials: Some(ha1(user, REALM, password)),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    cache.put_user(&User {
        id: "carol".into(),
        site_id: "hq".into(),
        extension: "300".into(),
        ..Default::default()
    });
    for (id, user, password) in CAROL {
        cache.put_phone(&PhoneRecord {
            id: id.into(),
            site_id: "hq".into(),
            kind: PhoneKind::Unmanaged as i32,
            assignment: Some(Assignment {
                mode: Some(Mode::User(UserAssignment {
                    user_id: "carol".into(),
                })),
            }),
            lines: vec![Line {
                sip_user: user.into(),
                credentials: Some(ha1(user, REALM, password)),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let cache = Arc::new(RwLock::new(cache));
    let stats = Arc::new(Stats::default());
    let replies = Arc::new(Replies {
        responder: Responder {
            to_tag: "edge-tag".into(),
            server: None,
        },
        node_id: settings.node_id.clone(),
        realm: REALM.into(),
        nonce_key: settings.nonce_key.clone(),
        nonce_lifetime_s: settings.nonce_lifetime.as_secs(),
        stats: stats.clone(),
    });
    let (publisher, published) = Publisher::capturing();
    let directory = Arc::new(Directory::start(
        1,
        SharedParts {
            node_id: settings.node_id.clone(),
            quiet_before_sleep_s: 32,
            publisher,
            replies: replies.clone(),
            stats: stats.clone(),
        },
    ));
    let flows = Arc::new(Flows::default());
    let local = || Listening::new([(Transport::Tcp, EDGE.parse().unwrap())].into());
    let delivery = Arc::new(Delivery::new(DeliveryParts {
        cache: cache.clone(),
        directory: directory.clone(),
        flows: flows.clone(),
        settings: settings.clone(),
        replies: replies.clone(),
        local: local(),
        store: None,
        runtime: tokio::runtime::Handle::current(),
        ng: None,
    }));
    let dispatcher = Dispatcher::new(DispatcherParts {
        cache,
        directory,
        delivery,
        flows: flows.clone(),
        uac: Arc::new(Uac::default()),
        stats: stats.clone(),
        settings,
        replies,
        local: local(),
    });
    Harness {
        dispatcher,
        flows,
        _published: published,
    }
}

/// A phone on a TCP flow of its own, as far as the edge can tell.
pub(crate) struct Phone {
    pub user: &'static str,
    password: &'static str,
    pub addr: SocketAddr,
    peer: Peer,
    rx: write_queue::QueueRx,
    nc: u32,
}

impl Phone {
    /// A phone of `LINES` (or an unknown user, whose password is made up) at `addr`.
    pub fn new(h: &Harness, user: &'static str, addr: &str) -> Self {
        let addr: SocketAddr = addr.parse().unwrap();
        let (tx, rx) = write_queue::queue(crate::flow::NOT_AUTHENTICATED);
        h.flows.open(Transport::Tcp, addr, tx.clone());
        let password = LINES
            .iter()
            .map(|l| (l.1, l.2))
            .chain(CAROL.iter().map(|c| (c.1, c.2)))
            .find(|l| l.0 == user)
            .map_or("guess", |l| l.1);
        Phone {
            user,
            password,
            addr,
            peer: Peer {
                transport: Transport::Tcp,
                addr,
                replier: Replier::Stream(tx),
                tls_names: None,
            },
            rx,
            nc: 0,
        }
    }

    /// Sends raw bytes to the edge as this phone.
    pub fn send(&self, h: &Harness, bytes: &str) {
        h.dispatcher.handle(bytes.as_bytes(), &self.peer);
    }

    /// The next message the edge sends this phone (within 2 s).
    pub async fn next(&mut self) -> String {
        let bytes = tokio::time::timeout(Duration::from_secs(2), self.rx.next())
            .await
            .expect("the edge sends something within 2 s")
            .expect("the flow is open");
        String::from_utf8(bytes).expect("utf-8")
    }

    /// Whether the edge sends this phone nothing for `wait`.
    pub async fn silent_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.rx.next()).await.is_err()
    }

    /// A request from this phone; `extra` is added before Content-Length.
    pub fn request(
        &self,
        method: &str,
        ruri: &str,
        branch: &str,
        cseq: u32,
        extra: &str,
    ) -> String {
        let (user, addr) = (self.user, self.addr);
        // A REGISTER's To is the address of record; any other request's, its target.
        let aor = format!("sip:{user}@{REALM}");
        let to = if method == "REGISTER" { &aor } else { ruri };
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/TCP {addr};branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{REALM}>;tag=f-{user}\r\nTo: <{to}>\r\nCall-ID: {branch}-call\r\nCSeq: {cseq} {method}\r\nContact: <sip:{user}@{addr};transport=tcp>\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    }

    /// The Authorization header (named `header`) answering the challenge in `challenge`, a
    /// whole 401 or 407.
    pub fn answer(&mut self, challenge: &str, header: &str, method: &str, ruri: &str) -> String {
        let value = challenge
            .lines()
            .find_map(|l| {
                l.strip_prefix("WWW-Authenticate: ")
                    .or_else(|| l.strip_prefix("Proxy-Authenticate: "))
            })
            .expect("a challenge");
        self.nc += 1;
        let a = answer(
            value,
            self.user,
            self.password,
            method,
            ruri,
            self.nc,
            "c0ffee",
        )
        .expect("an answerable challenge");
        format!("{header}: {a}\r\n")
    }

    /// Registers (challenge, answer) and returns the final status line.
    pub async fn register(&mut self, h: &Harness) -> String {
        let ruri = format!("sip:{REALM}");
        let first = self.request("REGISTER", &ruri, "z9hG4bKr1", 1, "Expires: 600\r\n");
        self.send(h, &first);
        let challenge = self.next().await;
        assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
        let auth = self.answer(&challenge, "Authorization", "REGISTER", &ruri);
        let second = self.request(
            "REGISTER",
            &ruri,
            "z9hG4bKr2",
            2,
            &format!("Expires: 600\r\n{auth}"),
        );
        self.send(h, &second);
        status(&self.next().await)
    }
}

/// The status line of a response.
pub(crate) fn status(text: &str) -> String {
    text.lines().next().unwrap_or("").to_owned()
}

/// A header's value in a message, by its name as the edge writes it.
pub(crate) fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[tokio::test]
async fn options_to_the_edge_are_answered_with_what_it_allows() {
    let h = harness(Duration::from_secs(2));
    let mut p = Phone::new(&h, "alice", "127.0.0.1:40001");
    p.send(
        &h,
        &p.request("OPTIONS", "sip:127.0.0.1:5060", "z9hG4bKo1", 1, ""),
    );
    let r = p.next().await;
    assert_eq!(status(&r), "SIP/2.0 200 OK");
    assert!(
        header(&r, "Allow").is_some_and(|a| a.contains("REGISTER")),
        "{r}"
    );
}

#[tokio::test]
async fn malformed_and_unknown_requests_get_their_error() {
    let h = harness(Duration::from_secs(2));
    let mut p = Phone::new(&h, "alice", "127.0.0.1:40002");
    // (request, status line of the answer)
    let cases = [
        (
            p.request("OPTIONS", "sip:127.0.0.1", "z9hG4bKm1", 1, "")
                .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
            "SIP/2.0 400 Cseq method differs from the request method",
        ),
        (
            p.request("OPTIONS", "sip:127.0.0.1", "z9hG4bKm2", 1, "")
                .replace("SIP/2.0\r\n", "SIP/3.0\r\n"),
            "SIP/2.0 505 Version SIP/3.0 not supported",
        ),
        (
            p.request("PUBLISH", "sip:127.0.0.1", "z9hG4bKm3", 1, ""),
            "SIP/2.0 405 Method Not Allowed",
        ),
        (
            p.request("CANCEL", "sip:127.0.0.1", "z9hG4bKm4", 1, ""),
            "SIP/2.0 481 Call/Transaction Does Not Exist",
        ),
    ];
    for (request, want) in cases {
        p.send(&h, &request);
        assert_eq!(status(&p.next().await), want, "{request}");
    }
    // A malformed ACK and a response nobody asked for are not answered.
    p.send(
        &h,
        &p.request("ACK", "sip:127.0.0.1", "z9hG4bKm5", 1, "")
            .replace("CSeq: 1 ACK", "CSeq: 1 INVITE"),
    );
    p.send(
        &h,
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKnone\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(p.silent_for(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn a_register_is_challenged_then_handed_to_the_registrar() {
    let h = harness(Duration::from_secs(2));
    let mut p = Phone::new(&h, "alice", "127.0.0.1:40003");
    assert_eq!(p.register(&h).await, "SIP/2.0 200 OK");
}

#[tokio::test]
async fn a_phone_arriving_is_turned_away_with_retry_after_while_the_bindings_wait_for_the_store() {
    let h = harness(Duration::from_secs(2));
    let mut known = Phone::new(&h, "bob", "127.0.0.1:40014");
    assert_eq!(known.register(&h).await, "SIP/2.0 200 OK");
    let mut p = Phone::new(&h, "alice", "127.0.0.1:40013");
    let backlog = h.dispatcher.directory.backlog();
    // 5,000 bindings waiting, the store not having taken one yet: 50 s at the least rate
    // assumed, past the 5 s limit.
    for _ in 0..5_000 {
        backlog.queued();
    }
    let ruri = format!("sip:{REALM}");
    p.send(
        &h,
        &p.request("REGISTER", &ruri, "z9hG4bKs1", 1, "Expires: 600\r\n"),
    );
    let shed = p.next().await;
    assert_eq!(status(&shed), "SIP/2.0 503 Service Unavailable", "{shed}");
    let after: u32 = header(&shed, "Retry-After")
        .expect("a Retry-After")
        .parse()
        .unwrap();
    assert!(
        (50..=75).contains(&after),
        "the drain time and up to half again: {after}"
    );
    assert!(
        header(&shed, "WWW-Authenticate").is_none(),
        "no challenge, no nonce spent: {shed}"
    );
    let metrics = h.dispatcher.stats.render("edge-test", 0, (0, 0));
    assert!(
        metrics.contains("reason=\"overloaded\"} 1"),
        "counted as shed: {metrics}"
    );
    // A phone registered here keeps refreshing meanwhile.
    assert_eq!(known.register(&h).await, "SIP/2.0 200 OK");
    // The store catches up: the arriving phone is let in.
    backlog.taken(5_000, 0);
    assert_eq!(p.register(&h).await, "SIP/2.0 200 OK");
}

#[tokio::test]
async fn unknown_users_are_challenged_and_refused_as_a_wrong_password_is() {
    let h = harness(Duration::from_secs(2));
    // The same challenge headers (but the nonce) and the same refusal, known or not.
    let mut answers = Vec::new();
    for (user, addr) in [("alice", "127.0.0.1:40004"), ("mallory", "127.0.0.1:40005")] {
        let mut p = Phone::new(&h, user, addr);
        if user == "alice" {
            p.password = "wrong";
        }
        let ruri = format!("sip:{REALM}");
        p.send(&h, &p.request("REGISTER", &ruri, "z9hG4bKu1", 1, ""));
        let challenge = p.next().await;
        let auth = p.answer(&challenge, "Authorization", "REGISTER", &ruri);
        p.send(&h, &p.request("REGISTER", &ruri, "z9hG4bKu2", 2, &auth));
        let refusal = p.next().await;
        let shape = |text: &str| {
            let mut names: Vec<String> = text
                .lines()
                .filter_map(|l| l.split_once(": ").map(|(n, _)| n.to_owned()))
                .collect();
            names.sort_unstable();
            (status(text), names)
        };
        answers.push((shape(&challenge), shape(&refusal)));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0.0, "SIP/2.0 401 Unauthorized");
    assert_eq!(answers[0].1.0, "SIP/2.0 403 Forbidden");
}

#[tokio::test]
async fn a_request_for_a_phone_needs_an_authenticated_line() {
    let h = harness(Duration::from_secs(2));
    let mut alice = Phone::new(&h, "alice", "127.0.0.1:40006");
    let bob_uri = format!("sip:bob@{REALM}");
    alice.send(&h, &alice.request("MESSAGE", &bob_uri, "z9hG4bKa1", 1, ""));
    assert_eq!(
        status(&alice.next().await),
        "SIP/2.0 407 Proxy Authentication Required"
    );
    // An unassigned phone that proves who it is still places no call.
    let mut lobby = Phone::new(&h, "lobby", "127.0.0.1:40007");
    lobby.send(&h, &lobby.request("INVITE", &bob_uri, "z9hG4bKl1", 1, ""));
    let challenge = lobby.next().await;
    assert_eq!(
        status(&challenge),
        "SIP/2.0 407 Proxy Authentication Required"
    );
    let auth = lobby.answer(&challenge, "Proxy-Authorization", "INVITE", &bob_uri);
    lobby.send(
        &h,
        &lobby.request("INVITE", &bob_uri, "z9hG4bKl2", 2, &auth),
    );
    let refusal = lobby.next().await;
    assert!(refusal.starts_with("SIP/2.0 403"), "{refusal}");
}

#[tokio::test]
async fn outside_numbers_are_decided_by_the_sites_plan_and_emergency_always_passes() {
    let h = harness(Duration::from_secs(2));
    let mut alice = Phone::new(&h, "alice", "127.0.0.1:40011");
    let mut lobby = Phone::new(&h, "lobby", "127.0.0.1:40012");
    // (who dials, what, status line, Warning text)
    let cases = [
        (
            0,
            "2125551234",
            "SIP/2.0 404 No Outbound Route",
            "no trunk routes national calls (+12125551234) from this site",
        ),
        (
            0,
            "011442071234567",
            "SIP/2.0 403 Call Restricted",
            "international calls are restricted at this site",
        ),
        (
            0,
            "19005551234",
            "SIP/2.0 403 Call Restricted",
            "premium-rate calls are restricted at this site",
        ),
        (
            0,
            "12",
            "SIP/2.0 404 Not Found",
            "the number dialled is not in this site's number plan",
        ),
        // An unassigned phone reaches emergency services, and nothing else.
        (
            1,
            "911",
            "SIP/2.0 404 No Outbound Route",
            "no trunk routes emergency calls (911) from this site",
        ),
        (
            1,
            "2125551234",
            "SIP/2.0 403 Phone Not Assigned to a User or Site",
            "",
        ),
        // However the number is written in the Request-URI.
        (
            1,
            "911;phone-context=+1",
            "SIP/2.0 404 No Outbound Route",
            "no trunk routes emergency calls (911) from this site",
        ),
    ];
    for (i, (who, dialled, want_status, want_warning)) in cases.into_iter().enumerate() {
        let phone = if who == 0 { &mut alice } else { &mut lobby };
        let ruri = format!("sip:{dialled}@{REALM}");
        let first = phone.request("INVITE", &ruri, &format!("z9hG4bKout{i}a"), 1, "");
        phone.send(&h, &first);
        let challenge = phone.next().await;
        assert_eq!(
            status(&challenge),
            "SIP/2.0 407 Proxy Authentication Required"
        );
        let auth = phone.answer(&challenge, "Proxy-Authorization", "INVITE", &ruri);
        phone.send(
            &h,
            &phone.request("INVITE", &ruri, &format!("z9hG4bKout{i}b"), 2, &auth),
        );
        let answer = phone.next().await;
        assert_eq!(status(&answer), want_status, "{dialled}: {answer}");
        if !want_warning.is_empty() {
            assert_eq!(
                header(&answer, "Warning"),
                Some(format!("399 edge-a \"{want_warning}\"").as_str()),
                "{dialled}"
            );
        }
    }
}
