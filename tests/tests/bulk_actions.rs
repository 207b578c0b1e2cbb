//! Restart or resync many phones at once (the seed's bulk actions): by site, by profile or
//! by a list, paced, with progress. A fleet of simulated phones (phonesim) dual-registered
//! to two edges over etcd; every phone that holds a registration gets exactly one
//! check-sync NOTIFY (through one edge), the phones without one are counted as not
//! registered, and the progress stream ends with every phone done. Bad requests are
//! refused naming the field, and a viewer may not start a wave.

use std::{sync::atomic::Ordering::Relaxed, time::Duration};

use dialtone_phonesim::{Sim, SimConfig};
use dialtone_proto::config::v1 as pb;
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, VIEWER_TOKEN,
    fleet::{import, seed_site_on, wait_operational},
};

const PHONES: usize = 40;
const OFFLINE: usize = 4;

/// Every progress message of a wave, in order (the call's error when it is refused).
async fn wave(
    cfg: &mut dialtone_tests::ConfigClient,
    req: pb::ActOnPhonesRequest,
) -> Result<Vec<pb::ActOnPhonesProgress>, tonic::Status> {
    let mut stream = cfg.act_on_phones(req).await?.into_inner();
    let mut all = Vec::new();
    while let Some(p) = stream.message().await? {
        all.push(p);
    }
    Ok(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sites_phones_resync_in_a_paced_wave_with_progress() {
    let sb = ClusterSandbox::with_etcd_args(1, &["config,status", "edge", "edge"], &[])
        .await
        .unwrap();
    let edges = sb.udp_edges(&[1, 2]);
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    seed_site_on(&mut cfg, pb::PhoneSettings::default(), &edges)
        .await
        .unwrap();
    let phones = import(&mut cfg, PHONES, "bulk").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // All but the last OFFLINE phones register.
    let specs = phones[..PHONES - OFFLINE]
        .iter()
        .map(|p| sb.dual_registered(&[1, 2], p))
        .collect();
    let sim = Sim::start(
        SimConfig {
            expires: 600,
            ..SimConfig::default()
        },
        specs,
    )
    .await
    .unwrap();
    let mut st = sb.nodes[0].status_client(VIEWER_TOKEN).await.unwrap();
    assert!(
        wait_operational(&mut st, (PHONES - OFFLINE) as u32, Duration::from_secs(20)).await,
        "phones never registered"
    );

    // The whole site, 50 a second: one NOTIFY per registered phone, none for the others.
    let started = std::time::Instant::now();
    let all = wave(
        &mut cfg,
        pb::ActOnPhonesRequest {
            action: pb::BulkAction::Resync as i32,
            site_id: "hq".into(),
            rate_per_s: 50,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let took = started.elapsed();
    let last = all.last().unwrap();
    assert!(last.finished, "{last:?}");
    assert_eq!(
        (
            last.total,
            last.done,
            last.answered,
            last.not_registered,
            last.failed
        ),
        (
            PHONES as u32,
            PHONES as u32,
            (PHONES - OFFLINE) as u32,
            OFFLINE as u32,
            0
        ),
        "{last:?}"
    );
    // Paced: 40 phones at 50 a second take at least 0.8 s; progress only grows.
    assert!(took >= Duration::from_millis(780), "{took:?}");
    assert!(all.windows(2).all(|w| w[0].done <= w[1].done), "{all:?}");
    let stats = sim.stats();
    assert_eq!(
        (stats.check_syncs.load(Relaxed), stats.reboots.load(Relaxed)),
        ((PHONES - OFFLINE) as u64, 0),
        "one resync NOTIFY per registered phone, none a reboot"
    );

    // A list of two, restarted.
    let listed: Vec<String> = phones[..2].iter().map(|p| p.0.clone()).collect();
    let all = wave(
        &mut cfg,
        pb::ActOnPhonesRequest {
            action: pb::BulkAction::Restart as i32,
            phone_ids: listed,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(all.last().unwrap().answered, 2, "{all:?}");
    assert_eq!(stats.reboots.load(Relaxed), 2);

    // Bad requests are refused; a viewer may not start a wave. Nothing is sent.
    let resync = |site: &str, profile: &str| pb::ActOnPhonesRequest {
        action: pb::BulkAction::Resync as i32,
        site_id: site.into(),
        base_settings_id: profile.into(),
        ..Default::default()
    };
    let viewer = sb.nodes[0].config_client(VIEWER_TOKEN).await.unwrap();
    // (client, request, refusal)
    let cases = [
        (
            cfg.clone(),
            resync("hq", "desk"),
            tonic::Code::InvalidArgument,
        ),
        (cfg.clone(), resync("nowhere", ""), tonic::Code::NotFound),
        (viewer, resync("hq", ""), tonic::Code::PermissionDenied),
    ];
    for (mut client, req, want) in cases {
        let got = wave(&mut client, req.clone()).await.unwrap_err();
        assert_eq!(got.code(), want, "{req:?}: {got:?}");
    }
    assert_eq!(
        stats.check_syncs.load(Relaxed),
        (PHONES - OFFLINE + 2) as u64
    );
}
