//! A line as the edge reads it to authenticate, register and reach it ([`LineEntry`],
//! with its stored HA1s), the registrar's default limits, and the digest offers: a line's,
//! and the one a challenge to a user nobody has carries ([`UnknownOffers`]).

use std::sync::Arc;

use dialtone_proto::config::v1::{DigestAlgorithm, PhoneSettings};
use dialtone_sip::{
    digest::Algorithm,
    offer::{Offer, OfferCounts},
    registration::Policy,
};

/// One registrable line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineEntry {
    pub phone_id: Arc<str>,
    pub line_index: u32,
    pub sip_user: String,
    pub(super) ha1_md5: Ha1,
    pub(super) ha1_sha256: Ha1,
    /// Registration limits from the phone's effective settings.
    pub policy: Policy,
    /// Whether MWI subscriptions are accepted.
    pub mwi: bool,
    /// Idle timeout of the line's WebSocket flows, when persistent connections are on.
    pub persistent_timeout_s: Option<u32>,
    /// The phone is assigned to no user and no site: it registers, but calls and
    /// messages from it are refused.
    pub unassigned: bool,
    /// The digest algorithms its challenges offer, in order (its profile's, within the
    /// edge's bound).
    pub offer: Offer,
    /// The DSCP (0-63) of the edge's SIP packets to this phone: its profile's SIP DSCP.
    pub sip_dscp: u8,
}

impl LineEntry {
    /// The stored HA1 for `alg` (never logged).
    pub fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => self.ha1_md5.as_str(),
            Algorithm::Sha256 => self.ha1_sha256.as_str(),
        }
    }
}

/// A stored HA1 (hex), kept inside its entry: it is read for every authenticated request,
/// and as a `String` it would be one more allocation to fetch from memory. One longer
/// than any digest's hex is kept empty, which no answer matches.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Ha1 {
    len: u8,
    hex: [u8; 64],
}

impl Ha1 {
    pub(super) fn new(s: &str) -> Self {
        let mut h = Ha1 {
            len: 0,
            hex: [0; 64],
        };
        if s.len() <= h.hex.len() {
            h.hex[..s.len()].copy_from_slice(s.as_bytes());
            h.len = s.len() as u8;
        }
        h
    }

    pub(super) fn as_str(&self) -> &str {
        // Whole UTF-8 text was copied in, so this never falls back.
        std::str::from_utf8(&self.hex[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A secret: never printed.
        f.write_str("Ha1(..)")
    }
}

/// What the edge's registrar limits are when a profile says nothing more specific.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub min_expires: u32,
    pub max_expires: u32,
    /// The digest algorithms this edge accepts at all (`--sip-digest-algorithms`): a
    /// profile's offer is cut to them.
    pub digest_bound: Offer,
}

/// The digest offer of effective settings `s` (their algorithms in order; unknown
/// entries, which validation refuses, skipped; MD5 when none is left), cut to `bound`.
pub(super) fn offer_of(s: &PhoneSettings, bound: Offer) -> Offer {
    let listed: Vec<Algorithm> = s
        .digest_algorithms
        .iter()
        .filter_map(|a| match DigestAlgorithm::try_from(*a) {
            Ok(DigestAlgorithm::Md5) => Some(Algorithm::Md5),
            Ok(DigestAlgorithm::Sha256) => Some(Algorithm::Sha256),
            _ => None,
        })
        .collect();
    Offer::of(&listed).unwrap_or(Offer::Md5).within(bound)
}

/// The fleet's digest offers as its lines have them, and the offer when there are no lines.
#[derive(Clone, Copy, Debug)]
pub struct UnknownOffers {
    pub(super) counts: OfferCounts,
    pub(super) fallback: Offer,
}

impl UnknownOffers {
    /// The offer a challenge to a SIP user nobody has carries, from `draw` (the edges'
    /// keyed hash of the user name, computed only when the fleet's lines have more than one
    /// offer): one of the fleet's offers, as often as its lines have it, so the challenge
    /// never tells a known user from an unknown one.
    pub fn pick(self, draw: impl FnOnce() -> u64) -> Offer {
        self.counts.pick(draw, self.fallback)
    }
}
