//! The seed's Media/QoS "SIP DSCP" applies to the edge's own SIP packets too, wherever the
//! edge knows the phone: its answers to an authenticated line's requests, the requests it
//! sends a registered phone (a check-sync NOTIFY), and the whole connection a phone
//! registered over. A challenge, sent before the edge knows who asks, is never marked (a
//! marking by profile would tell a line from an unknown user). Real sockets: the phone's
//! UDP socket reads each datagram's TOS byte (IP_RECVTOS); the TCP connection's marking is
//! read with `ss --tos` from the edge's side.

use std::{process::Command, time::Duration};

use dialtone_proto::{config::v1 as pb, edge::v1 as epb};
use dialtone_tests::{
    ClusterSandbox,
    fleet::add_phone,
    sip::{
        RegisterSpec, UdpPhone, answer_to, authorization, headers, recv_marked, report_tos, status,
    },
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the next REGISTER round (unauthenticated, then answered) got, each with its DSCP.
async fn register_marked(ua: &mut UdpPhone) -> [(String, u8); 2] {
    let first = ua.register_text(600, None);
    ua.send(&first).await.unwrap();
    let challenge = recv_marked(&ua.sock, Duration::from_secs(3)).await.unwrap();
    assert_eq!(status(&challenge.0), 401, "{}", challenge.0);
    let www = headers(&challenge.0, "www-authenticate")[0].to_owned();
    let second = ua.register_text(600, Some(&www));
    ua.send(&second).await.unwrap();
    let ok = recv_marked(&ua.sock, Duration::from_secs(3)).await.unwrap();
    assert_eq!(status(&ok.0), 200, "{}", ok.0);
    [challenge, ok]
}

/// The edge's side of the TCP connection from `phone_port`, as `ss --tos` shows it.
fn edge_side_tos(edge_port: u16, phone_port: u16) -> String {
    let out = Command::new("ss")
        .args(["-tnH", "--tos", "state", "established"])
        .arg(format!(
            "( sport = :{edge_port} and dport = :{phone_port} )"
        ))
        .output()
        .expect("ss (iproute2) runs: scripts/deps.sh --test installs it");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads one whole message (no body) from a stream.
async fn read_message(s: &mut tokio::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("an answer within 3 s")
            .unwrap();
        assert!(n > 0, "the edge closed the connection");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_marks_a_phones_sip_packets_with_its_profiles_dscp() {
    let (sb, mut c, mut e) = ClusterSandbox::embedded_seeded(
        &[],
        pb::PhoneSettings {
            sip_dscp: Some(26),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let p = add_phone(&mut c, &mut e, "Desk", "1001").await.unwrap();
    let edge = std::net::SocketAddr::from(([127, 0, 0, 1], sb.nodes[0].sip.udp));

    // UDP: the challenge unmarked, the 200 with the profile's DSCP (AF31 = 26).
    let mut ua = UdpPhone::new(edge, &p.sip_user, &p.password).await.unwrap();
    report_tos(&ua.sock).unwrap();
    let [challenge, ok] = register_marked(&mut ua).await;
    assert_eq!((challenge.1, ok.1), (0, 26));

    // A NOTIFY check-sync the edge sends the phone carries it too.
    let mut api = e.clone();
    let id = p.phone_id.clone();
    let sync = tokio::spawn(async move {
        api.check_sync(epb::CheckSyncRequest {
            phone_id: id,
            reboot: false,
        })
        .await
    });
    let (notify, dscp) = recv_marked(&ua.sock, Duration::from_secs(3)).await.unwrap();
    assert!(notify.starts_with("NOTIFY "), "{notify}");
    assert_eq!(dscp, 26);
    let reply = answer_to(&notify, 200, "");
    ua.send(&reply).await.unwrap();
    sync.await.unwrap().unwrap();

    // The profile changes to EF (46): the next registration's answer follows.
    let mut desk = c
        .get_base_settings(pb::GetRequest { id: "desk".into() })
        .await
        .unwrap()
        .into_inner();
    desk.settings.get_or_insert_default().sip_dscp = Some(46);
    c.update_base_settings(pb::UpdateBaseSettingsRequest {
        update_mask: dialtone_tests::whole(),
        base_settings: Some(desk),
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let [challenge, ok] = register_marked(&mut ua).await;
        assert_eq!(challenge.1, 0);
        if ok.1 == 46 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still marked {}",
            ok.1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // TCP: unmarked until the phone registers over it, then the whole connection is marked.
    let tcp_port = sb.nodes[0].sip.tcp;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", tcp_port))
        .await
        .unwrap();
    let local = s.local_addr().unwrap();
    let (server, local_s) = (format!("127.0.0.1:{tcp_port}"), local.to_string());
    let contact = format!("<sip:{}@{local_s};transport=tcp>", p.sip_user);
    let spec = |cseq, auth: Option<&str>| {
        RegisterSpec {
            user: &p.sip_user,
            server: &server,
            local: &local_s,
            transport: "TCP",
            call_id: "dscp-tcp",
            cseq,
            branch: &format!("z9hG4bK{:016x}", rand::random::<u64>()),
            expires: 600,
            contact: &contact,
            authorization: auth,
        }
        .text()
    };
    s.write_all(spec(1, None).as_bytes()).await.unwrap();
    let challenge = read_message(&mut s).await;
    assert_eq!(status(&challenge), 401, "{challenge}");
    let before = edge_side_tos(tcp_port, local.port());
    assert!(
        !before.is_empty() && !before.contains("tos:0xb8"),
        "{before}"
    );
    let www = headers(&challenge, "www-authenticate")[0].to_owned();
    let auth = authorization(
        &p.sip_user,
        &p.password,
        "REGISTER",
        &format!("sip:{server}"),
        &www,
        1,
    );
    s.write_all(spec(2, Some(&auth)).as_bytes()).await.unwrap();
    let ok = read_message(&mut s).await;
    assert_eq!(status(&ok), 200, "{ok}");
    // EF (46) is TOS 0xb8.
    let after = edge_side_tos(tcp_port, local.port());
    assert!(after.contains("tos:0xb8"), "{after}");
}
