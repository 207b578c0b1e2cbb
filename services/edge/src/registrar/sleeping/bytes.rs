//! The bytes of a sleeping phone's form: LEB128 numbers, times as distances, strings with
//! their length (absent in one byte), Contact URIs without their line's `sip:user@`, and
//! flow sources in binary. Pure; a reader never trusts a length past what is left.

use std::net::{SocketAddr, SocketAddrV6};

use dialtone_sip::transport::{FlowSource, Transport};

/// How a Contact URI starts when the rest of it follows `sip:` and the line's SIP user.
const SIP_USER_AT: u8 = 1;

/// The high bit of a source's first byte: an IPv6 address follows (else IPv4); the rest of
/// that byte is its transport's [`Transport::index`].
const V6: u8 = 0x80;

pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    /// LEB128 (protobuf's varint, prost's encoder): seven bits a byte, low first.
    pub(super) fn uint(&mut self, v: u64) {
        prost::encoding::encode_varint(v, &mut self.0);
    }
    /// A time as its distance from `base`, zigzagged so a little before costs as little as
    /// a little after. Wrapping, so any pair of times round-trips.
    pub(super) fn time(&mut self, t: u64, base: u64) {
        let d = t.wrapping_sub(base) as i64;
        self.uint(((d << 1) ^ (d >> 63)) as u64);
    }
    /// Its length plus one (0: absent), then its bytes.
    pub(super) fn str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.uint(s.len() as u64 + 1);
                self.0.extend_from_slice(s.as_bytes());
            }
            None => self.uint(0),
        }
    }
    /// A Contact URI: [`SIP_USER_AT`] and what follows `sip:{sip_user}@`, else 0 and the
    /// whole URI.
    pub(super) fn contact(&mut self, uri: &str, sip_user: &str) {
        let rest = if sip_user.is_empty() {
            None
        } else {
            uri.strip_prefix("sip:")
                .and_then(|u| u.strip_prefix(sip_user))
                .and_then(|u| u.strip_prefix('@'))
        };
        match rest {
            Some(rest) => {
                self.0.push(SIP_USER_AT);
                self.str(Some(rest));
            }
            None => {
                self.0.push(0);
                self.str(Some(uri));
            }
        }
    }
    pub(super) fn source(&mut self, s: FlowSource) {
        let t = s.transport.index() as u8;
        match s.addr {
            SocketAddr::V4(a) => {
                self.0.push(t);
                self.0.extend_from_slice(&a.ip().octets());
                self.0.extend_from_slice(&a.port().to_le_bytes());
            }
            SocketAddr::V6(a) => {
                self.0.push(t | V6);
                self.0.extend_from_slice(&a.ip().octets());
                self.0.extend_from_slice(&a.port().to_le_bytes());
                self.uint(a.scope_id().into());
            }
        }
    }
}

pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    pub(super) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
    /// A LEB128 varint (prost's decoder); `None` cut short, past ten bytes or past 64 bits.
    pub(super) fn uint(&mut self) -> Option<u64> {
        prost::encoding::decode_varint(&mut self.0).ok()
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        self.uint()?.try_into().ok()
    }
    pub(super) fn time(&mut self, base: u64) -> Option<u64> {
        let z = self.uint()?;
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        Some(base.wrapping_add(d as u64))
    }
    /// A length that cannot exceed what is left (so corrupt input never over-allocates).
    pub(super) fn count(&mut self) -> Option<usize> {
        Some(self.uint()?)
            .filter(|n| *n <= self.0.len() as u64)
            .map(|n| n as usize)
    }
    /// A string as written by [`Writer::str`], borrowed from the bytes.
    fn opt_str(&mut self) -> Option<Option<&'a str>> {
        let Some(n) = self.uint()?.checked_sub(1) else {
            return Some(None);
        };
        let b = self.take(usize::try_from(n).ok()?)?;
        Some(Some(std::str::from_utf8(b).ok()?))
    }
    pub(super) fn opt_string(&mut self) -> Option<Option<String>> {
        Some(self.opt_str()?.map(str::to_owned))
    }
    pub(super) fn string(&mut self) -> Option<String> {
        self.opt_string()?
    }
    /// A contact as written by [`Writer::contact`]: one allocation of its final length
    /// (a woken phone decodes one per binding; every refresh in the field wakes one).
    pub(super) fn contact(&mut self, sip_user: &str) -> Option<String> {
        let [how] = self.array()?;
        let tail = self.opt_str()??;
        match how {
            0 => Some(tail.to_owned()),
            SIP_USER_AT => {
                let mut uri = String::with_capacity(5 + sip_user.len() + tail.len());
                for part in ["sip:", sip_user, "@", tail] {
                    uri.push_str(part);
                }
                Some(uri)
            }
            _ => None,
        }
    }
    pub(super) fn source(&mut self) -> Option<FlowSource> {
        let [tag] = self.array()?;
        let transport = *Transport::ALL.get(usize::from(tag & !V6))?;
        let addr = if tag & V6 == 0 {
            let ip: [u8; 4] = self.array()?;
            SocketAddr::from((ip, u16::from_le_bytes(self.array()?)))
        } else {
            let ip = std::net::Ipv6Addr::from(self.array::<16>()?);
            let port = u16::from_le_bytes(self.array()?);
            SocketAddr::V6(SocketAddrV6::new(ip, port, 0, self.u32()?))
        };
        Some(FlowSource { transport, addr })
    }
    /// A count, then that many items read by `item`.
    pub(super) fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        let n = self.count()?;
        // A corrupt count is bounded by the bytes left, not by what each item takes.
        let mut out = Vec::with_capacity(n.min(8));
        for _ in 0..n {
            out.push(item(self)?);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_round_trip_at_their_edges() {
        let numbers = [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        for (n, len) in numbers.into_iter().zip([1, 1, 1, 2, 2, 3, 5, 10]) {
            let mut w = Writer(Vec::new());
            w.uint(n);
            assert_eq!(w.0.len(), len, "{n}");
            assert_eq!(Reader(&w.0).uint(), Some(n));
        }
        // (time, base, bytes): near the base is one byte either side; any pair round-trips.
        for (t, base, len) in [
            (2000, 2000, 1),
            (1999, 2000, 1),
            (2063, 2000, 1),
            (1_800_000_000, 1_800_003_600, 2),
            (1_800_000_000, u64::MAX, 5),
            (0, u64::MAX, 1),
            (u64::MAX, 0, 1),
            (u64::MAX / 2, 0, 10),
        ] {
            let mut w = Writer(Vec::new());
            w.time(t, base);
            assert_eq!(w.0.len(), len, "{t} from {base}");
            assert_eq!(Reader(&w.0).time(base), Some(t), "{t} from {base}");
        }
        // Longer than ten bytes, or bits past 64: not a number.
        assert_eq!(Reader(&[0x80; 11]).uint(), None);
        assert_eq!(
            Reader(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).uint(),
            None
        );
        assert_eq!(Reader(&[0x80]).uint(), None, "cut short");
    }

    #[test]
    fn contacts_leave_out_the_sip_user_only_where_it_is_theirs() {
        // (uri, sip user, bytes after the tag): the user's own `sip:user@` goes.
        for (uri, user, tail) in [
            (
                "sip:k7q2x-1001@10.0.0.1:5060;ob",
                "k7q2x-1001",
                "10.0.0.1:5060;ob",
            ),
            ("sip:k7q2x-1001@h", "k7q2x-1001", "h"),
            ("sip:k7q2x-1001@", "k7q2x-1001", ""),
            ("sip:k7q2x-10011@h", "k7q2x-1001", "sip:k7q2x-10011@h"),
            ("sips:k7q2x-1001@h", "k7q2x-1001", "sips:k7q2x-1001@h"),
            ("sip:other@h", "k7q2x-1001", "sip:other@h"),
            ("sip:@h", "", "sip:@h"),
            ("sip:h", "", "sip:h"),
        ] {
            let mut w = Writer(Vec::new());
            w.contact(uri, user);
            assert_eq!(&w.0[2..], tail.as_bytes(), "{uri}");
            let mut r = Reader(&w.0);
            let read = r.contact(user);
            assert_eq!(read.as_deref(), Some(uri), "{uri}");
            // One allocation of its final length, none spare.
            assert_eq!(read.map(|s| s.capacity()), Some(uri.len()), "{uri}");
            assert!(r.0.is_empty());
        }
        assert_eq!(Reader(&[7, 1]).contact("u"), None, "no such form");
        // A tag without its tail (no string follows, or an absent one): not a contact.
        assert_eq!(Reader(&[1]).contact("u"), None, "cut short");
        assert_eq!(Reader(&[1, 0]).contact("u"), None, "no tail");
    }

    #[test]
    fn sources_round_trip_on_every_transport_and_family() {
        for text in [
            "udp:192.0.2.1:5060",
            "tcp:127.0.0.1:40000",
            "tls:10.1.2.3:5061",
            "ws:[2001:db8::1]:80",
            "wss:[fe80::1%7]:443",
        ] {
            let source: FlowSource = text.parse().unwrap();
            let mut w = Writer(Vec::new());
            w.source(source);
            assert_eq!(Reader(&w.0).source(), Some(source), "{text}");
            assert_eq!(w.0.len(), if source.addr.is_ipv4() { 7 } else { 20 });
        }
    }
}
