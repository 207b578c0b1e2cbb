//! A rolling restart of every edge, as Kubernetes performs one (SIGTERM, then a new process
//! with the same node id): 1,000 phones registered for an hour over UDP to their primary and
//! secondary edges stay reachable and never go OFFLINE, because a restarted edge takes its
//! lease and its phones' bindings back instead of forgetting them. One etcd member, a
//! config node, a status node and three edges; real processes, bounded in time.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use dialtone_phonesim::PhoneSpec;
use dialtone_proto::{config::v1 as pb, edge::v1 as epb};
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, VIEWER_TOKEN,
    fleet::{DualFleet, FleetWatch, seed_site_on},
    sip::requests_answered,
};

const PHONES: usize = 1000;
/// Node indexes: 0 config, 1 status, 2-4 edges.
const EDGES: [usize; 3] = [2, 3, 4];
/// Requests sent by one caller at once: under the edge's 500 deliveries per source.
const PROBE_CHUNK: usize = 400;

/// Sends a MESSAGE from the line `from` (SIP user, password) to every phone through the
/// edge `via` picks for it; returns how many were answered 200 by the phone.
async fn message_everyone(
    from: (&str, &str),
    specs: &[PhoneSpec],
    via: impl Fn(&PhoneSpec) -> SocketAddr,
) -> usize {
    let mut answered = 0;
    for chunk in specs.chunks(PROBE_CHUNK) {
        let to: Vec<(&str, &str, SocketAddr)> = chunk
            .iter()
            .map(|p| (p.user.as_str(), p.domain.as_str(), via(p)))
            .collect();
        answered += requests_answered("MESSAGE", from, &to, Duration::from_secs(10)).await;
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_edge_keeps_every_phone_reachable() {
    // The production default lease TTL (10 s): how long a restart may take.
    let mut sb = ClusterSandbox::with_etcd_lease_ttl(
        1,
        &["config", "status", "edge", "edge", "edge"],
        &["--sip-min-expires=10"],
        &[],
        10,
    )
    .await
    .unwrap();
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    seed_site_on(
        &mut cfg,
        pb::PhoneSettings::default(),
        &sb.udp_edges(&EDGES),
    )
    .await
    .unwrap();
    let fleet = DualFleet::import(&sb, &mut cfg, &EDGES, PHONES, "roll")
        .await
        .unwrap();
    let mut st = sb.nodes[1].status_client(VIEWER_TOKEN).await.unwrap();
    let sim = fleet
        .register(4, 500, &mut st)
        .await
        .expect("the fleet registered");
    let DualFleet {
        specs,
        everyone,
        from,
        ..
    } = fleet;

    // Watch the fleet all along: the most phones ever OFFLINE, and the fewest OPERATIONAL.
    let watch = FleetWatch::start(sb.nodes[1].status_client(VIEWER_TOKEN).await.unwrap());

    for &victim in &EDGES {
        let addr = sb.udp(victim);
        let node_id = sb.nodes[victim].node_id.clone();
        let held: Vec<&PhoneSpec> = everyone
            .iter()
            .filter(|p| p.registrars.contains(&addr))
            .collect();
        assert!(!held.is_empty());

        // SIGTERM, as a rollout does, and the new process at once (same node id, within the
        // lease TTL); meanwhile every phone is reached through its other edge.
        let stopped = Instant::now();
        assert!(sb.nodes[victim].terminate().unwrap().success());
        let exited = stopped.elapsed();
        let probe = {
            let specs = specs.clone();
            let (user, password) = (from.0.to_owned(), from.1.to_owned());
            tokio::spawn(async move {
                message_everyone((&user, &password), &specs, |p| {
                    *p.registrars
                        .iter()
                        .find(|a| **a != addr)
                        .expect("two edges")
                })
                .await
            })
        };
        sb.nodes[victim].start_again().await.unwrap();
        let back = stopped.elapsed();
        assert_eq!(
            probe.await.unwrap(),
            PHONES,
            "{node_id} restarting: MESSAGEs lost"
        );
        eprintln!(
            "{node_id}: exited {exited:?} after SIGTERM, back after {back:?}; every phone reached meanwhile"
        );

        // It took its phones back from the store.
        assert!(
            sb.nodes[victim]
                .log_text()
                .contains("taken over from the previous process"),
            "{node_id} did not take its lease over"
        );
        let mut edge = sb.nodes[victim].edge_client(ADMIN_TOKEN).await.unwrap();
        for p in &held {
            let bindings = edge
                .list_bindings(epb::ListBindingsRequest {
                    phone_id: p.phone_id.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .bindings;
            assert!(
                bindings.iter().any(|b| !b.contacts.is_empty()),
                "{node_id} forgot phone {} across its restart",
                p.phone_id
            );
        }
        let taken_back = sb.nodes[victim]
            .metric("dialtone_edge_registered_phones", &node_id)
            .await;
        assert_eq!(
            taken_back,
            Some(held.len() as i64),
            "{node_id} counts the phones it took back"
        );

        // Through the restarted edge: it delivers to the phones it holds itself, and hands
        // the others to their edges.
        let answered = message_everyone((&from.0, &from.1), &specs, |_| addr).await;
        assert_eq!(answered, PHONES, "through {node_id} after its restart");
    }

    let (offline, operational) = watch.finish().await;
    eprintln!(
        "during the rolling restart: at most {offline} OFFLINE, at least {operational} OPERATIONAL"
    );
    assert_eq!(
        offline, 0,
        "a phone went OFFLINE during the rolling restart"
    );
    assert_eq!(
        operational,
        PHONES as u32 + 1,
        "bindings were lost: a phone went DEGRADED during the rolling restart"
    );
    sim.stop(false, 1).await;
}
