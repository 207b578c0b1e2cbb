//! One HTTPS request from a phone: which file, who asks (HTTP digest with the device
//! credential, RFC 7616), whether it has it already (ETag), and the answer.
//!
//! Nothing about a phone leaks before it authenticates: every request without valid
//! credentials gets the same challenge, whether the MAC exists or not; an authenticated
//! phone asking for another phone's file gets 404. Failed authentications count towards a
//! temporary ban of the source address (429) and of the device.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use bytes::Bytes;
use dialtone_auth::bans::Bans;
use dialtone_metrics::Counters;
use dialtone_sip::digest::{self, NonceCheck, NonceKey};
use http_body_util::Full;
use hyper::{HeaderMap, Method, Response, StatusCode, header};

use crate::{
    catalog::{Catalog, Entry},
    files,
    recorder::{Fetch, Recorder},
};

/// Results of a fetch, as the metrics name them.
pub const RESULTS: [&str; 8] = [
    "ok",
    "not_modified",
    "challenged",
    "unauthorized",
    "not_found",
    "banned",
    "bad_request",
    "error",
];

/// Counts of fetches by result.
pub type FetchCounts = Counters<{ RESULTS.len() }>;

/// The family of fetch results, all at 0.
pub fn fetch_counts() -> FetchCounts {
    Counters::new(
        "dialtone_provisioning_fetches_total",
        "Configuration fetches by result.",
        "result",
        RESULTS,
    )
}

/// What the handler needs.
pub struct Handler {
    /// Phones and their files.
    pub catalog: Arc<Catalog>,
    /// Signs nonces (shared by every provisioning node: derived from the credentials key).
    pub nonce_key: NonceKey,
    /// Seconds a nonce stays valid.
    pub nonce_lifetime_s: u64,
    /// Digest realm.
    pub realm: String,
    /// Failed-authentication bans.
    pub bans: Bans,
    /// Where fetches are recorded.
    pub recorder: Recorder,
    /// Fetch counters.
    pub counts: FetchCounts,
    /// The TURN servers' shared secret: a WebRTC phone's file carries its credential.
    pub turn: Option<crate::ice::Turn>,
}

type Reply = Response<Full<Bytes>>;

fn now() -> (u64, u64) {
    let d = dialtone_common::clock::since_epoch();
    (d.as_secs(), d.as_millis() as u64)
}

fn etag_value(etag: &str) -> header::HeaderValue {
    header::HeaderValue::from_str(etag).expect("hex in quotes")
}

fn reply(status: StatusCode, body: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Where provisioning nonces are valid: any provisioning node, this client address.
fn nonce_scope(source: IpAddr) -> digest::NonceScope<'static> {
    digest::NonceScope {
        issuer: "provisioning",
        source,
    }
}

/// True when `If-None-Match` names `etag` (or `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

impl Handler {
    /// A 401 with a fresh nonce for `source`. Provisioning nodes behind one load balancer
    /// share the issuer, so any of them takes the answer; the nonce is still bound to the
    /// client's address.
    fn challenge(&self, stale: bool, result: &'static str, source: IpAddr) -> Reply {
        self.counts.count(result);
        let (now_s, _) = now();
        let nonce = self
            .nonce_key
            .nonce(now_s, rand::random(), &nonce_scope(source));
        let mut r = reply(StatusCode::UNAUTHORIZED, "authentication required\n");
        for c in digest::challenges(&self.realm, &nonce, stale) {
            if let Ok(v) = header::HeaderValue::from_str(&c) {
                r.headers_mut().append(header::WWW_AUTHENTICATE, v);
            }
        }
        r
    }

    fn fail(&self, result: &'static str, status: StatusCode, body: &'static str) -> Reply {
        self.counts.count(result);
        reply(status, body)
    }

    /// The device a verified client certificate names, when the catalog knows it.
    async fn by_certificate(&self, device: &[String]) -> Result<Option<Arc<Entry>>, Reply> {
        for id in device {
            if let Some(e) = self.lookup(id).await? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    async fn lookup(&self, hw: &str) -> Result<Option<Arc<Entry>>, Reply> {
        self.catalog.lookup(hw).await.map_err(|e| {
            tracing::warn!(error = %e, "provisioning lookup failed");
            self.fail(
                "error",
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable\n",
            )
        })
    }

    /// The device an HTTP digest `Authorization` proves (RFC 7616), or the answer that
    /// refuses it: a challenge (stale after an expired nonce or a replayed count), 400 for a
    /// malformed header. Failures count towards the bans.
    async fn by_digest(
        &self,
        target: &str,
        headers: &HeaderMap,
        peer: SocketAddr,
        now_s: u64,
        now_ms: u64,
    ) -> Result<Arc<Entry>, Reply> {
        let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(self.challenge(false, "challenged", peer.ip()));
        };
        let creds = match digest::parse_authorization(auth) {
            Ok(c) => c,
            Err(digest::DigestError::NotDigest) => {
                return Err(self.challenge(false, "challenged", peer.ip()));
            }
            Err(_) => {
                return Err(self.fail(
                    "bad_request",
                    StatusCode::BAD_REQUEST,
                    "malformed authorization\n",
                ));
            }
        };
        // The digest covers the URI the client says it asked for: it must be this one.
        if creds.uri != target {
            return Err(self.fail(
                "bad_request",
                StatusCode::BAD_REQUEST,
                "authorization uri does not match the request\n",
            ));
        }
        // qop=auth with a nonce count is required: without it nothing stops a replay.
        if creds.qop.as_deref() != Some("auth") || creds.nonce_count().is_none() {
            return Err(self.challenge(false, "challenged", peer.ip()));
        }
        match self.nonce_key.check(
            &creds.nonce,
            now_s,
            self.nonce_lifetime_s,
            &nonce_scope(peer.ip()),
        ) {
            NonceCheck::Valid => {}
            NonceCheck::Stale => return Err(self.challenge(true, "challenged", peer.ip())),
            // Not a wrong password (no response is checked against it): retry, not re-prompt.
            NonceCheck::Invalid => return Err(self.challenge(true, "challenged", peer.ip())),
        }
        let user = creds.username.to_ascii_lowercase();
        // The ban is checked before any lookup: a banned guesser costs no store read.
        if self.bans.user_banned(&user, peer.ip(), now_ms) {
            // Still a guess from this address: it counts towards the address's ban.
            self.bans.failure(peer.ip(), "", now_ms);
            return Err(self.challenge(false, "banned", peer.ip()));
        }
        let entry = self.lookup(&user).await?;
        let alg = creds.algorithm();
        let verified = match (&entry, alg) {
            (Some(e), Some(a)) => {
                creds.realm == self.realm && digest::verify(a, e.ha1(a), "GET", &creds)
            }
            (None, Some(a)) => {
                // Same work for an unknown device, so timing says nothing.
                let _ = digest::verify(a, digest::DUMMY_HA1, "GET", &creds);
                false
            }
            _ => false,
        };
        let Some(entry) = entry.filter(|_| verified) else {
            let banned = self.bans.failure(peer.ip(), &user, now_ms);
            if banned.source || banned.user {
                tracing::warn!(source = %peer.ip(), "provisioning authentication failures: banned");
            }
            return Err(self.challenge(false, "unauthorized", peer.ip()));
        };
        if let Some(nc) = creds.nonce_count()
            && !entry
                .nonces
                .lock()
                .accept(&creds.nonce, nc, now_s, self.nonce_lifetime_s)
        {
            // A replayed nonce count: ask again with a fresh nonce.
            return Err(self.challenge(true, "challenged", peer.ip()));
        }
        if entry.mutual_auth {
            // Its profile wants its certificate: the right password alone gets what a wrong
            // one gets (so nothing tells the two apart), without counting as a guess.
            return Err(self.challenge(false, "unauthorized", peer.ip()));
        }
        self.bans.success(peer.ip(), &user, now_ms);
        Ok(entry)
    }

    /// Answers one request (`device`: the hardware ids the connection's client
    /// certificate names, empty without one).
    pub async fn handle(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        peer: SocketAddr,
        device: &[String],
    ) -> Reply {
        let (now_s, now_ms) = now();
        if method != Method::GET && method != Method::HEAD {
            let mut r = self.fail("bad_request", StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        if self.bans.source_banned(peer.ip(), now_ms) {
            let mut r = self.fail(
                "banned",
                StatusCode::TOO_MANY_REQUESTS,
                "too many failures\n",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            return r;
        }
        let Some(requested) = files::parse(target) else {
            return self.fail("not_found", StatusCode::NOT_FOUND, "not found\n");
        };
        let entry = match self.by_certificate(device).await {
            Ok(Some(e)) => e,
            Ok(None) => match self.by_digest(target, headers, peer, now_s, now_ms).await {
                Ok(e) => e,
                Err(reply) => return reply,
            },
            Err(reply) => return reply,
        };
        // Authenticated: only its own files exist for it.
        if requested
            .hardware_id()
            .is_some_and(|hw| hw != entry.hardware_id)
        {
            return self.fail("not_found", StatusCode::NOT_FOUND, "not found\n");
        }
        let Some(file) = entry.rendered.get(&requested.canonical()) else {
            return self.fail("not_found", StatusCode::NOT_FOUND, "not found\n");
        };
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        self.recorder.record(Fetch {
            phone_id: entry.phone_id.clone(),
            version: entry.rendered.version.clone(),
            file: file.name.clone(),
            source: peer.to_string(),
            user_agent: user_agent.chars().take(200).collect(),
            problems: entry.problems.join("; "),
            at_ms: now_ms as i64,
        });
        // A file with TURN servers gets the phone's credential of the moment (the same
        // bytes for a while, so a phone polling it still gets 304s).
        let (body, etag) = match &self.turn {
            Some(turn) if entry.has_turn => {
                match crate::ice::credentialed(&file.body, &entry.phone_id, turn, now_s) {
                    Some(b) => {
                        let tag = crate::render::etag(&b);
                        (b, tag)
                    }
                    None => (file.body.clone(), file.etag.clone()),
                }
            }
            _ => (file.body.clone(), file.etag.clone()),
        };
        if not_modified(headers, &etag) {
            self.counts.count("not_modified");
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r.headers_mut().insert(header::ETAG, etag_value(&etag));
            return r;
        }
        self.counts.count("ok");
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            body
        };
        let mut r = Response::new(Full::new(body));
        let h = r.headers_mut();
        h.insert(header::ETAG, etag_value(&etag));
        h.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(file.content_type),
        );
        // Phones poll: let them keep the file but ask each time (a 304 costs nothing).
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("private, no-cache"),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, "\"abc\""));
        h.insert(header::IF_NONE_MATCH, "\"x\", \"abc\"".parse().unwrap());
        assert!(not_modified(&h, "\"abc\""));
        h.insert(header::IF_NONE_MATCH, "W/\"abc\"".parse().unwrap());
        assert!(not_modified(&h, "\"abc\""));
        h.insert(header::IF_NONE_MATCH, "*".parse().unwrap());
        assert!(not_modified(&h, "\"abc\""));
        h.insert(header::IF_NONE_MATCH, "\"abcd\"".parse().unwrap());
        assert!(!not_modified(&h, "\"abc\""));
    }
}
