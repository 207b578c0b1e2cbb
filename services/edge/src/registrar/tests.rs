//! A phone in a real directory (its actor threads and their checks), with a capturing
//! publisher (what would go to the store) and an in-memory replier (what would go to the
//! phone). The digest itself was checked by the dispatcher before a job reaches the phone;
//! what is left to it is the nonce count, the transaction, the bindings and sleep.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use dialtone_domain::keys;
use dialtone_proto::{
    config::v1::{Line, Phone, PhoneKind, StoredCredentials},
    edge::v1::Binding,
};
use dialtone_sip::{digest::NonceKey, response::Source, transaction::server_key};
use prost::Message as _;
use tokio::sync::mpsc;

use crate::{
    credentials::{CredentialCache, Limits, LineEntry},
    flow::{FlowSource, Replier, Transport, write_queue},
    metrics::Stats,
    registrar::{
        directory::{Directory, SharedParts},
        phone::RegisterJob,
        publisher::{Change, Publisher},
        sleeping::{LineState, PhoneState},
    },
    replies::{Replies, Responder},
};

const NODE: &str = "edge-a";
const FROM: &str = "127.0.0.1:5070";

struct Harness {
    directory: Directory,
    published: mpsc::UnboundedReceiver<Change>,
    entry: Arc<LineEntry>,
    stats: Arc<Stats>,
    /// Keys of the transaction hash, as the dispatcher holds them.
    txn_keys: std::hash::RandomState,
}

fn harness(quiet_before_sleep_s: u64) -> Harness {
    let mut cache = CredentialCache::new(Limits {
        min_expires: 1,
        max_expires: 7200,
        digest_bound: dialtone_sip::offer::Offer::Sha256ThenMd5,
    });
    cache.put_phone(&Phone {
        id: "p1".into(),
        kind: PhoneKind::Unmanaged as i32,
        lines: vec![Line {
            sip_user: "alice".into(),
            credentials: Some(StoredCredentials {
                realm: "dialtone".into(),
                ha1_md5: "00".into(),
                ha1_sha256: "00".into(),
                generation: 1,
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    let entry = cache.lookup("alice").expect("the line is cached");
    let stats = Arc::new(Stats::default());
    let (publisher, published) = Publisher::capturing();
    let replies = Arc::new(Replies {
        responder: Responder {
            to_tag: "t".into(),
            server: None,
        },
        node_id: NODE.into(),
        realm: "dialtone".into(),
        nonce_key: NonceKey::new([7; 32]),
        nonce_lifetime_s: 300,
        stats: stats.clone(),
    });
    let directory = Directory::start(
        1,
        SharedParts {
            node_id: NODE.into(),
            quiet_before_sleep_s,
            publisher,
            replies,
            stats: stats.clone(),
        },
    );
    Harness {
        directory,
        published,
        entry,
        stats,
        txn_keys: std::hash::RandomState::new(),
    }
}

/// Hands the phone a REGISTER of alice's contact, as the dispatcher would once the digest
/// checked out (transaction key as the dispatcher makes it), and returns the status line
/// and the whole answer sent back.
async fn register(h: &Harness, branch: &str, cseq: u32, nc: u32) -> (String, String) {
    register_for(h, branch, cseq, nc, 600).await
}

/// [`register`] for `expires` seconds.
async fn register_for(
    h: &Harness,
    branch: &str,
    cseq: u32,
    nc: u32,
    expires: u32,
) -> (String, String) {
    let text = format!(
        "REGISTER sip:dialtone SIP/2.0\r\nVia: SIP/2.0/UDP {FROM};branch={branch}\r\nFrom: <sip:alice@dialtone>;tag=1\r\nTo: <sip:alice@dialtone>\r\nCall-ID: c1\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@{FROM}>\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"
    );
    let msg = dialtone_sip::parse(text.as_bytes()).expect("a valid REGISTER");
    let (tx, mut rx) = write_queue::queue(crate::flow::NOT_AUTHENTICATED);
    let from: SocketAddr = FROM.parse().unwrap();
    let job = RegisterJob {
        entry: h.entry.clone(),
        txn: server_key(&h.txn_keys, &msg, msg.top_via().as_ref(), from),
        msg,
        source: FlowSource {
            transport: Transport::Udp,
            addr: from,
        },
        nonce: 42,
        nc,
        src: Source::from(from),
        reply: crate::flow::Answer::new(
            Replier::Stream(tx),
            crate::metrics::transactions::TxClock::start("REGISTER", std::time::Instant::now()),
        ),
    };
    h.directory.register(&h.entry.phone_id, job);
    let bytes = tokio::time::timeout(Duration::from_secs(2), rx.next())
        .await
        .expect("answered within 2 s")
        .expect("an answer");
    let text = String::from_utf8(bytes).unwrap();
    (text.lines().next().unwrap_or("").to_owned(), text)
}

fn contacts(value: &Option<Vec<u8>>) -> usize {
    value
        .as_deref()
        .map_or(0, |v| Binding::decode(v).unwrap().contacts.len())
}

#[tokio::test]
async fn a_register_is_answered_and_its_binding_published() {
    let mut h = harness(32);
    let (status, text) = register(&h, "z9hG4bK1", 1, 1).await;
    assert_eq!(status, "SIP/2.0 200 OK");
    assert!(
        text.contains(&format!("Contact: <sip:alice@{FROM}>;expires=600")),
        "{text}"
    );
    let (key, value) = h.published.recv().await.unwrap();
    assert_eq!(key, keys::binding("p1", 0, NODE));
    assert_eq!(contacts(&value), 1);
    h.directory.stop();
}

#[tokio::test]
async fn a_retransmission_gets_the_same_answer_and_changes_nothing() {
    let mut h = harness(32);
    let (_, first) = register(&h, "z9hG4bK1", 1, 1).await;
    h.published.recv().await.unwrap();
    let (_, second) = register(&h, "z9hG4bK1", 1, 1).await;
    assert_eq!(first, second, "the same answer, byte for byte");
    assert!(h.published.try_recv().is_err(), "nothing published again");
    h.directory.stop();
}

#[tokio::test]
async fn a_replayed_nonce_count_is_challenged_and_changes_nothing() {
    let mut h = harness(32);
    register(&h, "z9hG4bK1", 1, 1).await;
    h.published.recv().await.unwrap();
    // A new transaction answering the same nonce with the same count: a replay.
    let (status, text) = register(&h, "z9hG4bK22", 2, 1).await;
    assert_eq!(status, "SIP/2.0 401 Unauthorized");
    assert!(text.contains("WWW-Authenticate: Digest"), "{text}");
    assert!(h.published.try_recv().is_err());
    // The next count is fine.
    assert_eq!(register(&h, "z9hG4bK333", 3, 2).await.0, "SIP/2.0 200 OK");
    h.directory.stop();
}

#[tokio::test]
async fn a_quiet_phone_falls_asleep_and_wakes_with_its_bindings() {
    let mut h = harness(0);
    register(&h, "z9hG4bK1", 1, 1).await;
    h.published.recv().await.unwrap();
    // The sleep check runs a second after the last activity.
    let mut slept = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if h.stats.sleeping_phones() == 1 {
            slept = true;
            break;
        }
    }
    assert!(slept, "the phone never fell asleep");
    // Its bindings are read from its sleeping state, without waking it.
    let bindings = h.directory.bindings(&h.entry.phone_id);
    assert_eq!(h.stats.sleeping_phones(), 1, "still asleep");
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].contacts.len(), 1);
    // And it still counts nonces: the count it used before sleeping is spent.
    assert_eq!(
        register(&h, "z9hG4bK9", 2, 1).await.0,
        "SIP/2.0 401 Unauthorized"
    );
    h.directory.stop();
}

#[tokio::test]
async fn a_sleeping_phones_binding_expires_without_waking_it() {
    let mut h = harness(0);
    let (status, _) = register_for(&h, "z9hG4bK1", 1, 1, 2).await;
    assert_eq!(status, "SIP/2.0 200 OK");
    let (_, value) = h.published.recv().await.unwrap();
    assert_eq!(contacts(&value), 1);
    // Asleep a second after the REGISTER, its binding expires a second later: the shard's
    // check sweeps it from the sleeping state and deletes the stored binding.
    let (key, value) = tokio::time::timeout(Duration::from_secs(5), h.published.recv())
        .await
        .expect("the expiry published within 5 s")
        .unwrap();
    assert_eq!(key, keys::binding("p1", 0, NODE));
    assert!(value.is_none(), "the binding deleted: {value:?}");
    assert!(h.directory.contacts(&h.entry.phone_id).is_empty());
    // Counted right after the delete is queued, on the actor thread.
    for _ in 0..20 {
        if h.stats.sleeping_phones() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.stats.sleeping_phones(),
        0,
        "no binding left to sleep with"
    );
    // Its nonce count is kept while the nonce lives: the same count is a replay.
    assert_eq!(
        register(&h, "z9hG4bK2", 2, 1).await.0,
        "SIP/2.0 401 Unauthorized"
    );
    h.directory.stop();
}

/// Waits up to 2 s for the shared gauge of sleeping phones to read `n`.
async fn until_sleeping(h: &Harness, n: i64) {
    for _ in 0..40 {
        if h.stats.sleeping_phones() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "sleeping phones: {} (waited for {n})",
        h.stats.sleeping_phones()
    );
}

/// A phone's state as an edge takes it back from the store at a restart: one binding of
/// `sip_user`'s line (index 0), learned from `source` (`transport:address`), 600 s left.
pub(crate) fn taken_back(sip_user: &str, source: &str) -> PhoneState {
    let now = dialtone_common::clock::unix_ms() / 1000;
    let (_, at) = source.split_once(':').expect("transport:address");
    PhoneState {
        lines: vec![LineState {
            index: 0,
            sip_user: sip_user.into(),
            bindings: vec![dialtone_sip::registration::Binding {
                uri: format!("sip:{sip_user}@{at}"),
                instance: None,
                reg_id: None,
                call_id: "before-the-restart".into(),
                cseq: 1,
                expires_at: now + 600,
                q: None,
                path: Vec::new(),
                source: source.parse().expect("a flow source"),
                user_agent: None,
            }],
            published_at: now,
            republish_after: 1800,
        }],
        nonce_counts: Default::default(),
    }
}

#[tokio::test]
async fn an_adopted_phone_that_registers_keeps_one_queued_check() {
    let h = harness(0);
    let state = taken_back("alice", &format!("udp:{FROM}"));
    // Taken back at start: the map's key is built from the stored id, an allocation other
    // than the line's `phone_id`, which the REGISTER then brings.
    assert!(h.directory.adopt("p1", &state));
    assert_eq!(h.directory.queued_checks(), 1, "adopted");
    let (status, _) = register(&h, "z9hG4bK1", 2, 1).await;
    assert_eq!(status, "SIP/2.0 200 OK");
    assert_eq!(h.directory.queued_checks(), 1, "woken by its REGISTER");
    until_sleeping(&h, 1).await;
    assert_eq!(h.directory.queued_checks(), 1, "asleep again");
    h.directory.stop();
}

#[tokio::test]
async fn a_phone_keeps_one_queued_check_however_often_it_wakes_and_sleeps() {
    let mut h = harness(0);
    for round in 1..=4u32 {
        if round == 3 {
            // The credentials reloaded: the line's id is an equal string in another
            // allocation, while the queue holds the phone map's own key (compared by address).
            let mut reloaded = (*h.entry).clone();
            reloaded.phone_id = Arc::from(&*h.entry.phone_id);
            assert!(!Arc::ptr_eq(&reloaded.phone_id, &h.entry.phone_id));
            h.entry = Arc::new(reloaded);
        }
        let branch = format!("z9hG4bK{round}");
        let (status, _) = register(&h, &branch, round, round).await;
        assert_eq!(status, "SIP/2.0 200 OK", "round {round}");
        assert_eq!(h.directory.queued_checks(), 1, "awake, round {round}");
        until_sleeping(&h, 1).await;
        assert_eq!(h.directory.queued_checks(), 1, "asleep, round {round}");
    }
    while h.published.try_recv().is_ok() {}
    // A new binding lease: the sleeping phone writes its binding again and sleeps on.
    h.directory.republish(&h.entry.phone_id);
    let (key, value) = h.published.recv().await.unwrap();
    assert_eq!(key, keys::binding("p1", 0, NODE));
    assert_eq!(contacts(&value), 1);
    assert_eq!(h.stats.sleeping_phones(), 1, "still asleep");
    assert_eq!(h.directory.queued_checks(), 1);
    h.directory.stop();
}
