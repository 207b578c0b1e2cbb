//! Carrier trunks with SIPp as the carriers, through a real all-in-one `dialtone` node: a
//! call out by the site's number plan goes to its route's first trunk, fails over from a
//! carrier answering 503 to the next, which sees the configured caller id in
//! P-Asserted-Identity, and an emergency call the phone's E911 location; a restricted number is refused without touching a trunk; a carrier
//! calling one of its DIDs reaches the phone holding the extension the DID names, an
//! unknown DID gets 404; a carrier that stops answering its OPTIONS keep-alives is DOWN (in
//! the metrics and in `dialtone.status.v1`) and skipped.

use std::{
    net::SocketAddr,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use dialtone_proto::{config::v1 as pb, edge::v1 as epb, status::v1 as spb};
use dialtone_tests::{
    carriers::{
        answered_call, carrier, carrier_bed, carrier_call, invite_for, invites, peer,
        registered_callee, route, route_out, state_of, stop, trunk, trunks_when,
    },
    fleet::{at_extension, change_profile, import, update_phone},
    free_port,
    sip::{Caller, call, in_dialog, status},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_out_through_trunks_and_come_in_by_did() {
    let (sb, mut cfg, dir) = carrier_bed(&[]).await;
    let node = &sb.nodes[0];
    let edge = sb.udp(0);
    let token = node.admin_token();

    // Two carriers on addresses of their own: A is out of service, B answers.
    let (a_ip, b_ip) = ("127.0.0.2", "127.0.0.3");
    let (a, b): (SocketAddr, SocketAddr) = (
        format!("{a_ip}:{}", free_port()).parse().unwrap(),
        format!("{b_ip}:{}", free_port()).parse().unwrap(),
    );
    let carrier_a = carrier(&dir, "carrier-503", a_ip, a.port());
    let carrier_b = carrier(&dir, "carrier-answer", b_ip, b.port());
    for (id, ip) in [("carrier-a-sbc", a_ip), ("carrier-b-sbc", b_ip)] {
        cfg.create_peer(pb::CreatePeerRequest {
            peer: Some(peer(id, ip)),
        })
        .await
        .unwrap();
    }

    let phones = import(&mut cfg, 2, "trk").await.unwrap();
    let (caller_line, callee) = (&phones[0], &phones[1]);
    for (phone, ext) in [(caller_line, "201"), (callee, "202")] {
        update_phone(&mut cfg, &phone.0, at_extension(ext))
            .await
            .unwrap();
    }
    let did = pb::Did {
        numbers: "+15551230000-+15551230099".into(),
        target: Some(pb::did::Target::Extension("hq/202".into())),
    };
    cfg.create_trunk(pb::CreateTrunkRequest {
        trunk: Some(trunk("carrier-a", "carrier-a-sbc", a, vec![did])),
    })
    .await
    .unwrap();
    cfg.create_trunk(pb::CreateTrunkRequest {
        trunk: Some(trunk("carrier-b", "carrier-b-sbc", b, vec![])),
    })
    .await
    .unwrap();
    // A trunk needs its peer; a peer used by a trunk stays.
    let missing = cfg
        .create_trunk(pb::CreateTrunkRequest {
            trunk: Some(trunk("carrier-c", "nobody", a, vec![])),
        })
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        tonic::Code::FailedPrecondition,
        "{missing:?}"
    );
    let in_use = cfg
        .delete_peer(pb::DeleteRequest {
            id: "carrier-a-sbc".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), tonic::Code::FailedPrecondition, "{in_use:?}");

    // Site hq: NANP, national calls allowed, out through A then B, caller id +15550001000.
    let both = route(&["national", "emergency"], &["carrier-a", "carrier-b"]);
    route_out(&mut cfg, false, vec![both]).await;
    // A trunk a site routes calls to stays.
    let routed = cfg
        .delete_trunk(pb::DeleteRequest {
            id: "carrier-b".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(routed.code(), tonic::Code::FailedPrecondition, "{routed:?}");

    // A national number: A answers 503, B answers; B hears the site's caller id asserted
    // and none of the phone's own identity headers.
    let caller = Caller::line(&caller_line.1, &caller_line.2).await.unwrap();
    let (invite, responses) = answered_call(&caller, "2125551234", edge).await;
    let codes: Vec<u16> = responses.iter().map(|r| status(r)).collect();
    assert!(codes.contains(&180), "{codes:?}");
    assert!(
        !codes.contains(&503),
        "a failed-over answer never reaches the caller: {codes:?}"
    );
    // Carrier A was tried first; carrier B got the call.
    invite_for(&dir, "carrier-503", "sip:+12125551234@").await;
    let sent = invite_for(&dir, "carrier-answer", "sip:+12125551234@").await;
    assert!(
        sent.contains("P-Asserted-Identity: <sip:+15550001000@"),
        "{sent}"
    );
    assert!(!sent.contains("Proxy-Authorization"), "{sent}");
    // The call is up through carrier B until its BYE.
    let calls_via_b = || node.metric("dialtone_trunk_calls_active", "trunk=\"carrier-b\"");
    let deadline = Instant::now() + Duration::from_secs(2);
    while calls_via_b().await != Some(1) {
        assert!(Instant::now() < deadline, "the call is not counted as up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and under the caller's site.
    assert_eq!(
        node.metric("dialtone_site_calls_active", "site=\"hq\"")
            .await,
        Some(1)
    );
    // ... and in the caller's calls: out through carrier B, to the number as sent.
    let up = node.calls_of(&token, &caller_line.0, 1).await.unwrap();
    assert_eq!(up.len(), 1, "{up:?}");
    let trunk_b = epb::call_party::Party::TrunkId("carrier-b".into());
    assert_eq!(
        up[0].callee.as_ref().and_then(|p| p.party.clone()),
        Some(trunk_b)
    );
    assert_eq!(up[0].dialled, "+12125551234", "{up:?}");
    // The dialog goes on along the edge's Record-Route: ACK and BYE reach the carrier.
    let ok = responses.last().unwrap();
    let (ack, hop) = in_dialog(&invite, ok, "ACK", 1, "sip:+12125551234@127.0.0.3");
    caller.send_raw(&ack, hop).await;
    let (bye, hop) = in_dialog(&invite, ok, "BYE", 2, "sip:+12125551234@127.0.0.3");
    caller.send_raw(&bye, hop).await;
    assert_eq!(
        caller.codes("BYE", Duration::from_secs(5)).await.last(),
        Some(&200),
        "the carrier answers the BYE"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while calls_via_b().await.is_some() {
        assert!(
            Instant::now() < deadline,
            "the call is still counted after its BYE"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        node.metric("dialtone_site_calls_active", "site=\"hq\"")
            .await,
        None
    );
    let ended = node.calls_now(&token, &caller_line.0).await.unwrap();
    assert!(ended.is_empty(), "the BYE ended it: {ended:?}");

    // An emergency call from a phone whose profile turns E911 on carries its location by
    // reference (RFC 6442) to the carrier.
    change_profile(&mut cfg, "desk", |s| {
        s.e911_enabled = Some(true);
        s.e911_lis_url = Some("https://lis.example.com/held".into());
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (invite, r) = call(&caller, "911", edge).await;
        assert_eq!(r.last().map(|r| status(r)), Some(200), "{r:?}");
        let ok = r.last().unwrap();
        let (ack, hop) = in_dialog(&invite, ok, "ACK", 1, "sip:911@127.0.0.3");
        caller.send_raw(&ack, hop).await;
        let (bye, hop) = in_dialog(&invite, ok, "BYE", 2, "sip:911@127.0.0.3");
        caller.send_raw(&bye, hop).await;
        let sent = invite_for(&dir, "carrier-answer", "sip:911@").await;
        if sent.contains("Geolocation: <https://lis.example.com/held>")
            && sent.contains("Geolocation-Routing: yes")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no location: {sent}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A REMOTE phone at extension 300 whose address is a number goes out through the site's
    // route for it; set to always redirect, it gets 302 instead.
    let remote = cfg
        .create_phone(pb::CreatePhoneRequest {
            phone: Some(pb::Phone {
                name: "Field office".into(),
                kind: pb::PhoneKind::Remote as i32,
                site_id: "hq".into(),
                remote_address: "+12125559876".into(),
                assignment: Some(pb::Assignment {
                    mode: Some(pb::assignment::Mode::Site(pb::SiteAssignment {
                        extension: "300".into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .phone
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (invite, r) = loop {
        let (invite, r) = call(&caller, "300", edge).await;
        if r.last().is_some_and(|r| status(r) == 200) {
            break (invite, r);
        }
        assert!(
            Instant::now() < deadline,
            "the remote phone was never called: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    invite_for(&dir, "carrier-answer", "sip:+12125559876@").await;
    let ok = r.last().unwrap();
    let (ack, hop) = in_dialog(&invite, ok, "ACK", 1, "sip:+12125559876@127.0.0.3");
    caller.send_raw(&ack, hop).await;
    let (bye, hop) = in_dialog(&invite, ok, "BYE", 2, "sip:+12125559876@127.0.0.3");
    caller.send_raw(&bye, hop).await;
    update_phone(&mut cfg, &remote.id, |p| p.remote_redirect = true)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, r) = call(&caller, "300", edge).await;
        if let Some(last) = r.last().filter(|r| status(r) == 302) {
            assert!(last.contains("tel:+12125559876"), "{last}");
            break;
        }
        assert!(Instant::now() < deadline, "never redirected: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An international number is restricted at this site: 403, and no carrier hears of it.
    let before = (
        invites(&dir, "carrier-503").len(),
        invites(&dir, "carrier-answer").len(),
    );
    let (_, r) = call(&caller, "011442071234567", edge).await;
    assert_eq!(r.last().map(|r| status(r)), Some(403), "{r:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = (
        invites(&dir, "carrier-503").len(),
        invites(&dir, "carrier-answer").len(),
    );
    assert_eq!(before, after, "no trunk touched");

    // A carrier's call for a DID reaches the phone holding extension 202; an unknown one
    // gets 404, and a carrier cannot reach another trunk through us.
    let sim = registered_callee(&sb, callee).await;
    assert!(
        carrier_call(&dir, "carrier-calls-did", a_ip, "+15551230042", edge, &[]),
        "the DID's call completes"
    );
    assert_eq!(sim.stats().received[0].load(Relaxed), 1, "the phone rang");
    for number in ["+15559999999", "2125551234", &callee.1] {
        assert!(
            carrier_call(&dir, "carrier-calls-unknown", a_ip, number, edge, &[]),
            "{number}: 404"
        );
    }
    assert_eq!(
        sim.stats().received[0].load(Relaxed),
        1,
        "nothing else rang"
    );
    sim.stop(true, 1).await;

    // Carrier A stops answering even its keep-alives: DOWN, and calls go straight to B.
    stop(carrier_a);
    let deadline = Instant::now() + Duration::from_secs(15);
    while node
        .metric("dialtone_trunk_target_up", "trunk=\"carrier-a\"")
        .await
        != Some(0)
    {
        assert!(Instant::now() < deadline, "carrier A never went DOWN");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        node.metric("dialtone_trunk_target_up", "trunk=\"carrier-b\"")
            .await,
        Some(1)
    );
    // The status role says so too, per trunk and per edge and target.
    let mut st = node.status_client(&token).await.unwrap();
    let trunks = trunks_when(&mut st, |t| {
        state_of(t, "carrier-a") == Some(spb::TrunkState::Down)
            && state_of(t, "carrier-b") == Some(spb::TrunkState::Up)
    })
    .await;
    assert!(trunks.iter().all(|t| t.targets.len() == 1), "{trunks:?}");
    let started = Instant::now();
    let (invite, r) = call(&caller, "2125550000", edge).await;
    assert_eq!(r.last().map(|r| status(r)), Some(200), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "A was not waited for"
    );
    let ok = r.last().unwrap();
    let (ack, hop) = in_dialog(&invite, ok, "ACK", 1, "sip:+12125550000@127.0.0.3");
    caller.send_raw(&ack, hop).await;
    let (bye, hop) = in_dialog(&invite, ok, "BYE", 2, "sip:+12125550000@127.0.0.3");
    caller.send_raw(&bye, hop).await;
    stop(carrier_b);
}

/// A trunk may name up to 1,000 DIDs, each a phone of its own: more targets than one
/// store transaction compares. Written, read back, updated; one missing phone among them
/// is named, and neither write lands then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_names_a_thousand_phones_and_a_missing_one_is_named() {
    let (_sb, mut cfg, _dir) = carrier_bed(&[]).await;
    cfg.create_peer(pb::CreatePeerRequest {
        peer: Some(peer("carrier-sbc", "127.0.0.2")),
    })
    .await
    .unwrap();
    let phones = import(&mut cfg, 1000, "did").await.unwrap();
    let dids = |missing: Option<usize>| -> Vec<pb::Did> {
        phones
            .iter()
            .enumerate()
            .map(|(i, (id, ..))| pb::Did {
                numbers: format!("+1555400{i:04}"),
                target: Some(pb::did::Target::PhoneId(if missing == Some(i) {
                    "no-such-phone".into()
                } else {
                    id.clone()
                })),
            })
            .collect()
    };
    let target: SocketAddr = "127.0.0.2:5060".parse().unwrap();
    // A write refused for a missing DID target names it.
    let names_missing = |refused: tonic::Status, field: &str| {
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );
        assert!(refused.message().contains(field), "{refused:?}");
    };

    let refused = cfg
        .create_trunk(pb::CreateTrunkRequest {
            trunk: Some(trunk("big", "carrier-sbc", target, dids(Some(777)))),
        })
        .await
        .unwrap_err();
    names_missing(refused, "trunk.dids[777].phone_id");
    let absent = cfg
        .get_trunk(pb::GetRequest { id: "big".into() })
        .await
        .unwrap_err();
    assert_eq!(absent.code(), tonic::Code::NotFound, "nothing was written");

    let created = cfg
        .create_trunk(pb::CreateTrunkRequest {
            trunk: Some(trunk("big", "carrier-sbc", target, dids(None))),
        })
        .await
        .unwrap()
        .into_inner();
    let read = cfg
        .get_trunk(pb::GetRequest { id: "big".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.dids.len(), 1000);
    assert_eq!(read.dids, dids(None));

    let mut changed = read.clone();
    changed.dids = dids(Some(3));
    let refused = cfg
        .update_trunk(pb::UpdateTrunkRequest {
            trunk: Some(changed.clone()),
            update_mask: vec![],
        })
        .await
        .unwrap_err();
    names_missing(refused, "trunk.dids[3].phone_id");
    let kept = cfg
        .get_trunk(pb::GetRequest { id: "big".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.version, created.version, "the update did not land");

    // Either side of what one transaction compares (the peer and 126 targets beside the
    // trunk's own key): both written.
    for (id, n) in [("edge-126", 126), ("edge-127", 127)] {
        let mut some: Vec<pb::Did> = dids(None)[..n].to_vec();
        for d in &mut some {
            d.numbers = d.numbers.replace("+1555400", &format!("+1555{n}"));
        }
        let written = cfg
            .create_trunk(pb::CreateTrunkRequest {
                trunk: Some(trunk(id, "carrier-sbc", target, some)),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(written.dids.len(), n);
    }

    changed.dids = dids(None)[..999].to_vec();
    let updated = cfg
        .update_trunk(pb::UpdateTrunkRequest {
            trunk: Some(changed),
            update_mask: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.dids.len(), 999);
}
