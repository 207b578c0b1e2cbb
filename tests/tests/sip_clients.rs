//! Real softphones against a real `dialtone serve`: baresip (MD5) and linphonec (MD5 and
//! SHA-256) register over UDP, refresh on their own timers and de-register when they quit.
//! Everything listens on 127.0.0.1 with OS-chosen ports.

use std::time::{Duration, Instant};

use dialtone_proto::config::v1 as cpb;
use dialtone_tests::{
    ClusterSandbox, EdgeClient,
    fleet::{add_phone, contacts, seed_site, wait_contacts},
    softphones::Softphone,
};

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

/// Starts a node with `args`, registers one phone per `(client, algorithm, User-Agent
/// prefix)` case, and checks that each registers, refreshes and de-registers, and that
/// each algorithm was really used.
async fn register_refresh_unregister(args: &[&str], cases: &[(&str, &str, &str)]) {
    // Short registrations so that each client refreshes within the test.
    let mut args = args.to_vec();
    args.push("--sip-min-expires=5");
    let sb = ClusterSandbox::embedded_with(&args).await.unwrap();
    let node = &sb.nodes[0];
    let token = node.admin_token();
    let mut c = node.config_client(&token).await.unwrap();
    seed_site(&mut c, cpb::PhoneSettings::default())
        .await
        .unwrap();
    let mut e = node.edge_client(&token).await.unwrap();
    let edge = format!("127.0.0.1:{}", node.sip.udp);
    let dir = sb.dir().join("softphones");

    let mut running = Vec::new();
    for (i, (client, alg, _)) in cases.iter().enumerate() {
        let p = add_phone(
            &mut c,
            &mut e,
            &format!("Softphone {i}"),
            &format!("soft{i}"),
        )
        .await
        .unwrap();
        let phone = match *client {
            "baresip" => Softphone::baresip(&dir, &edge, &p, 10),
            _ => Softphone::linphonec(&dir, &edge, &p, alg, 10),
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

/// linphonec (belle-sip) answers whichever of the default challenges (SHA-256, then MD5)
/// its account is set up for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linphonec_registers_with_sha256_and_md5_against_the_default_challenges() {
    register_refresh_unregister(
        &[],
        &[
            ("linphonec", "SHA-256", "Linphonec"),
            ("linphonec", "MD5", "Linphonec"),
        ],
    )
    .await;
}

/// baresip 1.0 (libre) gives up on a 401 that carries any challenge it cannot answer,
/// SHA-256 included, so phones like it are served by edges that offer MD5 alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_with_md5_on_an_md5_only_edge() {
    register_refresh_unregister(
        &["--sip-digest-algorithms=md5"],
        &[("baresip", "MD5", "baresip")],
    )
    .await;
}
