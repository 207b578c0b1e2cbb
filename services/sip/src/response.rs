//! Building responses to requests (RFC 3261 §8.2.6): pure, bytes out.

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
};

use crate::message::Message;

/// What the transport knows about where a request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// Source IP.
    pub ip: IpAddr,
    /// Source port.
    pub port: u16,
}

impl From<SocketAddr> for Source {
    fn from(a: SocketAddr) -> Self {
        Source {
            ip: a.ip(),
            port: a.port(),
        }
    }
}

/// The default reason phrase of a status code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        489 => "Bad Event",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes the topmost Via value with `received` added (when the sent-by host is not the
/// source IP) and an empty `rport` filled (RFC 3581); the Vias after it are copied.
fn stamp_via(out: &mut String, via: &str, sent_by: &str, src: &Source) {
    let mut items = crate::header::split_list(via);
    let Some(first) = items.next() else {
        out.push_str(via);
        return;
    };
    let sent_by = sent_by
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(sent_by);
    let mut has_received = false;
    for (i, part) in crate::scan::split(first, b';').enumerate() {
        let p = part.trim_ascii();
        if i > 0 {
            out.push(';');
        }
        let name = crate::scan::split(p, b'=')
            .next()
            .unwrap_or("")
            .trim_ascii();
        if i > 0 && name.eq_ignore_ascii_case("rport") && !crate::scan::contains(p, b'=') {
            out.push_str("rport=");
            push_number(out, src.port.into());
        } else {
            has_received |= i > 0 && name.eq_ignore_ascii_case("received");
            out.push_str(p);
        }
    }
    if !has_received && !is_address(sent_by, src.ip) {
        out.push_str(";received=");
        // IPv6 without brackets (RFC 3261 §18.2.1 received = IPv4address / IPv6address).
        match src.ip {
            IpAddr::V4(v4) => push_ipv4(out, v4),
            IpAddr::V6(v6) => {
                let _ = write!(out, "{v6}");
            }
        }
    }
    for item in items {
        out.push_str(", ");
        out.push_str(item);
    }
}

/// A response to `req`: its Vias (the top one stamped), From, To (with `to_tag` added when
/// it has none and the code is above 100), Call-ID and CSeq, then `extra` headers, then the body.
pub fn build(
    req: &Message,
    src: &Source,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, String)],
    body: &[u8],
) -> Vec<u8> {
    let extra = |out: &mut String| {
        for (name, value) in extra {
            header_line(out, name, value);
        }
    };
    build_with(req, src, code, reason, to_tag, extra, body)
}

/// [`build`] with the extra header lines written by `extra` (each `Name: value\r\n`)
/// straight into the response: the answers sent for every registration (401, 200) add
/// their headers without a copy of each value.
pub fn build_with(
    req: &Message,
    src: &Source,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: impl FnOnce(&mut String),
    body: &[u8],
) -> Vec<u8> {
    // Built with push_str, not format!: this runs for every answer the edge sends.
    let mut out = String::with_capacity(1024);
    out.push_str("SIP/2.0 ");
    push_number(&mut out, code.into());
    out.push(' ');
    out.push_str(if reason.is_empty() {
        reason_phrase(code)
    } else {
        reason
    });
    out.push_str("\r\n");
    let mut first_via = true;
    for v in req.all("via") {
        out.push_str("Via: ");
        if first_via {
            let sent_by = req.top_via().map_or("", |t| t.host);
            stamp_via(&mut out, v, sent_by, src);
        } else {
            out.push_str(v);
        }
        out.push_str("\r\n");
        first_via = false;
    }
    if let Some(f) = req.get("from") {
        header_line(&mut out, "From", f);
    }
    if let Some(t) = req.get("to") {
        out.push_str("To: ");
        out.push_str(t);
        let tagged = has_tag(t);
        if !(tagged || code == 100 || to_tag.is_empty()) {
            out.push_str(";tag=");
            out.push_str(to_tag);
        }
        out.push_str("\r\n");
    }
    if let Some(v) = req.get("call-id") {
        header_line(&mut out, "Call-ID", v);
    }
    if let Some(v) = req.get("cseq") {
        header_line(&mut out, "CSeq", v);
    }
    extra(&mut out);
    out.push_str("Content-Length: ");
    push_number(&mut out, body.len() as u64);
    out.push_str("\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Whether a To value carries a tag. The parameters of a name-addr start after its `>`
/// and those of a bare addr-spec at its first `;`; only a quoted display name (which may
/// hold either) needs the full parser. An unparsable To counts as tagged (nothing added).
fn has_tag(to: &str) -> bool {
    use crate::{header::Params, scan};
    if scan::contains(to, b'"') {
        return crate::header::parse_name_addr(to)
            .map(|a| a.params.has("tag"))
            .unwrap_or(true);
    }
    let params = match scan::find(to, b'<') {
        Some(_) => scan::split_once(to, b'>').map_or("", |(_, p)| p),
        None => scan::split_once(to, b';').map_or("", |(_, p)| p),
    };
    let params = params.trim_ascii();
    let params = params.strip_prefix(';').unwrap_or(params);
    Params::checked(params).has("tag")
}

/// Writes `Name: value\r\n`.
pub fn header_line(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    out.push_str(value);
    out.push_str("\r\n");
}

/// Whether `host` (a Via's sent-by host, unbracketed) is the address `ip`. An IPv4 address
/// has one text the parser accepts (no leading zeros), so comparing with it is the same as
/// parsing `host`, without the parser.
fn is_address(host: &str, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            // Compared octet by octet with the dotted parts, without writing the address.
            let mut parts = crate::scan::split(host, b'.');
            v4.octets().into_iter().all(|o| {
                let mut buf = [0u8; 20];
                parts
                    .next()
                    .is_some_and(|p| p.as_bytes() == decimal(o.into(), &mut buf))
            }) && parts.next().is_none()
        }
        IpAddr::V6(_) => host.parse::<IpAddr>().ok() == Some(ip),
    }
}

/// A socket address as `Display` writes it (`ip:port`, `[ip6]:port`), IPv4 without the
/// formatting machinery.
pub fn push_socket_addr(out: &mut String, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            push_ipv4(out, *v4.ip());
            out.push(':');
            push_number(out, v4.port().into());
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// An IPv4 address in dotted-quad text, without the formatting machinery.
fn push_ipv4(out: &mut String, ip: std::net::Ipv4Addr) {
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_number(out, o.into());
    }
}

/// A number as text without the formatting machinery.
pub fn push_number(out: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    // Only ASCII digits are written.
    out.push_str(std::str::from_utf8(decimal(n, &mut buf)).unwrap_or_default());
}

/// `n` in decimal digits, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(via: &str, to: &str) -> Message {
        let text = format!(
            "REGISTER sip:dialtone SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2\r\nTo: {to}\r\nFrom: <sip:a@dialtone>;tag=f1\r\nCall-ID: c1\r\nCSeq: 7 REGISTER\r\nContent-Length: 0\r\n\r\n"
        );
        crate::message::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn to_tags_are_found_as_the_parser_finds_them() {
        let cases = [
            "<sip:a@dialtone>",
            "<sip:a@dialtone>;tag=x",
            "<sip:a@dialtone>;TAG=x",
            "<sip:a@dialtone;tag=inuri>",
            "sip:a@dialtone;tag=x",
            "sip:a@dialtone",
            "Alice <sip:a@dialtone> ;tag=y",
            "\"A>;tag=q\" <sip:a@dialtone>",
            "\"A>;tag=q\" <sip:a@dialtone>;tag=z",
            "<sip:a@dialtone>;tagx=1",
            "<sip:a@dialtone>;x=1;tag",
        ];
        for to in cases {
            let want = crate::header::parse_name_addr(to)
                .map(|a| a.params.has("tag"))
                .unwrap_or(true);
            assert_eq!(has_tag(to), want, "{to}");
        }
        for a in [
            "127.0.0.1:5060",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[2001:db8::1]:5061",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let mut out = String::new();
            push_socket_addr(&mut out, a);
            assert_eq!(out, a.to_string());
        }
        for (host, ip, want) in [
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.2", "127.0.0.1", false),
            ("10.0.0.1", "10.0.0.10", false),
            ("10.0.0.1.5", "10.0.0.1", false),
            ("10.0.0", "10.0.0.0", false),
            ("010.0.0.1", "10.0.0.1", false),
            ("0.0.0.0", "0.0.0.0", true),
            ("255.255.255.255", "255.255.255.255", true),
            ("host.example", "192.0.2.1", false),
            ("2001:db8::1", "2001:db8::1", true),
            ("2001:DB8:0::1", "2001:db8::1", true),
        ] {
            assert_eq!(is_address(host, ip.parse().unwrap()), want, "{host}");
        }
    }

    #[test]
    fn responses_copy_and_stamp() {
        let src = Source {
            ip: [198, 51, 100, 7].into(),
            port: 40000,
        };
        let cases = [
            (
                "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport",
                "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport=40000;received=198.51.100.7\r\n",
            ),
            (
                "SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bK1",
                "Via: SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bK1\r\n",
            ),
            (
                "SIP/2.0/UDP h;branch=z9hG4bK1;received=1.2.3.4",
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1;received=1.2.3.4\r\n",
            ),
        ];
        for (via, want) in cases {
            let r = String::from_utf8(build(
                &request(via, "<sip:a@dialtone>"),
                &src,
                200,
                "",
                "t9",
                &[],
                b"",
            ))
            .unwrap();
            assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
            assert!(r.contains(want), "{via}: {r}");
            assert!(
                r.contains("Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2\r\n"),
                "lower vias untouched"
            );
        }
        let r = String::from_utf8(build(
            &request("SIP/2.0/UDP h;branch=z9hG4bK1", "<sip:a@dialtone>"),
            &src,
            423,
            "",
            "t9",
            &[("Min-Expires", "60".into())],
            b"",
        ))
        .unwrap();
        assert!(
            r.contains("To: <sip:a@dialtone>;tag=t9\r\n")
                && r.contains("Min-Expires: 60\r\n")
                && r.contains("CSeq: 7 REGISTER\r\n"),
            "{r}"
        );
        assert!(r.ends_with("Content-Length: 0\r\n\r\n"));
        let r = String::from_utf8(build(
            &request("SIP/2.0/UDP h;branch=z9hG4bK1", "<sip:a@dialtone>;tag=x"),
            &src,
            200,
            "",
            "t9",
            &[],
            b"",
        ))
        .unwrap();
        assert!(
            r.contains("To: <sip:a@dialtone>;tag=x\r\n"),
            "an existing tag is kept"
        );
        // the response parses back
        let m = crate::message::parse(r.as_bytes()).unwrap();
        assert!(m.is_response() && crate::verdict::check(&m) == crate::verdict::Verdict::Accept);
    }
}
