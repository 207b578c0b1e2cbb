//! What a simulated phone writes and answers: REGISTER requests and the responses to the
//! requests edges deliver to it. Pure text, no IO.

use std::net::SocketAddr;

use dialtone_sip::{
    message::{Message, StartLine},
    response::{self, Source},
};

/// One REGISTER of a phone to one registrar.
pub struct Register<'a> {
    /// SIP user (AOR user part and digest user name).
    pub user: &'a str,
    /// SIP domain (the AOR's host part).
    pub domain: &'a str,
    /// The registrar.
    pub registrar: SocketAddr,
    /// The local address the phone sends from and is reached at.
    pub local: SocketAddr,
    /// "UDP" or "TCP".
    pub transport: &'a str,
    /// Call-ID of this registration (one per registrar, kept across refreshes).
    pub call_id: &'a str,
    /// CSeq number.
    pub cseq: u32,
    /// Expires asked for (0: unregister).
    pub expires: u32,
    /// Authorization value answering the registrar's challenge.
    pub authorization: Option<&'a str>,
}

impl Register<'_> {
    /// The Request-URI (also the digest URI).
    pub fn uri(&self) -> String {
        format!("sip:{}", self.domain_or_registrar())
    }

    fn domain_or_registrar(&self) -> String {
        if self.domain.is_empty() {
            self.registrar.to_string()
        } else {
            self.domain.to_owned()
        }
    }

    /// The request, ready to send.
    pub fn text(&self) -> String {
        let host = self.domain_or_registrar();
        let auth = self
            .authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{t} {local};branch=z9hG4bK{branch:016x};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{host}>;tag={tag:08x}\r\n\
             To: <sip:{user}@{host}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@{local};transport={lt}>\r\n\
             Expires: {expires}\r\n\
             {auth}User-Agent: dialtone-phonesim\r\n\
             Content-Length: 0\r\n\r\n",
            uri = self.uri(),
            t = self.transport,
            local = self.local,
            branch = rand::random::<u64>(),
            user = self.user,
            tag = rand::random::<u32>(),
            call_id = self.call_id,
            cseq = self.cseq,
            lt = self.transport.to_ascii_lowercase(),
            expires = self.expires,
        )
    }
}

/// How a phone answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// No answer (ACK).
    Nothing,
    /// One final response.
    Final(u16),
    /// 180 Ringing, then a final response.
    RingThen(u16),
    /// 180 Ringing and nothing more (until a CANCEL: 487).
    RingOnly,
}

/// The answer of a simulated phone to a request with `method`; `invite` is what it does
/// with calls (200, a rejection code from the softphone rules, or 0: ring until cancelled).
pub fn answer_for(method: &str, invite: u16) -> Answer {
    match method {
        "ACK" => Answer::Nothing,
        "INVITE" if invite == 0 => Answer::RingOnly,
        "INVITE" if invite < 300 => Answer::RingThen(invite),
        "INVITE" => Answer::Final(invite),
        "OPTIONS" | "NOTIFY" | "MESSAGE" | "BYE" | "CANCEL" | "INFO" | "UPDATE" => {
            Answer::Final(200)
        }
        _ => Answer::Final(405),
    }
}

/// A response to `req` received from `from`. An INVITE's ringing and answer carry its
/// Record-Route, as a UAS copies it (RFC 3261 §12.1.1), so the caller's in-dialog requests
/// come back through the proxies that asked to stay on the path, and a Contact: the
/// Request-URI the INVITE reached (the phone's own registered contact).
pub fn respond(req: &Message, from: SocketAddr, code: u16, to_tag: &str) -> Vec<u8> {
    let mut extra = vec![(
        "Allow",
        "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, MESSAGE".to_owned(),
    )];
    let invite = matches!(&req.start, StartLine::Request { method, .. } if method == "INVITE");
    let mut body = String::new();
    if invite && (101..300).contains(&code) {
        extra.extend(
            req.all("record-route")
                .map(|v| ("Record-Route", v.to_owned())),
        );
        if let StartLine::Request { uri, .. } = &req.start {
            extra.push(("Contact", format!("<{uri}>")));
            // An offer gets an answer: PCMU at the phone's address (it sends no media;
            // port 9 is discard).
            if code >= 200 && !req.body.is_empty() {
                let host = uri.split_once('@').map_or("127.0.0.1", |(_, h)| {
                    h.split([':', ';']).next().unwrap_or(h)
                });
                body = format!(
                    "v=0\r\no=phonesim 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n\
                     m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
                );
                extra.push(("Content-Type", "application/sdp".to_owned()));
            }
        }
    }
    response::build(
        req,
        &Source::from(from),
        code,
        "",
        to_tag,
        &extra,
        body.as_bytes(),
    )
}

/// The Request-URI's user part (whom a delivered request is for).
pub fn request_user(req: &Message) -> Option<&str> {
    let StartLine::Request { uri, .. } = &req.start else {
        return None;
    };
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user)
}

/// The `Event` of a NOTIFY with its parameters, e.g. `check-sync;reboot=false`.
pub fn event(req: &Message) -> Option<&str> {
    req.get("event")
}

#[cfg(test)]
mod tests {
    use dialtone_sip::message::parse;

    use super::*;

    #[test]
    fn register_parses_and_names_everything() {
        let r = Register {
            user: "u-1001",
            domain: "dialtone",
            registrar: "127.0.0.1:5060".parse().unwrap(),
            local: "127.0.0.1:40000".parse().unwrap(),
            transport: "UDP",
            call_id: "c1@sim",
            cseq: 7,
            expires: 120,
            authorization: Some("Digest username=\"u-1001\""),
        };
        let m = parse(r.text().as_bytes()).unwrap();
        assert_eq!(m.get("call-id"), Some("c1@sim"));
        assert_eq!(m.get("cseq"), Some("7 REGISTER"));
        assert_eq!(m.get("expires"), Some("120"));
        assert_eq!(
            m.get("contact"),
            Some("<sip:u-1001@127.0.0.1:40000;transport=udp>")
        );
        assert!(m.get("authorization").is_some());
        assert_eq!(r.uri(), "sip:dialtone");
    }

    #[test]
    fn answers_by_method() {
        let cases = [
            ("INVITE", 200, Answer::RingThen(200)),
            ("INVITE", 486, Answer::Final(486)),
            ("OPTIONS", 200, Answer::Final(200)),
            ("NOTIFY", 200, Answer::Final(200)),
            ("ACK", 200, Answer::Nothing),
            ("INVITE", 0, Answer::RingOnly),
            ("PUBLISH", 200, Answer::Final(405)),
        ];
        for (m, invite, want) in cases {
            assert_eq!(answer_for(m, invite), want, "{m}");
        }
    }

    #[test]
    fn responses_echo_the_transaction_and_name_the_user() {
        let req = "OPTIONS sip:u-1001@127.0.0.1:40000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:edge@dialtone>;tag=a\r\nTo: <sip:u-1001@dialtone>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let m = parse(req.as_bytes()).unwrap();
        assert_eq!(request_user(&m), Some("u-1001"));
        let resp = respond(&m, "127.0.0.1:5060".parse().unwrap(), 200, "t1");
        let r = parse(&resp).unwrap();
        assert!(matches!(r.start, StartLine::Response { code: 200, .. }));
        assert_eq!(r.get("call-id"), Some("o1"));
        assert!(r.get("to").unwrap().contains("tag=t1"));
    }
}
