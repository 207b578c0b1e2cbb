//! Building responses to requests (RFC 3261 §8.2.6): pure, bytes out.

use crate::message::Message;

/// What the transport knows about where a request came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Source IP as text (IPv6 without brackets).
    pub ip: String,
    /// Source port.
    pub port: u16,
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
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        489 => "Bad Event",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        _ => "Unknown",
    }
}

/// Adds `received` (when the sent-by host is not the source IP) and fills an empty `rport`
/// (RFC 3581) on the topmost Via value.
fn stamp_via(via: &str, src: &Source) -> String {
    let (first, rest) = match crate::header::split_list(via).as_slice() {
        [first, rest @ ..] => (first.to_string(), rest.join(", ")),
        [] => return via.to_owned(),
    };
    let mut out = String::new();
    let sent_by_host = crate::header::parse_via(&first)
        .map(|v| v.host)
        .unwrap_or_default();
    let mut has_received = false;
    for (i, part) in first.split(';').enumerate() {
        let p = part.trim();
        if i > 0 {
            out.push(';');
        }
        let name = p
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if i > 0 && name == "rport" && !p.contains('=') {
            out.push_str(&format!("rport={}", src.port));
        } else {
            has_received |= i > 0 && name == "received";
            out.push_str(p);
        }
    }
    let src_host = if src.ip.contains(':') {
        format!("[{}]", src.ip)
    } else {
        src.ip.clone()
    };
    if !has_received && sent_by_host != src_host {
        out.push_str(&format!(";received={}", src.ip));
    }
    if rest.is_empty() {
        out
    } else {
        format!("{out}, {rest}")
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
    let mut out = format!(
        "SIP/2.0 {code} {}\r\n",
        if reason.is_empty() {
            reason_phrase(code)
        } else {
            reason
        }
    );
    let mut first_via = true;
    for v in req.all("via") {
        let v = if first_via {
            stamp_via(v, src)
        } else {
            v.to_owned()
        };
        first_via = false;
        out.push_str(&format!("Via: {v}\r\n"));
    }
    if let Some(f) = req.get("from") {
        out.push_str(&format!("From: {f}\r\n"));
    }
    if let Some(t) = req.get("to") {
        let tagged = crate::header::parse_name_addr(t)
            .map(|a| a.params.iter().any(|(n, _)| n == "tag"))
            .unwrap_or(true);
        if tagged || code == 100 || to_tag.is_empty() {
            out.push_str(&format!("To: {t}\r\n"));
        } else {
            out.push_str(&format!("To: {t};tag={to_tag}\r\n"));
        }
    }
    for h in ["call-id", "cseq"] {
        if let Some(v) = req.get(h) {
            let name = if h == "call-id" { "Call-ID" } else { "CSeq" };
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
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
    fn responses_copy_and_stamp() {
        let src = Source {
            ip: "198.51.100.7".into(),
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
