//! Record-Route and loose routing for a proxy that must reach phones over their own flows
//! (RFC 3261 §16.4, §16.6 step 4; flow tokens after RFC 5626 §5.3). Pure.
//!
//! The edge record-routes every dialog it proxies. The user part of its Record-Route URI
//! is a flow token: the two flows of the hop it stood on (where the dialog-creating
//! request came from, where it went), signed with the group's key over them, the Call-ID
//! and the address the entry itself names (so no one can point a signed entry elsewhere,
//! and an edge relays only to entries the group wrote). An
//! in-dialog request that comes back with that URI as its top Route is checked against the
//! token (it must be of this dialog, and come over one of the two flows), and the flow it
//! did not come over is where it goes when no Route remains: a phone behind NAT or on a
//! TCP, TLS or WebSocket connection is reached over its flow, never at the Contact it
//! wrote. Nothing but a dialog's own participants can use a Route the edge wrote.
//!
//! A token may also carry a CSeq shift: when the edge answered a carrier's digest challenge
//! to the dialog-creating INVITE itself, it re-sent that INVITE with the next CSeq number,
//! so the caller's later requests reach the callee that much higher (and their answers
//! come back that much lower). The shift rides in the signed token, so the edge keeps no
//! dialog state for it either.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::{
    digest::NonceKey,
    header::{NameAddr, parse_name_addr, split_list},
    message::Message,
    transport::{FlowSource, Transport},
};

/// Purpose of the token's MAC (no MAC made for another purpose passes for it).
const PURPOSE: &[u8] = b"record-route";

/// The two flows of one proxy hop of a dialog, signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowToken {
    /// Where the dialog-creating request came from.
    pub inbound: FlowSource,
    /// Where it was sent.
    pub outbound: FlowSource,
    /// How much higher the CSeq numbers of requests from `inbound` are on `outbound`'s side
    /// (0 but for a dialog whose INVITE the edge re-sent with credentials; at most 127).
    pub cseq_shift: u8,
    /// `outbound` is a server the edge connected to (a carrier's TCP or TLS target): its
    /// requests may also come over another connection from its address.
    pub outbound_server: bool,
}

/// One flow as bytes: transport, IPv6 (or mapped IPv4) address, port.
fn flow_bytes(f: FlowSource) -> [u8; 19] {
    let ip = match f.addr.ip() {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    let mut out = [0; 19];
    out[0] = f.transport.index() as u8;
    out[1..17].copy_from_slice(&ip.octets());
    out[17..].copy_from_slice(&f.addr.port().to_be_bytes());
    out
}

fn flow_of(b: &[u8]) -> Option<FlowSource> {
    let transport = *Transport::ALL.get(usize::from(*b.first()?))?;
    let octets: [u8; 16] = b.get(1..17)?.try_into().ok()?;
    let v6 = Ipv6Addr::from(octets);
    let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
    let port = u16::from_be_bytes(b.get(17..19)?.try_into().ok()?);
    Some(FlowSource {
        transport,
        addr: SocketAddr::new(ip, port),
    })
}

/// What a token's MAC covers: an unshifted token's parts are those tokens had before
/// shifts existed, so dialogs set up before an upgrade keep working.
fn signed<'a>(
    a: &'a [u8],
    b: &'a [u8],
    shift: &'a [u8],
    call_id: &'a str,
    at: &'a [u8],
) -> Vec<&'a [u8]> {
    if shift.is_empty() {
        vec![a, b, call_id.as_bytes(), at]
    } else {
        vec![a, b, shift, call_id.as_bytes(), at]
    }
}

impl FlowToken {
    /// The token as the user part of a Route entry naming `at` (hex: the flows, the CSeq
    /// shift when there is one, then the MAC over them, `call_id` and `at`).
    pub fn encode(&self, key: &NonceKey, call_id: &str, at: FlowSource) -> String {
        let (a, b) = (flow_bytes(self.inbound), flow_bytes(self.outbound));
        let extra = [(self.cseq_shift & 0x7f) | if self.outbound_server { 0x80 } else { 0 }];
        let shift: &[u8] = if extra[0] == 0 { &[] } else { &extra };
        let at = flow_bytes(at);
        let mac = key.sign(PURPOSE, &signed(&a, &b, shift, call_id, &at));
        let mut raw = Vec::with_capacity(a.len() + b.len() + shift.len() + mac.len());
        raw.extend_from_slice(&a);
        raw.extend_from_slice(&b);
        raw.extend_from_slice(shift);
        raw.extend_from_slice(&mac);
        hex::encode(raw)
    }

    /// The token `user` encodes, if the group wrote it for this Call-ID in an entry naming
    /// `at`.
    pub fn decode(user: &str, key: &NonceKey, call_id: &str, at: FlowSource) -> Option<Self> {
        // 19 + 19 (+ 1) + 16 bytes: anything longer or shorter is not ours (and costs
        // nothing).
        let shifted = match user.len() {
            108 => false,
            110 => true,
            _ => return None,
        };
        let raw = hex::decode(user).ok()?;
        let (a, rest) = raw.split_at(19);
        let (b, rest) = rest.split_at(19);
        let (shift, mac) = rest.split_at(usize::from(shifted));
        let at = flow_bytes(at);
        if !key.verify_sign(PURPOSE, &signed(a, b, shift, call_id, &at), mac) {
            return None;
        }
        Some(FlowToken {
            inbound: flow_of(a)?,
            outbound: flow_of(b)?,
            cseq_shift: shift.first().map_or(0, |b| b & 0x7f),
            outbound_server: shift.first().is_some_and(|b| b & 0x80 != 0),
        })
    }

    /// Where a request that came over `from` goes next when no Route remains: the other
    /// flow. None when `from` is neither (not a participant of this hop). A server's
    /// requests may come over any connection of the same transport from its address.
    pub fn onward(&self, from: FlowSource) -> Option<FlowSource> {
        let server_side = self.outbound_server
            && from.transport == self.outbound.transport
            && from.addr.ip() == self.outbound.addr.ip();
        if from == self.inbound {
            Some(self.outbound)
        } else if from == self.outbound || server_side {
            Some(self.inbound)
        } else {
            None
        }
    }
}

/// A Record-Route value for the listener `local` (`ip:port`, IPv6 in brackets) of
/// `transport`, carrying `token`.
pub fn record_route(local: &str, transport: Transport, token: &str) -> String {
    format!("<sip:{token}@{local};transport={};lr>", transport.name())
}

/// The Route entries of a request, top first, each with its text.
pub fn routes(m: &Message) -> impl Iterator<Item = (&str, Option<NameAddr<'_>>)> {
    m.all("route")
        .flat_map(split_list)
        .map(|item| (item, parse_name_addr(item).ok()))
}

/// Where a Route entry points (its address and transport) and its user part: the token,
/// when the group wrote it. None for an entry naming no IP address (a host name).
pub fn entry<'a>(a: &NameAddr<'a>) -> Option<(FlowSource, Option<&'a str>)> {
    let (addr, transport) = next_hop(a)?;
    Some((FlowSource { transport, addr }, a.uri.user))
}

/// The host:port a Route entry names, and its transport (UDP when it names none).
pub fn next_hop(a: &NameAddr<'_>) -> Option<(SocketAddr, Transport)> {
    let host = a.uri.host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    let port = a
        .uri
        .port
        .unwrap_or(if a.uri.scheme == "sips" { 5061 } else { 5060 });
    let transport = match a.uri.params.get("transport").flatten() {
        Some(t) => Transport::from_name(&t.to_ascii_lowercase())?,
        None if a.uri.scheme == "sips" => Transport::Tls,
        None => Transport::Udp,
    };
    Some((SocketAddr::new(ip, port), transport))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> NonceKey {
        NonceKey::new([b; 32])
    }

    fn flow(s: &str) -> FlowSource {
        s.parse().unwrap()
    }

    #[test]
    fn tokens_carry_both_flows_for_their_dialog_only() {
        let t = FlowToken {
            inbound: flow("udp:192.0.2.1:5060"),
            outbound: flow("tcp:[2001:db8::7]:40001"),
            cseq_shift: 0,
            outbound_server: false,
        };
        let at = flow("udp:127.0.0.1:5060");
        let text = t.encode(&key(1), "call-1", at);
        assert_eq!(FlowToken::decode(&text, &key(1), "call-1", at), Some(t));
        // Another dialog, another group's key, another address for the entry, a changed
        // byte, a cut token: none.
        assert_eq!(FlowToken::decode(&text, &key(1), "call-2", at), None);
        assert_eq!(FlowToken::decode(&text, &key(2), "call-1", at), None);
        let elsewhere = flow("udp:203.0.113.7:5060");
        assert_eq!(FlowToken::decode(&text, &key(1), "call-1", elsewhere), None);
        let tcp = flow("tcp:127.0.0.1:5060");
        assert_eq!(FlowToken::decode(&text, &key(1), "call-1", tcp), None);
        let mut flipped = text.clone().into_bytes();
        flipped[3] = if flipped[3] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(FlowToken::decode(&flipped, &key(1), "call-1", at), None);
        assert_eq!(FlowToken::decode(&text[2..], &key(1), "call-1", at), None);
        assert_eq!(FlowToken::decode("alice", &key(1), "call-1", at), None);
        // A shift is carried, and signed: the shift byte changed, or cut out, is refused.
        let shifted = FlowToken { cseq_shift: 1, ..t };
        let text = shifted.encode(&key(1), "call-1", at);
        assert_eq!(text.len(), 110);
        assert_eq!(
            FlowToken::decode(&text, &key(1), "call-1", at),
            Some(shifted)
        );
        let mut bumped = text.clone().into_bytes();
        bumped[77] = b'2';
        let bumped = String::from_utf8(bumped).unwrap();
        assert_eq!(FlowToken::decode(&bumped, &key(1), "call-1", at), None);
        let cut = format!("{}{}", &text[..76], &text[78..]);
        assert_eq!(FlowToken::decode(&cut, &key(1), "call-1", at), None);
        // The server flag rides in the same byte, with or without a shift.
        for shift in [0, 2] {
            let server = FlowToken {
                cseq_shift: shift,
                outbound_server: true,
                ..t
            };
            let text = server.encode(&key(1), "call-1", at);
            assert_eq!(
                FlowToken::decode(&text, &key(1), "call-1", at),
                Some(server)
            );
        }
    }

    #[test]
    fn a_request_goes_on_over_the_flow_it_did_not_come_over() {
        let (a, b) = (flow("udp:192.0.2.1:5060"), flow("ws:192.0.2.9:7000"));
        let t = FlowToken {
            inbound: a,
            outbound: b,
            cseq_shift: 0,
            outbound_server: false,
        };
        assert_eq!(t.onward(a), Some(b));
        assert_eq!(t.onward(b), Some(a));
        assert_eq!(
            t.onward(flow("udp:192.0.2.1:5061")),
            None,
            "not a participant"
        );
        assert_eq!(
            t.onward(flow("tcp:192.0.2.1:5060")),
            None,
            "same address, other flow"
        );
        // A carrier the edge connected to may send over a connection of its own.
        let carrier = flow("tcp:198.51.100.7:5060");
        let t = FlowToken {
            inbound: a,
            outbound: carrier,
            cseq_shift: 0,
            outbound_server: true,
        };
        assert_eq!(t.onward(flow("tcp:198.51.100.7:40001")), Some(a));
        assert_eq!(t.onward(carrier), Some(a));
        assert_eq!(t.onward(a), Some(carrier));
        assert_eq!(
            t.onward(flow("tls:198.51.100.7:40001")),
            None,
            "other transport"
        );
        assert_eq!(
            t.onward(flow("tcp:198.51.100.8:5060")),
            None,
            "other address"
        );
    }

    #[test]
    fn route_entries_name_their_next_hop() {
        let cases = [
            (
                "<sip:t@192.0.2.1:5070;transport=udp;lr>",
                Some(("192.0.2.1:5070", Transport::Udp)),
            ),
            (
                "<sip:192.0.2.1;lr>",
                Some(("192.0.2.1:5060", Transport::Udp)),
            ),
            (
                "<sip:[2001:db8::1]:5080;transport=TCP;lr>",
                Some(("[2001:db8::1]:5080", Transport::Tcp)),
            ),
            (
                "<sips:192.0.2.1;lr>",
                Some(("192.0.2.1:5061", Transport::Tls)),
            ),
            ("<sip:proxy.example.com;lr>", None),
            ("<sip:192.0.2.1;transport=sctp;lr>", None),
        ];
        for (text, want) in cases {
            let a = parse_name_addr(text).unwrap();
            let want = want.map(|(addr, t)| (addr.parse::<SocketAddr>().unwrap(), t));
            assert_eq!(next_hop(&a), want, "{text}");
        }
        let rr = record_route("127.0.0.1:5060", Transport::Tcp, "abc");
        assert_eq!(rr, "<sip:abc@127.0.0.1:5060;transport=tcp;lr>");
        assert_eq!(
            next_hop(&parse_name_addr(&rr).unwrap()),
            Some(("127.0.0.1:5060".parse().unwrap(), Transport::Tcp))
        );
    }
}
