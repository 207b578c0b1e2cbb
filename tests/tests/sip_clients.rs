//! Real SIP clients against a real `dialtone serve` with its default flags, registering
//! to phones created with default settings (the README's first five minutes): baresip
//! (UDP and TCP) and linphonec register, refresh on their own timers and de-register when
//! they quit; sipsak and JsSIP (in headless Chromium, over WS and WSS) register. Every
//! meta-base challenges with MD5 alone by default (baresip 1.0 gives up on a 401 carrying
//! any challenge it cannot answer; sipsak reads only the first; JsSIP knows MD5 only); a
//! profile whose phones answer SHA-256 moves them to it, here linphonec's on the same edge.
//! A REGISTER for a user nobody has is challenged like one of the fleet's lines.
//! Everything listens on 127.0.0.1 with OS-chosen ports.

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use dialtone_proto::config::v1 as cpb;
use dialtone_tests::{
    ClusterSandbox, EdgeClient,
    browser::BrowserPhone,
    fleet::{add_phone, add_phone_with, contacts, create_profile, wait_contacts},
    sip::{UdpPhone, headers, status},
    softphones::Softphone,
};

/// A profile whose phones answer SHA-256: challenged with it alone.
async fn sha256_profile(c: &mut dialtone_tests::ConfigClient) {
    create_profile(
        c,
        "modern",
        "Modern",
        cpb::MetaBase::GenericSip,
        cpb::PhoneSettings {
            digest_algorithms: vec![cpb::DigestAlgorithm::Sha256 as i32],
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

/// The first contact's expiry once the phone has exactly one, within `within`.
async fn registered_until(e: &mut EdgeClient, phone: &str, within: Duration) -> Option<i64> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let [c] = contacts(e, phone).await.as_slice() {
            return Some(c.expires_at_s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// On a node with its default flags (but short registrations, so that each client
/// refreshes within the test), registers one phone per `(client, algorithm, User-Agent
/// prefix)` case, of the default profile or, for SHA-256, one that asks for it, and
/// checks that each registers, refreshes and de-registers, and that each algorithm was
/// really used.
async fn register_refresh_unregister(cases: &[(&str, &str, &str)]) {
    let (sb, mut c, mut e) =
        ClusterSandbox::embedded_seeded(&["--sip-min-expires=5"], Default::default())
            .await
            .unwrap();
    let node = &sb.nodes[0];
    sha256_profile(&mut c).await;
    let udp = format!("127.0.0.1:{}", node.sip.udp);
    let tcp = format!("127.0.0.1:{}", node.sip.tcp);
    let dir = sb.dir().join("softphones");

    let mut running = Vec::new();
    for (i, (client, alg, _)) in cases.iter().enumerate() {
        let profile = if *alg == "SHA-256" { "modern" } else { "desk" };
        let (name, line) = (format!("Softphone {i}"), format!("soft{i}"));
        let p = add_phone_with(&mut c, &mut e, &name, &line, profile)
            .await
            .unwrap();
        let phone = match *client {
            "baresip" => Softphone::baresip(&dir, &udp, &p, 10),
            "baresip-tcp" => Softphone::baresip_with(&dir, &tcp, &p, 10, "tcp", ""),
            _ => Softphone::linphonec(&dir, &udp, &p, alg, 10),
        }
        .unwrap();
        running.push((p, phone));
    }

    let mut first = Vec::new();
    for ((client, alg, ua), (p, phone)) in cases.iter().zip(&running) {
        let until = registered_until(&mut e, &p.phone_id, Duration::from_secs(15)).await;
        let Some(until) = until else {
            panic!(
                "{client} ({alg}) did not register:\n{}\n{}",
                phone.log_text(),
                node.log_text()
            );
        };
        let got = contacts(&mut e, &p.phone_id).await;
        assert!(
            got[0].user_agent.starts_with(ua),
            "{client}: {:?}",
            got[0].user_agent
        );
        assert!(got[0].source.starts_with("127.0.0.1:"), "{got:?}");
        first.push(until);
    }

    // Each client refreshes before its 10 s registration runs out.
    for ((client, alg, _), ((p, phone), until)) in cases.iter().zip(running.iter().zip(&first)) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let now = contacts(&mut e, &p.phone_id).await;
            if let [c] = now.as_slice()
                && c.expires_at_s > *until
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{client} ({alg}) did not refresh: {now:?}\n{}",
                phone.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Each algorithm really was used: a registration and a refresh per phone at least.
    for want in ["MD5", "SHA-256"] {
        let phones = cases.iter().filter(|(_, alg, _)| *alg == want).count() as i64;
        let label = format!("algorithm=\"{want}\"");
        let got = node.metric("dialtone_auth_successes_total", &label).await;
        assert!(got.unwrap_or(0) >= 2 * phones, "{want}: {got:?} successes");
    }

    for ((client, alg, _), (p, phone)) in cases.iter().zip(running.iter_mut()) {
        phone.stop().unwrap();
        assert!(
            wait_contacts(&mut e, &p.phone_id, 0, Duration::from_secs(5)).await,
            "{client} ({alg}) did not de-register:\n{}",
            phone.log_text()
        );
    }
}

/// baresip 1.0 (libre) over UDP and TCP and linphonec with an MD5 account, each a phone of
/// the default profile, and linphonec with a SHA-256 account, a phone of a profile that
/// asks for SHA-256, all on the same edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_and_linphonec_register_refresh_and_unregister_at_the_defaults() {
    register_refresh_unregister(&[
        ("baresip", "MD5", "baresip"),
        ("baresip-tcp", "MD5", "baresip"),
        ("linphonec", "MD5", "Linphonec"),
        ("linphonec", "SHA-256", "Linphonec"),
    ])
    .await;
}

/// The algorithms a 401 offers, in order.
fn offered(challenge: &str) -> Vec<String> {
    headers(challenge, "www-authenticate")
        .iter()
        .filter_map(|h| {
            let at = h.find("algorithm=")? + "algorithm=".len();
            Some(
                h[at..]
                    .split([',', ' '])
                    .next()?
                    .trim_matches('"')
                    .to_owned(),
            )
        })
        .collect()
}

/// The 401 a REGISTER for `user` gets (no credentials).
async fn challenge_for(edge: SocketAddr, user: &str) -> Vec<String> {
    let mut probe = UdpPhone::new(edge, user, "x").await.unwrap();
    let text = probe.register_text(60, None);
    probe.send(&text).await.unwrap();
    let answer = probe.recv(Duration::from_secs(3)).await.expect("an answer");
    assert_eq!(status(&answer), 401, "{answer}");
    offered(&answer)
}

/// sipsak (one REGISTER with digest, reading only the first challenge) and JsSIP in
/// headless Chromium over WS and WSS register to phones of the default profile; users
/// nobody has are challenged as the fleet's lines are (here seven MD5 lines, one SHA-256),
/// each always alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipsak_and_jssip_register_at_the_defaults_and_unknown_users_look_like_lines() {
    let pages = [BrowserPhone::page_port(), BrowserPhone::page_port()];
    let origin = format!(
        "--sip-ws-allowed-origins=http://127.0.0.1:{},http://127.0.0.1:{}",
        pages[0], pages[1]
    );
    let (sb, mut c, mut e) = ClusterSandbox::embedded_seeded(&[&origin], Default::default())
        .await
        .unwrap();
    let node = &sb.nodes[0];
    sha256_profile(&mut c).await;
    let edge = SocketAddr::from(([127, 0, 0, 1], node.sip.udp));
    let dir = sb.dir().join("clients");
    std::fs::create_dir_all(&dir).unwrap();

    let sipsak = add_phone(&mut c, &mut e, "sipsak", "sipsak").await.unwrap();
    // sipsak misreads a five-digit port in the URI (and the user name with it): the port
    // and the digest user name are given apart.
    let out = Command::new("timeout")
        .args(["20", "sipsak", "-U", "-x", "600", "-H", "127.0.0.1", "-vv"])
        .args(["-s", &format!("sip:{}@127.0.0.1", sipsak.sip_user)])
        .args(["-r", &edge.port().to_string()])
        .args(["-u", &sipsak.sip_user, "-a", &sipsak.password])
        .output()
        .expect("sipsak (apt install sipsak)");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        wait_contacts(&mut e, &sipsak.phone_id, 1, Duration::from_secs(5)).await,
        "sipsak did not register ({}):\n{said}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // JsSIP over WS and over WSS (the edge's generated certificate; the page's origin is
    // allowed).
    let urls = [
        format!("ws://127.0.0.1:{}", node.sip.ws),
        format!("wss://127.0.0.1:{}", node.sip.wss),
    ];
    let mut browsers = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let p = add_phone(
            &mut c,
            &mut e,
            &format!("Browser {i}"),
            &format!("browser{i}"),
        )
        .await
        .unwrap();
        let b = BrowserPhone::start(&dir, pages[i], url, &p, serde_json::json!([]), "all").unwrap();
        browsers.push((url, p, b));
    }
    for (url, p, b) in &browsers {
        assert!(
            b.wait_event("registered", 1, Duration::from_secs(20))
                .await
                .is_some(),
            "JsSIP did not register over {url}:\n{}",
            b.log_text()
        );
        assert!(
            wait_contacts(&mut e, &p.phone_id, 1, Duration::from_secs(5)).await,
            "{url}"
        );
    }
    for (_, _, mut b) in browsers {
        b.stop().unwrap();
    }

    // Four more MD5 lines and one SHA-256 line: the fleet is 7 to 1.
    for i in 0..4 {
        add_phone(&mut c, &mut e, &format!("Desk {i}"), &format!("desk{i}"))
            .await
            .unwrap();
    }
    let modern = add_phone_with(&mut c, &mut e, "Modern", "modern0", "modern")
        .await
        .unwrap();
    // A known line gets its profile's offer.
    assert_eq!(challenge_for(edge, &sipsak.sip_user).await, ["MD5"]);
    assert_eq!(challenge_for(edge, &modern.sip_user).await, ["SHA-256"]);
    // Users nobody has get one of the fleet's offers, the same one each time, and the
    // common one most often: nothing that tells them from lines.
    let mut md5 = 0;
    for i in 0..40 {
        let user = format!("nobody{i}");
        let first = challenge_for(edge, &user).await;
        assert_eq!(challenge_for(edge, &user).await, first, "{user}");
        assert!(
            first == ["MD5"] || first == ["SHA-256"],
            "{user}: {first:?}"
        );
        md5 += usize::from(first == ["MD5"]);
    }
    assert!(
        md5 >= 25,
        "{md5} of 40 unknown users offered MD5 (7 of 8 lines are)"
    );
}
