//! Carrier trunks over TCP and TLS, through a real all-in-one `dialtone` node: SIPp over
//! TCP is one carrier, and another behind a TLS front (socat, with a certificate from a test
//! CA the edge is told to trust with `--sip-trunk-ca`). The edge opens its own connection
//! to each target: OPTIONS keep-alives over it keep both UP, calls go out over it and their
//! ACK and BYE follow along the edge's Record-Route, and a carrier's own BYE comes back
//! over it to the caller; a TLS target whose certificate does not carry the configured
//! name is DOWN and never called.

use std::{net::SocketAddr, time::Duration};

use dialtone_proto::{config::v1 as pb, status::v1 as spb};
use dialtone_tests::{
    carriers::{
        carrier_bed, carrier_over, invite_for, peer, route, route_out, state_of, stop, tls_front,
        trunk, trunks_when,
    },
    fleet::{at_extension, import, update_phone},
    free_port,
    pki::TestCa,
    sip::{Caller, call, headers, in_dialog, status},
};

fn at(ip: &str) -> SocketAddr {
    format!("{ip}:{}", free_port()).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunks_reach_carriers_over_tcp_and_tls() {
    let pki_dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(pki_dir.path(), "carrier test ca");
    let (cert, key) = ca.issue("sbc", "sbc.carrier.test", &["sbc.carrier.test"], false);
    let trust = format!("--sip-trunk-ca={}", ca.cert.display());
    let (sb, mut cfg, dir) = carrier_bed(&[&trust]).await;
    let node = &sb.nodes[0];
    let edge = sb.udp(0);
    let token = node.admin_token();

    // Carrier T over TCP; carrier S over TLS (socat in front of SIPp over TCP).
    let (t_ip, s_ip) = ("127.0.0.5", "127.0.0.6");
    let (t_at, s_tls, s_tcp) = (at(t_ip), at(s_ip), at(s_ip));
    let carrier_t = carrier_over(&dir, "carrier-answer", t_ip, t_at.port(), "t1");
    std::fs::create_dir_all(dir.join("s")).unwrap();
    let carrier_s = carrier_over(&dir.join("s"), "carrier-hangs-up", s_ip, s_tcp.port(), "t1");
    let front = tls_front(&cert, &key, s_tls, s_tcp);
    for (id, ip) in [("carrier-t-sbc", t_ip), ("carrier-s-sbc", s_ip)] {
        cfg.create_peer(pb::CreatePeerRequest {
            peer: Some(peer(id, ip)),
        })
        .await
        .unwrap();
    }
    let target = |t: &mut pb::Trunk, transport: &str, name: &str| {
        t.targets[0].transport = transport.into();
        t.targets[0].tls_name = name.into();
    };
    let mut tcp = trunk("carrier-t", "carrier-t-sbc", t_at, vec![]);
    target(&mut tcp, "tcp", "");
    let mut tls = trunk("carrier-s", "carrier-s-sbc", s_tls, vec![]);
    target(&mut tls, "tls", "sbc.carrier.test");
    // The same carrier, expected under another name: its certificate does not carry it.
    let mut wrong = trunk("carrier-w", "carrier-s-sbc", s_tls, vec![]);
    target(&mut wrong, "tls", "other.carrier.test");
    for t in [tcp, tls, wrong] {
        cfg.create_trunk(pb::CreateTrunkRequest { trunk: Some(t) })
            .await
            .unwrap();
    }
    let phones = import(&mut cfg, 1, "tt").await.unwrap();
    let caller_line = &phones[0];
    update_phone(&mut cfg, &caller_line.0, at_extension("201"))
        .await
        .unwrap();
    // National calls go out over TCP, international ones over TLS (the wrongly named
    // target first: it is DOWN, so skipped).
    let routes = vec![
        route(&["national"], &["carrier-t"]),
        route(&["international"], &["carrier-w", "carrier-s"]),
    ];
    route_out(&mut cfg, true, routes).await;

    // Keep-alives over the edge's own connections: T and S are UP, W is DOWN.
    let mut st = node.status_client(&token).await.unwrap();
    trunks_when(&mut st, |t| {
        state_of(t, "carrier-t") == Some(spb::TrunkState::Up)
            && state_of(t, "carrier-s") == Some(spb::TrunkState::Up)
            && state_of(t, "carrier-w") == Some(spb::TrunkState::Down)
    })
    .await;

    // A call out over TCP: the caller's ACK and BYE follow along the Record-Route, over the
    // edge's connection.
    let caller = Caller::line(&caller_line.1, &caller_line.2).await.unwrap();
    let (invite, r) = call(&caller, "2125551234", edge).await;
    assert_eq!(r.last().map(|r| status(r)), Some(200), "{r:?}");
    let sent = invite_for(&dir, "carrier-answer", "sip:+12125551234@").await;
    assert!(sent.contains(";transport=tcp"), "{sent}");
    assert!(sent.contains("Via: SIP/2.0/TCP"), "{sent}");
    let ok = r.last().unwrap();
    let target = format!("sip:+12125551234@{t_ip}");
    let (ack, hop) = in_dialog(&invite, ok, "ACK", 1, &target);
    caller.send_raw(&ack, hop).await;
    let (bye, hop) = in_dialog(&invite, ok, "BYE", 2, &target);
    caller.send_raw(&bye, hop).await;
    let answered = caller.codes("BYE", Duration::from_secs(5)).await;
    assert_eq!(answered.last(), Some(&200), "the carrier answers the BYE");

    // A call out over TLS that the carrier hangs up: its BYE comes in over the edge's TLS
    // connection, reaches the caller, and the caller's 200 goes back the same way.
    let (invite, r) = call(&caller, "011442071234567", edge).await;
    let code = r.last().map(|r| status(r));
    assert_eq!(code, Some(200), "{r:?}\n{}", node.log_text());
    let s_log = dir.join("s");
    let sent = invite_for(&s_log, "carrier-hangs-up", "sip:+442071234567@").await;
    assert!(sent.contains(";transport=tls"), "{sent}");
    assert!(sent.contains("Via: SIP/2.0/TLS"), "{sent}");
    let ok = r.last().unwrap();
    let (ack, hop) = in_dialog(&invite, ok, "ACK", 1, &format!("sip:+442071234567@{s_ip}"));
    caller.send_raw(&ack, hop).await;
    let got = caller.responses("BYE", Duration::from_secs(5)).await;
    let bye = got
        .iter()
        .find(|m| m.starts_with("BYE "))
        .unwrap_or_else(|| panic!("the carrier's BYE never came: {got:?}"));
    let copy = |name: &str| {
        headers(bye, name)
            .iter()
            .map(|v| format!("{name}: {v}\r\n"))
            .collect::<String>()
    };
    let answer = format!(
        "SIP/2.0 200 OK\r\n{}{}{}{}{}Content-Length: 0\r\n\r\n",
        copy("Via"),
        copy("From"),
        copy("To"),
        copy("Call-ID"),
        copy("CSeq"),
    );
    caller.send_raw(&answer, edge).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(s_log.join("carrier-hangs-up.log")).unwrap_or_default();
        let answered = log
            .split("----------------------------------------------- ")
            .any(|m| {
                m.contains("message received")
                    && m.contains("SIP/2.0 200 OK")
                    && m.contains("1 BYE")
            });
        if answered {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the carrier never got the 200 for its BYE:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in [carrier_t, carrier_s, front] {
        stop(c);
    }
}
