//! Calls' media anchored at real rtpengines (Debian `rtpengine-daemon`, userspace), through
//! real processes: etcd, a config+status node, two edges, baresip and linphonec each
//! registered to its own edge. The site anchors every call (`media_anchoring: ALWAYS`) at
//! the media servers of its region; the call's SDP is offered and answered there, the
//! phones' RTP flows through it both ways (rtpengine's `query` counts each side's
//! packets) and stays there through hold and resume (the re-INVITEs are offered there
//! too), the status role counts the call at that server, the BYE deletes the
//! session, and when the media server a call used dies the edges and the status role mark
//! it DOWN, a browser's ICE servers leave out its TURN server, and the next call goes to
//! the other. A phone behind a NAT (its SDP names an
//! address nobody can reach) is anchored where the site anchors only what needs it, and
//! hears and is heard; so does its late offer (an INVITE without SDP: the 2xx offers,
//! the ACK answers). A phone on a TLS line whose profile asks for SRTP keyed by SDES and a
//! plain-RTP phone call each other: the media server encrypts for one, decrypts for the
//! other.

use std::time::{Duration, Instant};

use dialtone_proto::{config::v1 as pb, status::v1 as spb};
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox,
    fleet::{browser_profile, create_profile, phone_at, softphones_at, wait_routable},
    media::{Rtpengine, serve_hq},
    sip::{Caller, branch, contact_uri, in_dialog, status, with_sdp},
    softphones::Softphone,
};

/// The TURN URL the tests give media server `id` (nothing listens there: only the
/// how-to-register document is read).
fn turn_url(id: &str) -> String {
    format!("turn:{id}.example.com:3478?transport=udp")
}

/// The first URL of each ICE server `how-to-register` gives the phone.
async fn ice_urls(sb: &ClusterSandbox, phone_id: &str) -> Vec<String> {
    let how = sb.nodes[0]
        .provisioning_client(ADMIN_TOKEN)
        .await
        .unwrap()
        .get_how_to_register(dialtone_proto::provisioning::v1::GetHowToRegisterRequest {
            phone_id: phone_id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    how.ice_servers.iter().map(|s| s.urls[0].clone()).collect()
}

/// Which of `engines` holds a session, and its Call-ID, once one does (within 5 s).
async fn holder(engines: &[Rtpengine]) -> Option<(usize, String)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for (i, e) in engines.iter().enumerate() {
            if let Some(call) = e.calls().await.unwrap_or_default().pop() {
                return Some((i, call));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_and_linphonec_talk_through_an_anchored_rtpengine_that_fails_over() {
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = dialtone_tls::dev_pair(files.path(), "provisioning").unwrap();
    let flags = [
        "--sip-digest-algorithms=md5".to_owned(),
        format!("--provisioning-tls-cert={}", cert.display()),
        format!("--provisioning-tls-key={}", key.display()),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (sb, mut cfg) = ClusterSandbox::two_edges_after("config,status,provisioning", &flags)
        .await
        .unwrap();
    let dir = sb.dir().join("media");
    let mut engines = [
        Rtpengine::start(&dir, "a").await.unwrap(),
        Rtpengine::start(&dir, "b").await.unwrap(),
    ];
    let ids = ["rtp-a", "rtp-b"];
    for (id, e) in ids.iter().zip(&engines) {
        cfg.create_media_server(pb::CreateMediaServerRequest {
            media_server: Some(pb::MediaServer {
                id: (*id).into(),
                region: "local".into(),
                ng_address: e.ng.to_string(),
                turn_urls: vec![turn_url(id)],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
    // A bad address is refused, naming the field.
    let bad = cfg
        .create_media_server(pb::CreateMediaServerRequest {
            media_server: Some(pb::MediaServer {
                id: "rtp-c".into(),
                region: "local".into(),
                ng_address: "rtpengine".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("media_server.ng_address"), "{bad:?}");
    let mut site = cfg
        .get_site(pb::GetRequest { id: "hq".into() })
        .await
        .unwrap()
        .into_inner();
    site.media_regions = vec!["local".into()];
    site.media_anchoring = pb::MediaAnchoring::Always as i32;
    cfg.update_site(pb::UpdateSiteRequest {
        update_mask: dialtone_tests::whole(),
        site: Some(site),
    })
    .await
    .unwrap();

    let phones = softphones_at(&mut cfg, &["201", "202"], "media")
        .await
        .unwrap();
    browser_profile(&mut cfg).await.unwrap();
    let browser = phone_at(
        &mut cfg,
        "203",
        "media-webrtc",
        pb::PhoneKind::Webrtc,
        "browser",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let both: Vec<String> = ids.iter().map(|id| turn_url(id)).collect();
    assert_eq!(ice_urls(&sb, &browser.phone_id).await, both);
    let phones_dir = sb.dir().join("softphones");
    let edge = |i: usize| format!("127.0.0.1:{}", sb.nodes[i].sip.udp);
    let mut baresip = Softphone::baresip(&phones_dir, &edge(1), &phones[0], 60).unwrap();
    let mut linphonec = Softphone::linphonec(&phones_dir, &edge(2), &phones[1], "MD5", 60).unwrap();
    linphonec.auto_answer().unwrap();
    // Each call enters through the other edge, which finds the callee in the store.
    for (node, p, phone) in [(1, &phones[0], &baresip), (2, &phones[1], &linphonec)] {
        assert!(
            wait_routable(&sb, node, &p.phone_id, Duration::from_secs(15))
                .await
                .unwrap(),
            "never registered:\n{}",
            phone.log_text()
        );
    }
    // baresip calls 202; the entering edge anchors the call at one of the two servers,
    // media flows through it both ways, and the hang-up's BYE deletes the session.
    let held = call_through(&sb, &engines, &mut baresip, &linphonec, 1).await;
    let label = format!("media_server=\"{}\"", ids[held]);
    let anchored = sb.nodes[1]
        .metric("dialtone_media_anchored_total", &label)
        .await;
    assert_eq!(
        anchored,
        Some(1),
        "the entering edge counts the call it anchored"
    );

    // The server that took the call dies: the edges mark it DOWN within 5 s, and the
    // next call goes to the other.
    engines[held].kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sb.nodes[1].metric("dialtone_media_server_up", &label).await != Some(0) {
        assert!(Instant::now() < deadline, "{} never went DOWN", ids[held]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The status role says so too.
    let (_, dead) =
        server_status(&sb, ids[held], |s| s.state() == spb::MediaServerState::Down).await;
    assert_eq!(dead.state(), spb::MediaServerState::Down, "{dead:?}");
    // A browser is no longer told to relay through it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let urls = ice_urls(&sb, &browser.phone_id).await;
        if urls == [turn_url(ids[1 - held])] {
            break;
        }
        assert!(Instant::now() < deadline, "still offered: {urls:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let living = [engines.into_iter().nth(1 - held).unwrap()];
    call_through(&sb, &living, &mut baresip, &linphonec, 2).await;
    baresip.stop().unwrap();
    linphonec.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_behind_a_nat_gets_its_media_anchored_with_an_offer_or_a_late_one() {
    let (sb, mut cfg) = ClusterSandbox::two_edges(&["--sip-digest-algorithms=md5"])
        .await
        .unwrap();
    let engine = Rtpengine::start(&sb.dir().join("media"), "a")
        .await
        .unwrap();
    // The site anchors only what needs it.
    serve_hq(&mut cfg, ("rtp-a", &engine), vec![], |_| {})
        .await
        .unwrap();
    let phones = softphones_at(&mut cfg, &["201", "202"], "nat")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = sb.dir().join("softphones");
    let mut baresip = Softphone::baresip(
        &dir,
        &format!("127.0.0.1:{}", sb.nodes[1].sip.udp),
        &phones[0],
        60,
    )
    .unwrap();
    // The call enters through edge 2, which finds baresip in the store.
    assert!(
        wait_routable(&sb, 1, &phones[0].phone_id, Duration::from_secs(15))
            .await
            .unwrap(),
        "never registered:\n{}",
        baresip.log_text()
    );

    // Phone 202 behind a NAT: its SDP names 10.255.0.1 (its address inside, which nobody
    // here can reach) while its SIP and RTP come from 127.0.0.1. Its "microphone" sends
    // back whatever it hears (an RTP echo on its media port).
    let media = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media_port = media.local_addr().unwrap().port();
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = media.recv_from(&mut buf).await {
            let _ = media.send_to(&buf[..n], from).await;
        }
    });
    let phone = Caller::line(&phones[1].sip_user, &phones[1].password)
        .await
        .unwrap();
    let sdp = format!(
        "v=0\r\no=nat 1 1 IN IP4 10.255.0.1\r\ns=-\r\nc=IN IP4 10.255.0.1\r\nt=0 0\r\n\
         m=audio {media_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    let invite = with_sdp(&phone.text("INVITE", "201", &branch(), "INVITE"), &sdp);
    let edge = sb.udp(2);
    phone.send(&invite, edge).await;
    let answers = phone.responses("INVITE", Duration::from_secs(10)).await;
    let ok = answers
        .iter()
        .find(|r| status(r) == 200)
        .unwrap_or_else(|| panic!("not answered: {answers:?}\n{}", baresip.log_text()))
        .clone();
    let contact = contact_uri(&ok);
    let (ack, hop) = in_dialog(&invite, &ok, "ACK", 1, &contact);
    phone.send_raw(&ack, hop).await;
    let Some(call) = engine.session(Duration::from_secs(5)).await else {
        panic!("a caller behind a NAT is not anchored:\n{ok}");
    };
    let (flowing, packets) = engine.both_ways(&call, Duration::from_secs(10)).await;
    assert!(
        flowing,
        "media did not flow both ways through rtpengine: {packets:?}\n{}\n{}",
        baresip.log_text(),
        engine.log_text()
    );
    let label = "media_server=\"rtp-a\"";
    assert_eq!(
        sb.nodes[2]
            .metric("dialtone_media_anchored_total", label)
            .await,
        Some(1),
        "the entering edge anchored the call"
    );
    let (bye, hop) = in_dialog(&invite, &ok, "BYE", 2, &contact);
    phone.send(&bye, hop).await;
    assert!(
        baresip
            .wait_log("session closed", 1, Duration::from_secs(10))
            .await,
        "the BYE did not end the call:\n{}",
        baresip.log_text()
    );
    assert!(
        engine.emptied(Duration::from_secs(5)).await,
        "the session outlived the BYE"
    );

    // A late offer (RFC 3261 §13.2.1): an INVITE without SDP, where the site now anchors
    // every call. baresip's 2xx offers, the phone's ACK answers; both reach rtpengine in
    // that order and the media flows through it as before.
    let mut site = cfg
        .get_site(pb::GetRequest { id: "hq".into() })
        .await
        .unwrap()
        .into_inner();
    site.media_anchoring = pb::MediaAnchoring::Always as i32;
    cfg.update_site(pb::UpdateSiteRequest {
        update_mask: dialtone_tests::whole(),
        site: Some(site),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let invite = phone.text("INVITE", "201", &branch(), "INVITE");
    phone.send(&invite, edge).await;
    let answers = phone.responses("INVITE", Duration::from_secs(10)).await;
    let ok = answers
        .iter()
        .find(|r| status(r) == 200)
        .unwrap_or_else(|| panic!("not answered: {answers:?}\n{}", baresip.log_text()))
        .clone();
    assert!(ok.contains("m=audio"), "the 2xx carries the offer: {ok}");
    let contact = contact_uri(&ok);
    let (ack, hop) = in_dialog(&invite, &ok, "ACK", 1, &contact);
    let ack = with_sdp(&ack, &sdp);
    phone.send_raw(&ack, hop).await;
    let Some(call) = engine.session(Duration::from_secs(5)).await else {
        panic!("the late offer was not anchored:\n{ok}");
    };
    let (flowing, packets) = engine.both_ways(&call, Duration::from_secs(10)).await;
    assert!(
        flowing,
        "a late offer's media did not flow both ways: {packets:?}\n{}\n{}",
        baresip.log_text(),
        engine.log_text()
    );
    let (bye, hop) = in_dialog(&invite, &ok, "BYE", 2, &contact);
    phone.send(&bye, hop).await;
    assert!(
        baresip
            .wait_log("session closed", 2, Duration::from_secs(10))
            .await,
        "the BYE did not end the late-offer call:\n{}",
        baresip.log_text()
    );
    assert!(
        engine.emptied(Duration::from_secs(5)).await,
        "the session outlived the BYE"
    );
    echo.abort();
    baresip.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdes_phone_on_a_tls_line_and_a_plain_phone_talk_through_rtpengine() {
    let (sb, mut cfg) = ClusterSandbox::two_edges(&["--sip-digest-algorithms=md5"])
        .await
        .unwrap();
    let engine = Rtpengine::start(&sb.dir().join("media"), "a")
        .await
        .unwrap();
    // The site anchors only what needs it: SRTP on one side and plain RTP on the other
    // does.
    serve_hq(&mut cfg, ("rtp-a", &engine), vec![], |_| {})
        .await
        .unwrap();
    // SDES is refused on a profile whose phones would send the keys over UDP...
    let bad = create_profile(
        &mut cfg,
        "secure",
        "Secure",
        pb::MetaBase::GenericSip,
        pb::PhoneSettings {
            media_encryption: pb::MediaEncryption::Sdes as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(bad.contains("media_encryption"), "{bad}");
    // ... and taken over TLS.
    create_profile(
        &mut cfg,
        "secure",
        "Secure",
        pb::MetaBase::GenericSip,
        pb::PhoneSettings {
            media_encryption: pb::MediaEncryption::Sdes as i32,
            transport: pb::Transport::Tls as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let secure = phone_at(&mut cfg, "201", "srtp0", pb::PhoneKind::Unmanaged, "secure")
        .await
        .unwrap();
    let plain = phone_at(&mut cfg, "202", "srtp1", pb::PhoneKind::Unmanaged, "desk")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = sb.dir().join("softphones");
    // baresip over TLS, SRTP keyed by SDES required of every call; linphonec plain.
    let tls = format!("127.0.0.1:{}", sb.nodes[1].sip.tls);
    let mut baresip =
        Softphone::baresip_with(&dir, &tls, &secure, 60, "tls", ";mediaenc=srtp-mand").unwrap();
    let udp = format!("127.0.0.1:{}", sb.nodes[2].sip.udp);
    let mut linphonec = Softphone::linphonec(&dir, &udp, &plain, "MD5", 60).unwrap();
    linphonec.auto_answer().unwrap();
    // Each call enters through the other edge, which finds the callee in the store.
    for (node, p, phone) in [(1, &secure, &baresip), (2, &plain, &linphonec)] {
        assert!(
            wait_routable(&sb, node, &p.phone_id, Duration::from_secs(15))
                .await
                .unwrap(),
            "never registered:\n{}",
            phone.log_text()
        );
    }
    // The SRTP phone calls the plain one, then the plain one calls back: each call is
    // anchored, each side gets what it speaks, and the audio flows both ways.
    for (n, caller_is_secure) in [(1, true), (2, false)] {
        if caller_is_secure {
            baresip.dial("sip:202@127.0.0.1").unwrap();
        } else {
            linphonec.dial("sip:201@127.0.0.1").unwrap();
        }
        assert!(
            baresip
                .wait_log("Call established", n, Duration::from_secs(10))
                .await,
            "call {n} was not established:\n{}",
            logs(&baresip, &linphonec)
        );
        let Some(call) = engine.session(Duration::from_secs(5)).await else {
            panic!("call {n} is not anchored:\n{}", logs(&baresip, &linphonec));
        };
        let (flowing, packets) = engine.both_ways(&call, Duration::from_secs(10)).await;
        assert!(
            flowing,
            "call {n}: media did not flow both ways: {packets:?}\n{}\n{}",
            logs(&baresip, &linphonec),
            engine.log_text()
        );
        baresip.hang_up().unwrap();
        assert!(
            linphonec
                .wait_log("to LinphoneCallEnd", n, Duration::from_secs(10))
                .await,
            "call {n} did not end:\n{}",
            logs(&baresip, &linphonec)
        );
        assert!(
            engine.emptied(Duration::from_secs(5)).await,
            "the session outlived the BYE"
        );
    }
    // baresip registered over TLS and keyed SRTP for both calls (from the media server's
    // a=crypto: linphonec offered and answered plain RTP).
    let log = baresip.log_text();
    assert!(log.contains("{0/TLS/v4} 200 OK"), "{log}");
    assert_eq!(log.matches("SRTP is Enabled").count(), 2, "{log}");
    baresip.stop().unwrap();
    linphonec.stop().unwrap();
}

/// The status of media server `id` once `ready` holds for it (within 5 s; the last seen
/// otherwise), and whether it did.
async fn server_status(
    sb: &ClusterSandbox,
    id: &str,
    ready: impl Fn(&spb::MediaServerStatus) -> bool,
) -> (bool, spb::MediaServerStatus) {
    let mut st = sb.nodes[0].status_client(ADMIN_TOKEN).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = st
            .list_media_server_statuses(spb::ListMediaServerStatusesRequest {})
            .await
            .unwrap()
            .into_inner()
            .media_servers;
        let found = all.into_iter().find(|s| s.media_server_id == id);
        if let Some(s) = found.filter(|s| ready(s) || Instant::now() > deadline) {
            return (ready(&s), s);
        }
        assert!(Instant::now() < deadline, "{id} not in the status");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The media server id of `engines[held]`, as configured.
async fn call_holder_id(engines: &[Rtpengine], held: usize, sb: &ClusterSandbox) -> String {
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    let all = cfg
        .list_media_servers(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .media_servers;
    let ng = engines[held].ng.to_string();
    all.into_iter()
        .find(|m| m.ng_address == ng)
        .map(|m| m.id)
        .expect("the engine is configured")
}

fn logs(baresip: &Softphone, linphonec: &Softphone) -> String {
    format!(
        "baresip:\n{}\nlinphonec:\n{}",
        baresip.log_text(),
        linphonec.log_text()
    )
}

/// baresip calls 202 (the `n`th call): the call is established, one of `engines` holds
/// its session with media flowing both ways, and baresip's hang-up ends the call and the
/// session. Returns which engine held it.
async fn call_through(
    sb: &ClusterSandbox,
    engines: &[Rtpengine],
    baresip: &mut Softphone,
    linphonec: &Softphone,
    n: usize,
) -> usize {
    baresip.dial("sip:202@127.0.0.1").unwrap();
    assert!(
        baresip
            .wait_log("Call established", n, Duration::from_secs(10))
            .await,
        "call {n} was not established:\n{}",
        logs(baresip, linphonec)
    );
    let (held, call) = holder(engines)
        .await
        .expect("no media server holds the call");
    let engine = &engines[held];
    let (flowing, packets) = engine.both_ways(&call, Duration::from_secs(10)).await;
    assert!(
        flowing,
        "media did not flow both ways through rtpengine: {packets:?}\n{}",
        engine.log_text()
    );
    if n == 1 {
        // Hold and resume: the re-INVITEs are offered and answered at the same media
        // server, so afterwards both phones still send their RTP there (had a re-INVITE
        // passed with baresip's own SDP, linphonec would send to baresip directly and its
        // count here would stop).
        baresip.call_command("hold").unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        baresip.call_command("resume").unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = engine.packets(&call).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = engine.packets(&call).await.unwrap();
            let grew =
                now.len() == before.len() && now.iter().zip(&before).all(|((_, a), (_, b))| a > b);
            if grew {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "media left rtpengine after hold and resume: {before:?} -> {now:?}\n{}",
                logs(baresip, linphonec)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            engine.calls().await.unwrap(),
            std::slice::from_ref(&call),
            "one session"
        );
    }
    // The status role shows the call at the server that holds it.
    let (_, calls) = server_status(sb, &call_holder_id(engines, held, sb).await, |s| {
        s.active_calls == 1
    })
    .await;
    assert_eq!(calls.active_calls, 1, "{calls:?}");
    baresip.hang_up().unwrap();
    assert!(
        linphonec
            .wait_log("to LinphoneCallEnd", n, Duration::from_secs(10))
            .await,
        "the hang-up did not end call {n}:\n{}",
        logs(baresip, linphonec)
    );
    assert!(
        engine.emptied(Duration::from_secs(5)).await,
        "the session outlived the BYE:\n{}",
        engine.log_text()
    );
    held
}
