//! A browser calls a desk phone and back: JsSIP in Debian's headless Chromium (Playwright,
//! Chromium's fake microphone) registered over WSS to one edge, baresip over UDP to the
//! other. The browser speaks ICE and DTLS-SRTP (`UDP/TLS/RTP/SAVPF`), baresip plain RTP; the
//! edges anchor the call at a real rtpengine, which bridges the two. Shown by what each end
//! sees: the page's `getStats()` counts audio packets received, and rtpengine's `query`
//! counts packets from both parties.

use std::time::{Duration, Instant};

use dialtone_proto::config::v1 as pb;
use dialtone_tests::{
    ClusterSandbox,
    browser::BrowserPhone,
    fleet::{create_profile, phone_at, wait_contacts},
    media::Rtpengine,
    softphones::Softphone,
};
use serde_json::json;

/// The Call-ID of the session `engine` holds, once it holds one (within 10 s).
async fn session(engine: &Rtpengine) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(call) = engine.calls().await.unwrap_or_default().pop() {
            return Some(call);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

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
        let both = p.len() >= 2 && p.iter().all(|(_, n)| *n > 0) && stats.0 > 0;
        if both || Instant::now() > deadline {
            return (both, p, stats);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn ended(engine: &Rtpengine) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !engine.calls().await.unwrap_or_default().is_empty() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_and_a_desk_phone_call_each_other_through_rtpengine() {
    // JsSIP answers MD5 digests only; the page's origin may open SIP WebSockets.
    let page = BrowserPhone::page_port();
    let origin = format!("--sip-ws-allowed-origins=http://127.0.0.1:{page}");
    let (sb, mut cfg) = ClusterSandbox::two_edges(&["--sip-digest-algorithms=md5", &origin])
        .await
        .unwrap();
    let engine = Rtpengine::start(&sb.dir().join("media"), "a")
        .await
        .unwrap();
    cfg.create_media_server(pb::CreateMediaServerRequest {
        media_server: Some(pb::MediaServer {
            id: "rtp-a".into(),
            region: "local".into(),
            ng_address: engine.ng.to_string(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    // The site anchors only what needs it: a WebRTC call always does.
    let mut site = cfg
        .get_site(pb::GetRequest { id: "hq".into() })
        .await
        .unwrap()
        .into_inner();
    site.media_regions = vec!["local".into()];
    cfg.update_site(pb::UpdateSiteRequest { site: Some(site) })
        .await
        .unwrap();
    // 201 is a WebRTC phone (its kind and profile): how an edge that hands a call to
    // another knows to offer it DTLS-SRTP and ICE.
    create_profile(
        &mut cfg,
        "browser",
        "Browser",
        pb::MetaBase::Webrtc,
        pb::PhoneSettings::default(),
    )
    .await
    .unwrap();
    let phones = [
        phone_at(&mut cfg, "201", "webrtc0", pb::PhoneKind::Webrtc, "browser")
            .await
            .unwrap(),
        phone_at(&mut cfg, "202", "webrtc1", pb::PhoneKind::Unmanaged, "desk")
            .await
            .unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;

    let dir = sb.dir().join("phones");
    let wss = format!("wss://127.0.0.1:{}", sb.nodes[1].sip.wss);
    let mut browser = BrowserPhone::start(&dir, page, &wss, &phones[0], json!([]), "all").unwrap();
    let udp = format!("127.0.0.1:{}", sb.nodes[2].sip.udp);
    let mut baresip = Softphone::baresip(&dir, &udp, &phones[1], 60).unwrap();
    for (node, p) in [(1, &phones[0]), (2, &phones[1])] {
        let mut e = sb.nodes[node]
            .edge_client(dialtone_tests::ADMIN_TOKEN)
            .await
            .unwrap();
        assert!(
            wait_contacts(&mut e, &p.phone_id, 1, Duration::from_secs(20)).await,
            "{} never registered:\nbrowser: {}\nbaresip: {}",
            p.sip_user,
            browser.log_text(),
            baresip.log_text()
        );
    }
    let logs = |b: &BrowserPhone, s: &Softphone, e: &Rtpengine| {
        format!(
            "browser:\n{}\nbaresip:\n{}\nrtpengine:\n{}",
            b.log_text(),
            s.log_text(),
            e.log_text()
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
    let call = session(&engine).await.expect("rtpengine holds the call");
    let (both, packets, stats) = talking(&engine, &call, &mut browser).await;
    assert!(
        both,
        "media did not flow both ways: rtpengine {packets:?}, page {stats:?}\n{}",
        logs(&browser, &baresip, &engine)
    );
    browser.hang_up().unwrap();
    assert!(
        baresip
            .wait_log("session closed", 1, Duration::from_secs(10))
            .await,
        "the browser's BYE did not reach baresip:\n{}",
        logs(&browser, &baresip, &engine)
    );
    assert!(ended(&engine).await, "the session outlived the BYE");

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
    let call = session(&engine).await.expect("rtpengine holds the call");
    let before = browser.stats().await.unwrap();
    let (both, packets, stats) = talking(&engine, &call, &mut browser).await;
    assert!(
        both,
        "media did not flow both ways: rtpengine {packets:?}, page {before:?} -> {stats:?}\n{}",
        logs(&browser, &baresip, &engine)
    );
    baresip.hang_up().unwrap();
    assert!(
        browser
            .wait_event("ended", 2, Duration::from_secs(10))
            .await
            .is_some(),
        "the desk phone's BYE did not reach the browser:\n{}",
        logs(&browser, &baresip, &engine)
    );
    assert!(ended(&engine).await, "the session outlived the BYE");
    browser.stop().unwrap();
    baresip.stop().unwrap();
}
