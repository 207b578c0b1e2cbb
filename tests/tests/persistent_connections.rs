//! The base line appearance's persistent connection, as Dialtone applies it to WebRTC
//! phones' flows (WS and WSS). The seed: "Persistent Connection Timeout sets the amount of
//! time, in seconds, that the open connection can remain idle before being automatically
//! closed"; "Disabled (Default): Do not use persistent connection feature."
//!
//! What the edge does: once a REGISTER over a WS/WSS connection is authenticated, a line
//! whose profile turns the persistent connection on keeps the connection open for the
//! timeout after the last thing the phone sent (a SIP message or a WebSocket ping), then
//! closes it, and the bindings learned over it go with it. With it off (the default), the
//! connection may stay idle as long as a registration may last (`--sip-max-expires` + 60 s).
//! Real WebSocket clients against a real node; about 20 s of waiting.

use std::time::{Duration, Instant};

use dialtone_proto::config::v1 as pb;
use dialtone_tests::{
    ClusterSandbox,
    fleet::{add_phone_with, contacts, create_profile, wait_contacts},
    sip::status,
    ws,
};
use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;

const TIMEOUT_S: u32 = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_connection_stays_open_for_its_timeout_after_the_last_activity() {
    let (sb, mut c, mut e) = ClusterSandbox::embedded_seeded(&[], pb::PhoneSettings::default())
        .await
        .unwrap();
    create_profile(
        &mut c,
        "kept",
        "Persistent",
        pb::MetaBase::GenericSip,
        pb::PhoneSettings {
            persistent_connection: Some(true),
            persistent_connection_timeout_s: Some(TIMEOUT_S),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let node = &sb.nodes[0];
    let idle = add_phone_with(&mut c, &mut e, "Idle", "idle1", "kept")
        .await
        .unwrap();
    let pinging = add_phone_with(&mut c, &mut e, "Pinging", "ping1", "kept")
        .await
        .unwrap();
    let default = add_phone_with(&mut c, &mut e, "Default", "plain1", "desk")
        .await
        .unwrap();

    // The idle phone over WS, the pinging one over WSS, the default one over WS.
    let mut idle_ws = ws::connect(node, false, true).await.unwrap();
    let mut ping_wss = ws::connect(node, true, true).await.unwrap();
    let mut default_ws = ws::connect(node, false, true).await.unwrap();
    for (conn, p) in [
        (&mut idle_ws, &idle),
        (&mut ping_wss, &pinging),
        (&mut default_ws, &default),
    ] {
        let ok = ws::register(conn, (&p.sip_user, &p.password), 600, 10).await;
        assert_eq!(status(&ok), 200, "{ok}");
    }
    let registered = Instant::now();

    // The pinging phone sends a WebSocket ping every 4 s while the idle one says nothing.
    let pings = tokio::spawn(async move {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            ping_wss.send(Message::Ping(vec![1].into())).await.unwrap();
        }
        ping_wss
    });
    // The idle connection is closed by the edge after the timeout, not before.
    let closed = ws::next_text(&mut idle_ws, Duration::from_secs(u64::from(TIMEOUT_S) + 6)).await;
    let after = registered.elapsed();
    assert!(closed.is_none(), "the idle phone got {closed:?}");
    assert!(
        after >= Duration::from_secs(u64::from(TIMEOUT_S) - 1),
        "closed after {after:?}, before the {TIMEOUT_S} s timeout"
    );
    assert!(
        after < Duration::from_secs(u64::from(TIMEOUT_S) + 5),
        "still open after {after:?}"
    );
    eprintln!("idle persistent connection closed {after:?} after its last message");
    // ... and its binding went with it.
    assert!(wait_contacts(&mut e, &idle.phone_id, 0, Duration::from_secs(3)).await);

    // Past the timeout, the pinging phone's connection and the default one are open and
    // registered: both still answer a re-REGISTER over the same connection.
    let mut ping_wss = pings.await.unwrap();
    assert!(registered.elapsed() > Duration::from_secs(u64::from(TIMEOUT_S) + 1));
    for (conn, p) in [(&mut ping_wss, &pinging), (&mut default_ws, &default)] {
        assert_eq!(
            contacts(&mut e, &p.phone_id).await.len(),
            1,
            "{}",
            p.sip_user
        );
        let ok = ws::register(conn, (&p.sip_user, &p.password), 600, 30).await;
        assert_eq!(status(&ok), 200, "{ok}");
    }
}
