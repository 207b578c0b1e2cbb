//! What the edge needs to know of an SDP body (RFC 8866) to decide on anchoring: the
//! connection addresses and each media line's transport protocol, and whether it speaks
//! WebRTC (ICE and DTLS-SRTP, RFC 8827). Pure; anything it cannot read it leaves out.

use std::net::IpAddr;

use crate::anchor::Side;

/// A summary of one SDP body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Every connection address (`c=`, session and media level) that parses as an IP.
    pub addresses: Vec<IpAddr>,
    /// The transport protocol of each media line (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`, ...).
    pub protocols: Vec<String>,
    /// An `a=ice-ufrag` line anywhere.
    pub ice: bool,
    /// An `a=fingerprint` line anywhere (DTLS).
    pub fingerprint: bool,
    /// An `a=crypto` line anywhere (SDES-SRTP, RFC 4568).
    pub crypto: bool,
}

impl Summary {
    /// The body read (None when it does not look like SDP: no `v=0` first line).
    pub fn of(body: &[u8]) -> Option<Summary> {
        let text = std::str::from_utf8(body).ok()?;
        let mut lines = text.lines().map(str::trim_end);
        if lines.next()? != "v=0" {
            return None;
        }
        let mut s = Summary::default();
        for line in lines {
            if let Some(c) = line.strip_prefix("c=") {
                // c=IN IP4 192.0.2.1 (a multicast TTL after '/' is dropped)
                let addr = c.split_whitespace().nth(2).unwrap_or("");
                let addr = addr.split('/').next().unwrap_or("");
                if let Ok(ip) = addr.parse() {
                    s.addresses.push(ip);
                }
            } else if let Some(m) = line.strip_prefix("m=") {
                // m=audio 49170 RTP/AVP 0
                if let Some(proto) = m.split_whitespace().nth(2) {
                    s.protocols.push(proto.to_owned());
                }
            } else if line.starts_with("a=ice-ufrag:") {
                s.ice = true;
            } else if line.starts_with("a=fingerprint:") {
                s.fingerprint = true;
            } else if line.starts_with("a=crypto:") {
                s.crypto = true;
            }
        }
        Some(s)
    }

    /// Whether it is a WebRTC endpoint's: a `SAVPF` profile over DTLS, or ICE with a
    /// DTLS fingerprint.
    pub fn webrtc(&self) -> bool {
        self.protocols.iter().any(|p| p.contains("SAVPF")) || (self.ice && self.fingerprint)
    }

    /// What the endpoint that wrote it speaks.
    pub fn side(&self) -> Side {
        if self.webrtc() {
            Side::WebRtc
        } else if self.sdes() {
            Side::Srtp
        } else {
            Side::Rtp
        }
    }

    /// Whether it offers SRTP keyed by SDES (`RTP/SAVP` with `a=crypto`).
    pub fn sdes(&self) -> bool {
        self.crypto && self.protocols.iter().any(|p| p == "RTP/SAVP")
    }

    /// Whether the phone that wrote it sits behind a NAT: its connection addresses are
    /// all of a private, shared (CGNAT), loopback or link-local range and none is
    /// `source`, where its SIP came from (it wrote an address of its own side that the
    /// other party cannot reach). A public address that differs from the source is taken
    /// as meant (a multi-homed phone, a media gateway beside it); an SDP without a
    /// connection address tells nothing.
    pub fn behind_nat(&self, source: IpAddr) -> bool {
        let source = source.to_canonical();
        !self.addresses.is_empty()
            && self
                .addresses
                .iter()
                .all(|a| a.to_canonical() != source && unreachable_from_outside(*a))
    }
}

/// Whether `ip` is of a range that does not route on the Internet: private (RFC 1918,
/// RFC 4193), shared address space (RFC 6598, carrier-grade NAT), loopback or link-local.
/// Pure.
pub fn unreachable_from_outside(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESK: &str = "v=0\r\no=- 1 1 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\n\
                        t=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n";
    const BROWSER: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
                           m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
                           a=ice-ufrag:abcd\r\na=fingerprint:sha-256 AA:BB\r\n";
    const SDES: &str = "v=0\r\nc=IN IP4 203.0.113.5\r\nm=audio 5000 RTP/SAVP 0\r\n\
                        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n";

    #[test]
    fn bodies_are_summarised() {
        let desk = Summary::of(DESK.as_bytes()).unwrap();
        assert_eq!(desk.addresses, ["192.168.1.20".parse::<IpAddr>().unwrap()]);
        assert_eq!(desk.protocols, ["RTP/AVP"]);
        assert!(!desk.webrtc() && !desk.sdes());
        let browser = Summary::of(BROWSER.as_bytes()).unwrap();
        assert!(browser.webrtc() && !browser.sdes());
        let sdes = Summary::of(SDES.as_bytes()).unwrap();
        assert!(sdes.sdes() && !sdes.webrtc());
        assert_eq!(
            [desk.side(), browser.side(), sdes.side()],
            [Side::Rtp, Side::WebRtc, Side::Srtp]
        );
        assert_eq!(Summary::of(b"hello"), None);
        assert_eq!(Summary::of(&[0xff, 0xfe]), None);
    }

    #[test]
    fn a_phone_is_behind_a_nat_when_its_sdp_names_another_address() {
        let desk = Summary::of(DESK.as_bytes()).unwrap();
        // (where the SIP came from, behind a NAT)
        let cases = [
            ("192.168.1.20", false),
            ("198.51.100.7", true),
            ("::ffff:192.168.1.20", false),
        ];
        for (source, nat) in cases {
            assert_eq!(desk.behind_nat(source.parse().unwrap()), nat, "{source}");
        }
        // A public address other than the source is taken as meant.
        let gateway = Summary::of(SDES.as_bytes()).unwrap();
        assert!(!gateway.behind_nat("198.51.100.7".parse().unwrap()));
        // (address, unreachable from outside)
        let ranges = [
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("172.32.0.1", false),
            ("100.64.0.1", true),
            ("100.128.0.1", false),
            ("169.254.1.1", true),
            ("127.0.0.1", true),
            ("203.0.113.5", false),
            ("fd00::1", true),
            ("fe80::1", true),
            ("2001:db8::1", false),
            ("::ffff:10.0.0.1", true),
        ];
        for (ip, want) in ranges {
            assert_eq!(unreachable_from_outside(ip.parse().unwrap()), want, "{ip}");
        }
        let none = Summary::of(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap();
        assert!(!none.behind_nat("198.51.100.7".parse().unwrap()));
    }
}
