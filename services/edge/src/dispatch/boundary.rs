//! The trust boundary in front of the phones, and digest authentication. A request for a
//! phone (a user in its Request-URI) is let through only from another edge of the group
//! (a forwarding marker that verifies and was not used before, see
//! [`crate::delivery::forwarding`]), from a trusted peer (a `config/peers/` object matching
//! the source address and transport, or the verified client certificate of a TLS/WSS
//! connection), or from one of our lines proving itself to the proxy (`407
//! Proxy-Authenticate`, answered in `Proxy-Authorization`, each nonce count used once).
//! Anyone else gets 407 when the From names a user (any user, ours or not: the answer tells
//! no line from an unknown user) and 403 otherwise. NOTIFYs reach phones only from the
//! edges and trusted peers, and a check-sync from nobody (the edge's own actions send it).

use std::sync::Arc;

use dialtone_auth::bans::source_key;
use dialtone_sip::{
    Message, StartLine,
    digest::{DUMMY_HA1, NonceCheck, nonce_hash, parse_authorization, verify},
    header::is_check_sync,
    response::Source,
};
use tracing::warn;

use crate::{
    credentials::LineEntry,
    delivery::forwarding::{self, FORWARDED_CANONICAL, Marked},
    dispatch::{Dispatcher, Refusal},
    flow::Peer,
    metrics::Reason,
    replies::ChallengeKind,
};

/// Who sent a request for a phone, as the trust boundary established it.
pub(crate) enum Sender {
    /// Another edge of the group (its forwarding marker verified).
    Edge,
    /// A trusted peer (by its source address and transport), by id.
    Peer(String),
    /// One of our lines, authenticated by digest.
    Line(Arc<LineEntry>),
}

/// What the boundary can tell from the request alone, before any key or credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claim<'a> {
    /// Refused whoever sends it, with this reason phrase.
    Refused(&'a str),
    /// It says another edge handed it over: its marker decides.
    Edge(&'a str),
    /// It comes from a trusted peer's address.
    Peer,
    /// It says it comes from this user: digest decides.
    Line(&'a str),
}

/// Who a request for a phone claims to come from (`from_peer`: its source is a trusted
/// peer's). Pure.
pub(crate) fn claim<'m>(m: &'m Message, method: &str, from_peer: bool) -> Claim<'m> {
    if method == "NOTIFY" && m.all("event").any(is_check_sync) {
        return Claim::Refused("Check-sync comes from the edge only");
    }
    if let Some(value) = m.get(FORWARDED_CANONICAL) {
        return Claim::Edge(value);
    }
    if from_peer {
        return Claim::Peer;
    }
    if method == "NOTIFY" {
        // Phones act on NOTIFYs out of any dialog (resync, reboot, remote control): only the
        // edges and trusted peers (a voicemail server's message-summary) send them one.
        return Claim::Refused("Notify comes from the edge or a trusted peer only");
    }
    // A From without a user cannot answer a challenge: nothing to ask.
    match m.addressing().ok().and_then(|a| a.from.user) {
        Some(user) => Claim::Line(user),
        None => Claim::Refused(""),
    }
}

impl Dispatcher {
    /// The id of the trusted peer `peer` is (by its address, transport and client
    /// certificate names), if it is one.
    pub(crate) fn trusted_peer(&self, peer: &Peer) -> Option<String> {
        self.cache
            .read()
            .trusted_peer(
                peer.addr,
                peer.transport.name(),
                peer.tls_names.as_deref().unwrap_or_default(),
            )
            .map(str::to_owned)
    }

    /// Who may send `m`, a request for a phone (see the module's comment).
    pub(crate) fn admit(
        &self,
        m: &Message,
        method: &str,
        peer: &Peer,
        src: &Source,
        now_ms: u64,
    ) -> Result<Sender, Refusal> {
        let refuse = |reason: &str| {
            self.stats.rejected(Reason::Untrusted);
            Err(self.responder().reply(m, src, 403, reason, vec![]))
        };
        let trusted = self.trusted_peer(peer);
        match claim(m, method, trusted.is_some()) {
            Claim::Refused(reason) => refuse(reason),
            Claim::Peer => Ok(Sender::Peer(trusted.unwrap_or_default())),
            Claim::Edge(value) => {
                let top = m.top_via();
                let branch = top.as_ref().and_then(|v| v.param("branch")).unwrap_or("");
                let marked = Marked::of(m, branch, &self.settings.node_id);
                let now_s = now_ms / 1000;
                let checked = forwarding::verify(&self.settings.nonce_key, value, now_s, &marked)
                    .and_then(|v| {
                        if self.seen_markers.lock().first_use(&v, now_s) {
                            Ok(v)
                        } else {
                            Err(forwarding::Refused::Replayed)
                        }
                    });
                match checked {
                    Ok(_) => Ok(Sender::Edge),
                    Err(why) => {
                        warn!(source = %peer.addr, ?why, "forwarding marker refused");
                        refuse("Forwarding marker refused")
                    }
                }
            }
            Claim::Line(user) => {
                let (line, nonce, nc) =
                    self.authenticate(m, method, user, peer, src, now_ms, ChallengeKind::Proxy)?;
                // Each nonce count once: a captured request cannot be sent again.
                let fresh = self
                    .proxy_nonces
                    .lock()
                    .entry(line.phone_id.clone())
                    .or_default()
                    .accept_hashed(
                        nonce,
                        nc,
                        now_ms / 1000,
                        self.settings.nonce_lifetime.as_secs(),
                    );
                if !fresh {
                    self.stats.rejected(Reason::Replay);
                    let shared = &self.replies;
                    return Err(shared.challenge(
                        m,
                        src,
                        now_ms / 1000,
                        true,
                        ChallengeKind::Proxy,
                        line.offer,
                    ));
                }
                Ok(Sender::Line(line))
            }
        }
    }

    /// Whether `line`'s phone holds a live binding of that line learned from `ip`'s
    /// network (as the bans count sources: an IPv4 address, an IPv6 /64): the phone
    /// itself, with the right password, which a lockout of its user must not block. The
    /// bans' own record of the sources that proved a user is a fixed table (65,536 slots,
    /// fewer than the phones of a large edge, whose marks then push each other out) and
    /// empty after a restart, where the bindings taken back are the edge's record. Read
    /// only while the user is locked out: about a challenge's work (a sleeping phone's
    /// state decoded), and the phone's first success marks the bans' table again.
    fn registered_from(&self, line: &LineEntry, ip: std::net::IpAddr, now_ms: u64) -> bool {
        let key = source_key(ip);
        self.directory
            .bound_from(&line.phone_id, &line.sip_user, now_ms / 1000, |at| {
                source_key(at) == key
            })
    }

    /// Digest authentication of a request for `user` (`kind`: as the registrar, with
    /// `Authorization`, or as the proxy in front of the phones, with `Proxy-Authorization`):
    /// the line with the answered nonce (by its hash) and nonce count, or the answer to send.
    /// A user's lockout after failures applies to registrations only: anyone could earn it
    /// for a line by guessing, and it must not stop the line's calls.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn authenticate(
        &self,
        m: &Message,
        method: &str,
        user: &str,
        peer: &Peer,
        src: &Source,
        now_ms: u64,
        kind: ChallengeKind,
    ) -> Result<(Arc<LineEntry>, u64, u32), Refusal> {
        let now = now_ms / 1000;
        let shared = &self.replies;
        let registrar = kind == ChallengeKind::Registrar;
        let (entry, unknown) = {
            let cache = self.cache.read();
            (cache.lookup(user), cache.unknown_offers())
        };
        if registrar
            && self.bans.user_banned(user, src.ip, now_ms)
            && !entry
                .as_deref()
                .is_some_and(|line| self.registered_from(line, src.ip, now_ms))
        {
            self.stats.rejected(Reason::Banned);
            return Err(self
                .responder()
                .reply(m, src, 403, "Too many failed attempts", vec![]));
        }
        // What the challenge offers: the line's algorithms, or for a user nobody has one
        // of the fleet's, drawn by a hash only the edges can compute (the same work either
        // way: drawn for every user when the fleet has more than one offer, for none when
        // it has one), so the challenge never tells a known user from an unknown one.
        let draw = || {
            let mac = self
                .settings
                .nonce_key
                .sign(b"unknown-user-offer", &[user.as_bytes()]);
            u64::from_be_bytes(mac[..8].try_into().unwrap_or_default())
        };
        // After the cache's lock is let go: a credentials reload waits for no hash. Kept
        // opaque to the optimiser, which could otherwise compute the (pure) draw only on
        // the unknown user's branch below.
        let unknown = std::hint::black_box(unknown.pick(draw));
        let offer = entry.as_ref().map_or(unknown, |e| e.offer);
        let challenge = |stale: bool| shared.challenge(m, src, now, stale, kind, offer);
        let creds = m
            .all(kind.credentials_header())
            .filter_map(|v| parse_authorization(v).ok())
            .find(|c| c.realm == self.settings.realm);
        let Some(creds) = creds else {
            return Err(challenge(false));
        };
        match self.settings.nonce_key.check(
            &creds.nonce,
            now,
            self.settings.nonce_lifetime.as_secs(),
            &shared.nonce_scope(src.ip),
        ) {
            NonceCheck::Valid => {}
            NonceCheck::Stale => return Err(challenge(true)),
            // A nonce another edge (or this one, to another address) issued is not a wrong
            // password: `stale=true` lets the phone retry with the new nonce instead of
            // giving up (a phone failing over between the edges of a group brings one). No
            // response is verified against an invalid nonce, so this tells a guesser nothing.
            NonceCheck::Invalid => return Err(challenge(true)),
        }
        let (Some(alg), Some(nc)) = (creds.algorithm(), creds.nonce_count()) else {
            return Err(challenge(false));
        };
        if !offer.accepts(alg) || creds.qop.as_deref() != Some("auth") {
            return Err(challenge(false));
        }
        // The digest covers the URI the client says it asked for: it must be this one.
        if let StartLine::Request { uri, .. } = &m.start
            && *creds.uri != **uri
        {
            return Err(self.responder().reply(
                m,
                src,
                400,
                "Digest uri does not match the Request-URI",
                vec![],
            ));
        }
        // The same work whether or not the user exists.
        let ha1 = entry.as_ref().map_or(DUMMY_HA1, |e| e.ha1(alg));
        let matches = verify(alg, ha1, method, &creds);
        match entry {
            Some(e) if matches && creds.username == user && !ha1.is_empty() => {
                self.stats.authenticated(alg);
                if registrar {
                    self.bans.success(src.ip, user, now_ms);
                }
                Ok((e, nonce_hash(&creds.nonce), nc))
            }
            _ => {
                let nb =
                    self.bans
                        .failure(peer.addr.ip(), if registrar { user } else { "" }, now_ms);
                if nb.source || nb.user {
                    self.stats.banned();
                    warn!(source = %peer.addr.ip(), user, by_source = nb.source, "authentication failures: temporary ban");
                }
                self.stats.rejected(Reason::BadCredentials);
                Err(self.responder().reply(m, src, 403, "", vec![]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(method: &str, extra: &str) -> Message {
        dialtone_sip::parse(
            format!(
                "{method} sip:u1@e SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:caller@e>;tag=1\r\nTo: <sip:u1@e>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn claims() {
        let cases = [
            ("MESSAGE", "", Claim::Line("caller")),
            (
                "INVITE",
                "X-Dialtone-Forwarded: edge-1;ts=1;mac=00\r\n",
                Claim::Edge("edge-1;ts=1;mac=00"),
            ),
            ("INVITE", "x-dialtone-forwarded: m\r\n", Claim::Edge("m")),
            (
                "NOTIFY",
                "Event: check-sync;reboot=true\r\n",
                Claim::Refused("Check-sync comes from the edge only"),
            ),
            (
                "NOTIFY",
                "o: CHECK-SYNC\r\nX-Dialtone-Forwarded: m\r\n",
                Claim::Refused("Check-sync comes from the edge only"),
            ),
            (
                "NOTIFY",
                "Event: dialog\r\nEvent: check-sync\r\n",
                Claim::Refused("Check-sync comes from the edge only"),
            ),
            (
                "NOTIFY",
                "Event: resync\r\n",
                Claim::Refused("Notify comes from the edge or a trusted peer only"),
            ),
            (
                "NOTIFY",
                "Event: message-summary\r\nX-Dialtone-Forwarded: m\r\n",
                Claim::Edge("m"),
            ),
        ];
        for (method, extra, want) in cases {
            assert_eq!(
                claim(&msg(method, extra), method, false),
                want,
                "{method} {extra}"
            );
        }
        // From a trusted peer's address: the peer, except that check-sync stays refused.
        let from_peer = [
            ("INVITE", "", Claim::Peer),
            ("NOTIFY", "Event: message-summary\r\n", Claim::Peer),
            (
                "NOTIFY",
                "Event: check-sync\r\n",
                Claim::Refused("Check-sync comes from the edge only"),
            ),
        ];
        for (method, extra, want) in from_peer {
            assert_eq!(
                claim(&msg(method, extra), method, true),
                want,
                "{method} {extra}"
            );
        }
        let no_user = dialtone_sip::parse(b"INVITE sip:u1@e SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:example.com>;tag=1\r\nTo: <sip:u1@e>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
        assert_eq!(claim(&no_user, "INVITE", false), Claim::Refused(""));
    }
}
