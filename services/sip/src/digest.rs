//! Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760), as pure functions.
//!
//! Nonces are stateless: `hex(issued_at) ‖ hex(salt) ‖ hex(HMAC-SHA256(key, issued_at ‖ salt
//! ‖ scope))`, where the [`NonceScope`] is the issuing edge and the client's source address:
//! a nonce answers only where and to whom it was issued, so a REGISTER captured on its way
//! to one edge cannot be replayed to another or from another address, and a spoofed source
//! (which never sees its challenge) cannot answer one at all. An edge restart forgets
//! nothing. Replays are caught per phone by [`NonceCounts`].
//! Unknown users get the same challenge as known ones (the challenge depends on nothing
//! but the realm and the clock); verify them against [`DUMMY_HA1`] so that timing does not
//! tell them apart either.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::Sha256;

/// A digest algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617, still the only one many phones speak).
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The name in challenges.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    #[cfg(test)]
    fn hash(self, input: &str) -> String {
        self.hash_parts(&[input]).as_str().to_owned()
    }

    /// The hex digest of `parts` joined by ':', hashed as they come (no joined copy).
    fn hash_parts(self, parts: &[&str]) -> Hex {
        fn run<D: md5::Digest>(parts: &[&str]) -> Hex {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            Hex::of(&d.finalize())
        }
        match self {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
        }
    }
}

/// A digest (up to 32 bytes) in lowercase hex, on the stack.
#[derive(Clone, Copy)]
pub struct Hex {
    text: [u8; 64],
    len: usize,
}

impl Hex {
    /// The hex of a digest (its first 32 bytes: no digest here is longer).
    fn of(bytes: &[u8]) -> Hex {
        let bytes = &bytes[..bytes.len().min(32)];
        let mut h = Hex {
            text: [0; 64],
            len: bytes.len() * 2,
        };
        // The lengths match: this cannot fail.
        let _ = hex::encode_to_slice(bytes, &mut h.text[..h.len]);
        h
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        // Only hex digits were written.
        std::str::from_utf8(&self.text[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Hex {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An HA1 of the same length as a real one, for users that do not exist.
pub const DUMMY_HA1: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The group's nonce key, kept as an HMAC already keyed (the key's pads are hashed once, not
/// for every nonce). Its Debug output never shows the secret.
#[derive(Clone)]
pub struct NonceKey(Hmac<Sha256>);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

impl NonceKey {
    /// A key from 32 secret bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        NonceKey(<Hmac<Sha256> as Mac>::new_from_slice(&bytes).expect("any key length works"))
    }

    fn mac(&self, issued: u64, salt: u64, scope: &NonceScope) -> [u8; 16] {
        let ip = match scope.source {
            std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(a) => a.octets(),
        };
        // Fixed-size fields, then the issuer last, so no two inputs run together; the tag
        // byte keeps nonces apart from [`NonceKey::sign`]'s inputs (which start with a zero
        // length byte). 33 bytes and a short node id fit one SHA-256 block: a nonce costs
        // what it did before it was scoped.
        let mut m = self.0.clone();
        m.update(b"N");
        m.update(&issued.to_be_bytes());
        m.update(&salt.to_be_bytes());
        m.update(&ip);
        m.update(scope.issuer.as_bytes());
        let full = m.finalize().into_bytes();
        let mut out = [0; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// A MAC of `parts` under this key, for `purpose` (so that no MAC made for one purpose
    /// passes for another). Each part is length-prefixed: no two lists of parts collide.
    pub fn sign(&self, purpose: &[u8], parts: &[&[u8]]) -> [u8; 16] {
        let mut m = self.0.clone();
        for p in std::iter::once(&purpose).chain(parts) {
            m.update(&(p.len() as u32).to_be_bytes());
            m.update(p);
        }
        let full = m.finalize().into_bytes();
        let mut out = [0; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// Whether `mac` is [`NonceKey::sign`]'s for these parts (in constant time).
    pub fn verify_sign(&self, purpose: &[u8], parts: &[&[u8]], mac: &[u8]) -> bool {
        constant_time_eq(&self.sign(purpose, parts), mac)
    }

    /// A nonce issued at `now_s` with a random `salt`, for `scope`.
    pub fn nonce(&self, now_s: u64, salt: u64, scope: &NonceScope) -> String {
        self.nonce_text(now_s, salt, scope).as_str().to_owned()
    }

    /// [`NonceKey::nonce`] on the stack.
    pub fn nonce_text(&self, now_s: u64, salt: u64, scope: &NonceScope) -> Hex {
        let mut h = Hex {
            text: [0; 64],
            len: 64,
        };
        // The lengths match: these cannot fail.
        let _ = hex::encode_to_slice(now_s.to_be_bytes(), &mut h.text[..16]);
        let _ = hex::encode_to_slice(salt.to_be_bytes(), &mut h.text[16..32]);
        let _ = hex::encode_to_slice(self.mac(now_s, salt, scope), &mut h.text[32..]);
        h
    }

    /// Checks a nonce issued with this key for `scope` (the same issuer and source).
    pub fn check(
        &self,
        nonce: &str,
        now_s: u64,
        lifetime_s: u64,
        scope: &NonceScope,
    ) -> NonceCheck {
        let field =
            |r: std::ops::Range<usize>| nonce.get(r).and_then(|h| u64::from_str_radix(h, 16).ok());
        let mut mac = [0u8; 16];
        let (Some(issued), Some(salt), Some(())) = (
            field(0..16),
            field(16..32),
            nonce
                .get(32..)
                .and_then(|h| hex::decode_to_slice(h, &mut mac).ok()),
        ) else {
            return NonceCheck::Invalid;
        };
        if nonce.len() != 64 || !constant_time_eq(&mac, &self.mac(issued, salt, scope)) {
            return NonceCheck::Invalid;
        }
        // Allow a little clock skew between the edges of a group.
        if issued > now_s + 5 {
            return NonceCheck::Invalid;
        }
        if now_s - issued.min(now_s) > lifetime_s {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }
}

/// Where and to whom a nonce is issued: it is valid only there.
#[derive(Clone, Copy, Debug)]
pub struct NonceScope<'a> {
    /// The issuing node (an edge's or a provisioning node's id).
    pub issuer: &'a str,
    /// The client's source address.
    pub source: std::net::IpAddr,
}

/// What a nonce check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by the group and still fresh.
    Valid,
    /// Issued by the group but expired: challenge again with `stale=true`.
    Stale,
    /// Not issued by the group.
    Invalid,
}

/// The `WWW-Authenticate` values of a challenge: SHA-256 first, then MD5 (RFC 8760 §2.4:
/// the client picks the first it supports).
pub fn challenges(realm: &str, nonce: &str, stale: bool) -> [String; 2] {
    [Algorithm::Sha256, Algorithm::Md5].map(|a| challenge(a, realm, nonce, stale))
}

/// One `WWW-Authenticate` value for `alg`.
pub fn challenge(alg: Algorithm, realm: &str, nonce: &str, stale: bool) -> String {
    let mut out = String::with_capacity(64 + realm.len() + nonce.len());
    push_challenge(&mut out, alg, realm, nonce, stale);
    out
}

/// Writes [`challenge`] into `out` (one goes out for every first REGISTER).
pub fn push_challenge(out: &mut String, alg: Algorithm, realm: &str, nonce: &str, stale: bool) {
    for part in [
        "Digest realm=\"",
        realm,
        "\", nonce=\"",
        nonce,
        "\", algorithm=",
        alg.name(),
        ", qop=\"auth\"",
        if stale { ", stale=true" } else { "" },
    ] {
        out.push_str(part);
    }
}

/// A parsed `Authorization` (or `Proxy-Authorization`) header, borrowing from the header
/// (values are copied only when they hold escapes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub username: Cow<'a, str>,
    pub realm: Cow<'a, str>,
    pub nonce: Cow<'a, str>,
    pub uri: Cow<'a, str>,
    /// Lowercase.
    pub response: Cow<'a, str>,
    /// None means MD5 (the default).
    pub algorithm: Option<Cow<'a, str>>,
    pub qop: Option<Cow<'a, str>>,
    pub nc: Option<Cow<'a, str>>,
    pub cnonce: Option<Cow<'a, str>>,
    /// A challenge's opaque value, echoed by the answer (RFC 7616 §3.3).
    pub opaque: Option<Cow<'a, str>>,
}

impl Credentials<'_> {
    /// The algorithm the client used, if Dialtone supports it.
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.algorithm.as_deref() {
            None => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    /// The nonce count as a number.
    pub fn nonce_count(&self) -> Option<u32> {
        self.nc
            .as_deref()
            .and_then(|n| u32::from_str_radix(n, 16).ok())
    }
}

/// Why an Authorization header cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not the Digest scheme (RFC 4475 regaut01: answer with a Digest challenge).
    #[error("not a digest authorization")]
    NotDigest,
    /// A required parameter is missing.
    #[error("missing parameter {0}")]
    Missing(&'static str),
    /// The parameter list does not parse.
    #[error("malformed parameters")]
    Malformed,
}

/// Parses `Digest k=v, k="v", ...` (an Authorization or a challenge), checking nothing.
fn parse_digest_params(value: &str) -> Result<Credentials<'_>, DigestError> {
    let v = value.trim();
    let (scheme, rest) = v.split_once([' ', '\t']).ok_or(DigestError::NotDigest)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    let mut c = Credentials::default();
    for item in crate::header::split_list(rest) {
        if item.is_empty() {
            continue;
        }
        let (k, val) = crate::scan::split_once(item, b'=').ok_or(DigestError::Malformed)?;
        let val = val.trim();
        let val = match val.strip_prefix('"') {
            Some(q) => {
                let q = q.strip_suffix('"').ok_or(DigestError::Malformed)?;
                if crate::scan::contains(q, b'\\') {
                    Cow::Owned(q.replace("\\\"", "\"").replace("\\\\", "\\"))
                } else {
                    Cow::Borrowed(q)
                }
            }
            None => Cow::Borrowed(val),
        };
        let k = k.trim();
        let is = |name: &str| k.eq_ignore_ascii_case(name);
        if is("username") {
            c.username = val;
        } else if is("realm") {
            c.realm = val;
        } else if is("nonce") {
            c.nonce = val;
        } else if is("uri") {
            c.uri = val;
        } else if is("response") {
            c.response = match val {
                Cow::Borrowed(v) => crate::header::lowercase(v),
                Cow::Owned(v) => Cow::Owned(v.to_ascii_lowercase()),
            };
        } else if is("algorithm") {
            c.algorithm = Some(val);
        } else if is("qop") {
            c.qop = Some(val);
        } else if is("nc") {
            c.nc = Some(val);
        } else if is("cnonce") {
            c.cnonce = Some(val);
        } else if is("opaque") {
            c.opaque = Some(val);
        }
    }
    Ok(c)
}

/// Parses `Digest k=v, k="v", ...`.
pub fn parse_authorization(value: &str) -> Result<Credentials<'_>, DigestError> {
    let c = parse_digest_params(value)?;
    for (name, v) in [
        ("username", &c.username),
        ("realm", &c.realm),
        ("nonce", &c.nonce),
        ("uri", &c.uri),
        ("response", &c.response),
    ] {
        if v.is_empty() {
            return Err(DigestError::Missing(name));
        }
    }
    if c.qop.is_some() && (c.nc.is_none() || c.cnonce.is_none()) {
        return Err(DigestError::Missing("nc/cnonce"));
    }
    Ok(c)
}

/// The `Authorization` value a client holding `password` sends to answer `challenge` (a
/// `WWW-Authenticate` value) for `method` on `uri`, with nonce count `nc` and `cnonce`.
/// The client half of digest: used by the phone simulator and the tests.
pub fn answer(
    challenge: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> Result<String, DigestError> {
    let ch = parse_digest_params(challenge)?;
    if ch.realm.is_empty() || ch.nonce.is_empty() {
        return Err(DigestError::Missing("realm/nonce"));
    }
    let alg = ch.algorithm().ok_or(DigestError::Malformed)?;
    let qop = ch
        .qop
        .as_deref()
        .is_some_and(|q| q.split(',').any(|q| q.trim() == "auth"));
    let mut c = Credentials {
        username: user.into(),
        realm: ch.realm,
        nonce: ch.nonce,
        opaque: ch.opaque,
        uri: uri.into(),
        algorithm: Some(alg.name().into()),
        ..Credentials::default()
    };
    if qop {
        c.qop = Some("auth".into());
        c.nc = Some(format!("{nc:08x}").into());
        c.cnonce = Some(cnonce.into());
    }
    let ha1 = alg.hash_parts(&[user, &c.realm, password]);
    let response = expected_response(alg, ha1.as_str(), method, &c);
    let response = response.as_str();
    let mut v = format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
        c.realm,
        c.nonce,
        alg.name()
    );
    if qop {
        v.push_str(&format!(", qop=auth, nc={nc:08x}, cnonce=\"{cnonce}\""));
    }
    if let Some(opaque) = &c.opaque {
        v.push_str(&format!(", opaque=\"{opaque}\""));
    }
    Ok(v)
}

/// The header a client adds to answer `resp`, a 401 (`Authorization`) or 407
/// (`Proxy-Authorization`) to its request `method` for `uri`: the answer to the first of
/// the response's challenges (the server's order of preference, RFC 8760) that uses a
/// supported algorithm and, when `realm` is given, names that realm. None when no
/// challenge qualifies, or one would put a quote, backslash or control character into
/// what the client writes. Pure (the caller picks `cnonce`).
pub fn authorize(
    resp: &crate::message::Message,
    user: &str,
    password: &str,
    realm: Option<&str>,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> Option<(&'static str, String)> {
    authorize_where(resp, (user, password), realm, (method, uri), cnonce, false)
}

/// [`authorize`] (any realm) answering only a challenge that asks for `qop=auth`, whose
/// answer mixes in the client's `cnonce`: whoever challenges cannot have precomputed it
/// (RFC 2069's answer, without qop, depends on the challenger's nonce alone). For
/// credentials the challenger must not learn to replay, such as a phone profile's.
pub fn authorize_with_qop(
    resp: &crate::message::Message,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> Option<(&'static str, String)> {
    authorize_where(resp, (user, password), None, (method, uri), cnonce, true)
}

fn authorize_where(
    resp: &crate::message::Message,
    (user, password): (&str, &str),
    realm: Option<&str>,
    (method, uri): (&str, &str),
    cnonce: &str,
    need_qop: bool,
) -> Option<(&'static str, String)> {
    let crate::message::StartLine::Response { code, .. } = resp.start else {
        return None;
    };
    let (challenge, header) = match code {
        401 => ("www-authenticate", "Authorization"),
        407 => ("proxy-authenticate", "Proxy-Authorization"),
        _ => return None,
    };
    let plain = |v: &str| {
        !v.bytes()
            .any(|b| b == b'"' || b == b'\\' || b.is_ascii_control())
    };
    if !plain(uri) || !plain(user) {
        // A Request-URI a phone chose could break out of the quoted `uri`.
        return None;
    }
    resp.all(challenge).find_map(|value| {
        let ch = parse_digest_params(value).ok()?;
        let qop = ch
            .qop
            .as_deref()
            .is_some_and(|q| q.split(',').any(|q| q.trim() == "auth"));
        let wanted = realm.is_none_or(|r| r == ch.realm) && (qop || !need_qop);
        let safe = plain(&ch.realm) && plain(&ch.nonce) && ch.opaque.as_deref().is_none_or(plain);
        if !wanted || !safe || ch.algorithm().is_none() {
            return None;
        }
        let v = answer(value, user, password, method, uri, 1, cnonce).ok()?;
        Some((header, v))
    })
}

/// The response a client holding `ha1` must send (RFC 7616 §3.4.1).
pub fn expected_response(alg: Algorithm, ha1: &str, method: &str, c: &Credentials) -> Hex {
    let ha2 = ha2(alg, method, &c.uri);
    let ha2 = ha2.as_str();
    match (&c.qop, &c.nc, &c.cnonce) {
        (Some(qop), Some(nc), Some(cnonce)) => {
            alg.hash_parts(&[ha1, &c.nonce, nc, cnonce, qop, ha2])
        }
        _ => alg.hash_parts(&[ha1, &c.nonce, ha2]),
    }
}

/// H(method:uri). Every phone of a registrar sends the same REGISTER and URI, so the last
/// one computed on the thread is kept and reused: a hash fewer for nearly every
/// registration (HA2 is no secret: both its parts travel in the clear).
fn ha2(alg: Algorithm, method: &str, uri: &str) -> Hex {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(Algorithm, String, Hex)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if let Some((a, key, h)) = last.as_ref()
            && *a == alg
            && key.len() == method.len() + 1 + uri.len()
            && key.starts_with(method)
            && key.as_bytes()[method.len()] == b':'
            && key.ends_with(uri)
        {
            return *h;
        }
        let h = alg.hash_parts(&[method, uri]);
        *last = Some((alg, format!("{method}:{uri}"), h));
        h
    })
}

/// Whether the client's response matches `ha1` (compared in constant time).
pub fn verify(alg: Algorithm, ha1: &str, method: &str, c: &Credentials) -> bool {
    constant_time_eq(
        expected_response(alg, ha1, method, c).as_str().as_bytes(),
        c.response.as_bytes(),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Per-phone replay protection: each nonce's count must grow (RFC 7616 §3.4.5). Bounded
/// and small (one 24-byte entry per live nonce, held for every registered phone): nonces
/// are remembered by a 64-bit hash, and those past their lifetime are forgotten (they are
/// refused as stale anyway).
#[derive(Debug, Default)]
pub struct NonceCounts {
    seen: Vec<(u64, u32, u64)>,
}

/// Most nonces remembered per phone.
const MAX_NONCES: usize = 64;

/// FNV-1a: a nonce's key in [`NonceCounts`].
pub fn nonce_hash(nonce: &str) -> u64 {
    nonce.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl NonceCounts {
    /// The live entries `(nonce hash, last count, last use)`, for storing a sleeping phone.
    pub fn entries(&self, now_s: u64, lifetime_s: u64) -> impl Iterator<Item = (u64, u32, u64)> {
        self.seen
            .iter()
            .copied()
            .filter(move |(_, _, at)| now_s.saturating_sub(*at) <= lifetime_s)
    }

    /// Counts from stored `entries` (at most the usual bound are kept).
    pub fn from_entries(entries: impl IntoIterator<Item = (u64, u32, u64)>) -> Self {
        let mut seen: Vec<_> = entries.into_iter().take(MAX_NONCES).collect();
        seen.shrink_to_fit();
        NonceCounts { seen }
    }

    /// Accepts `nc` for `nonce` if it is higher than any seen before; records it.
    pub fn accept(&mut self, nonce: &str, nc: u32, now_s: u64, lifetime_s: u64) -> bool {
        self.accept_hashed(nonce_hash(nonce), nc, now_s, lifetime_s)
    }

    /// [`NonceCounts::accept`] for a nonce known by its [`nonce_hash`].
    pub fn accept_hashed(&mut self, key: u64, nc: u32, now_s: u64, lifetime_s: u64) -> bool {
        self.seen
            .retain(|(_, _, at)| now_s.saturating_sub(*at) <= lifetime_s);
        let full = self.seen.len() >= MAX_NONCES;
        match self.seen.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, last, _)) if nc <= *last => false,
            Some((_, last, at)) => {
                *last = nc;
                *at = now_s;
                true
            }
            None if full => false,
            None => {
                // Room for exactly one more when full (one reallocation, not a doubling
                // and then a shrink: a phone answers a new nonce at every refresh); the
                // room a sweep left is given back.
                self.seen.reserve_exact(1);
                self.seen.push((key, nc, now_s));
                self.seen.shrink_to_fit();
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_answers_the_first_challenge_it_can() {
        let resp = |code: u16, headers: &str| {
            let text = format!(
                "SIP/2.0 {code} Challenge\r\nVia: SIP/2.0/UDP e;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{headers}Content-Length: 0\r\n\r\n"
            );
            crate::message::parse(text.as_bytes()).unwrap()
        };
        let sha512 = "Digest realm=\"carrier\", nonce=\"n1\", algorithm=SHA-512-256";
        let md5 = "Digest realm=\"carrier\", nonce=\"n2\", opaque=\"op\", qop=\"auth\"";
        let other = "Digest realm=\"elsewhere\", nonce=\"n3\"";
        let quoted = "Digest realm=\"carrier\", nonce=\"a\\\"b\"";
        // (response, realm asked for, header and nonce answered)
        let cases = [
            (
                resp(
                    407,
                    &format!("Proxy-Authenticate: {sha512}\r\nProxy-Authenticate: {md5}\r\n"),
                ),
                Some("carrier"),
                Some(("Proxy-Authorization", "n2")),
            ),
            (
                resp(
                    401,
                    &format!("WWW-Authenticate: {other}\r\nWWW-Authenticate: {md5}\r\n"),
                ),
                None,
                Some(("Authorization", "n3")),
            ),
            (
                resp(401, &format!("WWW-Authenticate: {other}\r\n")),
                Some("carrier"),
                None,
            ),
            // A 401's challenge in the wrong header, a quote in the nonce, not a challenge.
            (
                resp(401, &format!("Proxy-Authenticate: {md5}\r\n")),
                None,
                None,
            ),
            (
                resp(407, &format!("Proxy-Authenticate: {quoted}\r\n")),
                None,
                None,
            ),
            (
                resp(403, &format!("WWW-Authenticate: {md5}\r\n")),
                None,
                None,
            ),
        ];
        for (r, realm, want) in cases {
            let got = authorize(&r, "acct", "pw", realm, "INVITE", "sip:+1@c", "cn");
            let got_nonce = got.as_ref().map(|(h, v)| {
                let c = parse_authorization(v).unwrap();
                // It verifies against the password's HA1, and echoes the opaque value.
                let alg = c.algorithm().unwrap();
                let ha1 = alg.hash_parts(&["acct", &c.realm, "pw"]);
                assert!(verify(alg, ha1.as_str(), "INVITE", &c), "{v}");
                if c.nonce == "n2" {
                    assert_eq!(c.opaque.as_deref(), Some("op"));
                }
                (*h, c.nonce.into_owned())
            });
            let want = want.map(|(h, n)| (h, n.to_owned()));
            assert_eq!(got_nonce, want, "{:?}", r.start);
        }
        // A URI that would break out of its quotes is not answered for.
        let r = resp(401, &format!("WWW-Authenticate: {md5}\r\n"));
        let uri = "sip:x\", response=\"y@c";
        assert_eq!(authorize(&r, "acct", "pw", None, "BYE", uri, "cn"), None);
    }

    #[test]
    fn answers_verify_against_the_servers_check() {
        let key = NonceKey::new([3; 32]);
        let nonce = key.nonce(1_000, 7, &scope("edge-1", "192.0.2.1"));
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            for (qop, nc) in [(true, 1), (true, 42), (false, 1)] {
                let mut ch = challenge(alg, "dialtone", &nonce, false);
                if !qop {
                    ch = ch.replace(", qop=\"auth\"", "");
                }
                let v = answer(
                    &ch, "u-1001", "s3cret", "REGISTER", "sip:edge", nc, "c0ffee",
                )
                .unwrap();
                let c = parse_authorization(&v).unwrap();
                assert_eq!(c.algorithm(), Some(alg));
                assert_eq!(c.nonce_count(), qop.then_some(nc), "{v}");
                let ha1 = alg.hash("u-1001:dialtone:s3cret");
                assert!(verify(alg, &ha1, "REGISTER", &c), "{alg:?} qop={qop}");
                assert!(!verify(
                    alg,
                    &alg.hash("u-1001:dialtone:wrong"),
                    "REGISTER",
                    &c
                ));
            }
        }
        assert!(answer("Basic realm=\"x\"", "u", "p", "REGISTER", "sip:x", 1, "c").is_err());
        assert!(answer("Digest nonce=\"n\"", "u", "p", "REGISTER", "sip:x", 1, "c").is_err());
        assert!(
            answer(
                "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512",
                "u",
                "p",
                "REGISTER",
                "sip:x",
                1,
                "c"
            )
            .is_err()
        );
    }

    /// RFC 7616 §3.9.1 (HTTP, but the computation is the same).
    fn rfc7616(alg: &str) -> Credentials<'_> {
        Credentials {
            username: "Mufasa".into(),
            realm: "http-auth@example.org".into(),
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            uri: "/dir/index.html".into(),
            response: "".into(),
            algorithm: Some(alg.into()),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ".into()),
            opaque: None,
        }
    }

    #[test]
    fn rfc7616_vectors() {
        let input = "Mufasa:http-auth@example.org:Circle of Life";
        for (alg, name, want) in [
            (Algorithm::Md5, "MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                Algorithm::Sha256,
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let ha1 = alg.hash(input);
            let mut c = rfc7616(name);
            assert_eq!(expected_response(alg, &ha1, "GET", &c), want);
            c.response = want.into();
            assert!(verify(alg, &ha1, "GET", &c));
            c.response = want.replace('8', "9").into();
            assert!(!verify(alg, &ha1, "GET", &c));
            assert!(!verify(alg, DUMMY_HA1, "GET", &rfc7616(name)));
        }
    }

    #[test]
    fn the_kept_ha2_is_only_reused_for_the_same_inputs() {
        let inputs = [
            (Algorithm::Md5, "REGISTER", "sip:a"),
            (Algorithm::Md5, "REGISTER", "sip:a"),
            (Algorithm::Sha256, "REGISTER", "sip:a"),
            (Algorithm::Md5, "REGISTER", "sip:b"),
            (Algorithm::Md5, "REGISTE", "R:sip:b"),
            (Algorithm::Md5, "SUBSCRIBE", "sip:b"),
            (Algorithm::Md5, "REGISTER", "sip:a"),
        ];
        for (alg, method, uri) in inputs {
            assert_eq!(
                ha2(alg, method, uri).as_str(),
                alg.hash_parts(&[method, uri]).as_str(),
                "{alg:?} {method} {uri}"
            );
        }
    }

    #[test]
    fn rfc2617_without_qop() {
        // RFC 2617 §3.5 example, computed without qop for the RFC 2069 form.
        let ha1 = Algorithm::Md5.hash("Mufasa:testrealm@host.com:Circle Of Life");
        let c = Credentials {
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            ..Default::default()
        };
        let ha2 = Algorithm::Md5.hash("GET:/dir/index.html");
        assert_eq!(
            expected_response(Algorithm::Md5, &ha1, "GET", &c),
            &*Algorithm::Md5.hash(&format!("{ha1}:{}:{ha2}", c.nonce))
        );
    }

    #[test]
    fn nonces_are_shared_fresh_and_unforgeable() {
        let key = NonceKey::new([7; 32]);
        let other = NonceKey::new([8; 32]);
        let here = scope("edge-1", "192.0.2.1");
        let n = key.nonce(1000, 42, &here);
        assert_eq!(n.len(), 64);
        let cases = [
            (&key, n.as_str(), 1000, here, NonceCheck::Valid),
            (&key, n.as_str(), 1300, here, NonceCheck::Valid),
            (&key, n.as_str(), 1301, here, NonceCheck::Stale),
            (&other, n.as_str(), 1000, here, NonceCheck::Invalid),
            (&key, &n[..63], 1000, here, NonceCheck::Invalid),
            (&key, "zz", 1000, here, NonceCheck::Invalid),
            (&key, n.as_str(), 900, here, NonceCheck::Invalid),
            // Only where and to whom it was issued.
            (
                &key,
                n.as_str(),
                1000,
                scope("edge-2", "192.0.2.1"),
                NonceCheck::Invalid,
            ),
            (
                &key,
                n.as_str(),
                1000,
                scope("edge-1", "192.0.2.2"),
                NonceCheck::Invalid,
            ),
            (
                &key,
                n.as_str(),
                1000,
                scope("edge-1", "::ffff:192.0.2.1"),
                NonceCheck::Valid,
            ),
            (
                &key,
                n.as_str(),
                1000,
                scope("edge-1", "2001:db8::1"),
                NonceCheck::Invalid,
            ),
        ];
        for (k, nonce, now, sc, want) in cases {
            assert_eq!(
                k.check(nonce, now, 300, &sc),
                want,
                "{nonce} at {now} for {sc:?}"
            );
        }
        let mut forged = n.clone();
        forged.replace_range(0..16, &format!("{:016x}", 2000));
        assert_eq!(
            key.check(&forged, 2000, 300, &here),
            NonceCheck::Invalid,
            "the issue time is signed"
        );
        assert!(!format!("{key:?}").contains('7'));
    }

    fn scope<'a>(issuer: &'a str, ip: &str) -> NonceScope<'a> {
        NonceScope {
            issuer,
            source: ip.parse().unwrap(),
        }
    }

    #[test]
    fn signatures_are_bound_to_purpose_and_parts() {
        let key = NonceKey::new([7; 32]);
        let mac = key.sign(b"a", &[b"x", b"yz"]);
        assert!(key.verify_sign(b"a", &[b"x", b"yz"], &mac));
        assert!(!key.verify_sign(b"b", &[b"x", b"yz"], &mac));
        assert!(!key.verify_sign(b"a", &[b"xy", b"z"], &mac));
        assert!(!NonceKey::new([8; 32]).verify_sign(b"a", &[b"x", b"yz"], &mac));
        assert!(!key.verify_sign(b"a", &[b"x", b"yz"], &mac[..15]));
    }

    #[test]
    fn challenges_prefer_sha256() {
        let [first, second] = challenges("dialtone", "abc", true);
        assert_eq!(
            first,
            r#"Digest realm="dialtone", nonce="abc", algorithm=SHA-256, qop="auth", stale=true"#
        );
        assert!(second.contains("algorithm=MD5") && second.contains("stale=true"));
    }

    #[test]
    fn authorization_headers() {
        let c = parse_authorization(
            r#"Digest username="k7q2x-1001", realm="dialtone", nonce="n", uri="sip:dialtone", response="ABC", algorithm=SHA-256, qop=auth, nc=0000000a, cnonce="x,y""#,
        )
        .unwrap();
        assert_eq!(
            (
                c.algorithm(),
                c.nonce_count(),
                c.cnonce.as_deref(),
                &*c.response
            ),
            (Some(Algorithm::Sha256), Some(10), Some("x,y"), "abc")
        );
        let bad: &[(&str, DigestError)] = &[
            (
                "NoOneKnowsThisScheme opaque-data=here",
                DigestError::NotDigest,
            ),
            ("Basic dXNlcjpwYXNz", DigestError::NotDigest),
            (
                r#"Digest realm="r", nonce="n", uri="u", response="x""#,
                DigestError::Missing("username"),
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth"#,
                DigestError::Missing("nc/cnonce"),
            ),
            (
                r#"Digest username="u, realm="r""#,
                DigestError::Missing("realm"),
            ),
            (r#"Digest username, realm="r""#, DigestError::Malformed),
            (r#"Digest username="u", realm="r"#, DigestError::Malformed),
        ];
        for (v, e) in bad {
            assert_eq!(parse_authorization(v).unwrap_err(), *e, "{v}");
        }
        let md5 = parse_authorization(
            r#"Digest username="u", realm="r", nonce="n", uri="u", response="x""#,
        )
        .unwrap();
        assert_eq!(md5.algorithm(), Some(Algorithm::Md5));
    }

    #[test]
    fn nonce_counts_must_grow() {
        let mut counts = NonceCounts::default();
        assert!(counts.accept("a", 1, 0, 300));
        assert!(!counts.accept("a", 1, 1, 300), "replay");
        assert!(counts.accept("a", 2, 2, 300));
        assert!(counts.accept("b", 1, 2, 300), "counts are per nonce");
        // An awake phone keeps no spare room: each new nonce takes exactly one more.
        assert_eq!(counts.seen.capacity(), 2);
        for i in 0..100 {
            counts.accept(&format!("n{i}"), 1, 3, 300);
        }
        assert!(counts.seen.len() <= MAX_NONCES, "bounded");
        assert!(
            counts.accept("late", 1, 1000, 300),
            "old entries are forgotten"
        );
        assert_eq!(
            (counts.seen.len(), counts.seen.capacity()),
            (1, 1),
            "the room the sweep left is given back"
        );
    }
}
