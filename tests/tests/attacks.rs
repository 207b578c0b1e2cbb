//! Attacks on a real edge (`dialtone serve`, all roles, embedded store) over real sockets on
//! 127.0.0.x: each test sends what an attacker would and asserts the bound or the refusal,
//! then that the edge still serves (readiness, and a phone that still registers).

use std::{net::SocketAddr, time::Duration};

use dialtone_proto::config::v1 as cpb;
use dialtone_tests::{
    ClusterSandbox, EdgeClient, Node,
    fleet::{Seeded, add_phone, contacts, seed_site, wait_contacts},
    sip::{Caller, UdpPhone, authorization, headers, status},
};
use tokio::net::UdpSocket;

async fn sandbox() -> (ClusterSandbox, dialtone_tests::ConfigClient, EdgeClient) {
    let sb = ClusterSandbox::embedded_with(&["--sip-digest-algorithms=sha-256,md5"])
        .await
        .unwrap();
    let token = sb.nodes[0].admin_token();
    let mut c = sb.nodes[0].config_client(&token).await.unwrap();
    seed_site(&mut c, cpb::PhoneSettings::default())
        .await
        .unwrap();
    let e = sb.nodes[0].edge_client(&token).await.unwrap();
    (sb, c, e)
}

fn udp_addr(n: &Node) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], n.sip.udp))
}

/// The edge's resident memory in KiB.
fn rss_kib(n: &Node) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", n.pid().unwrap())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The edge still serves: ready, and a new phone registers.
async fn still_serves(node: &Node, c: &mut dialtone_tests::ConfigClient, e: &mut EdgeClient) {
    assert_eq!(node.http_status("/readyz").await, Some(200));
    let name = format!("after-{:08x}", rand::random::<u32>());
    let p = add_phone(c, e, &name, &name).await.unwrap();
    let mut phone = UdpPhone::new(udp_addr(node), &p.sip_user, &p.password)
        .await
        .unwrap();
    let r = phone.register(300).await.unwrap();
    assert_eq!(status(&r), 200, "{r}");
}

/// Receives the next datagram on `sock`, or None after `wait`.
async fn recv(sock: &UdpSocket, wait: Duration) -> Option<String> {
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// The 65,022-byte OPTIONS whose last header goes on in 16,000 continuation lines: once
/// 400 MB of the edge's memory per datagram.
fn folded_datagram(local: SocketAddr) -> Vec<u8> {
    let mut m = format!(
        "OPTIONS sip:edge SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{:08x};rport\r\nFrom: <sip:a@e>;tag=1\r\nTo: <sip:a@e>\r\nCall-ID: fold\r\nCSeq: 1 OPTIONS\r\nX-Fold: a\r\n",
        rand::random::<u32>()
    )
    .into_bytes();
    while m.len() + 6 < 65_022 {
        m.extend_from_slice(b" b\r\n");
    }
    m.extend_from_slice(b"\r\n");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folded_datagrams_get_400_and_cost_no_memory() {
    let (sb, mut c, mut e) = sandbox().await;
    let node = &sb.nodes[0];
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let before = rss_kib(node);
    for _ in 0..20 {
        let d = folded_datagram(attacker.local_addr().unwrap());
        attacker.send_to(&d, udp_addr(node)).await.unwrap();
        let r = recv(&attacker, Duration::from_secs(3))
            .await
            .expect("an answer to a folded datagram");
        assert!(r.starts_with("SIP/2.0 400 "), "{r}");
    }
    let grown = rss_kib(node).saturating_sub(before);
    assert!(
        grown < 20 * 1024,
        "RSS grew by {grown} KiB after 20 folded datagrams"
    );
    // A broken request line with a readable Via is answered, not ignored (RFC 4475 3.1.2.8).
    let local = attacker.local_addr().unwrap();
    let lws = format!(
        "INVITE sip:user@example.com; lr SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKlws;rport\r\nFrom: <sip:a@e>;tag=1\r\nTo: <sip:b@e>\r\nCall-ID: lws\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    attacker
        .send_to(lws.as_bytes(), udp_addr(node))
        .await
        .unwrap();
    let r = recv(&attacker, Duration::from_secs(3))
        .await
        .expect("an answer");
    assert!(r.starts_with("SIP/2.0 400 "), "{r}");
    assert_eq!(headers(&r, "call-id"), ["lws"]);
    still_serves(node, &mut c, &mut e).await;
}

/// A 200 to a request `phone` received (the headers a response copies).
fn ok_to(req: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for name in ["via", "from", "to", "call-id", "cseq"] {
        for v in headers(req, name) {
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// Phone `a` registered (listening on its socket), and `b`, a user's line, that calls.
async fn two_lines(
    node: &Node,
    c: &mut dialtone_tests::ConfigClient,
    e: &mut EdgeClient,
) -> (Seeded, UdpPhone, Seeded) {
    let a = add_phone(c, e, "Callee", "callee1").await.unwrap();
    let b = add_phone(c, e, "Caller", "caller1").await.unwrap();
    dialtone_tests::fleet::assign_to_user(c, &b.phone_id, "bob")
        .await
        .unwrap();
    let mut callee = UdpPhone::new(udp_addr(node), &a.sip_user, &a.password)
        .await
        .unwrap();
    let r = callee.register(300).await.unwrap();
    assert_eq!(status(&r), 200, "{r}");
    assert!(wait_contacts(e, &a.phone_id, 1, Duration::from_secs(3)).await);
    (a, callee, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_lines_and_edges_reach_a_phone() {
    let (sb, mut c, mut e) = sandbox().await;
    let node = &sb.nodes[0];
    let edge = udp_addr(node);
    let (a, callee, b) = two_lines(node, &mut c, &mut e).await;
    let line = Caller::line(&b.sip_user, &b.password).await.unwrap();
    let outsider = Caller::new().await.unwrap();
    let nothing_reached = async || callee.recv(Duration::from_millis(300)).await.is_none();

    // An outsider's MESSAGE (any From with a user is challenged): 407, never delivered.
    let branch = dialtone_tests::sip::branch();
    outsider
        .send(
            &outsider.text("MESSAGE", &a.sip_user, &branch, "MESSAGE"),
            edge,
        )
        .await;
    let r = outsider.responses("MESSAGE", Duration::from_secs(3)).await;
    assert_eq!(r.last().map(|m| status(m)), Some(407), "{r:?}");
    assert!(
        nothing_reached().await,
        "an unauthenticated MESSAGE reached the phone"
    );
    // A From without a user cannot be challenged: 403.
    let text = outsider.text_from(
        "example.com",
        "INVITE",
        &a.sip_user,
        &dialtone_tests::sip::branch(),
        "INVITE",
    );
    outsider.send(&text, edge).await;
    let codes = outsider.codes("INVITE", Duration::from_secs(3)).await;
    assert_eq!(codes.last(), Some(&403), "{codes:?}");
    assert!(nothing_reached().await);

    // A wrong password: 403, never delivered.
    let liar = Caller::line(&b.sip_user, "not-the-password").await.unwrap();
    liar.send(
        &liar.text(
            "MESSAGE",
            &a.sip_user,
            &dialtone_tests::sip::branch(),
            "MESSAGE",
        ),
        edge,
    )
    .await;
    let codes = liar.codes("MESSAGE", Duration::from_secs(3)).await;
    assert_eq!(codes.last(), Some(&403), "{codes:?}");
    assert!(nothing_reached().await);

    // A forged forwarding marker (the edge-to-edge path): 403, never delivered.
    let now = dialtone_common::clock::unix_secs();
    let forged = outsider
        .text(
            "MESSAGE",
            &a.sip_user,
            &dialtone_tests::sip::branch(),
            "MESSAGE",
        )
        .replacen(
            "Content-Length:",
            &format!(
                "X-Dialtone-Forwarded: solo;ts={now};mac={}\r\nContent-Length:",
                "0".repeat(32)
            ),
            1,
        );
    outsider.send_raw(&forged, edge).await;
    let codes = outsider.codes("MESSAGE", Duration::from_secs(3)).await;
    assert_eq!(codes.last(), Some(&403), "{codes:?}");
    assert!(nothing_reached().await, "a forged marker reached the phone");

    // Check-sync comes from the edge only, not from a line that proved itself.
    let notify = line
        .text(
            "NOTIFY",
            &a.sip_user,
            &dialtone_tests::sip::branch(),
            "NOTIFY",
        )
        .replacen(
            "Content-Length:",
            "Event: check-sync;reboot=true\r\nContent-Length:",
            1,
        );
    line.send(&notify, edge).await;
    let codes = line.codes("NOTIFY", Duration::from_secs(3)).await;
    assert_eq!(codes.last(), Some(&403), "{codes:?}");
    assert!(
        nothing_reached().await,
        "a check-sync from outside reached the phone"
    );

    // The line that proves itself is delivered, without its credentials.
    let text = line.text(
        "MESSAGE",
        &a.sip_user,
        &dialtone_tests::sip::branch(),
        "MESSAGE",
    );
    let sent = line.authorized(&text, edge).await;
    line.send_raw(&sent, edge).await;
    let got = callee
        .recv(Duration::from_secs(3))
        .await
        .expect("the authenticated MESSAGE reached the phone");
    assert!(got.starts_with("MESSAGE "), "{got}");
    assert!(headers(&got, "proxy-authorization").is_empty(), "{got}");
    callee.send(&ok_to(&got)).await.unwrap();
    let codes = line.codes("MESSAGE", Duration::from_secs(3)).await;
    assert_eq!(codes.last(), Some(&200), "{codes:?}");
    // The same request captured and sent again as a new one (its credentials and nonce
    // count unchanged, from the same address): challenged again, never delivered.
    let branch = headers(&sent, "via")[0]
        .split("branch=")
        .nth(1)
        .unwrap()
        .to_owned();
    let replay = sent.replace(&branch, &dialtone_tests::sip::branch());
    line.send_raw(&replay, edge).await;
    let r = line.responses("MESSAGE", Duration::from_secs(3)).await;
    assert_eq!(r.last().map(|m| status(m)), Some(407), "{r:?}");
    assert!(
        nothing_reached().await,
        "a replayed MESSAGE reached the phone"
    );
    still_serves(node, &mut c, &mut e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_tells_a_line_from_an_unknown_user() {
    let (sb, mut c, mut e) = sandbox().await;
    let node = &sb.nodes[0];
    let edge = udp_addr(node);
    let (a, _callee, b) = two_lines(node, &mut c, &mut e).await;
    let outsider = Caller::new().await.unwrap();
    // A REMOTE phone (config only: reached at its remote address).
    let prefix = c
        .get_site(cpb::GetRequest { id: "hq".into() })
        .await
        .unwrap()
        .into_inner()
        .sip_user_prefix;
    c.create_phone(cpb::CreatePhoneRequest {
        phone: Some(cpb::Phone {
            name: "Field office".into(),
            kind: cpb::PhoneKind::Remote as i32,
            site_id: "hq".into(),
            remote_address: "+15550002001".into(),
            assignment: Some(cpb::Assignment {
                mode: Some(cpb::assignment::Mode::Site(cpb::SiteAssignment {
                    extension: "2001".into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let remote = format!("{prefix}2001");
    // A registered line, a line without a binding, a REMOTE phone and a user that does
    // not exist.
    let users = [
        a.sip_user.as_str(),
        b.sip_user.as_str(),
        remote.as_str(),
        "nobody1",
    ];
    for method in [
        "OPTIONS",
        "INVITE",
        "MESSAGE",
        "INFO",
        "REGISTER",
        "SUBSCRIBE",
    ] {
        let mut answers = Vec::new();
        for user in users {
            let mut text = outsider
                .text(method, user, &dialtone_tests::sip::branch(), method)
                .replace(
                    "From: <sip:caller@example.com>",
                    &format!("From: <sip:{user}@dialtone>"),
                );
            if method == "SUBSCRIBE" {
                text = text.replacen(
                    "Content-Length:",
                    "Event: message-summary\r\nContent-Length:",
                    1,
                );
            }
            outsider.send_raw(&text, edge).await;
            let r = outsider.responses(method, Duration::from_secs(3)).await;
            let last = r.last().cloned().unwrap_or_default();
            // The status line and the header names, in order (values hold tags and nonces).
            let shape: Vec<String> = last
                .split("\r\n")
                .take_while(|l| !l.is_empty())
                .map(|l| match l.split_once(':') {
                    Some((n, _)) if !l.starts_with("SIP/") => n.to_ascii_lowercase(),
                    _ => l.to_owned(),
                })
                .collect();
            answers.push((user, shape));
        }
        for (user, shape) in &answers[1..] {
            assert_eq!(
                *shape, answers[0].1,
                "{method} for {user} answered unlike for {}",
                answers[0].0
            );
        }
        assert!(!answers[0].1.is_empty(), "{method}: no answer");
    }
    // The attacker's own tool, with each method it knows, finds none of them.
    let dict = sb.dir().join("users.txt");
    let mut words: Vec<String> = (0..10).map(|i| format!("guess{i}")).collect();
    words.insert(3, a.sip_user.clone());
    words.insert(7, b.sip_user.clone());
    std::fs::write(&dict, words.join("\n") + "\n").unwrap();
    for method in ["OPTIONS", "INVITE"] {
        let out = dialtone_tests::sipvicious(
            "svwar",
            &[
                // Past its sanity check (an unknown user already gets a challenge, which
                // makes it give up by itself), so every word is really tried.
                "--force".into(),
                "-m".into(),
                method.into(),
                "-d".into(),
                dict.display().to_string(),
                "-b".into(),
                "127.0.0.7".into(),
                format!("udp://{edge}"),
            ],
        );
        assert!(
            !out.contains(&a.sip_user) && !out.contains(&b.sip_user),
            "svwar -m {method} told a line apart:\n{out}"
        );
        assert!(out.contains("found nothing"), "svwar -m {method}:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_register_cannot_move_a_binding_to_another_source() {
    let (sb, mut c, mut e) = sandbox().await;
    let node = &sb.nodes[0];
    let p = add_phone(&mut c, &mut e, "Victim", "victim1")
        .await
        .unwrap();
    let mut phone = UdpPhone::new(udp_addr(node), &p.sip_user, &p.password)
        .await
        .unwrap();
    // The phone's exchange, captured: the challenge it got and its authenticated REGISTER.
    let first = phone.register_text(300, None);
    phone.send(&first).await.unwrap();
    let ch = phone.recv(Duration::from_secs(3)).await.unwrap();
    let www = headers(&ch, "www-authenticate")
        .into_iter()
        .find(|h| h.contains("MD5"))
        .unwrap()
        .to_owned();
    // The attacker, at another address, sends the same credentials with its own contact.
    let attacker = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let local = attacker.local_addr().unwrap();
    let auth = authorization(
        &p.sip_user,
        &p.password,
        "REGISTER",
        &format!("sip:{}", udp_addr(node)),
        &www,
        1,
    );
    let replay = dialtone_tests::sip::RegisterSpec {
        user: &p.sip_user,
        server: &udp_addr(node).to_string(),
        local: &local.to_string(),
        transport: "UDP",
        call_id: "replayed",
        cseq: 7,
        branch: "z9hG4bKreplay",
        expires: 300,
        contact: &format!("<sip:{}@{local}>", p.sip_user),
        authorization: Some(&auth),
    }
    .text();
    attacker
        .send_to(replay.as_bytes(), udp_addr(node))
        .await
        .unwrap();
    let r = recv(&attacker, Duration::from_secs(3))
        .await
        .expect("an answer");
    assert_eq!(
        status(&r),
        401,
        "a nonce issued to another address was taken: {r}"
    );
    assert!(
        contacts(&mut e, &p.phone_id).await.is_empty(),
        "no binding was made"
    );
    // The phone itself, at the address the nonce was issued to, registers with it.
    let second = phone.register_text(300, Some(&www));
    phone.send(&second).await.unwrap();
    let r = phone.recv(Duration::from_secs(3)).await.unwrap();
    assert_eq!(status(&r), 200, "{r}");
    let bound = contacts(&mut e, &p.phone_id).await;
    assert_eq!(bound.len(), 1);
    assert!(
        bound[0].source.contains(&phone.local().to_string()),
        "{bound:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_origins_open_websockets() {
    use tokio_tungstenite::tungstenite::{Error, client::IntoClientRequest};
    let sb =
        ClusterSandbox::embedded_with(&["--sip-ws-allowed-origins=https://console.example.com"])
            .await
            .unwrap();
    let url = format!("ws://127.0.0.1:{}", sb.nodes[0].sip.ws);
    let request = |origin: Option<&str>| {
        let mut r = url.clone().into_client_request().unwrap();
        r.headers_mut()
            .insert("sec-websocket-protocol", "sip".parse().unwrap());
        if let Some(o) = origin {
            r.headers_mut().insert("origin", o.parse().unwrap());
        }
        r
    };
    // A page elsewhere cannot use a visitor's browser against the edge.
    match tokio_tungstenite::connect_async(request(Some("https://evil.example"))).await {
        Err(Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("an unlisted origin was let in: {:?}", other.map(|(_, r)| r)),
    }
    // The console's page, and a phone (no Origin), are.
    for origin in [Some("https://console.example.com"), None] {
        let (ws, _) = tokio_tungstenite::connect_async(request(origin))
            .await
            .unwrap_or_else(|e| panic!("{origin:?} refused: {e}"));
        drop(ws);
    }
}

/// Connects to `addr` with a small receive buffer (so a peer that does not read fills up
/// fast).
async fn connect_small(addr: SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(addr).await.unwrap()
}

/// Whether the edge closed `s` within `within` (a read sees the end; what it sends before
/// is skipped).
async fn closed_by_edge(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_connections_are_capped_per_source_and_idle_ones_closed() {
    let sb = ClusterSandbox::embedded_with(&["--sip-max-connections-per-source=4"])
        .await
        .unwrap();
    let tcp = SocketAddr::from(([127, 0, 0, 1], sb.nodes[0].sip.tcp));
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_small(tcp).await);
    }
    // The fifth from the same address is closed at once; another address still gets in.
    let mut fifth = connect_small(tcp).await;
    assert!(
        closed_by_edge(&mut fifth, Duration::from_secs(2)).await,
        "a fifth connection stayed"
    );
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut other = other.connect(tcp).await.unwrap();
    assert!(!closed_by_edge(&mut other, Duration::from_millis(500)).await);
    // One closed: room for one more.
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_small(tcp).await;
    assert!(!closed_by_edge(&mut again, Duration::from_millis(500)).await);
    // Nobody authenticated over them: the edge closes them after 30 s of silence.
    let t = std::time::Instant::now();
    assert!(
        closed_by_edge(&mut again, Duration::from_secs(35)).await,
        "an idle unauthenticated connection stayed"
    );
    assert!(
        t.elapsed() >= Duration::from_secs(25),
        "closed too early: {:?}",
        t.elapsed()
    );
    assert_eq!(sb.nodes[0].http_status("/readyz").await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_closed_and_memory_stays_flat() {
    use tokio::io::AsyncWriteExt;
    let (sb, mut c, mut e) = sandbox().await;
    let node = &sb.nodes[0];
    let tcp = SocketAddr::from(([127, 0, 0, 1], node.sip.tcp));
    let before = rss_kib(node);
    let mut s = connect_small(tcp).await;
    s.set_nodelay(true).unwrap();
    let local = s.local_addr().unwrap();
    // OPTIONS to the edge itself, each answered 200, never read: more answers than the
    // connection's write queue holds.
    let mut batch = String::new();
    for i in 0..100 {
        batch.push_str(&format!(
            "OPTIONS sip:edge SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKnr{i}\r\nFrom: <sip:a@e>;tag=1\r\nTo: <sip:edge>\r\nCall-ID: nr\r\nCSeq: {i} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ));
    }
    let t = std::time::Instant::now();
    let mut sent = 0;
    while t.elapsed() < Duration::from_secs(5) {
        match tokio::time::timeout(Duration::from_secs(1), s.write_all(batch.as_bytes())).await {
            Ok(Ok(())) => sent += 100,
            // The edge stopped reading (its writer is stuck) or closed the connection.
            Ok(Err(_)) => break,
            Err(_) => {}
        }
    }
    eprintln!("{sent} requests sent in {:?}", t.elapsed());
    assert!(sent >= 1000, "only {sent} requests went out");
    // The queue overflowed: the edge writes what it held (within the 10 s write timeout)
    // and closes the connection.
    assert!(
        closed_by_edge(&mut s, Duration::from_secs(15)).await,
        "a peer that never reads kept its connection"
    );
    let grown = rss_kib(node).saturating_sub(before);
    assert!(grown < 20 * 1024, "RSS grew by {grown} KiB");
    still_serves(node, &mut c, &mut e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_data_dir_stops_with_a_message() {
    let sb = ClusterSandbox::embedded().await.unwrap();
    let data = &sb.nodes[0].data_dir;
    let out = tokio::process::Command::new(dialtone_tests::binary("dialtone"))
        .args([
            "serve",
            "--listen-grpc",
            "127.0.0.1:0",
            "--listen-admin",
            "127.0.0.1:0",
            "--listen-api",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data)
        .args(["--sip-udp", "off", "--sip-tcp", "off", "--sip-tls", "off"])
        .args(["--sip-ws", "off", "--sip-wss", "off"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(10), out)
        .await
        .expect("the second process stops by itself")
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another dialtone serve"), "{err}");
    // The first still serves, and its data dir is private.
    assert_eq!(sb.nodes[0].http_status("/readyz").await, Some(200));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_lease_survives_a_flood_of_three_ttls() {
    use tokio::io::AsyncWriteExt;
    // On etcd: the lease keeper must reach a store outside the process in time.
    let sb = ClusterSandbox::with_etcd_args(1, &["config,edge"], &["--lease-ttl=2"])
        .await
        .unwrap();
    let node = &sb.nodes[0];
    let tcp = SocketAddr::from(([127, 0, 0, 1], node.sip.tcp));
    let udp = udp_addr(node);
    let stop = std::time::Instant::now() + Duration::from_secs(6);
    let mut floods = Vec::new();
    // Streams keep the main runtime's threads busy, datagrams the actor threads. Each
    // stream reads its answers (a connection that does not read is closed, and churning
    // connections would only use up ephemeral ports other tests bind).
    for i in 0..6 {
        floods.push(tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let s = tokio::net::TcpStream::connect(tcp).await.unwrap();
            let local = s.local_addr().unwrap();
            let (mut rd, mut wr) = s.into_split();
            let drain = tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
            });
            let batch: String = (0..50)
                .map(|n| format!("OPTIONS sip:edge SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKf{i}x{n}\r\nFrom: <sip:a@e>;tag=1\r\nTo: <sip:edge>\r\nCall-ID: f{i}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"))
                .collect();
            while std::time::Instant::now() < stop {
                if wr.write_all(batch.as_bytes()).await.is_err() {
                    break;
                }
            }
            drop(wr);
            drain.abort();
        }));
    }
    floods.push(tokio::spawn(async move {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = sock.local_addr().unwrap();
        let d = format!("OPTIONS sip:edge SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKu\r\nFrom: <sip:a@e>;tag=1\r\nTo: <sip:edge>\r\nCall-ID: u\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
        while std::time::Instant::now() < stop {
            let _ = sock.send_to(d.as_bytes(), udp).await;
        }
    }));
    for f in floods {
        f.await.unwrap();
    }
    let log = node.log_text();
    assert!(
        !log.contains("lease lost"),
        "the lease was lost under the flood:\n{log}"
    );
    assert_eq!(node.http_status("/readyz").await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_password_logs_out_and_never_comes_back() {
    let (sb, mut c, mut e) = sandbox().await;
    let node = &sb.nodes[0];
    let p = add_phone(&mut c, &mut e, "Reset", "reset1").await.unwrap();
    let mut phone = UdpPhone::new(udp_addr(node), &p.sip_user, &p.password)
        .await
        .unwrap();
    assert_eq!(status(&phone.register(300).await.unwrap()), 200);
    assert!(wait_contacts(&mut e, &p.phone_id, 1, Duration::from_secs(3)).await);
    // The password leaked: the admin resets it. Whoever registered with the old one is out.
    let fresh = c
        .reset_line_password(cpb::ResetLinePasswordRequest {
            phone_id: p.phone_id.clone(),
            line_index: 0,
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        wait_contacts(&mut e, &p.phone_id, 0, Duration::from_secs(3)).await,
        "the old password's binding stayed"
    );
    let r = phone.register(300).await.unwrap();
    assert_eq!(status(&r), 403, "the old password still works: {r}");
    // The line removed and added again under the same user: a new password, never the old.
    let line = |sip_user: &str| {
        let sip_user = sip_user.to_owned();
        move |p: &mut cpb::Phone| {
            p.lines = vec![cpb::Line {
                sip_user,
                ..Default::default()
            }]
        }
    };
    dialtone_tests::fleet::update_phone(&mut c, &p.phone_id, line("other1"))
        .await
        .unwrap();
    let added = dialtone_tests::fleet::update_phone(&mut c, &p.phone_id, line("reset1"))
        .await
        .unwrap();
    let again = &added.credentials[0];
    assert_eq!(again.sip_user, p.sip_user);
    assert_ne!(
        again.password, p.password,
        "the revoked first password came back"
    );
    assert_ne!(
        again.password, fresh.password,
        "the reset password came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_unknown_tokens_before_reading_and_follows_the_token_file() {
    use dialtone_proto::status::v1 as spb;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.toml");
    let entry = |name: &str, token: &str| {
        format!(
            "[[token]]\nname = \"{name}\"\ntoken = \"{token}\"\npermissions = [\"telephony:plugin:all\"]\n"
        )
    };
    let (old, new) = (
        "dt_old_token_000000000000000000000000000000",
        "dt_new_token_000000000000000000000000000000",
    );
    std::fs::write(&file, entry("old", old)).unwrap();
    let arg = format!("--api-tokens={}", file.display());
    let sb = ClusterSandbox::embedded_with(&[&arg]).await.unwrap();
    let node = &sb.nodes[0];

    // No token, a made-up token: refused before the body is read. The body is larger than
    // the server decodes at all (16 MiB): without the gate the answer would be that it is
    // too large, not that the token is unknown.
    let big = || cpb::CreateSiteRequest {
        site: Some(cpb::Site {
            id: "big".into(),
            name: "x".repeat(17 << 20),
            ..Default::default()
        }),
    };
    for token in ["", "dt_made_up_000000000000000000000000000000000"] {
        let mut c = node.config_client(token).await.unwrap();
        let e = c.create_site(big()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    }
    // With a valid token the same body is read, and refused for its size.
    let mut c = node.config_client(old).await.unwrap();
    let e = c.create_site(big()).await.unwrap_err();
    assert_ne!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let mut c = node.config_client(old).await.unwrap();
    c.list_sites(cpb::ListRequest::default()).await.unwrap();
    let mut st = node.status_client(old).await.unwrap();
    let mut watch = st
        .watch_phone_statuses(spb::WatchPhoneStatusesRequest::default())
        .await
        .unwrap()
        .into_inner();

    // The old token is revoked in the file: within seconds it stops working, its open watch
    // ends, and the new one works (no restart).
    std::fs::write(&file, entry("new", new)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match c.list_sites(cpb::ListRequest::default()).await {
            Err(e) if e.code() == tonic::Code::Unauthenticated => break,
            _ => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the revoked token still works"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(e) => return Some(e.code()),
            }
        }
    })
    .await
    .expect("the revoked token's watch stays open");
    assert_eq!(ended, Some(tonic::Code::Unauthenticated));
    let mut c = node.config_client(new).await.unwrap();
    c.list_sites(cpb::ListRequest::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_peer_reaches_phones_without_digest_and_only_from_its_address() {
    let (sb, mut c, mut e) = sandbox().await;
    let node = &sb.nodes[0];
    let edge = udp_addr(node);
    let (a, callee, _b) = two_lines(node, &mut c, &mut e).await;
    // Bad peers are refused with the field named.
    let bad = c
        .create_peer(cpb::CreatePeerRequest {
            peer: Some(cpb::Peer {
                id: "wide".into(),
                addresses: vec!["10.0.0.0/8".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert!(bad.message().contains("peer.addresses[0]"), "{bad:?}");
    let pbx = c
        .create_peer(cpb::CreatePeerRequest {
            peer: Some(cpb::Peer {
                id: "pbx".into(),
                name: "Office PBX".into(),
                addresses: vec!["127.0.0.5".into()],
                transports: vec!["udp".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let peer = Caller::new_at("127.0.0.5").await.unwrap();
    let other = Caller::new_at("127.0.0.6").await.unwrap();
    // The edge learns of the peer through its watch.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let got = loop {
        let text = peer.text(
            "MESSAGE",
            &a.sip_user,
            &dialtone_tests::sip::branch(),
            "MESSAGE",
        );
        peer.send(&text, edge).await;
        if let Some(m) = callee.recv(Duration::from_millis(300)).await {
            break m;
        }
        let _ = peer.codes("MESSAGE", Duration::from_millis(100)).await;
        assert!(
            std::time::Instant::now() < deadline,
            "the peer never got through"
        );
    };
    assert!(got.starts_with("MESSAGE "), "{got}");
    callee.send(&ok_to(&got)).await.unwrap();
    assert_eq!(
        peer.codes("MESSAGE", Duration::from_secs(3)).await.last(),
        Some(&200)
    );
    // Another address is challenged, and nothing reaches the phone.
    other
        .send(
            &other.text(
                "MESSAGE",
                &a.sip_user,
                &dialtone_tests::sip::branch(),
                "MESSAGE",
            ),
            edge,
        )
        .await;
    assert_eq!(
        other.codes("MESSAGE", Duration::from_secs(3)).await.last(),
        Some(&407)
    );
    assert!(callee.recv(Duration::from_millis(300)).await.is_none());
    // Deleted: the peer is challenged like anyone.
    c.delete_peer(cpb::DeleteRequest {
        id: "pbx".into(),
        version: pbx.version,
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        peer.send(
            &peer.text(
                "OPTIONS",
                &a.sip_user,
                &dialtone_tests::sip::branch(),
                "OPTIONS",
            ),
            edge,
        )
        .await;
        if let Some(m) = callee.recv(Duration::from_millis(200)).await {
            callee.send(&ok_to(&m)).await.unwrap();
        }
        if peer.codes("OPTIONS", Duration::from_secs(1)).await.last() == Some(&407) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a deleted peer is still trusted"
        );
    }
}

/// A TLS connection to `addr` trusting `ca`, presenting `client` (chain, key) when given.
async fn tls_connect(
    addr: SocketAddr,
    ca: &std::path::Path,
    client: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((c, k)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(c)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(k).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_proven_by_its_tls_certificate_reaches_phones_from_anywhere() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let ca = dialtone_tests::pki::TestCa::new(dir.path(), "sip test ca");
    let server = ca.issue("edge", "localhost", &["localhost", "127.0.0.1"], false);
    let sbc = ca.issue("sbc", "sbc.example.com", &["sbc.example.com"], true);
    let other = ca.issue("other", "other.example.com", &["other.example.com"], true);
    let flag = |name: &str, p: &std::path::Path| format!("--{name}={}", p.display());
    let flags = [
        flag("sip-tls-cert", &server.0),
        flag("sip-tls-key", &server.1),
        flag("sip-tls-client-ca", &ca.cert),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (sb, mut c, mut e) = ClusterSandbox::embedded_seeded(&flags, Default::default())
        .await
        .unwrap();
    let node = &sb.nodes[0];
    let (a, callee, _b) = two_lines(node, &mut c, &mut e).await;
    c.create_peer(cpb::CreatePeerRequest {
        peer: Some(cpb::Peer {
            id: "carrier".into(),
            tls_names: vec!["sbc.example.com".into()],
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tls = SocketAddr::from(([127, 0, 0, 1], node.sip.tls));
    // Sends a MESSAGE for the callee over a TLS connection; returns the final status code.
    let message = async |client: Option<&(std::path::PathBuf, std::path::PathBuf)>| {
        let mut s = tls_connect(tls, &ca.cert, client).await;
        let local = s.get_ref().0.local_addr().unwrap();
        let b = dialtone_tests::sip::branch();
        let text = format!(
            "MESSAGE sip:{u}@dialtone SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch={b}\r\nMax-Forwards: 70\r\nFrom: <sip:trunk@carrier.example>;tag=1\r\nTo: <sip:{u}@dialtone>\r\nCall-ID: {b}\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
            u = a.sip_user
        );
        s.write_all(text.as_bytes()).await.unwrap();
        // The phone answers what reaches it.
        if let Some(m) = callee.recv(Duration::from_secs(2)).await {
            callee.send(&ok_to(&m)).await.unwrap();
        }
        let mut buf = vec![0u8; 8192];
        let mut got = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let n = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf))
                .await
                .map_or(0, |r| r.unwrap_or(0));
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(code) = got
                .split("SIP/2.0 ")
                .filter_map(|r| r.get(..3)?.parse::<u16>().ok())
                .find(|c| *c >= 200)
            {
                return code;
            }
        }
        panic!("no final answer over TLS: {got}");
    };
    assert_eq!(
        message(Some(&sbc)).await,
        200,
        "the carrier's certificate was not trusted"
    );
    assert_eq!(
        message(Some(&other)).await,
        407,
        "another certificate was trusted"
    );
    assert_eq!(message(None).await, 407, "no certificate was trusted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_register_replayed_elsewhere_or_later_leaves_calls_with_the_phone() {
    let mut sb = ClusterSandbox::with_etcd_args(
        1,
        &["config", "edge", "edge"],
        &["--sip-digest-algorithms=md5"],
    )
    .await
    .unwrap();
    let udp = |sb: &ClusterSandbox, i: usize| udp_addr(&sb.nodes[i]);
    let (e1, e2) = (udp(&sb, 1), udp(&sb, 2));
    let mut cfg = sb.nodes[0]
        .config_client(dialtone_tests::ADMIN_TOKEN)
        .await
        .unwrap();
    let edges = sb.udp_edges(&[1, 2]);
    dialtone_tests::fleet::seed_site_on(&mut cfg, cpb::PhoneSettings::default(), &edges)
        .await
        .unwrap();
    let phones = dialtone_tests::fleet::import(&mut cfg, 2, "rpl")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, user, password) = &phones[0];
    let mut phone = UdpPhone::new(e1, user, password).await.unwrap();
    // The phone's exchange with edge 1, captured on the way.
    let first = phone.register_text(300, None);
    phone.send(&first).await.unwrap();
    let ch = phone.recv(Duration::from_secs(3)).await.unwrap();
    let www = headers(&ch, "www-authenticate")
        .into_iter()
        .find(|h| h.contains("MD5"))
        .unwrap()
        .to_owned();
    let captured = phone.register_text(300, Some(&www));
    phone.send(&captured).await.unwrap();
    assert_eq!(
        status(&phone.recv(Duration::from_secs(3)).await.unwrap()),
        200
    );

    // Replayed to the other edge (even from the phone's own address): its nonce was issued
    // by edge 1, so edge 2 only challenges it.
    phone.sock.send_to(captured.as_bytes(), e2).await.unwrap();
    let r = phone.recv(Duration::from_secs(3)).await.unwrap();
    assert_eq!(status(&r), 401, "edge 2 took edge 1's nonce: {r}");
    // stale=true: a phone failing over retries with the new nonce, not as a wrong password.
    assert!(
        headers(&r, "www-authenticate")
            .iter()
            .all(|c| c.contains("stale=true")),
        "{r}"
    );

    // Replayed to edge 1 after a restart (its nonce counts are gone): whatever the edge
    // makes of it, requests for the line still reach the phone itself.
    sb.nodes[1].restart().await.unwrap();
    phone.sock.send_to(captured.as_bytes(), e1).await.unwrap();
    let _ = phone.recv(Duration::from_secs(3)).await;
    let (_, caller_user, caller_password) = &phones[1];
    let caller = Caller::line(caller_user, caller_password).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        caller
            .send(
                &caller.text("OPTIONS", user, &dialtone_tests::sip::branch(), "OPTIONS"),
                e1,
            )
            .await;
        if let Some(m) = phone.recv(Duration::from_secs(1)).await
            && m.starts_with("OPTIONS ")
        {
            phone.send(&ok_to(&m)).await.unwrap();
            break;
        }
        let _ = caller.codes("OPTIONS", Duration::from_millis(200)).await;
        assert!(
            std::time::Instant::now() < deadline,
            "requests for the line no longer reach the phone"
        );
    }
    assert_eq!(
        caller.codes("OPTIONS", Duration::from_secs(3)).await.last(),
        Some(&200)
    );
}
