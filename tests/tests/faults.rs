//! Faults on real processes: a three-member etcd cluster, config+provisioning and status
//! as separate nodes, three edges, and a simulated fleet registering to its primary and
//! secondary edges over UDP with digest auth (loadtest/phonesim). Bounded in time.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use dialtone_phonesim::{PhoneSpec, Sim, SimConfig};
use dialtone_proto::{config::v1 as pb, provisioning::v1 as ppb, status::v1 as spb};
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, StatusClient, VIEWER_TOKEN,
    fleet::{import, seed_site_on},
};

const PHONES: usize = 150;
/// Node indexes: 0 config+provisioning, 1 status, 2-4 edges.
const EDGES: [usize; 3] = [2, 3, 4];

async fn summary(st: &mut StatusClient) -> spb::SiteSummary {
    st.get_site_summaries(spb::GetSiteSummariesRequest::default())
        .await
        .expect("summaries")
        .into_inner()
        .sites
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Waits up to 20 s for every phone of the fleet to be OPERATIONAL.
async fn all_operational(st: &mut StatusClient, what: &str) {
    let start = Instant::now();
    loop {
        let s = summary(st).await;
        if s.operational as usize == PHONES {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls the site summary until `done` holds, asserting that no phone is ever OFFLINE
/// meanwhile; returns how long it took.
async fn until_never_offline(
    st: &mut StatusClient,
    within: Duration,
    what: &str,
    done: impl Fn(&spb::SiteSummary) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let s = summary(st).await;
        assert_eq!(s.offline, 0, "{what}: a phone went OFFLINE: {s:?}");
        if done(&s) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what}: not done within {within:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What [`fleet`] starts.
type Fleet = (
    ClusterSandbox,
    Sim,
    StatusClient,
    tempfile::TempDir,
    Vec<PhoneSpec>,
);

/// Starts the cluster (each edge with `binding_leases` binding leases), seeds PHONES phones
/// and registers them all.
async fn fleet(binding_leases: u32) -> Fleet {
    let tls = tempfile::tempdir().unwrap();
    let (cert, key) = dialtone_tls::dev_pair(tls.path(), "provisioning").unwrap();
    let sb = ClusterSandbox::with_etcd_args(
        3,
        &["config,provisioning", "status", "edge", "edge", "edge"],
        &[
            "--sip-min-expires=10",
            &format!("--binding-leases={binding_leases}"),
            &format!("--provisioning-tls-cert={}", cert.display()),
            &format!("--provisioning-tls-key={}", key.display()),
        ],
    )
    .await
    .unwrap();
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    let edges = sb.udp_edges(&EDGES);
    seed_site_on(&mut cfg, pb::PhoneSettings::default(), &edges)
        .await
        .unwrap();
    let created = import(&mut cfg, PHONES, "sim").await.unwrap();
    let mut prov = sb.nodes[0].provisioning_client(ADMIN_TOKEN).await.unwrap();
    let mut specs = Vec::new();
    for (id, user, password) in created {
        let how = prov
            .get_how_to_register(ppb::GetHowToRegisterRequest {
                phone_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let addr = |r: Option<ppb::Registrar>| -> SocketAddr {
            let r = r.expect("two registrars");
            format!("{}:{}", r.host, r.port).parse().unwrap()
        };
        specs.push(PhoneSpec {
            phone_id: id,
            user,
            password,
            domain: how.domain.clone(),
            registrars: vec![addr(how.primary), addr(how.secondary)],
            managed: None,
        });
    }
    // Edges learn of the imported phones through their watch; give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sim = Sim::start(
        SimConfig {
            expires: 12,
            sockets: 4,
            timeout: Duration::from_secs(2),
            ..SimConfig::default()
        },
        specs.clone(),
    )
    .await
    .unwrap();
    let mut st = sb.nodes[1].status_client(VIEWER_TOKEN).await.unwrap();
    all_operational(&mut st, "fleet never OPERATIONAL").await;
    (sb, sim, st, tls, specs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_die_and_restart_without_a_phone_going_offline() {
    // With binding leases: a restart takes them over with the bindings on them.
    let (mut sb, sim, mut st, _tls, specs) = fleet(8).await;

    // kill -9 one edge: every phone it holds (as primary or secondary) goes DEGRADED within
    // the lease TTL (3 s) + 2 s, and none goes OFFLINE.
    let victim = EDGES[0];
    let held = st
        .list_phone_statuses(spb::ListPhoneStatusesRequest {
            edge_node_id: sb.nodes[victim].node_id.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .statuses
        .len() as u32;
    assert!(held > 0);
    let victim_addr: SocketAddr = format!("127.0.0.1:{}", sb.nodes[victim].sip.udp)
        .parse()
        .unwrap();
    let killed = Instant::now();
    sb.nodes[victim].kill9();
    // Every phone it held is asked for at once through its other edge: none is lost.
    let probes: Vec<(&str, &str, SocketAddr)> = specs
        .iter()
        .filter(|p| p.registrars.contains(&victim_addr))
        .map(|p| {
            let other = *p.registrars.iter().find(|a| **a != victim_addr).unwrap();
            (p.user.as_str(), p.domain.as_str(), other)
        })
        .collect();
    // Asked by one of the fleet's lines, which proves itself to the edge (407).
    let from = (specs[0].user.as_str(), specs[0].password.as_str());
    let answered =
        dialtone_tests::sip::options_answered(from, &probes, Duration::from_secs(8)).await;
    eprintln!(
        "requests to the dead edge's phones during the window: {} sent, {answered} answered",
        probes.len()
    );
    assert_eq!(answered, probes.len(), "requests lost while an edge died");
    until_never_offline(&mut st, Duration::from_secs(5), "after kill -9", |s| {
        s.degraded == held
    })
    .await;
    let took = killed.elapsed();
    eprintln!("kill -9: {held} phones DEGRADED after {took:?}");
    assert!(took < Duration::from_secs(5), "lease TTL 3 s + 2 s");

    // It comes back: phones re-register at their next refresh and are all OPERATIONAL.
    sb.nodes[victim].restart().await.unwrap();
    let took = until_never_offline(&mut st, Duration::from_secs(15), "edge back", |s| {
        s.operational as usize == PHONES
    })
    .await;
    eprintln!("edge back: all OPERATIONAL after {took:?}");

    // Restart every edge one at a time (each back before the next goes): never OFFLINE.
    for &i in &EDGES {
        sb.nodes[i].restart().await.unwrap();
        until_never_offline(&mut st, Duration::from_secs(15), "rolling restart", |s| {
            s.operational as usize == PHONES
        })
        .await;
    }
    let failures = sim.stats().failures();
    eprintln!("registration failures during the faults: {failures}");
    sim.stop(false, 1).await;
}

/// The lease of each binding edge `node` holds.
async fn leases_of_bindings(store: &dialtone_store::Store, node: &str) -> Vec<i64> {
    let (_, bindings) = store.snapshot(&["bindings/"]).await.unwrap();
    bindings
        .iter()
        .filter(|kv| kv.key.ends_with(&format!("/{node}")))
        .map(|kv| kv.lease)
        .collect()
}

/// The leases an edge's bindings hang on (`node-leases/{node}`) and its bindings' leases.
async fn binding_leases(store: &dialtone_store::Store, node: &str) -> (Vec<i64>, Vec<i64>) {
    use dialtone_store::lifecycle::shards::parse_ids;
    let record = store
        .get(&dialtone_domain::keys::node_leases(node))
        .await
        .unwrap()
        .expect("the edge records its binding leases");
    (
        parse_ids(&record.value),
        leases_of_bindings(store, node).await,
    )
}

/// One of an edge's binding leases lost (revoked by another party, as etcd does when
/// keep-alives stop reaching it): the edge notices when a phone's refresh writes a binding
/// on it (the write fails), or when its keeper next lists the store's leases (every round,
/// a third of the TTL), replaces that lease alone and writes its phones' bindings again,
/// well before the phones' next refresh would, and no phone goes OFFLINE meanwhile. Its
/// main lease lost: the edge writes its member
/// record again, and its bindings and the record of their leases (on the last of them)
/// stay where they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_that_loses_a_lease_replaces_that_lease_alone() {
    let (sb, _sim, mut st, _tls, _specs) = fleet(8).await;
    let store = sb.store().await.unwrap();
    let node = sb.nodes[EDGES[0]].node_id.clone();
    let (leases, on) = binding_leases(&store, &node).await;
    assert!(leases.len() > 1, "an edge spreads its bindings: {leases:?}");
    assert!(
        on.iter().all(|l| leases.contains(l)),
        "every binding on a recorded lease"
    );
    let held = on.len();
    // Not the last, which holds the record this test reads as it goes.
    let lost = *on.iter().find(|l| Some(*l) != leases.last()).unwrap();
    let revoked = Instant::now();
    store.lease_revoke(lost).await.unwrap();
    // Found among the store's leases within a keeper round (1 s at the tests' 3 s TTL),
    // not at the binding leases' next refresh (`BINDING_REFRESH_S`, 30 s).
    let within = Duration::from_secs(10);
    let replaced = loop {
        let (now, on) = binding_leases(&store, &node).await;
        if !now.contains(&lost) && on.len() == held && on.iter().all(|l| now.contains(l)) {
            break now;
        }
        assert!(
            revoked.elapsed() < within,
            "bindings not written again within {within:?}: {} of {held} on recorded leases\n{}",
            on.iter().filter(|l| now.contains(l)).count(),
            sb.nodes[EDGES[0]].log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "binding lease lost: its bindings written again after {:?}",
        revoked.elapsed()
    );
    let kept: Vec<bool> = replaced.iter().zip(&leases).map(|(a, b)| a == b).collect();
    assert_eq!(
        kept.iter().filter(|k| !**k).count(),
        1,
        "only the lost lease is replaced"
    );
    until_never_offline(
        &mut st,
        Duration::from_secs(10),
        "after the lost lease",
        |s| s.operational as usize == PHONES,
    )
    .await;
    assert!(
        sb.nodes[EDGES[0]]
            .log_text()
            .contains("lease lost: expired")
    );

    let member = dialtone_domain::keys::member("edge", &node);
    let main = store.get(&member).await.unwrap().unwrap().lease;
    store.lease_revoke(main).await.unwrap();
    let revoked = Instant::now();
    loop {
        let now = store.get(&member).await.unwrap().map(|kv| kv.lease);
        let record = store
            .get(&dialtone_domain::keys::node_leases(&node))
            .await
            .unwrap()
            .map(|kv| kv.lease);
        if let Some(now) = now {
            assert_ne!(now, main);
            assert_eq!(record, replaced.last().copied(), "the record where it was");
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(5),
            "member not written again within 5 s\n{}",
            sb.nodes[EDGES[0]].log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (after, on) = binding_leases(&store, &node).await;
    assert_eq!(after, replaced, "the binding leases stay");
    assert_eq!(on.len(), held, "so do the bindings");
    until_never_offline(
        &mut st,
        Duration::from_secs(10),
        "after the lost main lease",
        |s| s.operational as usize == PHONES,
    )
    .await;
}

/// With no binding leases (`--binding-leases 0`) an edge's bindings hang on its own lease: that lease
/// lost, the edge writes its member record and every binding again on a new one, and no
/// phone goes OFFLINE meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_that_loses_its_lease_writes_its_bindings_again() {
    let (sb, _sim, mut st, _tls, _specs) = fleet(0).await;
    let store = sb.store().await.unwrap();
    let node = sb.nodes[EDGES[0]].node_id.clone();
    let member = dialtone_domain::keys::member("edge", &node);
    let lease = store.get(&member).await.unwrap().unwrap().lease;
    let held = leases_of_bindings(&store, &node).await;
    assert!(
        !held.is_empty() && held.iter().all(|l| *l == lease),
        "{held:?}"
    );
    store.lease_revoke(lease).await.unwrap();
    let revoked = Instant::now();
    loop {
        let now = store.get(&member).await.unwrap().map(|kv| kv.lease);
        let on = leases_of_bindings(&store, &node).await;
        if let Some(now) = now
            && on.len() == held.len()
            && on.iter().all(|l| *l == now)
        {
            assert_ne!(now, lease, "a new lease");
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(5),
            "{} of {} bindings written again within 5 s\n{}",
            on.len(),
            held.len(),
            sb.nodes[EDGES[0]].log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_never_offline(
        &mut st,
        Duration::from_secs(10),
        "after the lost lease",
        |s| s.operational as usize == PHONES,
    )
    .await;
}

/// An edge's membership record goes first when it dies (its lease expires at least 2 s
/// before the binding leases), and its bindings stop counting then, in the status role and in the
/// REST API alike: its phones read DEGRADED while etcd still holds their bindings, where
/// deleting hundreds of thousands of them takes seconds. Here the record is deleted by
/// hand, so the bindings stay for as long as the test looks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_without_its_membership_record_counts_for_nothing() {
    // The default: one binding lease besides the node's.
    let (sb, _sim, mut st, _tls, _specs) = fleet(1).await;
    let store = sb.store().await.unwrap();
    let node = sb.nodes[EDGES[0]].node_id.clone();
    let member = store
        .get(&dialtone_domain::keys::member("edge", &node))
        .await
        .unwrap()
        .unwrap();
    let (recorded, held) = binding_leases(&store, &node).await;
    assert_eq!(recorded.len(), 1);
    assert!(held.iter().all(|l| *l == recorded[0]), "{held:?}");
    let ttl = |lease| {
        let store = store.clone();
        async move {
            store
                .lease_info(lease)
                .await
                .unwrap()
                .unwrap()
                .granted_ttl_s
        }
    };
    assert_eq!(
        ttl(recorded[0]).await,
        dialtone_store::lifecycle::binding_ttl_s(ttl(member.lease).await, 0, 1),
        "the binding lease outlives the node's"
    );

    assert!(store.delete(&member.key).await.unwrap());
    let gone = Instant::now();
    let degraded = until_never_offline(&mut st, Duration::from_secs(5), "record gone", |s| {
        s.degraded as usize == held.len() && s.operational as usize == PHONES - held.len()
    })
    .await;
    eprintln!(
        "membership record deleted: {} phones DEGRADED after {degraded:?}",
        held.len()
    );
    assert_eq!(
        leases_of_bindings(&store, &node).await.len(),
        held.len(),
        "every binding is still in the store"
    );
    // The REST API says the same of one of them.
    let phone = store
        .snapshot(&["bindings/"])
        .await
        .unwrap()
        .1
        .into_iter()
        .find(|kv| kv.key.ends_with(&format!("/{node}")))
        .and_then(|kv| dialtone_domain::keys::parse_binding(&kv.key).map(|(p, ..)| p.to_owned()))
        .unwrap();
    let api = sb.nodes[0].api_url();
    let (code, body) = dialtone_tests::http_request(
        api.trim_start_matches("http://"),
        "GET",
        &format!("/api/v2/telephony/providers/edges/phones/{phone}"),
        &[("authorization", &format!("Bearer {VIEWER_TOKEN}"))],
        None,
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"]["operationalStatus"], "DEGRADED", "{json}");
    assert!(gone.elapsed() < Duration::from_secs(5));

    // The record back: every phone OPERATIONAL again, nothing written again.
    store
        .put(&member.key, member.value.clone(), Some(member.lease))
        .await
        .unwrap();
    until_never_offline(&mut st, Duration::from_secs(5), "record back", |s| {
        s.operational as usize == PHONES
    })
    .await;
}

/// A second process started with a running edge's node id (a StatefulSet pod force-deleted
/// while its node was cut off, whose old process then reaches etcd again; two processes
/// given one `--node-id`) claims the node id and takes the leases over: the older process
/// writes nothing more, stops by itself with an error, and revokes nothing, so the bindings
/// the newer one took over stay, its membership record with them, and no phone goes OFFLINE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_whose_node_id_a_newer_process_claims_stops_and_revokes_nothing() {
    use dialtone_tests::Node;
    use prost::Message as _;
    let (mut sb, sim, mut st, _tls, _specs) = fleet(8).await;
    let store = sb.store().await.unwrap();
    let older = EDGES[0];
    let node = sb.nodes[older].node_id.clone();
    let (recorded, bindings) = binding_leases(&store, &node).await;
    assert!(!bindings.is_empty());
    let member_key = dialtone_domain::keys::member("edge", &node);
    let member_lease = store.get(&member_key).await.unwrap().unwrap().lease;

    let twin_dir = tempfile::tempdir().unwrap();
    let spec = sb.nodes[older].spec().clone();
    let newer = Node::start(&spec, twin_dir.path().join("newer"))
        .await
        .unwrap();
    let status = sb.nodes[older]
        .wait_exit(Duration::from_secs(10))
        .expect("the older process stops by itself");
    assert!(!status.success(), "it stops with an error: {status}");
    let log = sb.nodes[older].log_text();
    assert!(
        log.contains("a newer process claimed this node id"),
        "it says why: {log}"
    );

    // Nothing of the node's was revoked by the older process on its way out: the bindings
    // are all there, on the very leases they were on (none lost and replaced), which the
    // newer process keeps alive past the TTL.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        binding_leases(&store, &node).await,
        (recorded, bindings),
        "every binding still in the store, on the lease it was on"
    );
    let member = store
        .get(&member_key)
        .await
        .unwrap()
        .expect("the membership record stays");
    assert_eq!(member.lease, member_lease, "on the lease taken over");
    let member = pb::Member::decode(member.value.as_slice()).unwrap();
    assert_eq!(
        format!("http://{}", member.grpc_address),
        newer.grpc_url,
        "the record is the newer process's"
    );
    until_never_offline(&mut st, Duration::from_secs(5), "after the claim", |s| {
        s.offline == 0
    })
    .await;
    drop(newer);
    sim.stop(false, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_members_fail_and_nothing_acknowledged_is_lost() {
    let (mut sb, sim, mut st, _tls, _) = fleet(0).await;
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();

    // One member of three dies: writes acknowledged meanwhile all survive, and every
    // service keeps serving.
    sb.etcd.as_mut().unwrap().kill(0);
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.len() < 20 {
        assert!(
            Instant::now() < deadline,
            "config stopped serving with two members of three"
        );
        let r = cfg
            .create_phone(pb::CreatePhoneRequest {
                phone: Some(pb::Phone {
                    name: format!("During {}", acknowledged.len()),
                    kind: pb::PhoneKind::Unmanaged as i32,
                    site_id: "hq".into(),
                    base_settings_id: "desk".into(),
                    lines: vec![pb::Line {
                        sip_user: format!("during{}", acknowledged.len()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            })
            .await;
        match r {
            Ok(r) => acknowledged.push(r.into_inner().phone.unwrap().id),
            // Not acknowledged (e.g. during the election): may be retried.
            Err(s) => assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}"),
        }
    }
    sb.etcd.as_mut().unwrap().restart(0).unwrap();
    for id in &acknowledged {
        cfg.get_phone(pb::GetRequest { id: id.clone() })
            .await
            .unwrap_or_else(|e| panic!("acknowledged phone {id} lost: {e:?}"));
    }
    let start = Instant::now();
    while summary(&mut st).await.total as usize != PHONES + acknowledged.len() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "status never saw the new phones"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sim.stats().failures(), 0, "edges kept registering phones");

    // The whole cluster stops: edges keep registering from their caches and stay ready (an
    // etcd outage must not take them out of their Service), while the roles that need the
    // store say they are not; everything recovers without restarts when etcd returns.
    let before = sim
        .stats()
        .registered
        .load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..3 {
        sb.etcd.as_mut().unwrap().kill(i);
    }
    let start = Instant::now();
    while sb.nodes[0].http_status("/readyz").await != Some(503) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the config node still ready without etcd"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for &e in &EDGES {
        assert_eq!(
            sb.nodes[e].http_status("/readyz").await,
            Some(200),
            "edge {e} left its Service without etcd"
        );
    }
    tokio::time::sleep(Duration::from_secs(7)).await; // past every phone's refresh
    for &e in &EDGES {
        assert_eq!(
            sb.nodes[e].http_status("/readyz").await,
            Some(200),
            "edge {e}"
        );
    }
    let during = sim
        .stats()
        .registered
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    assert!(
        during >= (2 * PHONES) as u64 / 2,
        "only {during} refreshes without etcd"
    );
    assert_eq!(sim.stats().failures(), 0, "refreshes failed without etcd");
    for i in 0..3 {
        sb.etcd.as_mut().unwrap().restart(i).unwrap();
    }
    let start = Instant::now();
    for node in sb.nodes.iter_mut() {
        if node.wait_ready(Duration::from_secs(30)).await.is_err() {
            let why = node.http_get("/readyz").await;
            let log = node.log_text();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "node {} not ready: {why:?}\n{}",
                node.node_id,
                tail.join("\n")
            );
        }
    }
    eprintln!("etcd back: every node ready after {:?}", start.elapsed());
    let start = Instant::now();
    all_operational(&mut st, "fleet not OPERATIONAL after etcd returned").await;
    eprintln!(
        "fleet OPERATIONAL again {:?} after the nodes were ready",
        start.elapsed()
    );
    sim.stop(false, 1).await;
}
