//! A call for a user rings every phone assigned to it, through real processes (etcd, a
//! config+status node, two edges, simulated phones registered to their primary and
//! secondary edges): the phone that answers wins, the other is cancelled with
//! `Reason: SIP;cause=200;text="Call completed elsewhere"`; the edge's record of calls
//! (`EdgeService.ListCalls`) shows the call on the caller's and the answering phone.

use std::{sync::atomic::Ordering::Relaxed, time::Duration};

use dialtone_phonesim::{Sim, SimConfig};
use dialtone_proto::{config::v1 as pb, edge::v1 as epb};
use dialtone_tests::{
    ClusterSandbox, VIEWER_TOKEN,
    fleet::{at_extension, import, update_phone, wait_operational},
    sip::{Caller, branch, status},
};

fn on_phone(id: &str) -> epb::CallParty {
    epb::CallParty {
        party: Some(epb::call_party::Party::PhoneId(id.to_owned())),
    }
}

fn assign(mode: pb::assignment::Mode) -> impl FnOnce(&mut pb::Phone) {
    move |p| p.assignment = Some(pb::Assignment { mode: Some(mode) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_phones_ring_together_and_the_one_that_answers_wins() {
    let (sb, mut cfg) = ClusterSandbox::two_edges(&[]).await.unwrap();
    let phones = import(&mut cfg, 3, "fork").await.unwrap();
    let (caller_line, desk, soft) = (&phones[0], &phones[1], &phones[2]);
    update_phone(&mut cfg, &caller_line.0, at_extension("201"))
        .await
        .unwrap();
    cfg.create_user(pb::CreateUserRequest {
        user: Some(pb::User {
            id: "carol".into(),
            name: "Carol".into(),
            site_id: "hq".into(),
            extension: "300".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    for phone in [desk, soft] {
        let carol = pb::assignment::Mode::User(pb::UserAssignment {
            user_id: "carol".into(),
        });
        update_phone(&mut cfg, &phone.0, assign(carol))
            .await
            .unwrap();
    }

    // The desk phone rings until cancelled; the softphone answers after a second.
    let sim = |invite_answer, answer_after, phone| {
        let spec = sb.dual_registered(&[1, 2], phone);
        Sim::start(
            SimConfig {
                expires: 30,
                sockets: 1,
                invite_answer,
                answer_after,
                ..SimConfig::default()
            },
            vec![spec],
        )
    };
    let desk_sim = sim(0, Duration::ZERO, desk).await.unwrap();
    let soft_sim = sim(200, Duration::from_secs(1), soft).await.unwrap();
    let mut st = sb.nodes[0].status_client(VIEWER_TOKEN).await.unwrap();
    assert!(wait_operational(&mut st, 2, Duration::from_secs(10)).await);

    // Dialled through either edge, Carol's extension rings both phones once; the
    // softphone's answer reaches the caller and the desk phone is cancelled, saying why.
    let caller = Caller::line(&caller_line.1, &caller_line.2).await.unwrap();
    for (n, edge) in [sb.udp(1), sb.udp(2)].into_iter().enumerate() {
        let invite = caller.text("INVITE", "300", &branch(), "INVITE");
        caller.send(&invite, edge).await;
        let responses = caller.responses("INVITE", Duration::from_secs(5)).await;
        let codes: Vec<u16> = responses.iter().map(|r| status(r)).collect();
        assert_eq!(codes.last(), Some(&200), "{codes:?}");
        assert!(codes.contains(&180), "{codes:?}");
        assert_eq!(codes.iter().filter(|&&c| c >= 200).count(), 1, "{codes:?}");
        let n = n as u64 + 1;
        let cancelled = || desk_sim.stats().cancelled_elsewhere.load(Relaxed);
        for _ in 0..50 {
            if cancelled() == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            cancelled(),
            n,
            "the desk phone cancelled as answered elsewhere"
        );
        assert_eq!(
            desk_sim.stats().received[0].load(Relaxed),
            n,
            "one INVITE each"
        );
        assert_eq!(
            soft_sim.stats().received[0].load(Relaxed),
            n,
            "one INVITE each"
        );
        // The record of calls of the edge the call entered through says who answered:
        // the softphone, never the desk phone.
        let node = &sb.nodes[n as usize];
        let up = node
            .calls_of(VIEWER_TOKEN, &caller_line.0, 1)
            .await
            .unwrap();
        assert_eq!(up.len(), 1, "{up:?}");
        let call = &up[0];
        assert_eq!(call.caller, Some(on_phone(&caller_line.0)), "{call:?}");
        assert_eq!(call.callee, Some(on_phone(&soft.0)), "{call:?}");
        assert_eq!((&*call.dialled, &*call.site_id), ("300", "hq"), "{call:?}");
        let of_soft = node.calls_now(VIEWER_TOKEN, &soft.0).await.unwrap();
        assert!(of_soft.contains(call), "{of_soft:?}");
        let of_desk = node.calls_now(VIEWER_TOKEN, &desk.0).await.unwrap();
        assert!(of_desk.is_empty(), "{of_desk:?}");
    }
    // A phone that does not exist is NOT_FOUND, and a viewer sees every call of an edge.
    let mut edge = sb.nodes[1].edge_client(VIEWER_TOKEN).await.unwrap();
    let unknown = edge
        .list_calls(epb::ListCallsRequest {
            phone_id: "no-such-phone".into(),
            page_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    // The softphone's primary edge answered the call the other edge entered and handed
    // over: that edge lists it too, from the other edge. Three records of two calls.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let all = loop {
        let mut all = sb.nodes[1].calls_now(VIEWER_TOKEN, "").await.unwrap();
        all.extend(sb.nodes[2].calls_now(VIEWER_TOKEN, "").await.unwrap());
        if all.len() == 3 || std::time::Instant::now() >= deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(all.len(), 3, "{all:?}");
    let handed_over = Some(epb::call_party::Party::OtherEdge(true));
    let by_edge: Vec<_> = all
        .iter()
        .filter(|c| c.caller.as_ref().map(|p| p.party.clone()) == Some(handed_over.clone()))
        .collect();
    assert_eq!(by_edge.len(), 1, "{all:?}");
    assert_eq!(by_edge[0].callee, Some(on_phone(&soft.0)), "{all:?}");
    desk_sim.stop(true, 1).await;
    soft_sim.stop(true, 1).await;
}
