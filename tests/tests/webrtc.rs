//! A browser calls a desk phone and back: JsSIP in Debian's headless Chromium (Playwright,
//! Chromium's fake microphone) registered over WSS to one edge, baresip over UDP to the
//! other. The browser speaks ICE and DTLS-SRTP (`UDP/TLS/RTP/SAVPF`), baresip plain RTP; the
//! edges anchor the call at a real rtpengine, which bridges the two. The site relays
//! always: the browser takes its ICE servers from `how-to-register` (a real coturn beside
//! the rtpengine, with the phone's time-limited credential from the shared secret) and may
//! only use relayed candidates, so its media goes through coturn. Shown by what each end
//! sees: the page's `getStats()` counts audio packets received over a relay candidate, and
//! rtpengine's `query` counts packets from both parties. Then both call out through a
//! trunk to a carrier (SIPp echoing RTP): the browser's call is anchored because it must
//! be, the desk phone's because the trunk asks for a fixed media address; and the carrier's
//! call in to the desk phone's DID is anchored for the same reason.

use std::time::{Duration, Instant};

use dialtone_proto::{config::v1 as pb, provisioning::v1 as ppb};
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox,
    browser::BrowserPhone,
    carriers::{carrier_call_echoing, carrier_echoing, peer, route, route_out, stop, trunk},
    fleet::{browser_profile, phone_at, wait_routable},
    media::{Coturn, Rtpengine, serve_hq},
    softphones::Softphone,
};
use serde_json::json;

/// Waits (10 s) until both parties of `call` sent packets to `engine` and the browser
/// received audio; the packets by tag and the page's stats.
async fn talking(
    engine: &Rtpengine,
    call: &str,
    browser: &mut BrowserPhone,
) -> (bool, Vec<(String, i64)>, (u64, u64, Vec<String>)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = engine.packets(call).await.unwrap_or_default();
        let stats = browser.stats().await.unwrap_or_default();
        // Packets both ways, and the page knows which candidate pair carries them.
        let both =
            p.len() >= 2 && p.iter().all(|(_, n)| *n > 0) && stats.0 > 0 && !stats.2.is_empty();
        if both || Instant::now() > deadline {
            return (both, p, stats);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_calls_a_desk_phone_and_back_and_out_to_a_carrier_through_rtpengine_and_coturn() {
    // JsSIP answers MD5 digests only; the page's origin may open SIP WebSockets; the
    // provisioning role holds coturn's shared secret.
    let page = BrowserPhone::page_port();
    let origin = format!("--sip-ws-allowed-origins=http://127.0.0.1:{page}");
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = dialtone_tls::dev_pair(files.path(), "provisioning").unwrap();
    let secret = files.path().join("turn-secret");
    std::fs::write(&secret, format!("{:032x}\n", rand::random::<u128>())).unwrap();
    let flags = [
        "--sip-digest-algorithms=md5".to_owned(),
        origin,
        format!("--provisioning-tls-cert={}", cert.display()),
        format!("--provisioning-tls-key={}", key.display()),
        format!("--turn-secret-file={}", secret.display()),
        "--turn-credential-ttl=600".to_owned(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (sb, mut cfg) = ClusterSandbox::two_edges_after("config,status,provisioning", &flags)
        .await
        .unwrap();
    let engine = Rtpengine::start(&sb.dir().join("media"), "a")
        .await
        .unwrap();
    let turn = Coturn::start(
        &sb.dir().join("turn"),
        std::fs::read_to_string(&secret).unwrap().trim(),
    )
    .await
    .unwrap();
    // The site anchors only what needs it (a WebRTC call always does) and relays its
    // browsers' media always.
    serve_hq(&mut cfg, ("rtp-a", &engine), vec![turn.url.clone()], |hq| {
        hq.media_relay = pb::MediaRelay::Always as i32
    })
    .await
    .unwrap();
    // 201 is a WebRTC phone (its kind and profile): how an edge that hands a call to
    // another knows to offer it DTLS-SRTP and ICE.
    browser_profile(&mut cfg).await.unwrap();
    let phones = [
        phone_at(&mut cfg, "201", "webrtc0", pb::PhoneKind::Webrtc, "browser")
            .await
            .unwrap(),
        phone_at(&mut cfg, "202", "webrtc1", pb::PhoneKind::Unmanaged, "desk")
            .await
            .unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;

    // What the browser is told: its ICE servers with its own credential, relay only.
    let now = dialtone_common::clock::unix_secs() as i64;
    let how = sb.nodes[0]
        .provisioning_client(ADMIN_TOKEN)
        .await
        .unwrap()
        .get_how_to_register(ppb::GetHowToRegisterRequest {
            phone_id: phones[0].phone_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(how.ice_transport_policy, "relay", "{how:?}");
    let ice = &how.ice_servers;
    assert_eq!(ice.len(), 1, "{how:?}");
    assert_eq!(ice[0].urls, std::slice::from_ref(&turn.url));
    assert!(
        ice[0]
            .username
            .ends_with(&format!(":{}", phones[0].phone_id)),
        "{how:?}"
    );
    assert!(
        (now + 600..=now + 700).contains(&ice[0].expires_at),
        "{how:?}"
    );
    let ice_servers = json!([{
        "urls": ice[0].urls,
        "username": ice[0].username,
        "credential": ice[0].credential,
    }]);

    let dir = sb.dir().join("phones");
    let wss = format!("wss://127.0.0.1:{}", sb.nodes[1].sip.wss);
    let mut browser = BrowserPhone::start(
        &dir,
        page,
        &wss,
        &phones[0],
        ice_servers,
        &how.ice_transport_policy,
    )
    .unwrap();
    let udp = format!("127.0.0.1:{}", sb.nodes[2].sip.udp);
    let mut baresip = Softphone::baresip(&dir, &udp, &phones[1], 60).unwrap();
    // Each call enters through the other edge, which finds the callee in the store.
    for (node, p) in [(1, &phones[0]), (2, &phones[1])] {
        assert!(
            wait_routable(&sb, node, &p.phone_id, Duration::from_secs(20))
                .await
                .unwrap(),
            "{} never registered:\nbrowser: {}\nbaresip: {}",
            p.sip_user,
            browser.log_text(),
            baresip.log_text()
        );
    }
    let logs = |b: &BrowserPhone, s: &Softphone, e: &Rtpengine| {
        format!(
            "browser:\n{}\nbaresip:\n{}\nrtpengine:\n{}\ncoturn:\n{}",
            b.log_text(),
            s.log_text(),
            e.log_text(),
            turn.log_text()
        )
    };

    // The browser calls the desk phone, which answers by itself.
    browser.call("sip:202@dialtone").unwrap();
    assert!(
        browser
            .wait_event("confirmed", 1, Duration::from_secs(15))
            .await
            .is_some(),
        "the browser's call was not established:\n{}",
        logs(&browser, &baresip, &engine)
    );
    let call = engine
        .session(Duration::from_secs(10))
        .await
        .expect("rtpengine holds the call");
    let (both, packets, stats) = talking(&engine, &call, &mut browser).await;
    assert!(
        both,
        "media did not flow both ways: rtpengine {packets:?}, page {stats:?}\n{}",
        logs(&browser, &baresip, &engine)
    );
    // Through coturn: the browser's candidate is a relayed one, which coturn allocated
    // for the phone's credential.
    assert_eq!(stats.2, ["relay"], "{}", logs(&browser, &baresip, &engine));
    assert!(
        turn.log_text()
            .contains(&format!(":{}", phones[0].phone_id)),
        "coturn never saw the phone's credential:\n{}",
        turn.log_text()
    );
    browser.hang_up().unwrap();
    assert!(
        baresip
            .wait_log("session closed", 1, Duration::from_secs(10))
            .await,
        "the browser's BYE did not reach baresip:\n{}",
        logs(&browser, &baresip, &engine)
    );
    assert!(
        engine.emptied(Duration::from_secs(5)).await,
        "the session outlived the BYE"
    );

    // Now the desk phone calls the browser, which answers.
    baresip.dial("sip:201@127.0.0.1").unwrap();
    assert!(
        browser
            .wait_event("confirmed", 2, Duration::from_secs(15))
            .await
            .is_some(),
        "the desk phone's call was not established:\n{}",
        logs(&browser, &baresip, &engine)
    );
    let call = engine
        .session(Duration::from_secs(10))
        .await
        .expect("rtpengine holds the call");
    let before = browser.stats().await.unwrap();
    let (both, packets, stats) = talking(&engine, &call, &mut browser).await;
    assert!(
        both,
        "media did not flow both ways: rtpengine {packets:?}, page {before:?} -> {stats:?}\n{}",
        logs(&browser, &baresip, &engine)
    );
    assert_eq!(stats.2, ["relay"], "{}", logs(&browser, &baresip, &engine));
    baresip.hang_up().unwrap();
    assert!(
        browser
            .wait_event("ended", 2, Duration::from_secs(10))
            .await
            .is_some(),
        "the desk phone's BYE did not reach the browser:\n{}",
        logs(&browser, &baresip, &engine)
    );
    assert!(
        engine.emptied(Duration::from_secs(5)).await,
        "the session outlived the BYE"
    );

    // Out to a carrier that takes media from one fixed address (its trunk anchors media):
    // the browser's call is anchored (DTLS-SRTP to plain RTP), and so is the desk phone's,
    // for the trunk's sake. The carrier (SIPp) answers with PCMU and echoes what it gets.
    let carriers = sb.dir().join("carriers");
    std::fs::create_dir_all(&carriers).unwrap();
    let sbc: std::net::SocketAddr = format!("127.0.0.4:{}", dialtone_tests::free_port())
        .parse()
        .unwrap();
    let carrier = carrier_echoing(&carriers, "carrier-media", "127.0.0.4", sbc.port());
    cfg.create_peer(pb::CreatePeerRequest {
        peer: Some(peer("carrier-sbc", "127.0.0.4")),
    })
    .await
    .unwrap();
    let did = pb::Did {
        numbers: "+15551230042".into(),
        target: Some(pb::did::Target::Extension("hq/202".into())),
    };
    let mut anchoring = trunk("carrier", "carrier-sbc", sbc, vec![did]);
    anchoring.anchor_media = true;
    cfg.create_trunk(pb::CreateTrunkRequest {
        trunk: Some(anchoring),
    })
    .await
    .unwrap();
    route_out(&mut cfg, false, vec![route(&["national"], &["carrier"])]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    browser.call("sip:2125551234@dialtone").unwrap();
    assert!(
        browser
            .wait_event("confirmed", 3, Duration::from_secs(15))
            .await
            .is_some(),
        "the browser's call out was not established:\n{}",
        logs(&browser, &baresip, &engine)
    );
    let call = engine
        .session(Duration::from_secs(10))
        .await
        .expect("rtpengine holds the call out");
    let (both, packets, stats) = talking(&engine, &call, &mut browser).await;
    assert!(
        both,
        "media did not flow both ways to the carrier: rtpengine {packets:?}, page {stats:?}\n{}",
        logs(&browser, &baresip, &engine)
    );
    browser.hang_up().unwrap();
    assert!(
        engine.emptied(Duration::from_secs(5)).await,
        "the session outlived the BYE"
    );
    baresip.dial("sip:2125551234@127.0.0.1").unwrap();
    assert!(
        baresip
            .wait_log("Call established", 3, Duration::from_secs(10))
            .await,
        "the desk phone's call out was not established:\n{}",
        logs(&browser, &baresip, &engine)
    );
    let call = engine
        .session(Duration::from_secs(10))
        .await
        .expect("the trunk's call is anchored");
    let (flowing, p) = engine.both_ways(&call, Duration::from_secs(10)).await;
    assert!(
        flowing,
        "the desk phone's call out carried no media both ways: {p:?}"
    );
    baresip.hang_up().unwrap();
    assert!(
        engine.emptied(Duration::from_secs(5)).await,
        "the session outlived the BYE"
    );

    // The same carrier calls the desk phone's DID: its call in is anchored like its calls
    // out, though neither side would need it (plain RTP, no NAT, a site anchoring only
    // what needs it). The carrier echoes the desk phone's audio.
    let edge = format!("127.0.0.1:{}", sb.nodes[1].sip.udp)
        .parse()
        .unwrap();
    let dir = carriers.clone();
    let calling = tokio::task::spawn_blocking(move || {
        carrier_call_echoing(
            &dir,
            "carrier-calls-with-media",
            "127.0.0.4",
            "+15551230042",
            edge,
        )
    });
    let call = engine
        .session(Duration::from_secs(10))
        .await
        .expect("the carrier's call in is anchored");
    let (flowing, p) = engine.both_ways(&call, Duration::from_secs(5)).await;
    assert!(
        flowing,
        "the carrier's call in carried no media both ways: {p:?}"
    );
    assert!(
        calling.await.unwrap(),
        "the carrier's call in did not complete"
    );
    assert!(
        engine.emptied(Duration::from_secs(5)).await,
        "the session outlived the carrier's BYE"
    );
    stop(carrier);
    browser.stop().unwrap();
    baresip.stop().unwrap();
}
