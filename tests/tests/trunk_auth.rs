//! Carriers that authenticate, with SIPp as the carrier and as its registrar, through a
//! real all-in-one `dialtone` node: the edge registers the trunk at the carrier's registrar
//! and answers its digest challenge with the trunk's credentials (SIPp verifies them), the
//! registration shows in `dialtone.status.v1` and the metrics; a call out that the carrier
//! challenges is sent again with credentials and the next CSeq, and the caller's ACK and BYE
//! follow with their CSeq moved up while the answers come back as the caller numbered them;
//! a carrier calling the registered contact reaches the phone its To header's DID names.
//! The trunk's password is never shown by the API, a read-modify-write keeps it, a change
//! of where it would be used needs it again, and a trunk that stops registering has its
//! contact removed from the registrar.

use std::{
    net::SocketAddr,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use dialtone_proto::{config::v1 as pb, status::v1 as spb};
use dialtone_tests::{
    carriers::{
        answered_call, carrier, carrier_bed, carrier_call, invite_for, invites, peer, received,
        registered_callee, route, route_out, stop, trunk, trunks_when,
    },
    fleet::{at_extension, import, update_phone},
    free_port,
    sip::{Caller, in_dialog, status},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunks_register_and_answer_carrier_challenges() {
    let (sb, mut cfg, dir) = carrier_bed(&[]).await;
    let node = &sb.nodes[0];
    let edge = sb.udp(0);
    let token = node.admin_token();

    // The carrier takes calls at one address and registrations at another.
    let ip = "127.0.0.4";
    let (calls_at, registrar_at): (SocketAddr, SocketAddr) = (
        format!("{ip}:{}", free_port()).parse().unwrap(),
        format!("{ip}:{}", free_port()).parse().unwrap(),
    );
    let carrier_proc = carrier(&dir, "carrier-auth", ip, calls_at.port());
    let registrar = carrier(&dir, "carrier-registrar", ip, registrar_at.port());
    cfg.create_peer(pb::CreatePeerRequest {
        peer: Some(peer("carrier-sbc", ip)),
    })
    .await
    .unwrap();
    let phones = import(&mut cfg, 2, "auth").await.unwrap();
    let (caller_line, callee) = (&phones[0], &phones[1]);
    for (phone, ext) in [(caller_line, "201"), (callee, "202")] {
        update_phone(&mut cfg, &phone.0, at_extension(ext))
            .await
            .unwrap();
    }

    let mut t = trunk(
        "carrier",
        "carrier-sbc",
        calls_at,
        vec![pb::Did {
            numbers: "+15551230000-+15551230099".into(),
            target: Some(pb::did::Target::Extension("hq/202".into())),
        }],
    );
    t.credentials = Some(pb::TrunkCredentials {
        username: "acct-7".into(),
        password: "s3cret".into(),
        ..Default::default()
    });
    t.registration = Some(pb::TrunkRegistration {
        registrar: registrar_at.to_string(),
        domain: "carrier.example".into(),
        ..Default::default()
    });
    // The password is write-only: no answer shows it, and writing back what a read shows
    // keeps it (the registration below proves it is still the right one).
    let created = cfg
        .create_trunk(pb::CreateTrunkRequest { trunk: Some(t) })
        .await
        .unwrap()
        .into_inner();
    let shown = created.credentials.clone().unwrap();
    assert!(shown.password.is_empty() && shown.has_password, "{shown:?}");
    let read = cfg
        .get_trunk(pb::GetRequest {
            id: "carrier".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.credentials, created.credentials);
    let listed = cfg
        .list_trunks(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .trunks;
    assert!(listed.iter().all(|t| {
        t.credentials
            .as_ref()
            .is_some_and(|c| c.password.is_empty())
    }));

    // Site hq sends national calls out through the carrier.
    route_out(&mut cfg, false, vec![route(&["national"], &["carrier"])]).await;

    // The edge registers, answering the registrar's challenge; status and metrics say so.
    let mut st = node.status_client(&token).await.unwrap();
    let registered = |trunks: &[spb::TrunkStatus]| {
        let t = trunks.iter().find(|t| t.trunk_id == "carrier");
        t.and_then(|t| t.registrations.first()).cloned()
    };
    let trunks = trunks_when(&mut st, |t| registered(t).is_some_and(|r| r.registered)).await;
    let r = registered(&trunks).unwrap();
    assert_eq!(r.last_status, 200);
    assert!(r.expires_at_ms > 0);
    assert_eq!(
        node.metric("dialtone_trunk_registered", "trunk=\"carrier\"")
            .await,
        Some(1)
    );
    let registers = received(&dir, "carrier-registrar", "REGISTER");
    let authorized = registers
        .iter()
        .find(|m| m.contains("Authorization: Digest"))
        .expect("a REGISTER answered the challenge");
    assert!(authorized.contains("username=\"acct-7\""), "{authorized}");
    assert!(
        authorized.contains("REGISTER sip:carrier.example SIP/2.0"),
        "{authorized}"
    );
    assert!(
        authorized.contains("<sip:acct-7@127.0.0.1:"),
        "{authorized}"
    );
    assert!(!authorized.contains("s3cret"), "{authorized}");

    // A read-modify-write of the trunk (what a read shows, with one more DID) keeps the
    // password. The carrier calls the registered contact (`acct-7`) for that new DID in
    // To: the phone at extension 202 rings, so the edge has the update; the challenged call
    // below then proves the password it answers with is still the right one.
    let mut read = read;
    read.dids.push(pb::Did {
        numbers: "+15551240000".into(),
        target: Some(pb::did::Target::Extension("hq/202".into())),
    });
    cfg.update_trunk(pb::UpdateTrunkRequest {
        update_mask: dialtone_tests::whole(),
        trunk: Some(read),
    })
    .await
    .unwrap();
    let sim = registered_callee(&sb, callee).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let did = [("did", "+15551240000")];
    while !carrier_call(&dir, "carrier-calls-contact", ip, "acct-7", edge, &did) {
        assert!(
            Instant::now() < deadline,
            "the new DID never reached the phone"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sim.stats().received[0].load(Relaxed), 1, "the phone rang");
    sim.stop(true, 1).await;

    // A call out: the carrier challenges, the edge answers with the trunk's credentials
    // (SIPp checks them) and the next CSeq; the caller sees none of it.
    let caller = Caller::line(&caller_line.1, &caller_line.2).await.unwrap();
    let (invite, responses) = answered_call(&caller, "2125551234", edge).await;
    let codes: Vec<u16> = responses.iter().map(|r| status(r)).collect();
    assert!(!codes.contains(&401) && !codes.contains(&403), "{codes:?}");
    let ok = responses.last().unwrap();
    assert!(ok.contains("CSeq: 1 INVITE"), "the caller's own CSeq: {ok}");
    let sent = invite_for(&dir, "carrier-auth", "sip:+12125551234@").await;
    assert!(sent.contains("CSeq: 2 INVITE"), "{sent}");
    assert!(sent.contains("username=\"acct-7\""), "{sent}");
    assert!(sent.contains("opaque=\"c4rr13r\""), "{sent}");
    assert!(
        sent.contains("P-Asserted-Identity: <sip:+15550001000@"),
        "{sent}"
    );
    assert_eq!(
        invites(&dir, "carrier-auth").len(),
        2,
        "one challenged INVITE, one answered"
    );

    // The dialog goes on with the caller's numbering on its side and the carrier's on the
    // other: ACK 1 and BYE 2 reach the carrier as 2 and 3, the BYE's 200 comes back as 2.
    let (ack, hop) = in_dialog(&invite, ok, "ACK", 1, "sip:+12125551234@127.0.0.4");
    caller.send_raw(&ack, hop).await;
    let (bye, hop) = in_dialog(&invite, ok, "BYE", 2, "sip:+12125551234@127.0.0.4");
    caller.send_raw(&bye, hop).await;
    let answers = caller.responses("BYE", Duration::from_secs(5)).await;
    let last = answers.last().expect("the BYE is answered");
    assert_eq!(status(last), 200, "{last}");
    assert!(last.contains("CSeq: 2 BYE"), "{last}");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let acks = received(&dir, "carrier-auth", "ACK");
        let byes = received(&dir, "carrier-auth", "BYE");
        if acks.iter().any(|m| m.contains("CSeq: 2 ACK"))
            && byes.iter().any(|m| m.contains("CSeq: 3 BYE"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "acks {acks:?} byes {byes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Registering no more at another place needs the password again; then the edge
    // removes its contact from the registrar (Expires: 0, answering its challenge).
    let mut current = cfg
        .get_trunk(pb::GetRequest {
            id: "carrier".into(),
        })
        .await
        .unwrap()
        .into_inner();
    current.registration = None;
    let refused = cfg
        .update_trunk(pb::UpdateTrunkRequest {
            update_mask: dialtone_tests::whole(),
            trunk: Some(current.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("password"), "{refused:?}");
    current.credentials.as_mut().unwrap().password = "s3cret".into();
    cfg.update_trunk(pb::UpdateTrunkRequest {
        update_mask: dialtone_tests::whole(),
        trunk: Some(current),
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let gone = received(&dir, "carrier-registrar", "REGISTER")
            .iter()
            .any(|m| m.contains("Expires: 0") && m.contains("Authorization: Digest"));
        if gone {
            break;
        }
        assert!(Instant::now() < deadline, "never unregistered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(carrier_proc);
    stop(registrar);
}
