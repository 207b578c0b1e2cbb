//! Calls between the phones of a site, through real processes: etcd, a config+status node
//! and two edges; a simulated phone (loadtest/phonesim) registered to its primary and
//! secondary edge; a caller proving one of our lines. A site-assigned phone answers to its
//! extension within its site: dialled through either edge, it rings once; extensions are
//! unique within a site, follow the phone when it changes, and mean nothing to a caller of
//! another site.

use std::{
    net::SocketAddr,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use dialtone_domain::placement;
use dialtone_phonesim::{PhoneSpec, Sim, SimConfig};
use dialtone_proto::{config::v1 as pb, status::v1 as spb};
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, VIEWER_TOKEN,
    fleet::{import, seed_site_on, update_phone},
    sip::{Caller, branch},
};

fn at_extension(extension: &str) -> impl FnOnce(&mut pb::Phone) {
    let extension = extension.to_owned();
    move |p| {
        p.assignment = Some(pb::Assignment {
            mode: Some(pb::assignment::Mode::Site(pb::SiteAssignment { extension })),
        });
    }
}

/// The final code of an INVITE for `dialled` sent through `edge`, with every code seen.
async fn dial(caller: &Caller, dialled: &str, edge: SocketAddr) -> Vec<u16> {
    caller
        .send(&caller.text("INVITE", dialled, &branch(), "INVITE"), edge)
        .await;
    caller.codes("INVITE", Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_dials_an_extension_of_its_site_through_either_edge() {
    let sb = ClusterSandbox::with_etcd_args(
        1,
        &["config,status", "edge", "edge"],
        &["--sip-min-expires=10"],
    )
    .await
    .unwrap();
    let udp = |i: usize| -> SocketAddr {
        format!("127.0.0.1:{}", sb.nodes[i].sip.udp)
            .parse()
            .unwrap()
    };
    let edges = sb.udp_edges(&[1, 2]);
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    seed_site_on(&mut cfg, pb::PhoneSettings::default(), &edges)
        .await
        .unwrap();
    let phones = import(&mut cfg, 3, "ext").await.unwrap();
    let (caller_line, callee, other) = (&phones[0], &phones[1], &phones[2]);
    update_phone(&mut cfg, &caller_line.0, at_extension("201"))
        .await
        .unwrap();
    update_phone(&mut cfg, &callee.0, at_extension("202"))
        .await
        .unwrap();

    // Extensions are unique within a site: the config API says who holds one.
    let taken = update_phone(&mut cfg, &other.0, at_extension("202"))
        .await
        .unwrap_err();
    let status = taken
        .downcast_ref::<tonic::Status>()
        .expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    assert!(
        status.message().contains("202") && status.message().contains(&callee.0),
        "{status:?}"
    );

    let group = dialtone_tests::fleet::placement_edges(&edges);
    let node_addr = |n: &str| if n == "node-1" { udp(1) } else { udp(2) };
    let p = placement::place(&callee.0, &group, true).unwrap();
    let spec = PhoneSpec {
        phone_id: callee.0.clone(),
        user: callee.1.clone(),
        password: callee.2.clone(),
        domain: "dialtone".into(),
        registrars: vec![
            node_addr(&p.primary.node_id),
            node_addr(&p.secondary.unwrap().node_id),
        ],
        managed: None,
    };
    let sim = Sim::start(
        SimConfig {
            expires: 30,
            sockets: 1,
            ..SimConfig::default()
        },
        vec![spec.clone()],
    )
    .await
    .unwrap();
    let mut st = sb.nodes[0].status_client(VIEWER_TOKEN).await.unwrap();
    let start = Instant::now();
    while st
        .get_site_summaries(spb::GetSiteSummariesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sites
        .first()
        .map_or(0, |s| s.operational)
        < 1
    {
        let stats = sim.stats();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never registered: {} registrations, failures {:?}",
            stats.registered.load(Relaxed),
            stats
                .failed
                .iter()
                .map(|f| f.load(Relaxed))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caller = Caller::line(&caller_line.1, &caller_line.2).await.unwrap();
    let invites = || sim.stats().received[0].load(Relaxed);

    // 202 through the primary, then through the secondary (handed to the primary's flow):
    // each call rings the phone once and is answered.
    for (n, edge) in [spec.registrars[0], spec.registrars[1]]
        .into_iter()
        .enumerate()
    {
        let codes = dial(&caller, "202", edge).await;
        assert_eq!(codes.first(), Some(&100), "{codes:?}");
        assert_eq!(codes.last(), Some(&200), "{codes:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(invites(), n as u64 + 1, "one INVITE per call");
    }
    // An extension nobody holds: 404, and nothing rings.
    assert_eq!(
        dial(&caller, "299", spec.registrars[0]).await.last(),
        Some(&404)
    );

    // The phone moves to 203: the edges follow (202 is free, 203 rings).
    update_phone(&mut cfg, &callee.0, at_extension("203"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while dial(&caller, "202", spec.registrars[1]).await.last() != Some(&404) {
        assert!(Instant::now() < deadline, "202 still rings after the move");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = invites();
    assert_eq!(
        dial(&caller, "203", spec.registrars[1]).await.last(),
        Some(&200)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(invites(), before + 1);
    // ... and 202 is free for another phone of the site.
    update_phone(&mut cfg, &other.0, at_extension("202"))
        .await
        .unwrap();

    // A caller of another site dialling 203 reaches no one (extensions are per site).
    cfg.create_site(pb::CreateSiteRequest {
        site: Some(pb::Site {
            id: "branch".into(),
            name: "Branch".into(),
            edge_group_id: "eg".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    update_phone(&mut cfg, &caller_line.0, |p| {
        p.site_id = "branch".into();
        at_extension("201")(p);
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while dial(&caller, "203", spec.registrars[0]).await.last() != Some(&404) {
        assert!(Instant::now() < deadline, "203 rings from another site");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim.stop(true, 1).await;
}
