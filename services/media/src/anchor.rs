//! When a call's media goes through a media server, and how rtpengine is to rewrite each
//! side's SDP. Pure, and tested with a table of cases.
//!
//! Anchoring is not a choice when one side is a WebRTC endpoint (ICE and DTLS-SRTP, which
//! a desk phone or a trunk does not speak: rtpengine bridges them), or when one side
//! requires SRTP keyed by SDES and the other speaks plain RTP (rtpengine encrypts for one
//! and decrypts for the other), whatever the site says. A phone behind a NAT (its SDP
//! names only addresses of its own side, none the one its SIP comes from) and a trunk
//! that wants one fixed media address ([`Party::fixed_address`]: a call out through, or
//! in from the carrier of, a trunk with `anchor_media`) are anchored unless the site says `never`; `always`
//! anchors every call.

use std::net::IpAddr;

use crate::ng::Flags;

/// The site's media anchoring setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Anchoring {
    /// Only where a call needs it (WebRTC, SDES-SRTP facing plain RTP, NAT, a trunk's
    /// fixed address).
    #[default]
    WhenNeeded,
    /// Every call.
    Always,
    /// Only calls that cannot work without it (WebRTC, SDES-SRTP facing plain RTP).
    Never,
}

/// What a party of a call speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Plain RTP (a desk phone, a softphone, a trunk).
    Rtp,
    /// SRTP keyed by SDES, `RTP/SAVP` with `a=crypto` (a desk phone on a TLS line whose
    /// profile asks for it).
    Srtp,
    /// ICE and DTLS-SRTP over `UDP/TLS/RTP/SAVPF` (a browser or WebRTC app).
    WebRtc,
}

/// One party, as the edge sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    pub side: Side,
    /// Where its SIP comes from.
    pub source: IpAddr,
    /// Its SDP names an address other than `source`.
    pub behind_nat: bool,
    /// A trunk that wants one fixed media address.
    pub fixed_address: bool,
}

/// Why a call is anchored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    WebRtc,
    /// One side requires SDES-SRTP, the other speaks plain RTP.
    Srtp,
    Nat,
    Trunk,
    Policy,
}

/// Whether the call between `caller` and `callee` is anchored, and why. Pure.
pub fn decide(policy: Anchoring, caller: &Party, callee: &Party) -> Option<Why> {
    let parties = [caller, callee];
    if parties.iter().any(|p| p.side == Side::WebRtc) {
        return Some(Why::WebRtc);
    }
    if caller.side != callee.side {
        return Some(Why::Srtp);
    }
    if policy == Anchoring::Never {
        return None;
    }
    if parties.iter().any(|p| p.behind_nat) {
        return Some(Why::Nat);
    }
    if parties.iter().any(|p| p.fixed_address) {
        return Some(Why::Trunk);
    }
    (policy == Anchoring::Always).then_some(Why::Policy)
}

/// The flags of the `offer` (the caller's SDP, rewritten for `to`) or of the `answer`
/// (the callee's SDP, rewritten for `to`): `from` wrote the SDP. Pure.
pub fn flags(from: &Party, to: &Party) -> Flags {
    let mut f = Flags {
        replace: vec!["origin", "session-connection"],
        ..Flags::default()
    };
    if from.behind_nat {
        // Its SDP's address is unreachable: media goes to where its SIP came from until
        // its first packet shows where it really sends from (rtpengine latches on it).
        f.flags.push("SIP-source-address");
        let family = if from.source.is_ipv4() { "IP4" } else { "IP6" };
        f.received_from = Some((family, from.source.to_string()));
    }
    match (from.side, to.side) {
        (_, Side::WebRtc) => {
            f.transport_protocol = Some("UDP/TLS/RTP/SAVPF");
            f.ice = Some("force");
            f.rtcp_mux = vec!["require"];
            f.flags.push("generate-mid");
        }
        (Side::WebRtc, to) => {
            // SDES keys for an SRTP desk phone (rtpengine's default), none for plain RTP.
            let srtp = to == Side::Srtp;
            f.transport_protocol = Some(if srtp { "RTP/SAVP" } else { "RTP/AVP" });
            f.ice = Some("remove");
            f.rtcp_mux = vec!["demux"];
            if !srtp {
                f.sdes = vec!["off"];
            }
        }
        (Side::Rtp, Side::Srtp) => f.transport_protocol = Some("RTP/SAVP"),
        (Side::Srtp, Side::Rtp) => f.transport_protocol = Some("RTP/AVP"),
        (Side::Rtp, Side::Rtp) | (Side::Srtp, Side::Srtp) => {}
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(side: Side, nat: bool, fixed: bool) -> Party {
        Party {
            side,
            source: "198.51.100.7".parse().unwrap(),
            behind_nat: nat,
            fixed_address: fixed,
        }
    }

    #[test]
    fn when_a_call_is_anchored() {
        use Anchoring::*;
        let desk = party(Side::Rtp, false, false);
        let natted = party(Side::Rtp, true, false);
        let browser = party(Side::WebRtc, false, false);
        let trunk = party(Side::Rtp, false, true);
        let secure = party(Side::Srtp, false, false);
        // (site policy, caller, callee, anchored because)
        let cases = [
            (WhenNeeded, &secure, &desk, Some(Why::Srtp)),
            (Never, &desk, &secure, Some(Why::Srtp)),
            (WhenNeeded, &secure, &secure, None),
            (Always, &secure, &secure, Some(Why::Policy)),
            (WhenNeeded, &secure, &browser, Some(Why::WebRtc)),
            (WhenNeeded, &desk, &desk, None),
            (Always, &desk, &desk, Some(Why::Policy)),
            (Never, &desk, &desk, None),
            (WhenNeeded, &browser, &desk, Some(Why::WebRtc)),
            (WhenNeeded, &desk, &browser, Some(Why::WebRtc)),
            (Never, &browser, &desk, Some(Why::WebRtc)),
            (Never, &browser, &browser, Some(Why::WebRtc)),
            (WhenNeeded, &natted, &desk, Some(Why::Nat)),
            (WhenNeeded, &desk, &natted, Some(Why::Nat)),
            (Never, &natted, &desk, None),
            (WhenNeeded, &desk, &trunk, Some(Why::Trunk)),
            // The carrier of such a trunk calling in.
            (WhenNeeded, &trunk, &desk, Some(Why::Trunk)),
            (Never, &desk, &trunk, None),
            (Never, &trunk, &desk, None),
            (Always, &natted, &trunk, Some(Why::Nat)),
        ];
        for (i, (policy, caller, callee, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(policy, caller, callee), want, "case {i}");
        }
    }

    #[test]
    fn flags_bridge_webrtc_and_plain_rtp_and_follow_a_nat() {
        let desk = party(Side::Rtp, false, false);
        let natted = party(Side::Rtp, true, false);
        let browser = party(Side::WebRtc, false, false);
        // A desk phone's offer to a browser: DTLS-SRTP with ICE, rtcp-mux, a=mid.
        let f = flags(&desk, &browser);
        assert_eq!(f.transport_protocol, Some("UDP/TLS/RTP/SAVPF"));
        assert_eq!(
            (f.ice, f.rtcp_mux.as_slice()),
            (Some("force"), &["require"][..])
        );
        assert!(f.flags.contains(&"generate-mid"));
        // A browser's offer to a desk phone: plain RTP, no ICE, RTCP on its own port.
        let f = flags(&browser, &desk);
        assert_eq!(f.transport_protocol, Some("RTP/AVP"));
        assert_eq!(
            (f.ice, f.rtcp_mux.as_slice()),
            (Some("remove"), &["demux"][..])
        );
        assert_eq!(f.sdes, ["off"]);
        // Plain to plain: the addresses only.
        let f = flags(&desk, &desk);
        assert_eq!(f.replace, ["origin", "session-connection"]);
        assert_eq!((f.transport_protocol, f.ice), (None, None));
        assert!(f.received_from.is_none() && f.flags.is_empty());
        // SDES-SRTP and plain RTP: RTP/SAVP towards the SRTP phone (rtpengine adds its
        // keys), RTP/AVP towards the plain one; a browser's offer to an SRTP phone keeps
        // SDES.
        let secure = party(Side::Srtp, false, false);
        let cases = [
            (&desk, &secure, Some("RTP/SAVP")),
            (&secure, &desk, Some("RTP/AVP")),
            (&secure, &secure, None),
            (&browser, &secure, Some("RTP/SAVP")),
            (&secure, &browser, Some("UDP/TLS/RTP/SAVPF")),
        ];
        for (from, to, want) in cases {
            let f = flags(from, to);
            assert_eq!(
                f.transport_protocol, want,
                "{:?} -> {:?}",
                from.side, to.side
            );
            assert!(
                f.sdes.is_empty(),
                "{:?} -> {:?}: SDES stays on",
                from.side,
                to.side
            );
        }
        // Behind a NAT: the SIP source address, given to rtpengine.
        let f = flags(&natted, &desk);
        assert_eq!(f.flags, ["SIP-source-address"]);
        assert_eq!(f.received_from, Some(("IP4", "198.51.100.7".to_owned())));
    }
}
