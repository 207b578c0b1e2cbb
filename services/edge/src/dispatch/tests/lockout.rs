//! A user's lockout after failed guesses never blocks the user's own phone: one whose
//! binding on this edge was learned from the source it registers from, even when the bans'
//! record of proven sources has nothing (an edge that took the bindings back after a
//! restart, or a fleet larger than that record).

use std::time::Duration;

use super::{Harness, Phone, harness};

/// `user`'s phone `id` as an edge that restarted takes it back from the store: one binding
/// of its line learned from `at` over TCP, and no successful authentication on this edge yet.
fn taken_back(h: &Harness, id: &str, user: &str, at: &str) {
    let state = crate::registrar::tests::taken_back(user, &format!("tcp:{at}"));
    assert!(h.dispatcher.directory.adopt(id, &state));
}

/// The first answer to a REGISTER of `user` from `at`.
async fn first_answer(h: &Harness, user: &'static str, at: &str) -> String {
    let mut p = Phone::new(h, user, at);
    let first = p.request("REGISTER", "sip:dialtone", "z9hG4bKx", 1, "");
    p.send(h, &first);
    p.next().await
}

#[tokio::test]
async fn a_locked_out_users_registered_phone_still_registers() {
    let h = harness(Duration::from_secs(2));
    taken_back(&h, "p-alice", "alice", "127.0.0.1:40003");
    // Bob's phone, bound from an address where Alice's is not: it exempts no one else.
    taken_back(&h, "p-bob", "bob", "127.0.0.5:40003");
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
    // The right password from where no binding of Alice's was learned (Bob's phone's
    // address among them): locked out.
    for at in ["127.0.0.9:40003", "127.0.0.5:40004"] {
        let refused = first_answer(&h, "alice", at).await;
        assert!(
            refused.starts_with("SIP/2.0 403 Too many failed attempts"),
            "{at}: {refused}"
        );
    }
    // From the phone's address, a guess is still refused as a wrong password is.
    let mut neighbour = Phone::new(&h, "alice", "127.0.0.1:40100");
    neighbour.password = "guess";
    assert_eq!(neighbour.register(&h).await, "SIP/2.0 403 Forbidden");
    // The phone itself, back on a new port of its address: registered.
    let mut phone = Phone::new(&h, "alice", "127.0.0.1:40099");
    assert_eq!(phone.register(&h).await, "SIP/2.0 200 OK");
}
