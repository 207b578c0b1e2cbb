//! What a proxy writes (RFC 3261 §16): a request forwarded one hop (its own Via on top,
//! Max-Forwards decremented, the Request-URI retargeted), a response sent back one hop (the
//! top Via removed), and the CANCEL and ACK a stateful proxy sends downstream. Pure: bytes
//! out from parsed messages, no IO.

use crate::message::{Message, StartLine};

/// Why a request cannot be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// Max-Forwards reached 0 (answer 483).
    #[error("too many hops")]
    TooManyHops,
    /// Not a request.
    #[error("not a request")]
    NotARequest,
}

/// A header's usual spelling, for what the edge writes (names compare case-insensitively,
/// but people read traces).
pub fn display_name(canonical: &str) -> String {
    match canonical {
        "call-id" => "Call-ID".into(),
        "cseq" => "CSeq".into(),
        "www-authenticate" => "WWW-Authenticate".into(),
        "mime-version" => "MIME-Version".into(),
        _ => canonical
            .split('-')
            .map(|part| {
                let mut c = part.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

fn push_header(out: &mut String, name: &str, value: &str) {
    out.push_str(&display_name(name));
    out.push_str(": ");
    out.push_str(value);
    out.push_str("\r\n");
}

fn finish(mut out: String, body: &[u8]) -> Vec<u8> {
    out.push_str("Content-Length: ");
    out.push_str(&body.len().to_string());
    out.push_str("\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// What a proxy changes in the route of a request it forwards.
#[derive(Clone, Copy, Debug, Default)]
pub struct Routing<'a> {
    /// This proxy's Record-Route values, added above those the request carries (RFC 3261
    /// §16.6 step 4).
    pub record_route: &'a [String],
    /// Route entries removed from the top: this proxy's own (§16.4).
    pub pop_routes: usize,
    /// Added to the CSeq number, and to the CSeq number a PRACK's `RAck` acknowledges (a
    /// request from the caller of a dialog whose INVITE this proxy re-sent with the next
    /// number, to answer a digest challenge: see `route::FlowToken::cseq_shift`).
    pub cseq_shift: u32,
    /// Taken from the `id` of an `Event: refer` (a NOTIFY towards that caller about its
    /// REFER, whose CSeq number the callee knows shifted, RFC 3515 §2.4.6).
    pub refer_id_back: u32,
}

/// An `RAck` value (`RSEQ CSEQ METHOD`, RFC 3262 §7.2) with its CSeq number moved by `by`.
pub fn shifted_rack(value: &str, by: i64) -> Option<String> {
    let mut words = value.split_ascii_whitespace();
    let (Some(rseq), Some(cseq), Some(method), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return None;
    };
    let moved = shifted_cseq(&format!("{cseq} {method}"), by)?;
    Some(format!("{rseq} {moved}"))
}

/// An `Event: refer;id=N` value with its id moved by `by` (none for any other event, or an
/// id that is not a CSeq number).
pub fn shifted_refer_event(value: &str, by: i64) -> Option<String> {
    if !crate::header::event_package(value).eq_ignore_ascii_case("refer") {
        return None;
    }
    let params = value.split(';').skip(1);
    let mut out = value.split(';').next()?.trim().to_owned();
    let mut moved = false;
    for p in params {
        let p = p.trim();
        match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("id") => {
                let n: i64 = v.trim().parse().ok()?;
                let n = n + by;
                if !(0..1 << 31).contains(&n) {
                    return None;
                }
                out.push_str(&format!(";id={n}"));
                moved = true;
            }
            _ => {
                out.push(';');
                out.push_str(p);
            }
        }
    }
    moved.then_some(out)
}

/// A CSeq value with its number moved by `by` (none when it does not parse or would leave
/// 0..2^31, RFC 3261 §8.1.1.5).
pub fn shifted_cseq(value: &str, by: i64) -> Option<String> {
    let (number, method) = crate::header::parse_cseq(value).ok()?;
    let n = i64::from(number) + by;
    (0..1 << 31).contains(&n).then(|| format!("{n} {method}"))
}

/// `req` forwarded one hop: Request-URI `uri` (none: unchanged), `via` (a whole Via value
/// with its branch) on top, Max-Forwards one less (70 when absent, RFC 3261 §16.6), the
/// headers named in `strip` (canonical names) removed, `extra` headers added, every other
/// header and the body as received.
pub fn forward_request(
    req: &Message,
    uri: Option<&str>,
    via: &str,
    strip: &[&str],
    extra: &[(&str, &str)],
) -> Result<Vec<u8>, ForwardError> {
    forward_routed(req, uri, via, strip, extra, Routing::default())
}

/// [`forward_request`], with the route changed as `routing` says.
pub fn forward_routed(
    req: &Message,
    uri: Option<&str>,
    via: &str,
    strip: &[&str],
    extra: &[(&str, &str)],
    routing: Routing<'_>,
) -> Result<Vec<u8>, ForwardError> {
    let StartLine::Request {
        method,
        uri: old_uri,
        ..
    } = &req.start
    else {
        return Err(ForwardError::NotARequest);
    };
    let max_forwards = match req.get("max-forwards").map(|v| v.trim().parse::<u32>()) {
        None => 70,
        Some(Ok(0)) => return Err(ForwardError::TooManyHops),
        Some(Ok(n)) => n - 1,
        // judge() already refused malformed values; be safe anyway.
        Some(Err(_)) => 69,
    };
    let mut out = String::with_capacity(1024);
    out.push_str(method);
    out.push(' ');
    out.push_str(uri.unwrap_or(old_uri));
    out.push_str(" SIP/2.0\r\n");
    push_header(&mut out, "via", via);
    let mut record_route = routing.record_route;
    let mut to_pop = routing.pop_routes;
    for (name, value) in req.iter() {
        match name {
            "max-forwards" | "content-length" => {}
            _ if strip.contains(&name) => {}
            "record-route" if !record_route.is_empty() => {
                for rr in std::mem::take(&mut record_route) {
                    push_header(&mut out, "record-route", rr);
                }
                push_header(&mut out, name, value);
            }
            "cseq" if routing.cseq_shift > 0 => {
                let moved = shifted_cseq(value, i64::from(routing.cseq_shift));
                push_header(&mut out, name, moved.as_deref().unwrap_or(value));
            }
            "rack" if routing.cseq_shift > 0 => {
                let moved = shifted_rack(value, i64::from(routing.cseq_shift));
                push_header(&mut out, name, moved.as_deref().unwrap_or(value));
            }
            "event" if routing.refer_id_back > 0 => {
                let moved = shifted_refer_event(value, -i64::from(routing.refer_id_back));
                push_header(&mut out, name, moved.as_deref().unwrap_or(value));
            }
            "route" if to_pop > 0 => {
                let items: Vec<&str> = crate::header::split_list(value).collect();
                let popped = to_pop.min(items.len());
                to_pop -= popped;
                if popped < items.len() {
                    push_header(&mut out, name, &items[popped..].join(", "));
                }
            }
            _ => push_header(&mut out, name, value),
        }
    }
    for rr in record_route {
        push_header(&mut out, "record-route", rr);
    }
    push_header(&mut out, "max-forwards", &max_forwards.to_string());
    for (name, value) in extra {
        push_header(&mut out, &name.to_ascii_lowercase(), value);
    }
    Ok(finish(out, &req.body))
}

/// `resp` sent back one hop: its top Via value removed (the rest of a comma-joined Via
/// header kept). None when no Via would remain (the response was for this proxy itself).
pub fn forward_response(resp: &Message) -> Option<Vec<u8>> {
    forward_response_shifted(resp, 0)
}

/// [`forward_response`] for a request this proxy forwarded with its CSeq number `shift`
/// higher: the answer goes back with the number the request came with.
pub fn forward_response_shifted(resp: &Message, shift: u32) -> Option<Vec<u8>> {
    forward_response_with(resp, shift, &[])
}

/// [`forward_response_shifted`] without the headers named in `strip` (canonical names).
pub fn forward_response_with(resp: &Message, shift: u32, strip: &[&str]) -> Option<Vec<u8>> {
    let StartLine::Response {
        version,
        code,
        reason,
    } = &resp.start
    else {
        return None;
    };
    let mut out = String::with_capacity(1024);
    out.push_str(version);
    out.push(' ');
    out.push_str(&code.to_string());
    out.push(' ');
    out.push_str(reason);
    out.push_str("\r\n");
    let mut removed = false;
    let mut vias_left = 0;
    for (name, value) in resp.iter() {
        if name == "content-length" || strip.contains(&name) {
            continue;
        }
        if name == "via" && !removed {
            removed = true;
            let rest: Vec<&str> = crate::header::split_list(value).skip(1).collect();
            if !rest.is_empty() {
                vias_left += rest.len();
                push_header(&mut out, "via", &rest.join(", "));
            }
            continue;
        }
        if name == "via" {
            vias_left += 1;
        }
        if name == "cseq" && shift > 0 {
            let back = shifted_cseq(value, -i64::from(shift));
            push_header(&mut out, name, back.as_deref().unwrap_or(value));
            continue;
        }
        push_header(&mut out, name, value);
    }
    (vias_left > 0).then(|| finish(out, &resp.body))
}

/// The CANCEL for an INVITE this proxy forwarded as `sent` (RFC 3261 §9.1: same
/// Request-URI, top Via, From, To, Call-ID and CSeq number).
pub fn cancel_for(sent: &Message) -> Option<Vec<u8>> {
    hop_request(sent, "CANCEL", None, None)
}

/// [`cancel_for`] with a `Reason` header (RFC 3326) saying why, such as
/// `SIP;cause=200;text="Call completed elsewhere"` when another branch answered. A reason
/// longer than 256 bytes is left out.
pub fn cancel_because(sent: &Message, reason: Option<&str>) -> Option<Vec<u8>> {
    let fits = |r: &&str| r.len() <= 256 && !r.bytes().any(|b| b.is_ascii_control());
    hop_request(sent, "CANCEL", None, reason.filter(fits))
}

/// The ACK for a non-2xx final response `resp` to an INVITE this proxy forwarded as `sent`
/// (RFC 3261 §17.1.1.3: the To of the response, with its tag).
pub fn ack_for(sent: &Message, resp: &Message) -> Option<Vec<u8>> {
    hop_request(sent, "ACK", resp.get("to"), None)
}

fn hop_request(
    sent: &Message,
    method: &str,
    to: Option<&str>,
    reason: Option<&str>,
) -> Option<Vec<u8>> {
    let StartLine::Request { uri, .. } = &sent.start else {
        return None;
    };
    let top_via = crate::header::split_list(sent.get("via")?).next()?;
    let cseq = sent.get("cseq")?.split_whitespace().next()?;
    let mut out = format!("{method} {uri} SIP/2.0\r\n");
    push_header(&mut out, "via", top_via);
    push_header(&mut out, "max-forwards", "70");
    push_header(&mut out, "from", sent.get("from")?);
    push_header(&mut out, "to", to.or(sent.get("to"))?);
    push_header(&mut out, "call-id", sent.get("call-id")?);
    push_header(&mut out, "cseq", &format!("{cseq} {method}"));
    for route in sent.all("route") {
        push_header(&mut out, "route", route);
    }
    if let Some(reason) = reason {
        push_header(&mut out, "reason", reason);
    }
    Some(finish(out, b""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::parse;

    const INVITE: &str = "INVITE sip:u-1001@dialtone SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKcaller\r\n\
        Max-Forwards: 7\r\n\
        From: <sip:caller@example.com>;tag=c1\r\n\
        To: <sip:u-1001@dialtone>\r\n\
        Call-ID: call-1\r\n\
        CSeq: 4 INVITE\r\n\
        Contact: <sip:caller@10.0.0.9:5070>\r\n\
        Proxy-Authorization: Digest username=\"caller\"\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    fn via(branch: &str) -> String {
        format!("SIP/2.0/UDP 127.0.0.1:5060;branch={branch}")
    }

    #[test]
    fn a_proxy_records_its_route_on_top_and_pops_its_own() {
        let m = parse(
            b"BYE sip:b@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nRoute: <sip:edge-a;lr>, <sip:edge-b;lr>\r\nRoute: <sip:far;lr>\r\nRecord-Route: <sip:up;lr>\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let ours = [
            "<sip:t@edge-a;lr>".to_owned(),
            "<sip:t@edge-a2;lr>".to_owned(),
        ];
        // (routes popped, Route values left, Record-Route values in order)
        let cases: [(usize, &[&str], &[&str]); 4] = [
            (
                0,
                &["<sip:edge-a;lr>, <sip:edge-b;lr>", "<sip:far;lr>"],
                &["<sip:t@edge-a;lr>", "<sip:t@edge-a2;lr>", "<sip:up;lr>"],
            ),
            (
                1,
                &["<sip:edge-b;lr>", "<sip:far;lr>"],
                &["<sip:t@edge-a;lr>", "<sip:t@edge-a2;lr>", "<sip:up;lr>"],
            ),
            (
                2,
                &["<sip:far;lr>"],
                &["<sip:t@edge-a;lr>", "<sip:t@edge-a2;lr>", "<sip:up;lr>"],
            ),
            (
                3,
                &[],
                &["<sip:t@edge-a;lr>", "<sip:t@edge-a2;lr>", "<sip:up;lr>"],
            ),
        ];
        for (pop, routes, rrs) in cases {
            let routing = Routing {
                cseq_shift: 0,
                refer_id_back: 0,
                record_route: &ours,
                pop_routes: pop,
            };
            let out = forward_routed(&m, None, &via("b"), &[], &[], routing).unwrap();
            let f = parse(&out).unwrap();
            assert_eq!(f.all("route").collect::<Vec<_>>(), routes, "pop {pop}");
            assert_eq!(f.all("record-route").collect::<Vec<_>>(), rrs, "pop {pop}");
        }
        // Without a Record-Route in the request, ours are added all the same.
        let plain = parse(
            b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let routing = Routing {
            record_route: &ours[..1],
            pop_routes: 0,
            cseq_shift: 0,
            refer_id_back: 0,
        };
        let f =
            parse(&forward_routed(&plain, None, &via("b"), &[], &[], routing).unwrap()).unwrap();
        assert_eq!(
            f.all("record-route").collect::<Vec<_>>(),
            ["<sip:t@edge-a;lr>"]
        );
    }

    #[test]
    fn a_shifted_dialog_moves_cseq_out_and_back() {
        // (value, shift, result)
        let cases = [
            ("1 INVITE", 1, Some("2 INVITE")),
            ("7  BYE", 2, Some("9 BYE")),
            ("2 INVITE", -1, Some("1 INVITE")),
            ("0 ACK", -1, None),
            ("2147483647 BYE", 1, None),
            ("x BYE", 1, None),
        ];
        for (value, by, want) in cases {
            assert_eq!(shifted_cseq(value, by).as_deref(), want, "{value} {by}");
        }
        let bye = parse(
            b"BYE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let routing = Routing {
            cseq_shift: 1,
            ..Routing::default()
        };
        let out = forward_routed(&bye, None, &via("z9hG4bKe"), &[], &[], routing).unwrap();
        let sent = parse(&out).unwrap();
        assert_eq!(sent.get("cseq"), Some("3 BYE"));
        let answer = parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP e;branch=z9hG4bKe\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let back = parse(&forward_response_shifted(&answer, 1).unwrap()).unwrap();
        assert_eq!(back.get("cseq"), Some("2 BYE"));
        let unshifted = parse(&forward_response(&answer).unwrap()).unwrap();
        assert_eq!(unshifted.get("cseq"), Some("3 BYE"));
        // A PRACK's RAck follows the INVITE's number; a NOTIFY about the caller's REFER
        // names the REFER by the caller's number.
        let cases = [
            (shifted_rack("776656 1 INVITE", 1), Some("776656 2 INVITE")),
            (shifted_rack("1 INVITE", 1), None),
            (shifted_refer_event("refer;id=3", -1), Some("refer;id=2")),
            (
                shifted_refer_event("Refer ; ID=3;x=y", -1),
                Some("Refer;id=2;x=y"),
            ),
            (shifted_refer_event("refer", -1), None),
            (shifted_refer_event("dialog;id=3", -1), None),
            (shifted_refer_event("refer;id=0", -1), None),
        ];
        for (got, want) in cases {
            assert_eq!(got.as_deref(), want);
        }
    }

    #[test]
    fn a_forwarded_request_carries_our_via_fewer_hops_and_the_body() {
        let m = parse(INVITE.as_bytes()).unwrap();
        let out = forward_request(
            &m,
            Some("sip:u-1001@10.0.0.5:5062"),
            &via("z9hG4bKedge"),
            &["proxy-authorization"],
            &[("X-Dialtone-Forwarded", "edge-1")],
        )
        .unwrap();
        let f = parse(&out).unwrap();
        assert_eq!(f.get("proxy-authorization"), None, "stripped");
        assert!(
            matches!(&f.start, StartLine::Request { uri, .. } if uri == "sip:u-1001@10.0.0.5:5062")
        );
        let vias: Vec<&str> = f.all("via").collect();
        assert_eq!(
            vias,
            [
                via("z9hG4bKedge").as_str(),
                "SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKcaller"
            ]
        );
        assert_eq!(f.get("max-forwards"), Some("6"));
        assert_eq!(f.get("x-dialtone-forwarded"), Some("edge-1"));
        assert_eq!(f.body, b"v=0\n");
        assert_eq!(f.get("call-id"), Some("call-1"));
        assert!(String::from_utf8_lossy(&out).contains("\r\nCall-ID: call-1\r\n"));
        // Unchanged URI when not retargeted; no Max-Forwards: the proxy adds 70.
        let no_mf = INVITE.replace("Max-Forwards: 7\r\n", "");
        let f = parse(
            &forward_request(&parse(no_mf.as_bytes()).unwrap(), None, &via("b"), &[], &[]).unwrap(),
        )
        .unwrap();
        assert!(matches!(&f.start, StartLine::Request { uri, .. } if uri == "sip:u-1001@dialtone"));
        assert_eq!(f.get("max-forwards"), Some("70"), "RFC 3261 §16.6 step 3");
    }

    #[test]
    fn hop_limits_and_non_requests_are_refused() {
        let zero = INVITE.replace("Max-Forwards: 7", "Max-Forwards: 0");
        let m = parse(zero.as_bytes()).unwrap();
        assert_eq!(
            forward_request(&m, None, &via("b"), &[], &[]),
            Err(ForwardError::TooManyHops)
        );
        let resp = parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKx\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            forward_request(&resp, None, &via("b"), &[], &[]),
            Err(ForwardError::NotARequest)
        );
    }

    #[test]
    fn responses_lose_exactly_the_top_via() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            (
                "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKedge\r\nVia: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKcaller\r\n",
                Some(&["SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKcaller"]),
            ),
            (
                "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKedge, SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKcaller\r\n",
                Some(&["SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKcaller"]),
            ),
            (
                "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKedge\r\n",
                None,
            ),
        ];
        for (vias, want) in cases {
            let text = format!(
                "SIP/2.0 180 Ringing\r\n{vias}From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 4 INVITE\r\nContent-Length: 0\r\n\r\n"
            );
            let out = forward_response(&parse(text.as_bytes()).unwrap());
            match want {
                None => assert!(out.is_none(), "{vias}"),
                Some(want) => {
                    let f = parse(&out.unwrap()).unwrap();
                    assert_eq!(f.all("via").collect::<Vec<_>>(), *want, "{vias}");
                    assert!(matches!(f.start, StartLine::Response { code: 180, .. }));
                }
            }
        }
    }

    #[test]
    fn cancel_and_ack_follow_the_forwarded_invite() {
        let m = parse(INVITE.as_bytes()).unwrap();
        let sent = parse(
            &forward_request(&m, Some("sip:u@10.0.0.5"), &via("z9hG4bKedge"), &[], &[]).unwrap(),
        )
        .unwrap();
        let c = parse(&cancel_for(&sent).unwrap()).unwrap();
        assert!(
            matches!(&c.start, StartLine::Request { method, uri, .. } if method == "CANCEL" && uri == "sip:u@10.0.0.5")
        );
        assert_eq!(
            c.all("via").collect::<Vec<_>>(),
            [via("z9hG4bKedge").as_str()]
        );
        assert_eq!(c.get("cseq"), Some("4 CANCEL"));
        assert_eq!(c.get("to"), Some("<sip:u-1001@dialtone>"));
        assert_eq!(c.get("reason"), None);
        let why = r#"SIP;cause=200;text="Call completed elsewhere""#;
        let c = parse(&cancel_because(&sent, Some(why)).unwrap()).unwrap();
        assert_eq!(c.get("reason"), Some(why));
        assert_eq!(c.get("cseq"), Some("4 CANCEL"));
        // A reason that would not fit on its line, or is too long, is left out.
        for bad in ["SIP;cause=200\r\nX: y".to_owned(), "x".repeat(257)] {
            let c = parse(&cancel_because(&sent, Some(&bad)).unwrap()).unwrap();
            assert_eq!(c.get("reason"), None);
        }
        let resp = parse(b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKedge\r\nFrom: <sip:caller@example.com>;tag=c1\r\nTo: <sip:u-1001@dialtone>;tag=p9\r\nCall-ID: call-1\r\nCSeq: 4 INVITE\r\nContent-Length: 0\r\n\r\n").unwrap();
        let a = parse(&ack_for(&sent, &resp).unwrap()).unwrap();
        assert_eq!(a.get("cseq"), Some("4 ACK"));
        assert_eq!(a.get("to"), Some("<sip:u-1001@dialtone>;tag=p9"));
        assert_eq!(a.all("via").count(), 1);
    }
}
