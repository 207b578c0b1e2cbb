//! A phone that challenges what the edge sends it. The seed's rule (base settings, Line
//! appearance, Digest Authentication): "When outbound requests are challenged with digest
//! authentication, Genesys Cloud uses these credentials". Two phones registered over UDP
//! (played by the test, each challenging with its own realm and nonce): one of a profile
//! at the defaults (`admin` / `1234`), one of a profile with its own credentials. The
//! edge answers each challenge once with the phone's profile credentials, on a new branch
//! with the next CSeq: a NOTIFY check-sync (401), a MESSAGE (407) and an INVITE (401, the
//! challenge acknowledged), whose dialog's later requests follow the shifted CSeq both
//! ways. Checked by verifying each answer's digest as the phone would.

use std::{net::SocketAddr, time::Duration};

use dialtone_domain::credentials::ha1;
use dialtone_proto::{config::v1 as cpb, edge::v1 as epb};
use dialtone_sip::digest::{Algorithm, parse_authorization, verify};
use dialtone_tests::{
    ClusterSandbox,
    fleet::{create_profile, phone_at},
    sip::{Caller, UdpPhone, answer_to as answer, branch, headers, in_dialog, status},
};

/// The next `method` request the phone gets within 5 s (anything else it gets meanwhile,
/// such as an ACK, is passed over).
async fn next_request(phone: &UdpPhone, method: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = phone
            .recv(left)
            .await
            .unwrap_or_else(|| panic!("no {method}"));
        if m.starts_with(&format!("{method} ")) {
            return m;
        }
    }
}

/// The phone challenges `req` (401 or 407 with `realm`), then checks that the request that
/// comes again answers it with `user` and `password`: its next CSeq and the answer, which
/// the phone verifies.
async fn challenge_and_verify(
    phone: &UdpPhone,
    req: &str,
    (code, realm): (u16, &str),
    (user, password): (&str, &str),
) -> String {
    let method = req.split(' ').next().unwrap();
    let header = if code == 401 {
        "WWW-Authenticate"
    } else {
        "Proxy-Authenticate"
    };
    let challenge = format!(
        "{header}: Digest realm=\"{realm}\", nonce=\"n-{realm}\", qop=\"auth\", algorithm=MD5\r\n"
    );
    phone.send(&answer(req, code, &challenge)).await.unwrap();
    let again = loop {
        let m = next_request(phone, method).await;
        if headers(&m, "cseq") != headers(req, "cseq") {
            break m;
        }
    };
    let cseq = |m: &str| -> u32 {
        headers(m, "cseq")[0]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(cseq(&again), cseq(req) + 1, "{again}");
    let value = headers(
        &again,
        if code == 401 {
            "authorization"
        } else {
            "proxy-authorization"
        },
    )
    .first()
    .map(|v| v.to_string())
    .unwrap_or_else(|| panic!("no answer to the challenge:\n{again}"));
    let creds = parse_authorization(&value).unwrap();
    assert_eq!((&*creds.username, &*creds.realm), (user, realm), "{value}");
    let stored = ha1(user, realm, password);
    assert!(
        verify(Algorithm::Md5, &stored.ha1_md5, method, &creds),
        "the answer does not prove {user}'s password: {value}"
    );
    again
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_challenges_the_edge_gets_its_profiles_digest_credentials() {
    let (sb, mut c, e) = ClusterSandbox::embedded_seeded(&[], Default::default())
        .await
        .unwrap();
    let node = &sb.nodes[0];
    create_profile(
        &mut c,
        "locked",
        "Locked",
        cpb::MetaBase::Yealink,
        cpb::PhoneSettings {
            digest_auth_user: Some("ops".into()),
            digest_auth_password: Some("n0t-the-default".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let edge = SocketAddr::from(([127, 0, 0, 1], node.sip.udp));
    // Phones of site hq at extensions 201 and 202 (a phone assigned nowhere may not call).
    let kind = cpb::PhoneKind::Unmanaged;
    let desk = phone_at(&mut c, "201", "desk", kind, "desk").await.unwrap();
    let locked = phone_at(&mut c, "202", "locked", kind, "locked")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut phones = Vec::new();
    for p in [&desk, &locked] {
        let mut ua = UdpPhone::new(edge, &p.sip_user, &p.password).await.unwrap();
        let r = ua.register(3600).await.unwrap();
        assert_eq!(status(&r), 200, "{r}");
        phones.push(ua);
    }
    let (desk_ua, locked_ua) = (&phones[0], &phones[1]);

    // A check-sync NOTIFY, challenged: answered with the defaults, and the phone's 200 is
    // what the API reports.
    let id = desk.phone_id.clone();
    let mut api = e.clone();
    let sync = tokio::spawn(async move {
        api.check_sync(epb::CheckSyncRequest {
            phone_id: id,
            reboot: false,
        })
        .await
    });
    let notify = next_request(desk_ua, "NOTIFY").await;
    let again =
        challenge_and_verify(desk_ua, &notify, (401, "desk-phone"), ("admin", "1234")).await;
    desk_ua.send(&answer(&again, 200, "")).await.unwrap();
    let results = sync.await.unwrap().unwrap().into_inner().results;
    assert_eq!(results[0].status_code, 200, "{results:?}");

    // A MESSAGE from the desk phone to the locked one, challenged by a proxy-style 407:
    // answered with the locked profile's credentials; the sender gets the 200 with its own
    // CSeq.
    let caller = Caller::line(&desk.sip_user, &desk.password).await.unwrap();
    let message = caller.text("MESSAGE", "202", &branch(), "MESSAGE");
    caller.send(&message, edge).await;
    let got = next_request(locked_ua, "MESSAGE").await;
    let again = challenge_and_verify(
        locked_ua,
        &got,
        (407, "locked-phone"),
        ("ops", "n0t-the-default"),
    )
    .await;
    locked_ua.send(&answer(&again, 200, "")).await.unwrap();
    let r = caller.responses("MESSAGE", Duration::from_secs(5)).await;
    let ok = r.last().unwrap();
    assert_eq!(status(ok), 200, "{r:?}");
    assert_eq!(headers(ok, "cseq")[0], "1 MESSAGE", "{ok}");

    // An INVITE, challenged with 401: acknowledged, sent again with the next CSeq. The
    // caller's BYE then reaches the phone one higher than it was sent (above the INVITE the
    // phone saw), and its 200 comes back as the caller sent it.
    let invite = caller.text("INVITE", "202", &branch(), "INVITE");
    caller.send(&invite, edge).await;
    let got = next_request(locked_ua, "INVITE").await;
    let again = challenge_and_verify(
        locked_ua,
        &got,
        (401, "locked-phone"),
        ("ops", "n0t-the-default"),
    )
    .await;
    let record_route: String = headers(&again, "record-route")
        .iter()
        .map(|r| format!("Record-Route: {r}\r\n"))
        .collect();
    let contact = format!(
        "Contact: <sip:{}@{}>\r\n",
        locked.sip_user,
        locked_ua.local()
    );
    locked_ua
        .send(&answer(&again, 200, &format!("{record_route}{contact}")))
        .await
        .unwrap();
    let r = caller.responses("INVITE", Duration::from_secs(5)).await;
    let ok = r.last().unwrap();
    assert_eq!(status(ok), 200, "{r:?}");
    assert_eq!(headers(ok, "cseq")[0], "1 INVITE", "{ok}");
    let target = format!("sip:{}@{}", locked.sip_user, locked_ua.local());
    let (ack, hop) = in_dialog(&invite, ok, "ACK", 1, &target);
    caller.send_raw(&ack, hop).await;
    let (bye, hop) = in_dialog(&invite, ok, "BYE", 2, &target);
    caller.send_raw(&bye, hop).await;
    let got = next_request(locked_ua, "BYE").await;
    assert_eq!(headers(&got, "cseq")[0], "3 BYE", "{got}");
    locked_ua.send(&answer(&got, 200, "")).await.unwrap();
    let r = caller.responses("BYE", Duration::from_secs(5)).await;
    let done = r.last().unwrap();
    assert_eq!(status(done), 200, "{r:?}");
    assert_eq!(headers(done, "cseq")[0], "2 BYE", "{done}");
}
