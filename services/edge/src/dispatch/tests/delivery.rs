//! The delivery service through the real dispatcher (the harness of [`super`]; delivery's
//! tests live here, above both, so no module of the crate imports back down): an
//! authenticated line's request reaches a registered phone over its flow, with the edge's
//! Via on top, and the answers come back; retransmissions, CANCEL, no binding and no
//! answer each get what RFC 3261 §16 says.

use std::time::Duration;

use super::{Harness, Phone, REALM, harness, header, status};

/// The answer a phone gives to `request` (a whole request as received): its Vias, From,
/// To (with `to_tag`), Call-ID and CSeq.
pub(super) fn respond(request: &str, code: u16, reason: &str, to_tag: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in request.lines() {
        let name = line.split(": ").next().unwrap_or("");
        match name {
            "Via" | "Record-Route" | "From" | "Call-ID" | "CSeq" => {
                out.push_str(&format!("{line}\r\n"))
            }
            "To" => out.push_str(&format!("{line};tag={to_tag}\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// Alice's INVITE for `callee`, authenticated: the 407 is answered, then the INVITE sent
/// again with `branch`. Returns the request as sent.
pub(super) async fn invite(h: &Harness, alice: &mut Phone, callee: &str, branch: &str) -> String {
    let ruri = format!("sip:{callee}@{REALM}");
    alice.send(
        h,
        &alice.request("INVITE", &ruri, &format!("{branch}-0"), 1, ""),
    );
    let challenge = alice.next().await;
    assert_eq!(
        status(&challenge),
        "SIP/2.0 407 Proxy Authentication Required"
    );
    let auth = alice.answer(&challenge, "Proxy-Authorization", "INVITE", &ruri);
    let request = alice.request("INVITE", &ruri, branch, 2, &auth);
    alice.send(h, &request);
    request
}

/// Whether `f` holds within a second (the proxy records a call once its answer is relayed).
async fn eventually(f: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Alice and a registered Bob.
async fn alice_and_bob(h: &Harness) -> (Phone, Phone) {
    let mut bob = Phone::new(h, "bob", "127.0.0.1:41001");
    assert_eq!(bob.register(h).await, "SIP/2.0 200 OK");
    (Phone::new(h, "alice", "127.0.0.1:41002"), bob)
}

#[tokio::test]
async fn a_call_reaches_the_registered_phone_and_its_answers_come_back() {
    let h = harness(Duration::from_secs(2));
    let (mut alice, mut bob) = alice_and_bob(&h).await;
    let sent = invite(&h, &mut alice, "bob", "z9hG4bKcall1").await;
    assert_eq!(status(&alice.next().await), "SIP/2.0 100 Trying");
    let got = bob.next().await;
    // To the binding's contact, one hop fewer, the edge's Via above Alice's.
    assert!(
        got.starts_with("INVITE sip:bob@127.0.0.1:41001;transport=tcp SIP/2.0"),
        "{got}"
    );
    assert_eq!(header(&got, "Max-Forwards"), Some("69"));
    let vias: Vec<&str> = got.lines().filter(|l| l.starts_with("Via: ")).collect();
    assert_eq!(vias.len(), 2, "{got}");
    assert!(vias[0].contains("127.0.0.1:5060"), "{got}");
    assert!(vias[1].contains("branch=z9hG4bKcall1"), "{got}");
    // Bob rings, then answers: Alice sees both, without the edge's Via.
    for (code, reason) in [(180, "Ringing"), (200, "OK")] {
        bob.send(&h, &respond(&got, code, reason, "b1"));
        let answer = alice.next().await;
        assert_eq!(status(&answer), format!("SIP/2.0 {code} {reason}"));
        assert_eq!(answer.lines().filter(|l| l.starts_with("Via: ")).count(), 1);
        assert_eq!(header(&answer, "CSeq"), Some("2 INVITE"));
    }
    // Alice's retransmission is absorbed: Bob never sees it twice.
    alice.send(&h, &sent);
    assert!(bob.silent_for(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn a_phone_cannot_assert_an_identity_to_another_phone() {
    // RFC 3325 §5: a phone is outside the trust domain; what it asserts of itself is
    // dropped, whatever it is.
    let h = harness(Duration::from_secs(2));
    let (mut alice, mut bob) = alice_and_bob(&h).await;
    let ruri = format!("sip:bob@{REALM}");
    alice.send(&h, &alice.request("INVITE", &ruri, "z9hG4bKpai-0", 1, ""));
    let challenge = alice.next().await;
    let auth = alice.answer(&challenge, "Proxy-Authorization", "INVITE", &ruri);
    let claims = "P-Asserted-Identity: <sip:ceo@example.com>\r\n\
        P-Preferred-Identity: \"CEO\" <sip:ceo@example.com>\r\n\
        Remote-Party-ID: <sip:ceo@example.com>;party=calling\r\n";
    let request = alice.request("INVITE", &ruri, "z9hG4bKpai", 2, &format!("{claims}{auth}"));
    alice.send(&h, &request);
    let got = bob.next().await;
    assert!(got.starts_with("INVITE "), "{got}");
    for name in [
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Remote-Party-ID",
    ] {
        assert_eq!(header(&got, name), None, "{got}");
    }
    assert!(!got.contains("ceo@example.com"), "{got}");
    // Nor does what the callee asserts in its answer.
    let ok = respond(&got, 200, "OK", "b1").replacen(
        "Content-Length:",
        "P-Asserted-Identity: <sip:cfo@example.com>\r\nContent-Length:",
        1,
    );
    bob.send(&h, &ok);
    let answer = alice.next().await;
    let answer = if answer.starts_with("SIP/2.0 100") {
        alice.next().await
    } else {
        answer
    };
    assert_eq!(status(&answer), "SIP/2.0 200 OK");
    assert_eq!(header(&answer, "P-Asserted-Identity"), None, "{answer}");
}

#[tokio::test]
async fn no_live_binding_gives_480_and_a_retransmission_gets_it_again() {
    let h = harness(Duration::from_secs(2));
    let mut alice = Phone::new(&h, "alice", "127.0.0.1:41003");
    // Bob is a line of ours, but never registered.
    let sent = invite(&h, &mut alice, "bob", "z9hG4bKnone").await;
    assert_eq!(status(&alice.next().await), "SIP/2.0 100 Trying");
    let answer = alice.next().await;
    assert!(answer.starts_with("SIP/2.0 480"), "{answer}");
    alice.send(&h, &sent);
    assert_eq!(status(&alice.next().await), status(&answer));
}

#[tokio::test]
async fn a_cancel_is_answered_and_passed_on_and_the_487_acknowledged() {
    let h = harness(Duration::from_secs(2));
    let (mut alice, mut bob) = alice_and_bob(&h).await;
    let sent = invite(&h, &mut alice, "bob", "z9hG4bKcancel").await;
    assert_eq!(status(&alice.next().await), "SIP/2.0 100 Trying");
    let got = bob.next().await;
    bob.send(&h, &respond(&got, 180, "Ringing", "b2"));
    assert_eq!(status(&alice.next().await), "SIP/2.0 180 Ringing");
    // CANCEL: same branch, Call-ID and CSeq number as the INVITE (RFC 3261 §9.1).
    let cancel = sent
        .replacen("INVITE ", "CANCEL ", 1)
        .replace("CSeq: 2 INVITE", "CSeq: 2 CANCEL");
    alice.send(&h, &cancel);
    assert_eq!(status(&alice.next().await), "SIP/2.0 200 OK");
    let passed_on = bob.next().await;
    assert!(
        passed_on.starts_with("CANCEL sip:bob@127.0.0.1:41001"),
        "{passed_on}"
    );
    bob.send(&h, &respond(&got, 487, "Request Terminated", "b2"));
    assert_eq!(
        status(&alice.next().await),
        "SIP/2.0 487 Request Terminated"
    );
    // The non-2xx final is acknowledged hop by hop.
    let ack = bob.next().await;
    assert!(ack.starts_with("ACK sip:bob@127.0.0.1:41001"), "{ack}");
}

#[tokio::test]
async fn a_phone_that_never_answers_gives_408() {
    let h = harness(Duration::from_millis(300));
    let (mut alice, mut bob) = alice_and_bob(&h).await;
    let ruri = format!("sip:bob@{REALM}");
    // A MESSAGE waits for any answer as long as the notify timeout.
    alice.send(&h, &alice.request("MESSAGE", &ruri, "z9hG4bKmsg-0", 1, ""));
    let challenge = alice.next().await;
    let auth = alice.answer(&challenge, "Proxy-Authorization", "MESSAGE", &ruri);
    alice.send(&h, &alice.request("MESSAGE", &ruri, "z9hG4bKmsg", 2, &auth));
    assert!(bob.next().await.starts_with("MESSAGE "));
    let answer = alice.next().await;
    assert!(answer.starts_with("SIP/2.0 408"), "{answer}");
}

#[tokio::test]
async fn a_dialled_extension_of_the_callers_site_reaches_the_phone_holding_it() {
    let h = harness(Duration::from_secs(2));
    let (mut alice, mut bob) = alice_and_bob(&h).await;
    // 202 is Bob's extension in Alice's site.
    invite(&h, &mut alice, "202", "z9hG4bKext").await;
    assert_eq!(status(&alice.next().await), "SIP/2.0 100 Trying");
    let got = bob.next().await;
    assert!(got.starts_with("INVITE sip:bob@127.0.0.1:41001"), "{got}");
    assert_eq!(
        header(&got, "To"),
        Some("<sip:202@dialtone>"),
        "what was dialled"
    );
    bob.send(&h, &respond(&got, 200, "OK", "b3"));
    assert_eq!(status(&alice.next().await), "SIP/2.0 200 OK");
    // No phone of the site holds 299.
    invite(&h, &mut alice, "299", "z9hG4bKext2").await;
    assert_eq!(status(&alice.next().await), "SIP/2.0 404 Not Found");
}

/// A carrier (a trusted peer named by a trunk, at 127.0.0.9) reaching one of its DIDs:
/// its INVITE reaches what the DID names; any other number gets 404, any other method 405,
/// and a line's SIP user is no DID (a carrier reaches nothing else through the edge).
#[tokio::test]
async fn a_carrier_reaches_its_dids_and_nothing_else() {
    use dialtone_proto::config::v1::{Did, Peer, Trunk, TrunkTarget, did::Target};
    let h = harness(Duration::from_secs(2));
    {
        let mut cache = h.dispatcher.cache.write();
        cache.put_peer(&Peer {
            id: "carrier-sbc".into(),
            addresses: vec!["127.0.0.9".into()],
            ..Default::default()
        });
        cache.put_trunk(&Trunk {
            id: "carrier".into(),
            peer_id: "carrier-sbc".into(),
            targets: vec![TrunkTarget {
                address: "127.0.0.9:5060".into(),
                transport: "udp".into(),
                tls_name: String::new(),
            }],
            dids: vec![Did {
                numbers: "+15551230000-+15551230009".into(),
                target: Some(Target::Extension("hq/202".into())),
            }],
            ..Default::default()
        });
    }
    let mut bob = Phone::new(&h, "bob", "127.0.0.1:41101");
    assert_eq!(bob.register(&h).await, "SIP/2.0 200 OK");
    let mut carrier = Phone::new(&h, "carrier", "127.0.0.9:41102");
    // (method, number, status line the carrier gets)
    let cases = [
        ("MESSAGE", "+15551230003", "SIP/2.0 405 Method Not Allowed"),
        ("NOTIFY", "+15551230003", "SIP/2.0 405 Method Not Allowed"),
        ("OPTIONS", "+15551230003", "SIP/2.0 200 OK"),
        ("INVITE", "+15559999999", "SIP/2.0 404 Not Found"),
        ("INVITE", "bob", "SIP/2.0 404 Not Found"),
        ("INVITE", "2125551234", "SIP/2.0 404 Not Found"),
    ];
    for (i, (method, number, want)) in cases.iter().enumerate() {
        let ruri = format!("sip:{number}@{REALM}");
        let req = carrier.request(method, &ruri, &format!("z9hG4bKcar{i}"), 1, "");
        carrier.send(&h, &req);
        assert_eq!(status(&carrier.next().await), *want, "{method} {number}");
    }
    assert!(
        bob.silent_for(Duration::from_millis(100)).await,
        "nothing reached bob"
    );
    // The DID rings extension 202, with or without the +.
    let req = carrier.request("INVITE", "sip:15551230003@dialtone", "z9hG4bKcarok", 1, "");
    carrier.send(&h, &req);
    assert_eq!(status(&carrier.next().await), "SIP/2.0 100 Trying");
    let got = bob.next().await;
    assert!(got.starts_with("INVITE sip:bob@127.0.0.1:41101"), "{got}");
}

/// An in-dialog request from `phone` with `route` (Route values, in order): To and From as
/// the dialog has them from that side.
fn in_dialog(
    phone: &Phone,
    method: &str,
    target: &str,
    route: &[&str],
    tags: (&str, &str),
    call_id: &str,
    cseq: u32,
) -> String {
    let routes: String = route.iter().map(|r| format!("Route: {r}\r\n")).collect();
    let addr = phone.addr;
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/TCP {addr};branch=z9hG4bK{method}{cseq}\r\nMax-Forwards: 70\r\n{routes}From: <sip:{}@{REALM}>;tag={}\r\nTo: <sip:peer@{REALM}>;tag={}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        phone.user, tags.0, tags.1
    )
}

#[tokio::test]
async fn a_dialog_comes_back_along_the_record_route_and_over_each_phones_flow() {
    let h = harness(Duration::from_secs(2));
    let (mut alice, mut bob) = alice_and_bob(&h).await;
    invite(&h, &mut alice, "bob", "z9hG4bKdlg").await;
    assert_eq!(status(&alice.next().await), "SIP/2.0 100 Trying");
    let got = bob.next().await;
    // One Record-Route (both phones are on TCP), naming the edge's TCP listener.
    let rr: Vec<&str> = got
        .lines()
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .collect();
    assert_eq!(rr.len(), 1, "{got}");
    assert!(
        rr[0].ends_with("@127.0.0.1:5060;transport=tcp;lr>"),
        "{got}"
    );
    bob.send(&h, &respond(&got, 200, "OK", "b9"));
    let ok = alice.next().await;
    assert_eq!(
        header(&ok, "Record-Route"),
        Some(rr[0]),
        "the 2xx carries the route"
    );
    let call_id = header(&got, "Call-ID").unwrap().to_owned();
    let calls = || h.dispatcher.delivery.calls.active();
    assert!(eventually(|| calls() == 1).await, "the answered call is up");

    // Alice's ACK and BYE go to the edge (her route set) and reach Bob over his flow,
    // without the edge's Route.
    let bob_contact = "sip:bob@127.0.0.1:41001;transport=tcp";
    alice.send(
        &h,
        &in_dialog(
            &alice,
            "ACK",
            bob_contact,
            &rr,
            ("f-alice", "b9"),
            &call_id,
            2,
        ),
    );
    let ack = bob.next().await;
    assert!(
        ack.starts_with(&format!("ACK {bob_contact} SIP/2.0")),
        "{ack}"
    );
    assert_eq!(header(&ack, "Route"), None, "{ack}");
    // Bob's side of the dialog reaches Alice over hers, the other way.
    let alice_contact = "sip:alice@127.0.0.1:41002;transport=tcp";
    bob.send(
        &h,
        &in_dialog(
            &bob,
            "INFO",
            alice_contact,
            &rr,
            ("b9", "f-alice"),
            &call_id,
            1,
        ),
    );
    let info = alice.next().await;
    assert!(
        info.starts_with(&format!("INFO {alice_contact} SIP/2.0")),
        "{info}"
    );
    alice.send(&h, &respond(&info, 200, "OK", "f-alice"));
    assert_eq!(status(&bob.next().await), "SIP/2.0 200 OK");

    // A re-INVITE Bob refuses (491): Alice gets the 491 once, and her ACK for it is
    // absorbed (the edge acknowledged it hop by hop), never answered.
    let reinvite = in_dialog(
        &alice,
        "INVITE",
        bob_contact,
        &rr,
        ("f-alice", "b9"),
        &call_id,
        3,
    );
    alice.send(&h, &reinvite);
    assert_eq!(status(&alice.next().await), "SIP/2.0 100 Trying");
    let got = bob.next().await;
    bob.send(&h, &respond(&got, 491, "Request Pending", "b9"));
    assert_eq!(status(&alice.next().await), "SIP/2.0 491 Request Pending");
    assert!(bob.next().await.starts_with("ACK "), "the edge's own ACK");
    let ack = reinvite
        .replacen("INVITE ", "ACK ", 1)
        .replace("CSeq: 3 INVITE", "CSeq: 3 ACK");
    alice.send(&h, &ack);
    alice.send(&h, &ack);
    assert!(
        alice.silent_for(Duration::from_millis(100)).await,
        "no 491 again"
    );

    // A check-sync is the edge's own: no dialog's route carries one to a phone.
    let check_sync = in_dialog(
        &bob,
        "NOTIFY",
        alice_contact,
        &rr,
        ("b9", "f-alice"),
        &call_id,
        2,
    )
    .replace(
        "Content-Length",
        "Event: check-sync;reboot=true\r\nContent-Length",
    );
    bob.send(&h, &check_sync);
    assert_eq!(
        status(&bob.next().await),
        "SIP/2.0 403 Not a Request of the Dialog"
    );

    alice.send(
        &h,
        &in_dialog(
            &alice,
            "BYE",
            bob_contact,
            &rr,
            ("f-alice", "b9"),
            &call_id,
            4,
        ),
    );
    let bye = bob.next().await;
    assert!(bye.starts_with("BYE "), "{bye}");
    bob.send(&h, &respond(&bye, 200, "OK", "b9"));
    let done = alice.next().await;
    assert_eq!(
        (status(&done).as_str(), header(&done, "CSeq")),
        ("SIP/2.0 200 OK", Some("4 BYE"))
    );
    assert!(eventually(|| calls() == 0).await, "the BYE ended it");

    // Anyone else holding the route is refused, and the token is good for its call only.
    let mut lobby = Phone::new(&h, "lobby", "127.0.0.1:41009");
    lobby.send(
        &h,
        &in_dialog(&lobby, "BYE", bob_contact, &rr, ("x", "b9"), &call_id, 4),
    );
    assert_eq!(
        status(&lobby.next().await),
        "SIP/2.0 403 Not a Participant of the Dialog"
    );
    alice.send(
        &h,
        &in_dialog(
            &alice,
            "BYE",
            bob_contact,
            &rr,
            ("f-alice", "b9"),
            "other-call",
            5,
        ),
    );
    assert_eq!(
        status(&alice.next().await),
        "SIP/2.0 481 Call/Transaction Does Not Exist",
        "not a route of this call"
    );
    assert!(bob.silent_for(Duration::from_millis(100)).await);
}
