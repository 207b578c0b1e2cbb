//! The status role against real processes: etcd, two edges and a config+status node. A
//! phone registers to its primary and secondary edge with digest auth over UDP; the status
//! follows (OFFLINE, DEGRADED, OPERATIONAL), a watch sees every step and resumes from a
//! revision, kill -9 of the primary shows DEGRADED within the lease TTL + 2 s, and a
//! restarted status node rebuilds the same view.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use dialtone_proto::{
    config::v1 as pb,
    status::v1::{self as spb, EdgeRole, OperationalStatus},
};
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, StatusClient, VIEWER_TOKEN,
    fleet::{add_phone, create_site, seed_site_on},
    sip::{UdpPhone, status},
};
use tokio_stream::StreamExt;

async fn get(s: &mut StatusClient, id: &str) -> spb::PhoneStatus {
    s.get_phone_status(spb::GetPhoneStatusRequest {
        phone_id: id.into(),
    })
    .await
    .expect("status")
    .into_inner()
}

/// Polls until the phone's status is `want`; returns it and how long that took.
async fn wait_status(
    s: &mut StatusClient,
    id: &str,
    want: OperationalStatus,
    within: Duration,
) -> (spb::PhoneStatus, Duration) {
    let start = Instant::now();
    loop {
        let st = get(s, id).await;
        if st.status() == want {
            return (st, start.elapsed());
        }
        assert!(
            start.elapsed() < within,
            "phone {id} not {want:?} within {within:?}: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Next watch message with a status for `id` (skipping others), within 5 s.
async fn next_for(w: &mut tonic::Streaming<spb::StatusChange>, id: &str) -> spb::StatusChange {
    loop {
        let c = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("a change within 5 s")
            .expect("stream open")
            .expect("no error");
        if c.phone_id == id {
            return c;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_dual_registration_an_edge_kill_and_its_own_restart() {
    let mut sb = ClusterSandbox::with_etcd(1, &["config,status", "edge", "edge"])
        .await
        .unwrap();
    let udp = |i: usize| format!("127.0.0.1:{}", sb.nodes[i].sip.udp);
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    seed_site_on(
        &mut cfg,
        pb::PhoneSettings::default(),
        &[("node-1", udp(1)), ("node-2", udp(2))],
    )
    .await
    .unwrap();
    let mut edge = sb.nodes[1].edge_client(ADMIN_TOKEN).await.unwrap();
    let phone = add_phone(&mut cfg, &mut edge, "Desk 1", "1001")
        .await
        .unwrap();
    let mut st = sb.nodes[0].status_client(VIEWER_TOKEN).await.unwrap();

    // Configured, not registered: OFFLINE, with its primary and secondary named.
    let (s, _) = wait_status(
        &mut st,
        &phone.phone_id,
        OperationalStatus::Offline,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(s.edges.len(), 2, "{s:?}");
    assert_eq!(s.edges[0].role(), EdgeRole::Primary);
    assert_eq!(s.edges[1].role(), EdgeRole::Secondary);
    assert_eq!(s.site_id, "hq");
    let primary = s.edges[0].node_id.clone();
    let node_index = |id: &str| if id == "node-1" { 1 } else { 2 };
    let (pi, si) = (node_index(&primary), node_index(&s.edges[1].node_id));

    let mut watch = st
        .watch_phone_statuses(spb::WatchPhoneStatusesRequest::default())
        .await
        .unwrap()
        .into_inner();
    // A snapshot, then `synced`.
    let first = next_for(&mut watch, &phone.phone_id).await;
    assert!(first.snapshot);
    let synced = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(synced.synced, "{synced:?}");

    // Register to the primary: DEGRADED; to the secondary too: OPERATIONAL.
    let addr = |i: usize| -> SocketAddr { udp(i).parse().unwrap() };
    let mut to_primary = UdpPhone::new(addr(pi), &phone.sip_user, &phone.password)
        .await
        .unwrap();
    assert_eq!(status(&to_primary.register(60).await.unwrap()), 200);
    let c = next_for(&mut watch, &phone.phone_id).await;
    assert_eq!(
        c.status.as_ref().unwrap().status(),
        OperationalStatus::Degraded
    );
    let degraded_revision = c.revision;
    let mut to_secondary = UdpPhone::new(addr(si), &phone.sip_user, &phone.password)
        .await
        .unwrap();
    assert_eq!(status(&to_secondary.register(60).await.unwrap()), 200);
    let c = next_for(&mut watch, &phone.phone_id).await;
    let s = c.status.unwrap();
    assert_eq!(s.status(), OperationalStatus::Operational);
    assert!(s.edges.iter().all(|e| e.registered), "{s:?}");
    assert_eq!(s.lines[0].contacts.len(), 2);
    assert!(s.lines[0].reachable);
    assert!(
        s.lines[0]
            .aor
            .starts_with(&format!("sip:{}@", phone.sip_user)),
        "{s:?}"
    );

    // A watch resumed after the DEGRADED change gets exactly the OPERATIONAL one.
    let mut resumed = st
        .watch_phone_statuses(spb::WatchPhoneStatusesRequest {
            after_revision: degraded_revision,
            site_id: "hq".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let c = next_for(&mut resumed, &phone.phone_id).await;
    assert!(!c.snapshot);
    assert_eq!(c.status.unwrap().status(), OperationalStatus::Operational);
    drop(resumed);

    // Summaries and filtered listings agree.
    let sum = st
        .get_site_summaries(spb::GetSiteSummariesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sum.sites.len(), 1);
    assert_eq!((sum.sites[0].total, sum.sites[0].operational), (1, 1));
    let listed = st
        .list_phone_statuses(spb::ListPhoneStatusesRequest {
            status: OperationalStatus::Operational as i32,
            edge_node_id: primary.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.statuses.len(), 1);
    let err = st
        .list_phone_statuses(spb::ListPhoneStatusesRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("page_size"), "{err:?}");

    // kill -9 the primary: DEGRADED within the lease TTL (3 s) + 2 s.
    sb.nodes[pi].kill9();
    let (s, took) = wait_status(
        &mut st,
        &phone.phone_id,
        OperationalStatus::Degraded,
        Duration::from_secs(5),
    )
    .await;
    eprintln!("kill -9 of the primary edge shown DEGRADED after {took:?}");
    assert!(!s.edges[0].registered);
    assert!(s.edges[1].registered);
    assert!(
        s.lines[0].reachable,
        "the secondary keeps the line reachable"
    );

    // The edge returns; the phone's next refresh makes it OPERATIONAL again.
    sb.nodes[pi].restart().await.unwrap();
    to_primary.server = format!("127.0.0.1:{}", sb.nodes[pi].sip.udp)
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // The restarted edge may still be loading its credentials: retry until 200.
        if status(&to_primary.register(60).await.unwrap()) == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted edge never took the registration"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_status(
        &mut st,
        &phone.phone_id,
        OperationalStatus::Operational,
        Duration::from_secs(3),
    )
    .await;

    // The status node restarts and rebuilds the same view; a watcher resuming from a
    // revision it no longer remembers gets a fresh snapshot.
    let before = get(&mut st, &phone.phone_id).await;
    sb.nodes[0].restart().await.unwrap();
    let mut st = sb.nodes[0].status_client(VIEWER_TOKEN).await.unwrap();
    let after = get(&mut st, &phone.phone_id).await;
    assert_eq!(after.status(), OperationalStatus::Operational);
    assert_eq!(after.edges.len(), before.edges.len());
    let mut w = st
        .watch_phone_statuses(spb::WatchPhoneStatusesRequest {
            after_revision: 1,
            site_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let c = next_for(&mut w, &phone.phone_id).await;
    assert!(c.snapshot);

    // Moved to another site: the old site's watcher hears that it left, the new site's
    // that it came, and so does a watcher of the old site resuming from before the move.
    cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    create_site(&mut cfg, "annex", "Annex", "eg").await.unwrap();
    let watcher = st.clone();
    let site_watch = |site: &str, after_revision| {
        let mut st = watcher.clone();
        let site_id = site.to_owned();
        async move {
            st.watch_phone_statuses(spb::WatchPhoneStatusesRequest {
                after_revision,
                site_id,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let mut edge = sb.nodes[1].edge_client(ADMIN_TOKEN).await.unwrap();
    let stays = add_phone(&mut cfg, &mut edge, "Desk 2", "1002")
        .await
        .unwrap();
    let mut hq = site_watch("hq", 0).await;
    let mut annex = site_watch("annex", 0).await;
    assert!(next_for(&mut hq, &phone.phone_id).await.snapshot);
    let before_move = get(&mut st, &phone.phone_id).await.revision;
    dialtone_tests::fleet::update_phone(&mut cfg, &phone.phone_id, |p| {
        p.site_id = "annex".into();
    })
    .await
    .unwrap();
    let left = next_for(&mut hq, &phone.phone_id).await;
    assert_eq!(left.left_site, "hq", "{left:?}");
    assert_eq!(left.status.as_ref().unwrap().site_id, "annex");
    let came = next_for(&mut annex, &phone.phone_id).await;
    assert_eq!(came.revision, left.revision);
    assert_eq!(came.status.as_ref().unwrap().site_id, "annex");
    // A watcher of hq resuming from before the move is sent hq's phones again (neither
    // the history nor the view knows the phone was there): the moved one is not among
    // them. A watcher of every site resumes from the history.
    assert!(before_move < left.revision);
    let mut resumed = site_watch("hq", left.revision).await;
    let mut resent = Vec::new();
    loop {
        let c = tokio::time::timeout(Duration::from_secs(5), resumed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if c.synced {
            break;
        }
        assert!(c.snapshot, "{c:?}");
        resent.push(c.phone_id);
    }
    assert_eq!(resent, [stays.phone_id], "hq's phones, sent again");
    let mut everyone = site_watch("", left.revision).await;
    let again = next_for(&mut everyone, &phone.phone_id).await;
    assert!(!again.snapshot, "{again:?}");
    assert_eq!(again.status.unwrap().site_id, "annex");
    drop((hq, annex, resumed, everyone));

    // Deleting the phone is reported as a removal.
    cfg.delete_phone(pb::DeleteRequest {
        id: phone.phone_id.clone(),
        version: 0,
    })
    .await
    .unwrap();
    let c = loop {
        let c = next_for(&mut w, &phone.phone_id).await;
        if c.removed {
            break c;
        }
    };
    assert!(c.status.is_none());
    let err = st
        .get_phone_status(spb::GetPhoneStatusRequest {
            phone_id: phone.phone_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

/// A watcher that stops reading while 50,000 phones are created falls behind the status
/// role's channel (16,384 changes); it is resumed from the last revision it had whole
/// with the phones changed since (here from the history), not sent the whole fleet again,
/// and misses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_is_sent_what_it_missed_not_the_fleet_again() {
    // Past what the channel (16,384), the watch's queue (256) and HTTP/2's windows (a few
    // MiB, ~175 bytes a change) hold together.
    const PHONES: usize = 50_000;
    let sb = ClusterSandbox::with_etcd(1, &["config,status"])
        .await
        .unwrap();
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    seed_site_on(
        &mut cfg,
        pb::PhoneSettings::default(),
        &[("edge-x", "127.0.0.1:5999".to_owned())],
    )
    .await
    .unwrap();
    let mut st = sb.nodes[0].status_client(VIEWER_TOKEN).await.unwrap();
    let mut watch = st
        .watch_phone_statuses(spb::WatchPhoneStatusesRequest::default())
        .await
        .unwrap()
        .into_inner();
    loop {
        let c = watch.message().await.unwrap().expect("open");
        if c.synced {
            break;
        }
    }
    // The watcher reads nothing while every phone is created and its status published.
    let changes = || async {
        let (_, text) = sb.nodes[0].http_get("/metrics").await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("dialtone_status_changes_total "))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap()
    };
    let before = changes().await;
    let imported = dialtone_tests::fleet::import(&mut cfg, PHONES, "9")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while changes().await < before + PHONES {
        assert!(Instant::now() < deadline, "statuses not published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut missing: std::collections::HashSet<String> =
        imported.into_iter().map(|(id, ..)| id).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let c = tokio::time::timeout(left, watch.message())
            .await
            .unwrap_or_else(|_| panic!("{} phones never sent", missing.len()))
            .unwrap()
            .expect("open");
        assert!(!c.snapshot, "the whole fleet sent again: {c:?}");
        if c.status.is_some() {
            missing.remove(&c.phone_id);
        }
    }
    // 50,000 changes since: more than a resume takes from the history at once, so the
    // phones changed since were read from the view.
    assert!(
        sb.nodes[0].status_watch_resumes("changed").await >= 1,
        "the watcher never fell behind"
    );
    assert_eq!(sb.nodes[0].status_watch_resumes("snapshot").await, 0);
}
