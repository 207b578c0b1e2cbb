//! The marker one edge puts on a request it hands another edge (the one holding the phone's
//! binding): `X-Dialtone-Forwarded: NODE;ts=SECS;mac=HEX`. The MAC, under the edge group's
//! key, covers the method, the Call-ID, the top Via branch (the forwarding edge's own) and
//! the time, so a marker cannot be forged, moved to another request or replayed after its
//! short validity. The receiving edge delivers a marked request over its own flow and never
//! forwards it again; a marker that does not verify gets 403. Pure.

use dialtone_sip::digest::NonceKey;

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
    pub method: &'a str,
    pub call_id: &'a str,
    /// The branch of the top Via (the forwarding edge's).
    pub branch: &'a str,
}

fn mac(key: &NonceKey, node: &str, ts: u64, m: &Marked) -> [u8; 16] {
    key.sign(
        b"forwarded",
        &[
            node.as_bytes(),
            &ts.to_be_bytes(),
            m.method.as_bytes(),
            m.call_id.as_bytes(),
            m.branch.as_bytes(),
        ],
    )
}

/// The marker value `node` puts on `m` at `now_s`.
pub fn marker(key: &NonceKey, node: &str, now_s: u64, m: &Marked) -> String {
    format!(
        "{node};ts={now_s};mac={}",
        hex::encode(mac(key, node, now_s, m))
    )
}

/// Why a marker is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not of the marker's form.
    Malformed,
    /// The MAC does not verify (forged, or moved from another request).
    Forged,
    /// Signed too long ago (or too far ahead).
    Expired,
}

/// The forwarding edge's id when `value` is a valid marker for `m` at `now_s`.
pub fn verify<'v>(
    key: &NonceKey,
    value: &'v str,
    now_s: u64,
    m: &Marked,
) -> Result<&'v str, Refused> {
    let mut parts = value.split(';').map(str::trim);
    let node = parts
        .next()
        .filter(|n| !n.is_empty())
        .ok_or(Refused::Malformed)?;
    let (mut ts, mut mac_hex) = (None, None);
    for p in parts {
        match p.split_once('=') {
            Some(("ts", v)) => ts = v.parse::<u64>().ok(),
            Some(("mac", v)) => mac_hex = Some(v),
            _ => return Err(Refused::Malformed),
        }
    }
    let (Some(ts), Some(mac_hex)) = (ts, mac_hex) else {
        return Err(Refused::Malformed);
    };
    let mut got = [0u8; 16];
    hex::decode_to_slice(mac_hex, &mut got).map_err(|_| Refused::Malformed)?;
    if !key.verify_sign(
        b"forwarded",
        &[
            node.as_bytes(),
            &ts.to_be_bytes(),
            m.method.as_bytes(),
            m.call_id.as_bytes(),
            m.branch.as_bytes(),
        ],
        &got,
    ) {
        return Err(Refused::Forged);
    }
    if ts.abs_diff(now_s) > VALIDITY_S {
        return Err(Refused::Expired);
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_verify_only_for_their_request_and_time() {
        let key = NonceKey::new([1; 32]);
        let m = Marked {
            method: "INVITE",
            call_id: "c1",
            branch: "z9hG4bKx",
        };
        let v = marker(&key, "edge-1", 1000, &m);
        let other = |method, call_id, branch| Marked {
            method,
            call_id,
            branch,
        };
        type Case<'a> = (NonceKey, String, u64, Marked<'a>, Result<&'a str, Refused>);
        let cases: Vec<Case> = vec![
            (key.clone(), v.clone(), 1000, m, Ok("edge-1")),
            (key.clone(), v.clone(), 1000 + VALIDITY_S, m, Ok("edge-1")),
            (
                key.clone(),
                v.clone(),
                1001 + VALIDITY_S,
                m,
                Err(Refused::Expired),
            ),
            (
                key.clone(),
                v.clone(),
                1000,
                other("MESSAGE", "c1", "z9hG4bKx"),
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.clone(),
                1000,
                other("INVITE", "c2", "z9hG4bKx"),
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.clone(),
                1000,
                other("INVITE", "c1", "z9hG4bKy"),
                Err(Refused::Forged),
            ),
            (
                NonceKey::new([2; 32]),
                v.clone(),
                1000,
                m,
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.replace("edge-1", "edge-2"),
                1000,
                m,
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                v.replace("ts=1000", "ts=1001"),
                1000,
                m,
                Err(Refused::Forged),
            ),
            (
                key.clone(),
                "edge-1".into(),
                1000,
                m,
                Err(Refused::Malformed),
            ),
            (
                key.clone(),
                "edge-1;ts=1000;mac=zz".into(),
                1000,
                m,
                Err(Refused::Malformed),
            ),
            (key.clone(), "".into(), 1000, m, Err(Refused::Malformed)),
            (
                key.clone(),
                format!("{v};x=1"),
                1000,
                m,
                Err(Refused::Malformed),
            ),
        ];
        for (i, (k, value, now, marked, want)) in cases.iter().enumerate() {
            assert_eq!(verify(k, value, *now, marked), *want, "case {i}: {value}");
        }
    }
}
