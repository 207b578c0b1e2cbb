//! Requests for phones, through real processes: etcd, a config+status node and two edges;
//! simulated phones (loadtest/phonesim) registered to their primary and secondary edge; a
//! caller sending OPTIONS, MESSAGE and INVITE (with CANCEL) to either edge. A phone gets
//! each request once, through whichever edge the caller picked; a dead primary is passed
//! over for the secondary, and tried last once it let a request go unanswered; no
//! registration gives 480; ringing past the INVITE timeout 480.
//! Restart, resync and log-out from the config API reach the phone through one edge (the
//! secondary's when the primary is dead) and report what the phone answered.

use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use dialtone_phonesim::{Sim, SimConfig, SimTransport};
use dialtone_proto::{config::v1 as pb, edge::v1 as epb};
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, VIEWER_TOKEN,
    fleet::{assign_to_user, contacts, import, wait_operational},
    sip::{Caller, branch, headers, status},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_a_phone_once_through_either_edge() {
    let (mut sb, mut cfg) = ClusterSandbox::two_edges(&["--sip-invite-timeout=3"])
        .await
        .unwrap();
    let udp = |i: usize| sb.udp(i);
    let phones = import(&mut cfg, 5, "dlv").await.unwrap();
    let spec = |phone| sb.dual_registered(&[1, 2], phone);
    let (answering, ringing, absent) = (spec(&phones[0]), spec(&phones[1]), &phones[2]);
    let over_tcp = spec(&phones[3]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cfg_sim = SimConfig {
        expires: 20,
        sockets: 1,
        ..SimConfig::default()
    };
    let sim = Sim::start(cfg_sim.clone(), vec![answering.clone()])
        .await
        .unwrap();
    let ring_sim = Sim::start(
        SimConfig {
            invite_answer: 0,
            ..cfg_sim
        },
        vec![ringing.clone()],
    )
    .await
    .unwrap();
    // A phone registered over TCP to both edges: each edge holds a TCP flow of its own.
    let tcp_sim = Sim::start(
        SimConfig {
            expires: 20,
            transport: SimTransport::Tcp,
            ..SimConfig::default()
        },
        vec![over_tcp.clone()],
    )
    .await
    .unwrap();
    let mut st = sb.nodes[0].status_client(VIEWER_TOKEN).await.unwrap();
    assert!(
        wait_operational(&mut st, 3, Duration::from_secs(10)).await,
        "phones never registered"
    );
    // The caller is one of our lines, a user's (calls from unassigned phones are refused),
    // proving itself with its password at each edge (407, Proxy-Authorization).
    let caller_line = &phones[4];
    assign_to_user(&mut cfg, &caller_line.0, "carol")
        .await
        .unwrap();
    let caller = Caller::line(&caller_line.1, &caller_line.2).await.unwrap();
    caller.add_line(&ringing.user, &ringing.password);
    let (primary, secondary) = (answering.registrars[0], answering.registrars[1]);
    let received = |s: &Sim, i: usize| s.stats().received[i].load(Relaxed);

    // OPTIONS through the secondary edge (handed to the primary's flow), once.
    let b = branch();
    let t = caller.text("OPTIONS", &answering.user, &b, "OPTIONS");
    caller.send(&t, secondary).await;
    caller.send(&t, secondary).await; // a retransmission: absorbed
    assert_eq!(
        caller.codes("OPTIONS", Duration::from_secs(5)).await.last(),
        Some(&200)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received(&sim, 1),
        1,
        "the phone got the OPTIONS exactly once"
    );

    // MESSAGE through the primary.
    caller
        .send(
            &caller.text("MESSAGE", &answering.user, &branch(), "MESSAGE"),
            primary,
        )
        .await;
    assert_eq!(
        caller.codes("MESSAGE", Duration::from_secs(5)).await.last(),
        Some(&200)
    );
    assert_eq!(received(&sim, 3), 1);

    // INVITE: 100 from the edge, 180 and 200 from the phone; it rings once, not twice.
    caller
        .send(
            &caller.text("INVITE", &answering.user, &branch(), "INVITE"),
            secondary,
        )
        .await;
    let codes = caller.codes("INVITE", Duration::from_secs(5)).await;
    assert_eq!(codes.first(), Some(&100), "{codes:?}");
    assert!(
        codes.contains(&180) && codes.last() == Some(&200),
        "{codes:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received(&sim, 0),
        1,
        "one INVITE for a dual-registered phone"
    );

    // The TCP phone: a request through its secondary reaches it over a TCP flow (the
    // primary's, handed over), once.
    let mut edge = sb.nodes[1].edge_client(ADMIN_TOKEN).await.unwrap();
    let flows = contacts(&mut edge, &over_tcp.phone_id).await;
    assert!(
        !flows.is_empty()
            && flows
                .iter()
                .all(|c| c.transport() == epb::SipTransport::Tcp),
        "{flows:?}"
    );
    caller
        .send(
            &caller.text("MESSAGE", &over_tcp.user, &branch(), "MESSAGE"),
            over_tcp.registrars[1],
        )
        .await;
    assert_eq!(
        caller.codes("MESSAGE", Duration::from_secs(5)).await.last(),
        Some(&200)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(tcp_sim.stats().received[3].load(Relaxed), 1);
    tcp_sim.stop(true, 1).await;

    // A phone that only rings: CANCEL gives 200 and 487 for the INVITE.
    let b = branch();
    caller
        .send(&caller.text("INVITE", &ringing.user, &b, "INVITE"), primary)
        .await;
    let codes = caller.codes("INVITE", Duration::from_secs(2)).await;
    assert!(codes.contains(&180), "{codes:?}");
    caller
        .send(&caller.text("CANCEL", &ringing.user, &b, "CANCEL"), primary)
        .await;
    assert_eq!(
        caller.codes("CANCEL", Duration::from_secs(3)).await.last(),
        Some(&200)
    );
    assert_eq!(
        caller.codes("INVITE", Duration::from_secs(3)).await.last(),
        Some(&487)
    );

    // Ringing past the INVITE timeout (3 s): 480, and the phone is cancelled.
    caller
        .send(
            &caller.text("INVITE", &ringing.user, &branch(), "INVITE"),
            secondary,
        )
        .await;
    let t0 = Instant::now();
    let codes = caller.codes("INVITE", Duration::from_secs(8)).await;
    assert_eq!(codes.last(), Some(&480), "{codes:?}");
    assert!(t0.elapsed() >= Duration::from_secs(3), "{:?}", t0.elapsed());

    // No registration at all: 480.
    caller
        .send(
            &caller.text("OPTIONS", &absent.1, &branch(), "OPTIONS"),
            primary,
        )
        .await;
    assert_eq!(
        caller.codes("OPTIONS", Duration::from_secs(3)).await.last(),
        Some(&480)
    );

    // Calls from an unassigned phone are refused with a reason that says so, and reach no
    // one; once the phone is assigned, the same call goes through.
    let from = format!("{}@dialtone", ringing.user);
    let invites = received(&sim, 0);
    let b = branch();
    caller
        .send(
            &caller.text_from(&from, "INVITE", &answering.user, &b, "INVITE"),
            primary,
        )
        .await;
    let refused = caller.responses("INVITE", Duration::from_secs(3)).await;
    assert!(
        refused
            .last()
            .is_some_and(|r| r.starts_with("SIP/2.0 403 Phone Not Assigned")),
        "{refused:?}"
    );
    assign_to_user(&mut cfg, &ringing.phone_id, "bob")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        caller
            .send(
                &caller.text_from(&from, "INVITE", &answering.user, &branch(), "INVITE"),
                primary,
            )
            .await;
        let codes = caller.codes("INVITE", Duration::from_secs(3)).await;
        if codes.last() == Some(&200) {
            break;
        }
        assert_eq!(codes.last(), Some(&403), "{codes:?}");
        assert!(
            Instant::now() < deadline,
            "the assignment never reached the edge"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        received(&sim, 0),
        invites + 1,
        "only the assigned call rang"
    );

    // A REMOTE phone (config only): requests for its extension are redirected to it.
    let prefix = cfg
        .get_site(pb::GetRequest { id: "hq".into() })
        .await
        .unwrap()
        .into_inner()
        .sip_user_prefix;
    cfg.create_phone(pb::CreatePhoneRequest {
        phone: Some(pb::Phone {
            name: "Field office".into(),
            kind: pb::PhoneKind::Remote as i32,
            site_id: "hq".into(),
            remote_address: "+15550002001".into(),
            assignment: Some(pb::Assignment {
                mode: Some(pb::assignment::Mode::Site(pb::SiteAssignment {
                    extension: "2001".into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let redirect = loop {
        caller
            .send(
                &caller.text("INVITE", &format!("{prefix}2001"), &branch(), "INVITE"),
                secondary,
            )
            .await;
        let r = caller.responses("INVITE", Duration::from_secs(3)).await;
        if r.last().is_some_and(|m| status(m) == 302) {
            break r.last().unwrap().clone();
        }
        assert!(Instant::now() < deadline, "never redirected: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        headers(&redirect, "contact"),
        ["<tel:+15550002001>"],
        "{redirect}"
    );

    // Restart and resync from the config API: one NOTIFY each, sent by the primary edge,
    // and the phone's answer reported back.
    let primary_name = if answering.registrars[0] == udp(1) {
        "node-1"
    } else {
        "node-2"
    };
    let act = |r: Result<tonic::Response<pb::PhoneActionResponse>, tonic::Status>| {
        r.map(|r| r.into_inner().results)
    };
    let ask = |id: &str, timeout_ms: u32| pb::PhoneActionRequest {
        id: id.to_owned(),
        timeout_ms,
    };
    let results = act(cfg.restart_phone(ask(&answering.phone_id, 0)).await).unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].node_id, primary_name);
    assert_eq!(results[0].outcome(), epb::PhoneActionOutcome::Answered);
    assert!(results[0].reboot);
    assert_eq!(results[0].results[0].status_code, 200, "{results:?}");
    let stats = sim.stats();
    assert_eq!(
        (stats.check_syncs.load(Relaxed), stats.reboots.load(Relaxed)),
        (1, 1),
        "one restart NOTIFY, not one per edge"
    );
    let results = act(cfg.resync_phone(ask(&answering.phone_id, 0)).await).unwrap();
    assert_eq!(
        (results.len(), results[0].outcome(), results[0].reboot),
        (1, epb::PhoneActionOutcome::Answered, false)
    );
    assert_eq!(
        (stats.check_syncs.load(Relaxed), stats.reboots.load(Relaxed)),
        (2, 1)
    );
    // Bad requests change nothing.
    let code = |r: Result<Vec<epb::PhoneActionResult>, tonic::Status>| r.unwrap_err().code();
    assert_eq!(
        code(act(cfg.restart_phone(ask(&absent.0, 0)).await)),
        tonic::Code::FailedPrecondition,
        "a phone with no registration"
    );
    assert_eq!(
        code(act(cfg.restart_phone(ask("no-such-phone", 0)).await)),
        tonic::Code::NotFound
    );
    assert_eq!(
        code(act(cfg
            .resync_phone(ask(&answering.phone_id, 70_000))
            .await)),
        tonic::Code::InvalidArgument
    );
    let mut viewer = sb.nodes[0].config_client(VIEWER_TOKEN).await.unwrap();
    assert_eq!(
        code(act(viewer.restart_phone(ask(&answering.phone_id, 0)).await)),
        tonic::Code::PermissionDenied
    );
    assert_eq!(stats.check_syncs.load(Relaxed), 2);

    // kill -9 the answering phone's primary: at once (its bindings still listed until the
    // lease expires) a request through the secondary still reaches the phone.
    let primary_index = if primary == udp(1) { 1 } else { 2 };
    sb.nodes[primary_index].kill9();
    let before = received(&sim, 1);
    caller
        .send(
            &caller.text("OPTIONS", &answering.user, &branch(), "OPTIONS"),
            secondary,
        )
        .await;
    assert_eq!(
        caller.codes("OPTIONS", Duration::from_secs(6)).await.last(),
        Some(&200)
    );
    assert_eq!(received(&sim, 1), before + 1);

    // A restart meanwhile: the dead primary does not report, so the secondary sends it.
    let results = act(cfg.restart_phone(ask(&answering.phone_id, 6000)).await).unwrap();
    assert_eq!(
        results.iter().map(|r| r.outcome()).collect::<Vec<_>>(),
        [
            epb::PhoneActionOutcome::NoReport,
            epb::PhoneActionOutcome::Answered
        ],
        "{results:?}"
    );
    assert_eq!(results[0].node_id, primary_name);
    assert_eq!(stats.reboots.load(Relaxed), 2);
    // Log-out: the secondary drops the phone's bindings (the dead edge's go with its lease).
    let results = act(cfg.log_out_phone(ask(&answering.phone_id, 3000)).await).unwrap();
    let secondary_report = results.iter().find(|r| r.node_id != primary_name).unwrap();
    assert_eq!(
        secondary_report.outcome(),
        epb::PhoneActionOutcome::Answered,
        "{results:?}"
    );
    assert!(secondary_report.contacts_dropped >= 1);
    let secondary_index = 3 - primary_index;
    let mut edge = sb.nodes[secondary_index]
        .edge_client(ADMIN_TOKEN)
        .await
        .unwrap();
    let bindings = edge
        .list_bindings(epb::ListBindingsRequest {
            phone_id: answering.phone_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .bindings;
    assert!(
        bindings.iter().all(|b| b.contacts.is_empty()),
        "{bindings:?}"
    );
    sim.stop(false, 1).await;
    ring_sim.stop(false, 1).await;
}

/// An edge that lets a request handed to it go unanswered (killed: its bindings stay
/// listed until its lease expires, 20 s here) is tried last from then on: only the first
/// request for its phones through the other edge waits the hop timeout for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_edge_is_tried_last_once_it_let_a_request_go_unanswered() {
    let (mut sb, mut cfg) = ClusterSandbox::two_edges_with_lease_ttl(&[], 20)
        .await
        .unwrap();
    let phones = import(&mut cfg, 2, "sil").await.unwrap();
    let answering = sb.dual_registered(&[1, 2], &phones[0]);
    let config = SimConfig {
        expires: 60,
        sockets: 1,
        ..SimConfig::default()
    };
    let sim = Sim::start(config, vec![answering.clone()]).await.unwrap();
    let mut st = sb.nodes[0].status_client(VIEWER_TOKEN).await.unwrap();
    assert!(
        wait_operational(&mut st, 1, Duration::from_secs(10)).await,
        "the phone never registered"
    );
    assign_to_user(&mut cfg, &phones[1].0, "carol")
        .await
        .unwrap();
    let caller = Caller::line(&phones[1].1, &phones[1].2).await.unwrap();
    let (primary, secondary) = (answering.registrars[0], answering.registrars[1]);
    let (primary_index, secondary_index) = if primary == sb.udp(1) { (1, 2) } else { (2, 1) };
    sb.nodes[primary_index].kill9();
    let options = || async {
        let text = caller.text("OPTIONS", &answering.user, &branch(), "OPTIONS");
        caller.send(&text, secondary).await;
        caller
            .codes("OPTIONS", Duration::from_secs(6))
            .await
            .last()
            .copied()
    };
    let node = &sb.nodes[secondary_index];
    let unanswered = || node.metric("dialtone_edge_deliveries_total", "edge_unanswered");

    // Until the dead edge has been tried once: a store read slower than 100 ms (a loaded
    // machine) leaves it out of that request and of the next second's.
    for _ in 0..5 {
        assert_eq!(options().await, Some(200));
        if unanswered().await == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(
        unanswered().await,
        Some(1),
        "the dead primary was tried first"
    );
    for _ in 0..3 {
        assert_eq!(options().await, Some(200));
    }
    assert_eq!(unanswered().await, Some(1), "the dead edge was tried again");
    sim.stop(false, 1).await;
}
