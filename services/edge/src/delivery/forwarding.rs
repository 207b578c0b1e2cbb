//! The marker one edge puts on a request it hands another edge (the one holding the phone's
//! binding): `X-Dialtone-Forwarded: NODE;ts=SECS;mac=HEX`. The MAC, under the edge group's
//! key, covers the receiving edge, the method, the Request-URI, From, To, Call-ID, CSeq,
//! the top Via branch (the forwarding edge's own) and the time, so a marker cannot be
//! forged, moved to another request or another edge, or used after its short validity; and
//! [`Seen`] refuses a second request with the same marker within it (retransmissions of a
//! delivery are absorbed by its transaction before they get here). The receiving edge
//! delivers a marked request over its own flow and never forwards it again; a marker that
//! does not verify gets 403. Pure.

use std::collections::{HashSet, VecDeque};

use dialtone_sip::{Message, StartLine, digest::NonceKey};

/// The header, as written.
pub const FORWARDED: &str = "X-Dialtone-Forwarded";
/// [`FORWARDED`] as the parser names headers (canonical, lowercase).
pub const FORWARDED_CANONICAL: &str = "x-dialtone-forwarded";

/// How long a marker is good for, either side of its time: the longest a request is
/// retransmitted (64×T1) plus clock skew between the edges of a group.
pub const VALIDITY_S: u64 = 32 + 5;

/// What the marker signs.
#[derive(Clone, Copy, Debug)]
pub struct Marked<'a> {
    /// The edge the request is handed to.
    pub to_node: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub call_id: &'a str,
    pub cseq: &'a str,
    /// The branch of the top Via (the forwarding edge's).
    pub branch: &'a str,
}

impl<'a> Marked<'a> {
    /// The signed parts of `m`, a request handed to `to_node` with `branch` on top.
    pub fn of(m: &'a Message, branch: &'a str, to_node: &'a str) -> Marked<'a> {
        let (method, uri) = match &m.start {
            StartLine::Request { method, uri, .. } => (method.as_ref(), uri.as_str()),
            StartLine::Response { .. } => ("", ""),
        };
        let h = |name| m.get(name).unwrap_or("");
        Marked {
            to_node,
            method,
            uri,
            from: h("from"),
            to: h("to"),
            call_id: h("call-id"),
            cseq: h("cseq"),
            branch,
        }
    }
}

const PURPOSE: &[u8] = b"forwarded";

/// The parts under the MAC, in order.
fn parts<'b>(node: &'b str, ts: &'b [u8; 8], m: &'b Marked) -> [&'b [u8]; 10] {
    [
        node.as_bytes(),
        ts,
        m.to_node.as_bytes(),
        m.method.as_bytes(),
        m.uri.as_bytes(),
        m.from.as_bytes(),
        m.to.as_bytes(),
        m.call_id.as_bytes(),
        m.cseq.as_bytes(),
        m.branch.as_bytes(),
    ]
}

/// The marker value `node` puts on `m` at `now_s`.
pub fn marker(key: &NonceKey, node: &str, now_s: u64, m: &Marked) -> String {
    let ts = now_s.to_be_bytes();
    let mac = key.sign(PURPOSE, &parts(node, &ts, m));
    format!("{node};ts={now_s};mac={}", hex::encode(mac))
}

/// Why a marker is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not of the marker's form.
    Malformed,
    /// The MAC does not verify (forged, or moved from another request or edge).
    Forged,
    /// Signed too long ago (or too far ahead).
    Expired,
    /// Already used within its validity.
    Replayed,
}

/// A verified marker: who forwarded, and its MAC (for [`Seen`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified<'v> {
    pub node: &'v str,
    pub mac: [u8; 16],
    pub ts: u64,
}

/// The forwarding edge and the MAC when `value` is a valid marker for `m` at `now_s`.
pub fn verify<'v>(
    key: &NonceKey,
    value: &'v str,
    now_s: u64,
    m: &Marked,
) -> Result<Verified<'v>, Refused> {
    let mut fields = value.split(';').map(str::trim);
    let node = fields
        .next()
        .filter(|n| !n.is_empty())
        .ok_or(Refused::Malformed)?;
    let (mut ts, mut mac_hex) = (None, None);
    for p in fields {
        match p.split_once('=') {
            Some(("ts", v)) => ts = v.parse::<u64>().ok(),
            Some(("mac", v)) => mac_hex = Some(v),
            _ => return Err(Refused::Malformed),
        }
    }
    let (Some(ts), Some(mac_hex)) = (ts, mac_hex) else {
        return Err(Refused::Malformed);
    };
    let mut mac = [0u8; 16];
    hex::decode_to_slice(mac_hex, &mut mac).map_err(|_| Refused::Malformed)?;
    if !key.verify_sign(PURPOSE, &parts(node, &ts.to_be_bytes(), m), &mac) {
        return Err(Refused::Forged);
    }
    if ts.abs_diff(now_s) > VALIDITY_S {
        return Err(Refused::Expired);
    }
    Ok(Verified { node, mac, ts })
}

/// Markers used recently, each kept until its validity ends. Only markers that verify get
/// here (only the group's edges make them), and the oldest go first past `capacity`.
#[derive(Debug)]
pub struct Seen {
    capacity: usize,
    by_age: VecDeque<(u64, [u8; 16])>,
    macs: HashSet<[u8; 16]>,
}

impl Seen {
    pub fn new(capacity: usize) -> Self {
        Seen {
            capacity,
            by_age: VecDeque::new(),
            macs: HashSet::new(),
        }
    }

    /// Whether `v` is used for the first time (it is remembered); false for a replay.
    pub fn first_use(&mut self, v: &Verified, now_s: u64) -> bool {
        while let Some((until, mac)) = self.by_age.front().copied() {
            if until >= now_s && self.by_age.len() < self.capacity {
                break;
            }
            self.by_age.pop_front();
            self.macs.remove(&mac);
        }
        if !self.macs.insert(v.mac) {
            return false;
        }
        self.by_age.push_back((v.ts + VALIDITY_S, v.mac));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Marked = Marked {
        to_node: "edge-2",
        method: "INVITE",
        uri: "sip:u@e",
        from: "<sip:a@e>;tag=1",
        to: "<sip:u@e>",
        call_id: "c1",
        cseq: "1 INVITE",
        branch: "z9hG4bKx",
    };

    #[test]
    fn markers_verify_only_for_their_request_edge_and_time() {
        let key = NonceKey::new([1; 32]);
        let v = marker(&key, "edge-1", 1000, &M);
        fn node(r: Result<Verified<'_>, Refused>) -> Result<&str, Refused> {
            r.map(|v| v.node)
        }
        type Case = (
            NonceKey,
            String,
            u64,
            Marked<'static>,
            Result<&'static str, Refused>,
        );
        let cases: Vec<Case> = vec![
            (key.clone(), v.clone(), 1000, M, Ok("edge-1")),
            (key.clone(), v.clone(), 1000 + VALIDITY_S, M, Ok("edge-1")),
            (
                key.clone(),
                v.clone(),
                1001 + VALIDITY_S,
                M,
                Err(Refused::Expired),
            ),
            (
                key.clone(),
                v.clone(),
                1000,
                Marked {
                    to_node: "edge-3",
                    ..M
                },
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.clone(),
                1000,
                Marked {
                    method: "MESSAGE",
                    ..M
                },
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.clone(),
                1000,
                Marked {
                    uri: "sip:v@e",
                    ..M
                },
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.clone(),
                1000,
                Marked {
                    from: "<sip:b@e>;tag=1",
                    ..M
                },
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.clone(),
                1000,
                Marked {
                    to: "<sip:v@e>",
                    ..M
                },
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.clone(),
                1000,
                Marked { call_id: "c2", ..M },
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.clone(),
                1000,
                Marked {
                    cseq: "2 INVITE",
                    ..M
                },
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.clone(),
                1000,
                Marked {
                    branch: "z9hG4bKy",
                    ..M
                },
                Err(Refused::Forged),
            ),
            (
                NonceKey::new([2; 32]),
                v.clone(),
                1000,
                M,
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.replace("edge-1", "edge-9"),
                1000,
                M,
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.replace("ts=1000", "ts=1001"),
                1000,
                M,
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                "edge-1".into(),
                1000,
                M,
                Err(Refused::Malformed),
            ),
            (
                key.clone(),
                "edge-1;ts=1000;mac=zz".into(),
                1000,
                M,
                Err(Refused::Malformed),
            ),
            (key.clone(), "".into(), 1000, M, Err(Refused::Malformed)),
            (
                key.clone(),
                format!("{v};x=1"),
                1000,
                M,
                Err(Refused::Malformed),
            ),
        ];
        for (i, (k, value, now, marked, want)) in cases.iter().enumerate() {
            assert_eq!(
                node(verify(k, value, *now, marked)),
                *want,
                "case {i}: {value}"
            );
        }
    }

    #[test]
    fn a_marker_is_used_once_within_its_validity() {
        let key = NonceKey::new([1; 32]);
        let a = marker(&key, "edge-1", 1000, &M);
        let b = marker(&key, "edge-1", 1000, &Marked { call_id: "c2", ..M });
        let (a, b) = (
            verify(&key, &a, 1000, &M).unwrap(),
            verify(&key, &b, 1000, &Marked { call_id: "c2", ..M }).unwrap(),
        );
        let mut seen = Seen::new(2);
        assert!(seen.first_use(&a, 1000));
        assert!(!seen.first_use(&a, 1010), "a replay");
        assert!(seen.first_use(&b, 1010));
        // Past its validity it is forgotten (verify refuses it as expired by then).
        assert!(seen.first_use(&a, 1000 + VALIDITY_S + 1));
        // Never more than the capacity.
        let c = Verified { mac: [9; 16], ..a };
        assert!(seen.first_use(&c, 1000 + VALIDITY_S + 1));
        assert!(seen.by_age.len() <= 2 && seen.macs.len() <= 2);
    }
}
