//! An edge that sheds load: while etcd takes no writes, the bindings an edge acknowledged
//! queue up to its backlog limit, and every REGISTER past it is answered 503 with a
//! Retry-After instead of acknowledged; when etcd is back every acknowledged binding is
//! stored and every phone that was turned away comes back when told and registers. Real
//! etcd (frozen with SIGSTOP, as a member starved of CPU is), a real edge, the phone
//! simulator over UDP. Bounded in time.

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

/// Phones: well past the backlog an edge holds before it sheds (1,024 changes).
const PHONES: usize = 2_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_behind_the_store_turns_registers_away_and_loses_none_it_acknowledged() {
    // A 10 s lease: etcd frozen for a few seconds loses none.
    let sb = ClusterSandbox::with_etcd_lease_ttl(
        1,
        &["config", "edge"],
        &["--sip-register-backlog=1"],
        &[],
        10,
    )
    .await
    .unwrap();
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    let edges = sb.udp_edges(&[1]);
    seed_site_on(&mut cfg, Default::default(), &edges)
        .await
        .unwrap();
    let edge: SocketAddr = edges[0].1.parse().unwrap();
    let specs: Vec<PhoneSpec> = import(&mut cfg, PHONES, "shed")
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

    let etcd = sb.etcd.as_ref().unwrap();
    etcd.pause(0);
    let sim = Sim::start(
        SimConfig {
            expires: 600,
            sockets: 4,
            timeout: Duration::from_secs(4),
            ..SimConfig::default()
        },
        specs,
    )
    .await
    .unwrap();
    let stats = sim.stats();
    let until = Instant::now() + Duration::from_secs(20);
    while stats.unavailable[1].load(Relaxed) == 0 {
        assert!(
            Instant::now() < until,
            "no REGISTER turned away with Retry-After"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the rest of the wave hit the edge while etcd is still frozen.
    tokio::time::sleep(Duration::from_secs(2)).await;
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
        (acknowledged as usize) < PHONES,
        "not every phone was acknowledged: {acknowledged}"
    );
    assert!(shed > 0);

    // etcd is back: every phone ends registered, and its binding stored.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = sim.sample();
        let stored = store.count(keys::BINDINGS).await.unwrap_or(0);
        if s.full as usize == PHONES && stored as usize == PHONES {
            break;
        }
        assert!(
            Instant::now() < until,
            "phones registered {} of {PHONES}, bindings stored {stored}",
            s.full
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
}
