//! A rolling upgrade from the previous release (the commit in `ci/previous-release`, built by
//! `scripts/previous-release.sh`, which the test script runs) to this build, in the order
//! `docs/operations.md` gives: the config node, the status node, the provisioning node,
//! then each edge; each by SIGTERM and the new build with the same flags and data dir, as
//! a rollout's new pod. Both releases run side by side on one etcd throughout. 300 phones
//! registered to their primary and secondary edges stay reachable (a MESSAGE reaches
//! every one after every step, and through the other edge while an edge restarts), none
//! goes OFFLINE or DEGRADED, and what was configured before and during the upgrade is all
//! there at the end.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use dialtone_phonesim::PhoneSpec;
use dialtone_proto::{config::v1 as pb, provisioning::v1 as ppb};
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, ConfigClient, Node, VIEWER_TOKEN, binary,
    fleet::{DualFleet, FleetWatch, hq_summary, seed_site_on, wait_operational},
    sip::requests_answered,
};

const PHONES: usize = 300;
/// Node indexes: 0 config, 1 status, 2 provisioning, 3-4 edges; upgraded in this order.
const ROLES: [&str; 5] = ["config", "status", "provisioning", "edge", "edge"];
const EDGES: [usize; 2] = [3, 4];

/// The previous release's `dialtone`.
fn previous_release() -> PathBuf {
    let current = binary("dialtone");
    let target = current
        .parent()
        .and_then(|d| d.parent())
        .expect("target/debug/dialtone");
    let p = target.join("previous-release/dialtone");
    assert!(
        p.is_file(),
        "{} is missing: run `bash scripts/previous-release.sh` (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The build `node` runs: its process's executable.
fn executable(node: &Node) -> PathBuf {
    let pid = node.pid().expect("the node runs");
    std::fs::read_link(format!("/proc/{pid}/exe")).expect("its executable")
}

/// Whether `node` runs this workspace's build.
fn runs_this_release(node: &Node) -> bool {
    executable(node) == binary("dialtone").canonicalize().expect("the build")
}

/// MESSAGEs from `from` to every phone, each through the edge `via` picks; how many
/// were answered 200 by the phone.
async fn message_everyone(
    from: (&str, &str),
    specs: &[PhoneSpec],
    via: impl Fn(&PhoneSpec) -> SocketAddr,
) -> usize {
    let to: Vec<(&str, &str, SocketAddr)> = specs
        .iter()
        .map(|p| (p.user.as_str(), p.domain.as_str(), via(p)))
        .collect();
    requests_answered("MESSAGE", from, &to, Duration::from_secs(10)).await
}

/// A site written at upgrade step `step`, on an edge group of its own.
async fn write_site(cfg: &mut ConfigClient, step: usize) {
    let id = format!("step-{step}");
    cfg.create_edge_group(pb::CreateEdgeGroupRequest {
        edge_group: Some(pb::EdgeGroup {
            id: id.clone(),
            name: format!("Step {step}"),
            edges: vec![pb::Edge {
                node_id: "e1".into(),
                addresses: Some(pb::SipAddresses {
                    udp: "127.0.0.1:5060".into(),
                    ..Default::default()
                }),
            }],
            version: 0,
        }),
    })
    .await
    .unwrap_or_else(|e| panic!("step {step}: edge group: {e:?}"));
    cfg.create_site(pb::CreateSiteRequest {
        site: Some(pb::Site {
            id: id.clone(),
            name: format!("Step {step}"),
            edge_group_id: id,
            ..Default::default()
        }),
    })
    .await
    .unwrap_or_else(|e| panic!("step {step}: site: {e:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_from_the_previous_release_keeps_the_fleet_operational() {
    let previous = previous_release();
    let tls = tempfile::tempdir().unwrap();
    let (cert, key) = dialtone_tls::dev_pair(tls.path(), "provisioning").unwrap();
    let mut sb = ClusterSandbox::with_etcd_lease_ttl(
        1,
        &ROLES,
        &[
            "--sip-min-expires=10",
            &format!("--provisioning-tls-cert={}", cert.display()),
            &format!("--provisioning-tls-key={}", key.display()),
        ],
        &[
            Some(previous.clone()),
            Some(previous.clone()),
            Some(previous.clone()),
            Some(previous.clone()),
            Some(previous),
        ],
        10,
    )
    .await
    .unwrap();
    for node in &sb.nodes {
        assert!(
            !runs_this_release(node),
            "{} does not run the previous release",
            node.node_id
        );
    }
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    seed_site_on(
        &mut cfg,
        pb::PhoneSettings::default(),
        &sb.udp_edges(&EDGES),
    )
    .await
    .unwrap();
    let fleet = DualFleet::import(&sb, &mut cfg, &EDGES, PHONES, "upg")
        .await
        .unwrap();
    let mut st = sb.nodes[1].status_client(VIEWER_TOKEN).await.unwrap();
    let sim = fleet
        .register(2, 300, &mut st)
        .await
        .expect("the fleet registered on the previous release");
    let DualFleet {
        created,
        specs,
        from,
        ..
    } = fleet;
    write_site(&mut cfg, 0).await;

    // The fleet watched all along (through the status node, except while it restarts).
    let watch = FleetWatch::start(sb.nodes[1].status_client(VIEWER_TOKEN).await.unwrap());

    for (step, node) in (0..ROLES.len()).enumerate() {
        let name = format!("{} ({})", sb.nodes[node].node_id, ROLES[node]);
        let other_edge = EDGES
            .iter()
            .find(|e| **e != node)
            .map(|e| sb.udp(*e))
            .expect("two edges");
        assert!(sb.nodes[node].terminate().unwrap().success(), "{name}");
        // While an edge is down, every phone is reached through its other edge.
        let probe = EDGES.contains(&node).then(|| {
            let specs = specs.clone();
            let (user, password) = from.clone();
            tokio::spawn(async move {
                message_everyone((&user, &password), &specs, |_| other_edge).await
            })
        });
        sb.nodes[node].start_again_as(None).await.unwrap();
        assert!(
            runs_this_release(&sb.nodes[node]),
            "{name} does not run this release"
        );
        if let Some(probe) = probe {
            assert_eq!(
                probe.await.unwrap(),
                PHONES,
                "{name} restarting: MESSAGEs lost"
            );
        }
        // Every phone reachable through each edge, whatever release each runs.
        for &edge in &EDGES {
            let via = sb.udp(edge);
            let answered = message_everyone((&from.0, &from.1), &specs, |_| via).await;
            assert_eq!(
                answered, PHONES,
                "after upgrading {name}: through edge {edge}"
            );
        }
        // Configuration is written and read whichever release each role runs.
        cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
        write_site(&mut cfg, step + 1).await;
        let mut prov = sb.nodes[2].provisioning_client(ADMIN_TOKEN).await.unwrap();
        prov.get_how_to_register(ppb::GetHowToRegisterRequest {
            phone_id: created[step].0.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("after upgrading {name}: provisioning: {e:?}"));
        eprintln!("upgraded {name}: every phone reached, configuration written");
    }

    let (offline, operational) = watch.finish().await;
    let mut st = sb.nodes[1].status_client(VIEWER_TOKEN).await.unwrap();
    assert!(
        wait_operational(&mut st, PHONES as u32 + 1, Duration::from_secs(30)).await,
        "fleet not OPERATIONAL after the upgrade: {:?}",
        hq_summary(&mut st).await
    );
    eprintln!("during the upgrade: at most {offline} OFFLINE, at least {operational} OPERATIONAL");
    assert_eq!(offline, 0, "a phone went OFFLINE during the upgrade");
    assert_eq!(
        operational,
        PHONES as u32 + 1,
        "a phone went DEGRADED during the upgrade"
    );
    // Everything configured before and during the upgrade is there.
    let sites = cfg
        .list_sites(pb::ListRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sites;
    for step in 0..=ROLES.len() {
        let id = format!("step-{step}");
        assert!(sites.iter().any(|s| s.id == id), "site {id} lost");
    }
    sim.stop(false, 1).await;
}
