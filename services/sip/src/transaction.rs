//! Transactions (RFC 3261 §17), the parts a stateless front and its per-phone state share:
//! what identifies a server transaction, and how long its last answer is remembered.

use std::{
    hash::{BuildHasher, Hash, Hasher},
    net::SocketAddr,
    time::Duration,
};

use crate::{Message, header::Via};

/// T1, the round-trip estimate every SIP timer is a multiple of (§17.1.1.1).
pub const T1: Duration = Duration::from_millis(500);

/// Timer J, 64×T1 (§17.2.2): how long a non-INVITE server transaction absorbs
/// retransmissions of its request with its last answer.
pub const TIMER_J: Duration = Duration::from_secs(32);

/// Identifies a server transaction (§17.2.3): the top Via's branch, the source it came
/// from, and the Call-ID and CSeq (which also tell a CANCEL from what it cancels), hashed
/// with `keys` so no one can craft two requests that collide (one would be taken for a
/// retransmission of the other).
pub fn server_key(
    keys: &impl BuildHasher,
    m: &Message,
    top_via: Option<&Via>,
    from: SocketAddr,
) -> u64 {
    let mut h = keys.build_hasher();
    top_via.and_then(|v| v.param("branch")).hash(&mut h);
    from.hash(&mut h);
    m.get("call-id").hash(&mut h);
    m.get("cseq").hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_are_told_apart() {
        let msg = |branch: &str, cseq: u32| {
            crate::parse(format!("REGISTER sip:e SIP/2.0\r\nVia: SIP/2.0/UDP h;branch={branch}\r\nFrom: <sip:u@e>;tag=1\r\nTo: <sip:u@e>\r\nCall-ID: c\r\nCSeq: {cseq} REGISTER\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap()
        };
        let a: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        let keys = std::hash::RandomState::new();
        let key = |m: Message, from| server_key(&keys, &m, m.top_via().as_ref(), from);
        let k = key(msg("z9hG4bK1", 1), a);
        let cases = [
            (msg("z9hG4bK1", 1), a, true),
            (msg("z9hG4bK2", 1), a, false),
            (msg("z9hG4bK1", 2), a, false),
            (msg("z9hG4bK1", 1), b, false),
        ];
        for (m, from, same) in cases {
            assert_eq!(key(m, from) == k, same, "{from}");
        }
        assert_eq!(T1 * 64, TIMER_J);
    }
}
