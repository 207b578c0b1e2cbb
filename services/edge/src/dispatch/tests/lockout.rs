//! A user's lockout after failed guesses never blocks the user's own phone: one whose
//! binding on this edge was learned from the source it registers from, even when the bans'
//! record of proven sources has nothing (an edge that took the bindings back after a
//! restart, or a fleet larger than that record).

use std::time::Duration;

use super::{Phone, harness};
use crate::registrar::sleeping::{LineState, PhoneState};

#[tokio::test]
async fn a_locked_out_users_registered_phone_still_registers() {
    let h = harness(Duration::from_secs(2));
    let phone_at = "127.0.0.1:40003";
    // Alice's phone as an edge that restarted takes it back from the store: a binding from
    // its address, and no successful authentication on this edge yet.
    let now = dialtone_common::clock::unix_ms() / 1000;
    let taken_back = PhoneState {
        lines: vec![LineState {
            index: 0,
            sip_user: "alice".into(),
            bindings: vec![dialtone_sip::registration::Binding {
                uri: format!("sip:alice@{phone_at};transport=tcp"),
                instance: None,
                reg_id: None,
                call_id: "before-the-restart".into(),
                cseq: 1,
                expires_at: now + 600,
                q: None,
                path: Vec::new(),
                source: format!("tcp:{phone_at}").parse().unwrap(),
                user_agent: None,
            }],
            published_at: now,
            republish_after: 1800,
        }],
        nonce_counts: Default::default(),
    };
    assert!(h.dispatcher.directory.adopt("p-alice", &taken_back));
    // Guesses from three addresses, each under its own ban (10), lock the user out (20).
    for i in 0..20 {
        let mut guesser = Phone::new(&h, "alice", &format!("127.0.0.{}:41000", 2 + i % 3));
        guesser.password = "guess";
        assert_eq!(
            guesser.register(&h).await,
            "SIP/2.0 403 Forbidden",
            "guess {i}"
        );
    }
    // The right password from an address the phone never registered from: locked out.
    let mut elsewhere = Phone::new(&h, "alice", "127.0.0.9:40003");
    let first = elsewhere.request("REGISTER", "sip:dialtone", "z9hG4bKx", 1, "");
    elsewhere.send(&h, &first);
    let refused = elsewhere.next().await;
    assert!(
        refused.starts_with("SIP/2.0 403 Too many failed attempts"),
        "{refused}"
    );
    // The phone itself, from where its binding was learned: registered.
    let mut phone = Phone::new(&h, "alice", phone_at);
    assert_eq!(phone.register(&h).await, "SIP/2.0 200 OK");
}
