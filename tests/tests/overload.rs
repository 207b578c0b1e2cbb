//! An edge that sheds load: while etcd takes no writes, the bindings an edge acknowledged
//! queue up to its backlog limit, and every REGISTER of a phone arriving past it is
//! answered 503 with a Retry-After instead of acknowledged; when etcd is back every
//! acknowledged binding is stored and every phone that was turned away comes back when
//! told and registers. Real etcd (frozen with SIGSTOP, as a member starved of CPU is), a
//! real edge, the phone simulator over UDP. Bounded in time.

use std::{
    net::SocketAddr,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use dialtone_domain::keys;
use dialtone_phonesim::{PhoneSpec, Sim, SimConfig};
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox,
    fleet::{import, seed_site_on},
};

/// Phones registered while etcd works (the edge measures the rate it takes writes at).
const EARLY: usize = 500;
/// Phones arriving while it is frozen: well past the backlog an edge holds before it sheds
/// (1,024 changes).
const ARRIVING: usize = 3_000;
const PHONES: usize = EARLY + ARRIVING;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_behind_the_store_turns_registers_away_and_loses_none_it_acknowledged() {
    // A 30 s lease: etcd frozen for seconds loses none.
    let sb = ClusterSandbox::with_etcd_lease_ttl(
        1,
        &["config", "edge"],
        &["--sip-register-backlog=1"],
        &[],
        30,
    )
    .await
    .unwrap();
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    let edges = sb.udp_edges(&[1]);
    seed_site_on(&mut cfg, Default::default(), &edges)
        .await
        .unwrap();
    let edge: SocketAddr = edges[0].1.parse().unwrap();
    let mut specs: Vec<PhoneSpec> = import(&mut cfg, PHONES, "shed")
        .await
        .unwrap()
        .into_iter()
        .map(|(phone_id, user, password)| PhoneSpec {
            phone_id,
            user,
            password,
            domain: dialtone_domain::DEFAULT_REALM.into(),
            registrars: vec![edge],
            managed: None,
        })
        .collect();
    let store = sb.store().await.unwrap();
    // The edge has every phone's credentials before etcd stops.
    let until = Instant::now() + Duration::from_secs(30);
    while sb.nodes[1].metric("dialtone_edge_cached_lines", "").await < Some(PHONES as i64) {
        assert!(Instant::now() < until, "the edge never cached every line");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let config = |start_rate| SimConfig {
        expires: 600,
        sockets: 4,
        timeout: Duration::from_secs(4),
        start_rate,
        ..SimConfig::default()
    };
    let arriving = specs.split_off(EARLY);
    let early = Sim::start(config(0), specs).await.unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while store.count(keys::BINDINGS).await.unwrap() < EARLY as u64 {
        assert!(Instant::now() < until, "the early phones never all stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let etcd = sb.etcd.as_ref().unwrap();
    etcd.pause(0);
    // A thousand a second: the queue passes its floor a second into the freeze.
    let sim = Sim::start(config(1_000), arriving).await.unwrap();
    let stats = sim.stats();
    let until = Instant::now() + Duration::from_secs(20);
    while stats.unavailable[1].load(Relaxed) == 0 {
        assert!(
            Instant::now() < until,
            "no REGISTER turned away with Retry-After"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the rest of the wave (3 s of starts) hit the edge while etcd is still frozen.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let acknowledged = stats.registered.load(Relaxed);
    let backlog = sb.nodes[1]
        .metric("dialtone_edge_binding_backlog", "")
        .await
        .unwrap();
    let shed = sb.nodes[1]
        .metric("dialtone_registrations_rejected_total", "overloaded")
        .await
        .unwrap();
    etcd.resume(0);
    eprintln!(
        "etcd frozen: {acknowledged} registrations acknowledged, {backlog} bindings waiting, {shed} REGISTERs turned away"
    );
    assert!(
        (1_024..2_048).contains(&backlog),
        "the queue stops near the limit: {backlog}"
    );
    assert!(
        (acknowledged as usize) < ARRIVING,
        "not every phone arriving was acknowledged: {acknowledged}"
    );
    assert!(shed > 0);

    // etcd is back: every phone ends registered, and its binding stored.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let full = sim.sample().full + early.sample().full;
        let stored = store.count(keys::BINDINGS).await.unwrap_or(0);
        if full as usize == PHONES && stored as usize == PHONES {
            break;
        }
        assert!(
            Instant::now() < until,
            "phones registered {full} of {PHONES}, bindings stored {stored}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        sb.nodes[1]
            .metric("dialtone_edge_binding_backlog", "")
            .await,
        Some(0)
    );
    sim.stop(false, 1).await;
    early.stop(false, 1).await;
}
