//! The SIP edge end to end: a real `dialtone serve` (all roles, embedded store), real SIPp
//! over UDP, TCP and TLS (SIPp from Debian has no TLS, so its TCP goes through a real TLS
//! tunnel made by socat), a real WebSocket client over WS and WSS, and raw sockets where
//! exact bytes matter. Every socket is on 127.0.0.1 with OS-chosen ports.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use dialtone_proto::{config::v1 as cpb, edge::v1 as epb};
use dialtone_tests::{
    ClusterSandbox, EdgeClient, Node,
    fleet::{Seeded, add_phone, contacts, wait_contacts},
    free_port,
    sip::{UdpPhone, authorization, challenge_param, headers, status},
};

fn settings() -> cpb::PhoneSettings {
    cpb::PhoneSettings {
        mwi_enabled: Some(true),
        max_bindings: Some(3),
        ..Default::default()
    }
}

async fn sandbox(extra: &[&str]) -> (ClusterSandbox, dialtone_tests::ConfigClient, EdgeClient) {
    ClusterSandbox::embedded_seeded(extra, settings())
        .await
        .unwrap()
}

fn udp_addr(n: &Node) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], n.sip.udp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_refreshes_and_unregisters_over_udp_tcp_and_tls() {
    // The edge's default flags and the default profile: SIPp, MD5 only, is challenged
    // with MD5.
    let (sb, mut c, mut e) = sandbox(&[]).await;
    let node = &sb.nodes[0];
    let dir = sb.dir().join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    // SIPp from Debian is built without TLS: its TCP goes through a socat TLS client that
    // verifies the edge's generated certificate.
    let tls_bridge = free_port();
    let cert = node.data_dir.join("tls/edge-cert.pem");
    let mut socat = Command::new("socat")
        .args([
            format!("TCP-LISTEN:{tls_bridge},bind=127.0.0.1,reuseaddr,fork"),
            format!(
                "OPENSSL:127.0.0.1:{},cafile={},commonname=localhost",
                node.sip.tls,
                cert.display()
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat (apt install socat)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cases = [
        (
            "u1",
            format!("127.0.0.1:{}", node.sip.udp),
            epb::SipTransport::Udp,
        ),
        (
            "t1",
            format!("127.0.0.1:{}", node.sip.tcp),
            epb::SipTransport::Tcp,
        ),
        (
            "t1",
            format!("127.0.0.1:{tls_bridge}"),
            epb::SipTransport::Tls,
        ),
    ];
    for (i, (t, target, want)) in cases.iter().enumerate() {
        let p = add_phone(&mut c, &mut e, &format!("SIPp {i}"), &format!("sipp{i}"))
            .await
            .unwrap();
        let cport = 40000 + i as u16;
        for round in ["register", "refresh"] {
            assert!(
                run_sipp(&dir, target, t, &p, 3600, cport),
                "{want:?} {round}"
            );
            let got = contacts(&mut e, &p.phone_id).await;
            assert_eq!(got.len(), 1, "{want:?} {round}: {got:?}");
            assert_eq!(got[0].transport, *want as i32, "{want:?}");
            assert_eq!(got[0].user_agent, "SIPp-test");
        }
        assert!(
            run_sipp(&dir, target, t, &p, 0, cport),
            "{want:?} unregister"
        );
        assert!(
            contacts(&mut e, &p.phone_id).await.is_empty(),
            "{want:?} unregistered"
        );
    }
    let _ = socat.kill();
    let _ = socat.wait();
}

fn run_sipp(
    dir: &Path,
    target: &str,
    transport: &str,
    p: &Seeded,
    expires: u32,
    cport: u16,
) -> bool {
    let csv = dir.join(format!("{}.csv", p.sip_user));
    std::fs::write(
        &csv,
        format!(
            "SEQUENTIAL\n{u};[authentication username={u} password={pw}]\n",
            u = p.sip_user,
            pw = p.password
        ),
    )
    .unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/register.xml");
    let status = Command::new("timeout")
        .current_dir(dir)
        .args(["30", "sipp", target, "-sf"])
        .arg(&scenario)
        .arg("-inf")
        .arg(&csv)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-t",
            transport,
        ])
        .args(["-m", "1", "-key", "expires", &expires.to_string()])
        .args(["-key", "cport", &cport.to_string()])
        .args(["-timeout", "15", "-timeout_error", "-nostdin"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp (apt install sip-tester)");
    status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrar_rules_auth_and_phone_actions() {
    let (sb, mut c, mut e) = sandbox(&[]).await;
    let node = &sb.nodes[0];
    let server = udp_addr(node);
    let p = add_phone(&mut c, &mut e, "Desk", "desk1").await.unwrap();
    let mut ua = UdpPhone::new(server, &p.sip_user, &p.password)
        .await
        .unwrap();
    let wait = Duration::from_secs(3);

    // OPTIONS: 200 with Allow, and no Server header anywhere
    let opts = format!(
        "OPTIONS sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKo1;rport\r\nFrom: <sip:x@{server}>;tag=1\r\nTo: <sip:{server}>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        l = ua.local()
    );
    ua.send(&opts).await.unwrap();
    let r = ua.recv(wait).await.unwrap();
    assert_eq!(status(&r), 200, "{r}");
    assert!(headers(&r, "allow")[0].contains("REGISTER"));
    assert!(headers(&r, "server").is_empty(), "no Server header: {r}");
    // other methods: 405 with Allow
    ua.send(&opts.replace("OPTIONS", "INVITE")).await.unwrap();
    let r = ua.recv(wait).await.unwrap();
    assert_eq!(status(&r), 405, "{r}");
    assert!(!headers(&r, "allow").is_empty());

    // the default profile's challenge offers MD5 alone (what every common client answers)
    let first = ua.register_text(3600, None);
    ua.send(&first).await.unwrap();
    let known = ua.recv(wait).await.unwrap();
    assert_eq!(status(&known), 401);
    let www = headers(&known, "www-authenticate");
    assert!(www.len() == 1 && www[0].contains("MD5"), "{known}");

    // an unknown user gets exactly the same challenge (but the nonce) and the same 403
    let mut ghost = UdpPhone::new(server, "nobody-here", "x").await.unwrap();
    let t = ghost.register_text(3600, None);
    ghost.send(&t).await.unwrap();
    let unknown = ghost.recv(wait).await.unwrap();
    let shape = |m: &str| {
        headers(m, "www-authenticate")
            .iter()
            .map(|h| h.replace(&challenge_param(h, "nonce").unwrap(), "N"))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&known), shape(&unknown));
    let r = ghost.register(3600).await.unwrap();
    assert_eq!(status(&r), 403, "{r}");
    let mut wrong = UdpPhone::new(server, &p.sip_user, "not-the-password")
        .await
        .unwrap();
    let r2 = wrong.register(3600).await.unwrap();
    assert_eq!(status(&r2), 403, "{r2}");
    assert_eq!(r.lines().next(), r2.lines().next(), "same status line");

    // a good registration: 200 with the binding and its expiry, and a Date
    let md5 = www[0].to_owned();
    let auth = ua.register_text(3600, Some(&md5));
    ua.send(&auth).await.unwrap();
    let ok = ua.recv(wait).await.unwrap();
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(headers(&ok, "contact")[0].contains("expires=3600"), "{ok}");
    assert!(!headers(&ok, "date").is_empty());
    // a UDP retransmission gets the same answer, not a replay rejection
    ua.send(&auth).await.unwrap();
    let again = ua.recv(wait).await.unwrap();
    assert_eq!(status(&again), 200, "{again}");
    assert_eq!(contacts(&mut e, &p.phone_id).await.len(), 1);

    // too brief: 423 with Min-Expires; Contact * with a non-zero expiry: 400
    let r = ua.register(10).await.unwrap();
    assert_eq!(status(&r), 423, "{r}");
    assert_eq!(headers(&r, "min-expires"), vec!["60"]);

    // MWI: SUBSCRIBE message-summary is authenticated, accepted, and followed by a NOTIFY
    let sub = |cseq: u32, auth: Option<&str>| {
        format!(
            "SUBSCRIBE sip:{u}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKs{cseq};rport\r\nFrom: <sip:{u}@{server}>;tag=s1\r\nTo: <sip:{u}@{server}>\r\nCall-ID: sub1\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:{u}@{l}>\r\nEvent: message-summary\r\nExpires: 600\r\nMax-Forwards: 70\r\n{a}Content-Length: 0\r\n\r\n",
            u = p.sip_user,
            l = ua.local(),
            a = auth
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default()
        )
    };
    ua.send(&sub(1, None)).await.unwrap();
    let ch = ua.recv(wait).await.unwrap();
    assert_eq!(status(&ch), 401);
    let md5 = headers(&ch, "www-authenticate")[0].to_owned();
    let a = authorization(
        &p.sip_user,
        &p.password,
        "SUBSCRIBE",
        &format!("sip:{}@{server}", p.sip_user),
        &md5,
        1,
    );
    ua.send(&sub(2, Some(&a))).await.unwrap();
    let ok = ua.recv(wait).await.unwrap();
    assert_eq!(status(&ok), 200, "{ok}");
    let notify = ua.recv(wait).await.unwrap();
    assert!(notify.starts_with("NOTIFY "), "{notify}");
    assert!(notify.contains("Messages-Waiting: no"), "{notify}");

    // check-sync: the phone answers the NOTIFY and the API reports it
    let phone_sock = ua.sock;
    let answer = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        let (n, from) = phone_sock.recv_from(&mut buf).await.unwrap();
        let req = String::from_utf8_lossy(&buf[..n]).into_owned();
        let mut resp = String::from("SIP/2.0 200 OK\r\n");
        for h in ["via", "from", "to", "call-id", "cseq"] {
            for v in headers(&req, h) {
                resp.push_str(&format!("{h}: {v}\r\n"));
            }
        }
        resp.push_str("Content-Length: 0\r\n\r\n");
        phone_sock.send_to(resp.as_bytes(), from).await.unwrap();
        req
    });
    let res = e
        .check_sync(epb::CheckSyncRequest {
            phone_id: p.phone_id.clone(),
            reboot: true,
        })
        .await
        .unwrap()
        .into_inner();
    let req = answer.await.unwrap();
    assert!(req.contains("Event: check-sync;reboot=true"), "{req}");
    assert_eq!(res.results.len(), 1);
    assert_eq!(res.results[0].status_code, 200, "{res:?}");

    // log out
    let dropped = e
        .drop_bindings(epb::DropBindingsRequest {
            phone_id: p.phone_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dropped.contacts_dropped, 1);
    assert!(contacts(&mut e, &p.phone_id).await.is_empty());
    let err = e
        .check_sync(epb::CheckSyncRequest {
            phone_id: p.phone_id.clone(),
            reboot: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let err = e
        .list_bindings(epb::ListBindingsRequest {
            phone_id: "no-such-phone".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_reach_the_edge_within_a_second() {
    let (sb, mut c, mut e) = sandbox(&[]).await;
    let server = udp_addr(&sb.nodes[0]);
    let p = add_phone(&mut c, &mut e, "Desk", "desk2").await.unwrap();
    let mut ua = UdpPhone::new(server, &p.sip_user, &p.password)
        .await
        .unwrap();
    assert_eq!(status(&ua.register(3600).await.unwrap()), 200);

    // a password reset: the old password stops working, the new one works, within 1 s
    let cred = c
        .reset_line_password(cpb::ResetLinePasswordRequest {
            phone_id: p.phone_id.clone(),
            line_index: 0,
            version: p.version,
        })
        .await
        .unwrap()
        .into_inner();
    let t0 = Instant::now();
    loop {
        let r = ua.register(3600).await.unwrap();
        if status(&r) == 403 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "old password still accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ua.password = cred.password.clone();
    assert_eq!(status(&ua.register(3600).await.unwrap()), 200);

    // a disabled phone loses its bindings and is refused within 1 s; enabled, it registers
    let get = |c: &mut dialtone_tests::ConfigClient| {
        let req = cpb::GetRequest {
            id: p.phone_id.clone(),
        };
        let mut c = c.clone();
        async move { c.get_phone(req).await.unwrap().into_inner() }
    };
    for disabled in [true, false] {
        let mut phone = get(&mut c).await;
        phone.disabled = disabled;
        c.update_phone(cpb::UpdatePhoneRequest {
            update_mask: dialtone_tests::whole(),
            phone: Some(phone),
        })
        .await
        .unwrap();
        if disabled {
            assert!(wait_contacts(&mut e, &p.phone_id, 0, Duration::from_secs(1)).await);
        }
        let want = if disabled { 403 } else { 200 };
        let t0 = Instant::now();
        while status(&ua.register(3600).await.unwrap()) != want {
            assert!(t0.elapsed() < Duration::from_secs(1), "disabled={disabled}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // a deleted phone loses its bindings within 1 s
    let version = get(&mut c).await.version;
    assert_eq!(contacts(&mut e, &p.phone_id).await.len(), 1);
    c.delete_phone(cpb::DeleteRequest {
        id: p.phone_id.clone(),
        version,
    })
    .await
    .unwrap();
    assert!(wait_contacts(&mut e, &p.phone_id, 0, Duration::from_secs(1)).await);
    assert_eq!(status(&ua.register(3600).await.unwrap()), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_ban_the_source() {
    let (sb, mut c, mut e) =
        sandbox(&["--sip-ban-source-failures=3", "--sip-ban-duration=60"]).await;
    let server = udp_addr(&sb.nodes[0]);
    let p = add_phone(&mut c, &mut e, "Desk", "desk3").await.unwrap();
    let mut attacker = UdpPhone::new_at("127.0.0.2", server, &p.sip_user, "guess")
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(status(&attacker.register(3600).await.unwrap()), 403);
    }
    // banned: even the right password from that address gets no answer
    attacker.password = p.password.clone();
    assert!(
        attacker.register(3600).await.is_err(),
        "banned source still answered"
    );
    // other addresses are not affected
    let mut phone = UdpPhone::new(server, &p.sip_user, &p.password)
        .await
        .unwrap();
    assert_eq!(status(&phone.register(3600).await.unwrap()), 200);
    let (_, m) = sb.nodes[0].http_get("/metrics").await.unwrap();
    assert!(
        m.contains("dialtone_auth_active_source_bans{node=\"solo\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_never_stops_the_edge() {
    let (sb, mut c, mut e) = sandbox(&[]).await;
    let server = udp_addr(&sb.nodes[0]);
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // every PROTOS c07-sip case and every RFC 4475 torture message, over UDP
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance/sip");
    let mut sent = 0;
    for sub in ["rfc4475", "rfc5118"] {
        for f in std::fs::read_dir(root.join(sub)).unwrap().flatten() {
            if f.path().extension().is_some_and(|x| x == "dat") {
                let bytes = std::fs::read(f.path()).unwrap();
                sock.send_to(&bytes, server).await.unwrap();
                sent += 1;
            }
        }
    }
    for bytes in protos_cases(&root.join("protos")) {
        sock.send_to(&bytes, server).await.unwrap();
        sent += 1;
        if sent % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(sent > 4000, "only {sent} cases found");
    // garbage on a stream closes that connection, nothing else
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", sb.nodes[0].sip.tcp))
        .await
        .unwrap();
    tcp.write_all(b"REGISTER sip:x SIP/2.0\r\nContent-Length: nope\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "connection closed");
    // still serving
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = add_phone(&mut c, &mut e, "Desk", "desk4").await.unwrap();
    let mut ua = UdpPhone::new(server, &p.sip_user, &p.password)
        .await
        .unwrap();
    assert_eq!(status(&ua.register(3600).await.unwrap()), 200);
    assert_eq!(sb.nodes[0].http_status("/readyz").await, Some(200));
}

/// The PROTOS c07-sip test cases (a tarball of one file per case, or loose files).
fn protos_cases(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = f.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            let dest = std::env::temp_dir().join(format!("protos-{}", std::process::id()));
            std::fs::create_dir_all(&dest).unwrap();
            let ok = Command::new("tar")
                .args(["-xzf"])
                .arg(&p)
                .arg("-C")
                .arg(&dest)
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                collect_files(&dest, &mut out);
            }
            let _ = std::fs::remove_dir_all(&dest);
        }
    }
    out
}

fn collect_files(dir: &Path, out: &mut Vec<Vec<u8>>) {
    for f in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = f.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else if let Ok(b) = std::fs::read(&p).map(|b| dialtone_sip::conformance::protos_pdu(&b))
            && !b.is_empty()
            && b.len() < 65_000
        {
            out.push(b);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_phones_register_over_ws_and_wss() {
    use dialtone_tests::ws;
    let (sb, mut c, mut e) = sandbox(&[]).await;
    let node = &sb.nodes[0];
    // without the sip subprotocol the upgrade is refused
    assert!(ws::connect(node, false, false).await.is_err());

    // WS: register, see the flow's binding, close the connection: the binding goes with it
    let p = add_phone(&mut c, &mut e, "Browser", "web1").await.unwrap();
    let mut phone = ws::connect(node, false, true).await.unwrap();
    let ok = ws::register(&mut phone, (&p.sip_user, &p.password), 600, 10).await;
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(ok.contains("Require: outbound"), "{ok}");
    let got = contacts(&mut e, &p.phone_id).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].transport, epb::SipTransport::Ws as i32);
    assert!(got[0].instance.contains("urn:uuid"), "{got:?}");
    drop(phone);
    assert!(wait_contacts(&mut e, &p.phone_id, 0, Duration::from_secs(3)).await);

    // WSS, trusting the certificate the dev mode generated
    let p2 = add_phone(&mut c, &mut e, "Browser 2", "web2")
        .await
        .unwrap();
    let mut wss = ws::connect(node, true, true).await.unwrap();
    let ok = ws::register(&mut wss, (&p2.sip_user, &p2.password), 600, 10).await;
    assert_eq!(status(&ok), 200, "{ok}");
    let got = contacts(&mut e, &p2.phone_id).await;
    assert_eq!(got[0].transport, epb::SipTransport::Wss as i32);
    // de-registration over the same flow
    let bye = ws::register(&mut wss, (&p2.sip_user, &p2.password), 0, 20).await;
    assert_eq!(status(&bye), 200, "{bye}");
    assert!(contacts(&mut e, &p2.phone_id).await.is_empty());
}

/// Runs a sipvicious tool to completion (bounded) and returns its output.
use dialtone_tests::sipvicious;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipvicious_cannot_enumerate_users_and_gets_banned() {
    // MD5 only: sipvicious (like SIPp) answers the first challenge and knows only MD5.
    let (sb, mut c, mut e) =
        sandbox(&["--sip-ban-source-failures=5", "--sip-digest-algorithms=md5"]).await;
    let node = &sb.nodes[0];
    let p = add_phone(&mut c, &mut e, "Desk", "desk9").await.unwrap();
    // svwar: a dictionary holding the real user among made-up ones finds nothing, since
    // every user gets the same challenge
    let dict = sb.dir().join("users.txt");
    let mut words: Vec<String> = (0..20).map(|i| format!("guess{i}")).collect();
    words.insert(7, p.sip_user.clone());
    std::fs::write(&dict, words.join("\n") + "\n").unwrap();
    let target = format!("udp://127.0.0.1:{}", node.sip.udp);
    let out = sipvicious(
        "svwar",
        &[
            "-d".into(),
            dict.display().to_string(),
            "-b".into(),
            "127.0.0.3".into(),
            target.clone(),
        ],
    );
    assert!(
        !out.contains(&p.sip_user),
        "svwar told the real user apart:\n{out}"
    );
    // svcrack: wrong passwords get 403, then the source is banned and gets no answer
    let pw = sb.dir().join("passwords.txt");
    let guesses: Vec<String> = (0..30).map(|i| format!("pass{i}")).collect();
    std::fs::write(&pw, guesses.join("\n") + "\n").unwrap();
    let out = sipvicious(
        "svcrack",
        &[
            "-u".into(),
            p.sip_user.clone(),
            "-d".into(),
            pw.display().to_string(),
            "-b".into(),
            "127.0.0.4".into(),
            target,
        ],
    );
    assert!(!out.contains("pass2"), "no password found: {out}");
    let (_, m) = node.http_get("/metrics").await.unwrap();
    assert!(
        m.contains("dialtone_auth_active_source_bans{node=\"solo\"} 1"),
        "{m}\n{out}"
    );
    // the phone itself, from another address, still registers (sipvicious sends from
    // 127.0.0.1 whatever its -b says)
    let mut ua = UdpPhone::new_at("127.0.0.5", udp_addr(node), &p.sip_user, &p.password)
        .await
        .unwrap();
    assert_eq!(status(&ua.register(3600).await.unwrap()), 200);
}

async fn sleeping(node: &Node) -> Option<i64> {
    node.metric("dialtone_edge_sleeping_phones", "").await
}

/// A registered phone that stays quiet for a transaction lifetime (32 s) gives its actor
/// up for a compact sleeping state; any message wakes it with bindings, Call-ID/CSeq order
/// and nonce counts intact, and its bindings still expire on time while it sleeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_phones_sleep_and_wake_with_their_state() {
    let (sb, mut c, mut e) = sandbox(&["--sip-min-expires=30"]).await;
    let node = &sb.nodes[0];
    let server = udp_addr(node);
    let a = add_phone(&mut c, &mut e, "Desk A", "sleep1").await.unwrap();
    let b = add_phone(&mut c, &mut e, "Desk B", "sleep2").await.unwrap();
    let mut ua = UdpPhone::new(server, &a.sip_user, &a.password)
        .await
        .unwrap();
    let mut ub = UdpPhone::new(server, &b.sip_user, &b.password)
        .await
        .unwrap();
    assert_eq!(status(&ua.register(3600).await.unwrap()), 200);
    assert_eq!(status(&ub.register(40).await.unwrap()), 200);
    let registered = Instant::now();
    assert_eq!(sleeping(node).await, Some(0));

    let deadline = registered + Duration::from_secs(38);
    while sleeping(node).await != Some(2) {
        assert!(Instant::now() < deadline, "phones never fell asleep");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // a request wakes A: its binding, Call-ID and CSeq order are all there
    let r = ua.register(3600).await.unwrap();
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(headers(&r, "contact").len(), 1, "{r}");
    assert_eq!(sleeping(node).await, Some(1));
    ua.cseq = 0;
    let r = ua.register(3600).await.unwrap();
    assert_eq!(
        status(&r),
        400,
        "an old CSeq is still refused after waking: {r}"
    );
    assert_eq!(contacts(&mut e, &a.phone_id).await.len(), 1);

    // B's binding expires while it sleeps: it wakes for the expiry and drops it
    assert!(
        wait_contacts(&mut e, &b.phone_id, 1, Duration::from_secs(1)).await,
        "listing wakes B"
    );
    let expiry = registered + Duration::from_secs(40);
    tokio::time::sleep_until((expiry + Duration::from_millis(200)).into()).await;
    assert!(
        wait_contacts(&mut e, &b.phone_id, 0, Duration::from_secs(3)).await,
        "B's binding outlived its expiry"
    );
}

/// "The admin may type the SIP password (or leave it generated)": a line created with a
/// typed password registers with it; no read returns it; a wrong one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_registers_with_the_password_its_admin_typed() {
    let (sb, mut c, mut e) = sandbox(&[]).await;
    let typed = "typed-by-the-admin-42";
    let created = c
        .create_phone(cpb::CreatePhoneRequest {
            phone: Some(cpb::Phone {
                name: "Typed".into(),
                kind: cpb::PhoneKind::Unmanaged as i32,
                site_id: "hq".into(),
                base_settings_id: "desk".into(),
                lines: vec![cpb::Line {
                    sip_user: "typed".into(),
                    password: typed.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let phone = created.phone.unwrap();
    assert_eq!(created.credentials[0].password, typed);
    let read = c
        .get_phone(cpb::GetRequest {
            id: phone.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(read.lines[0].password.is_empty() && read.lines[0].credentials.is_none());
    let user = &created.credentials[0].sip_user;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let edge = udp_addr(&sb.nodes[0]);
    let mut wrong = UdpPhone::new(edge, user, "typed-by-someone-else")
        .await
        .unwrap();
    assert_eq!(status(&wrong.register(600).await.unwrap()), 403);
    let mut ua = UdpPhone::new(edge, user, typed).await.unwrap();
    let ok = ua.register(600).await.unwrap();
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(wait_contacts(&mut e, &phone.id, 1, Duration::from_secs(3)).await);
}

/// A burst of datagrams, twice the rate that makes the edge read its UDP socket on a
/// clock instead of being woken for each (`flow::udp_pace`: ten a millisecond over 8 ms),
/// is answered whole (what a small receive buffer dropped is sent again, as a SIP client
/// does); when it ends the edge goes back to being woken, and a lone request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_burst_is_read_on_a_clock_and_answered_whole() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let (sb, _c, _e) = sandbox(&[]).await;
    let node = &sb.nodes[0];
    let server = udp_addr(node);
    let ticks = || async { node.metric("dialtone_edge_udp_ticks_total", "").await };
    let before = ticks().await.expect("the ticks counter is exposed");
    // One source: the kernel hands all of it to one receive loop.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sock.local_addr().unwrap();
    let options = move |i: usize| {
        format!(
            "OPTIONS sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKburst{i};rport\r\nFrom: <sip:x@{server}>;tag=1\r\nTo: <sip:{server}>\r\nCall-ID: burst-{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    const N: usize = 4_000;
    let answered: Arc<Vec<AtomicBool>> = Arc::new((0..N).map(|_| AtomicBool::new(false)).collect());
    let sending = Arc::new(AtomicBool::new(true));
    // Answers are read while the burst is sent, on a thread of their own.
    let reader = {
        let (sock, answered, sending) =
            (sock.try_clone().unwrap(), answered.clone(), sending.clone());
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]);
                        let id = headers(&text, "call-id")
                            .first()
                            .and_then(|c| c.strip_prefix("burst-")?.parse::<usize>().ok());
                        if let (200, Some(i)) = (status(&text), id) {
                            answered[i].store(true, Ordering::Relaxed);
                        }
                    }
                    Err(_) if !sending.load(Ordering::Relaxed) => return,
                    Err(_) => {}
                }
            }
        })
    };
    let sent = {
        let answered = answered.clone();
        tokio::task::spawn_blocking(move || {
            // 20 a millisecond, one each 50 µs (spun for: a sleep is coarser); then what
            // went unanswered, the same way, until every one is answered.
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut rounds = 0;
            loop {
                let lost: Vec<usize> = (0..N)
                    .filter(|i| !answered[*i].load(Ordering::Relaxed))
                    .collect();
                if lost.is_empty() || Instant::now() > deadline {
                    return rounds;
                }
                let start = Instant::now();
                for (k, i) in lost.into_iter().enumerate() {
                    while Instant::now() < start + Duration::from_micros(50 * k as u64) {
                        std::hint::spin_loop();
                    }
                    sock.send_to(options(i).as_bytes(), server).unwrap();
                }
                rounds += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        })
        .await
        .unwrap()
    };
    sending.store(false, Ordering::Relaxed);
    reader.join().unwrap();
    let got = answered
        .iter()
        .filter(|a| a.load(Ordering::Relaxed))
        .count();
    assert_eq!(
        got, N,
        "every OPTIONS of the burst answered 200 ({sent} rounds sent)"
    );
    let after = ticks().await.unwrap();
    assert!(
        after > before,
        "the burst was read on a clock ({before} -> {after} ticks)"
    );
    // Quiet again: every loop is woken by its socket, and a lone request is answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.metric("dialtone_edge_udp_loops_ticking", "").await != Some(0) {
        assert!(Instant::now() < deadline, "a loop still reads on a clock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ua = UdpPhone::new(server, "nobody", "x").await.unwrap();
    let lone = options(N).replace(&local.to_string(), &ua.local().to_string());
    ua.send(&lone).await.unwrap();
    let r = ua.recv(Duration::from_secs(3)).await.unwrap();
    assert_eq!(status(&r), 200, "{r}");
}
