//! A call for a user rings every companion phone at once (RFC 3261 §16.7): the first 2xx
//! goes upstream and the others are cancelled with `Reason: SIP;cause=200` (RFC 3326);
//! when every phone declines, the best answer goes upstream once; the caller's CANCEL
//! reaches every branch.

use std::time::Duration;

use super::{
    Harness, Phone,
    delivery::{invite, respond},
    harness, header, status,
};

/// Alice, and Carol's desk and soft phones registered.
async fn alice_and_carols_phones(h: &Harness, port: u16) -> (Phone, Phone, Phone) {
    let mut desk = Phone::new(h, "carol-desk", &format!("127.0.0.1:{port}"));
    let mut soft = Phone::new(h, "carol-soft", &format!("127.0.0.1:{}", port + 1));
    assert_eq!(desk.register(h).await, "SIP/2.0 200 OK");
    assert_eq!(soft.register(h).await, "SIP/2.0 200 OK");
    let alice = Phone::new(h, "alice", &format!("127.0.0.1:{}", port + 2));
    (alice, desk, soft)
}

/// Alice dials Carol's extension: both phones get the INVITE, each addressed to its own
/// contact.
async fn ring_carol(
    h: &Harness,
    alice: &mut Phone,
    desk: &mut Phone,
    soft: &mut Phone,
    branch: &str,
) -> (String, String, String) {
    let sent = invite(h, alice, "300", branch).await;
    assert_eq!(status(&alice.next().await), "SIP/2.0 100 Trying");
    let (to_desk, to_soft) = (desk.next().await, soft.next().await);
    assert!(
        to_desk.starts_with(&format!("INVITE sip:carol-desk@{}", desk.addr)),
        "{to_desk}"
    );
    assert!(
        to_soft.starts_with(&format!("INVITE sip:carol-soft@{}", soft.addr)),
        "{to_soft}"
    );
    (sent, to_desk, to_soft)
}

#[tokio::test]
async fn a_users_extension_rings_every_phone_and_the_first_answer_wins() {
    let h = harness(Duration::from_secs(2));
    let (mut alice, mut desk, mut soft) = alice_and_carols_phones(&h, 42001).await;
    let (_, to_desk, to_soft) =
        ring_carol(&h, &mut alice, &mut desk, &mut soft, "z9hG4bKfork1").await;
    desk.send(&h, &respond(&to_desk, 180, "Ringing", "desk"));
    assert_eq!(status(&alice.next().await), "SIP/2.0 180 Ringing");
    soft.send(&h, &respond(&to_soft, 200, "OK", "soft"));
    let answer = alice.next().await;
    assert_eq!(status(&answer), "SIP/2.0 200 OK");
    assert!(
        header(&answer, "To").is_some_and(|t| t.ends_with("tag=soft")),
        "{answer}"
    );
    // The desk phone is cancelled, saying why.
    let cancel = desk.next().await;
    assert!(cancel.starts_with("CANCEL sip:carol-desk@"), "{cancel}");
    assert_eq!(
        header(&cancel, "Reason"),
        Some("SIP;cause=200;text=\"Call completed elsewhere\"")
    );
    desk.send(&h, &respond(&to_desk, 487, "Request Terminated", "desk"));
    assert!(desk.next().await.starts_with("ACK sip:carol-desk@"));
    // Alice sees nothing of the cancelled branch.
    assert!(alice.silent_for(Duration::from_millis(200)).await);
    // The soft phone, which answered, is never cancelled.
    assert!(soft.silent_for(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn when_every_phone_declines_the_best_answer_goes_upstream_once() {
    let h = harness(Duration::from_secs(2));
    let (mut alice, mut desk, mut soft) = alice_and_carols_phones(&h, 42011).await;
    let (_, to_desk, to_soft) =
        ring_carol(&h, &mut alice, &mut desk, &mut soft, "z9hG4bKfork2").await;
    soft.send(
        &h,
        &respond(&to_soft, 480, "Temporarily Unavailable", "soft"),
    );
    assert!(soft.next().await.starts_with("ACK "));
    // One branch's answer is held while the other may still answer.
    assert!(alice.silent_for(Duration::from_millis(200)).await);
    desk.send(&h, &respond(&to_desk, 486, "Busy Here", "desk"));
    assert!(desk.next().await.starts_with("ACK "));
    // Busy (a phone's own answer) beats "unavailable".
    assert_eq!(status(&alice.next().await), "SIP/2.0 486 Busy Here");
    assert!(alice.silent_for(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn the_callers_cancel_reaches_every_phone_and_one_487_comes_back() {
    let h = harness(Duration::from_secs(2));
    let (mut alice, mut desk, mut soft) = alice_and_carols_phones(&h, 42021).await;
    let (sent, to_desk, to_soft) =
        ring_carol(&h, &mut alice, &mut desk, &mut soft, "z9hG4bKfork3").await;
    for (phone, got, tag) in [(&mut desk, &to_desk, "desk"), (&mut soft, &to_soft, "soft")] {
        phone.send(&h, &respond(got, 180, "Ringing", tag));
        assert_eq!(status(&alice.next().await), "SIP/2.0 180 Ringing");
    }
    let cancel = sent
        .replacen("INVITE ", "CANCEL ", 1)
        .replace("CSeq: 2 INVITE", "CSeq: 2 CANCEL")
        .replace(
            "Content-Length: 0",
            "Reason: SIP;cause=487\r\nContent-Length: 0",
        );
    alice.send(&h, &cancel);
    assert_eq!(status(&alice.next().await), "SIP/2.0 200 OK");
    for (phone, got, tag) in [(&mut desk, &to_desk, "desk"), (&mut soft, &to_soft, "soft")] {
        let passed_on = phone.next().await;
        assert!(passed_on.starts_with("CANCEL "), "{passed_on}");
        assert_eq!(
            header(&passed_on, "Reason"),
            Some("SIP;cause=487"),
            "the caller's reason"
        );
        phone.send(&h, &respond(got, 487, "Request Terminated", tag));
        assert!(phone.next().await.starts_with("ACK "));
    }
    assert_eq!(
        status(&alice.next().await),
        "SIP/2.0 487 Request Terminated"
    );
    assert!(alice.silent_for(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn a_phone_that_answers_after_another_still_reaches_the_caller() {
    // Two 2xx: both go upstream, and the caller ends the extra dialog (RFC 3261 §16.7).
    let h = harness(Duration::from_secs(2));
    let (mut alice, mut desk, mut soft) = alice_and_carols_phones(&h, 42031).await;
    let (_, to_desk, to_soft) =
        ring_carol(&h, &mut alice, &mut desk, &mut soft, "z9hG4bKfork4").await;
    soft.send(&h, &respond(&to_soft, 200, "OK", "soft"));
    assert_eq!(status(&alice.next().await), "SIP/2.0 200 OK");
    desk.send(&h, &respond(&to_desk, 200, "OK", "desk"));
    let second = alice.next().await;
    assert_eq!(status(&second), "SIP/2.0 200 OK");
    assert!(header(&second, "To").is_some_and(|t| t.ends_with("tag=desk")));
}

#[tokio::test]
async fn a_message_for_a_user_reaches_every_phone_and_one_answer_goes_back() {
    // Not an INVITE: nothing is cancelled, and the caller gets one final answer.
    let h = harness(Duration::from_secs(2));
    let (mut alice, mut desk, mut soft) = alice_and_carols_phones(&h, 42041).await;
    let ruri = "sip:300@dialtone";
    alice.send(&h, &alice.request("MESSAGE", ruri, "z9hG4bKmsg5-0", 1, ""));
    let challenge = alice.next().await;
    let auth = alice.answer(&challenge, "Proxy-Authorization", "MESSAGE", ruri);
    alice.send(&h, &alice.request("MESSAGE", ruri, "z9hG4bKmsg5", 2, &auth));
    let (to_desk, to_soft) = (desk.next().await, soft.next().await);
    assert!(to_desk.starts_with("MESSAGE sip:carol-desk@"), "{to_desk}");
    assert!(to_soft.starts_with("MESSAGE sip:carol-soft@"), "{to_soft}");
    desk.send(&h, &respond(&to_desk, 200, "OK", "desk"));
    assert_eq!(status(&alice.next().await), "SIP/2.0 200 OK");
    soft.send(&h, &respond(&to_soft, 200, "OK", "soft"));
    assert!(
        alice.silent_for(Duration::from_millis(200)).await,
        "one answer"
    );
    assert!(
        desk.silent_for(Duration::from_millis(50)).await,
        "no CANCEL"
    );
    assert!(
        soft.silent_for(Duration::from_millis(50)).await,
        "no CANCEL"
    );
}

#[tokio::test]
async fn a_phone_dialling_its_own_user_rings_the_users_other_phones() {
    let h = harness(Duration::from_secs(2));
    let (_, mut desk, mut soft) = alice_and_carols_phones(&h, 42051).await;
    invite(&h, &mut desk, "300", "z9hG4bKself").await;
    assert_eq!(status(&desk.next().await), "SIP/2.0 100 Trying");
    let got = soft.next().await;
    assert!(got.starts_with("INVITE sip:carol-soft@"), "{got}");
    assert!(
        desk.silent_for(Duration::from_millis(200)).await,
        "not rung itself"
    );
}
