//! The edge's responses and requests as bytes: pure builders over the sip crate's
//! [`dialtone_sip::response::build_with`], adding what every answer of this edge carries.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use dialtone_common::clock;

use dialtone_sip::{
    Message,
    digest::{Algorithm, NonceKey, NonceScope, push_challenge},
    offer::Offer,
    registration::Binding,
    response::{Source, build_with, header_line},
};

use crate::{flow::Transport, metrics::Stats};

/// Reason phrase of the 403 refusing calls and messages from an unassigned phone.
pub const UNASSIGNED_REASON: &str = "Phone Not Assigned to a User or Site";

/// Methods the edge answers itself (the Allow header).
pub const ALLOW: &str = "REGISTER, OPTIONS, SUBSCRIBE, NOTIFY, ACK";

/// Who asks for credentials: the registrar (401 `WWW-Authenticate`, answered in
/// `Authorization`) or the proxy in front of the phones (407 `Proxy-Authenticate`, answered
/// in `Proxy-Authorization`, RFC 3261 §22.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    Registrar,
    Proxy,
}

impl ChallengeKind {
    /// The header carrying the answer, as the parser names it.
    pub fn credentials_header(self) -> &'static str {
        match self {
            ChallengeKind::Registrar => "authorization",
            ChallengeKind::Proxy => "proxy-authorization",
        }
    }
}

/// What this edge answers with, shared by the dispatcher, the registrar and delivery: the
/// responder, and the digest challenge (nonces valid only at this edge, for the source
/// they were issued to, offering the algorithms the caller passes: a line's, or an
/// unknown user's drawn from the fleet's).
pub struct Replies {
    pub responder: Responder,
    /// This edge's node id: the issuer of its nonces.
    pub node_id: String,
    pub realm: String,
    pub nonce_key: NonceKey,
    pub nonce_lifetime_s: u64,
    pub stats: Arc<Stats>,
}

impl Replies {
    /// A fresh challenge (401, or 407 when `kind` is a proxy's) offering `offer`, with a
    /// nonce valid only at this edge and for the request's source address.
    pub fn challenge(
        &self,
        req: &Message,
        src: &Source,
        now: u64,
        stale: bool,
        kind: ChallengeKind,
        offer: Offer,
    ) -> Vec<u8> {
        let nonce = self
            .nonce_key
            .nonce_text(now, rand::random(), &self.nonce_scope(src.ip));
        self.stats.challenge();
        self.responder.challenge(
            req,
            src,
            kind,
            offer.algorithms(),
            &self.realm,
            nonce.as_str(),
            stale,
        )
    }

    /// Where this edge's nonces are valid: here, for `source`.
    pub fn nonce_scope(&self, source: std::net::IpAddr) -> NonceScope<'_> {
        NonceScope {
            issuer: &self.node_id,
            source,
        }
    }
}

/// What every response of this edge shares.
#[derive(Clone, Debug)]
pub struct Responder {
    /// To tag of this edge's responses (they create no dialog but REGISTER).
    pub to_tag: String,
    /// Server header, if configured.
    pub server: Option<String>,
}

impl Responder {
    /// A response with `extra` headers (and the Server header when configured).
    pub fn reply(
        &self,
        req: &Message,
        src: &Source,
        code: u16,
        reason: &str,
        extra: Vec<(&str, String)>,
    ) -> Vec<u8> {
        self.respond(req, src, code, reason, |out| {
            for (name, value) in &extra {
                header_line(out, name, value);
            }
        })
    }

    /// Every response of the edge: counted, with the header lines `extra` writes, then the
    /// Server header when configured.
    fn respond(
        &self,
        req: &Message,
        src: &Source,
        code: u16,
        reason: &str,
        extra: impl FnOnce(&mut String),
    ) -> Vec<u8> {
        crate::metrics::RESPONSES.count(code);
        let extra = |out: &mut String| {
            extra(out);
            if let Some(s) = &self.server {
                header_line(out, "Server", s);
            }
        };
        build_with(req, src, code, reason, &self.to_tag, extra, b"")
    }

    /// 401 (or 407) with one challenge per algorithm, in order. Written straight into the
    /// response, as the 200 below: one of each goes out for every registration.
    #[allow(clippy::too_many_arguments)]
    pub fn challenge(
        &self,
        req: &Message,
        src: &Source,
        kind: ChallengeKind,
        algorithms: &[Algorithm],
        realm: &str,
        nonce: &str,
        stale: bool,
    ) -> Vec<u8> {
        let (code, header) = match kind {
            ChallengeKind::Registrar => (401, "WWW-Authenticate: "),
            ChallengeKind::Proxy => (407, "Proxy-Authenticate: "),
        };
        self.respond(req, src, code, "", |out| {
            for a in algorithms {
                out.push_str(header);
                push_challenge(out, *a, realm, nonce, stale);
                out.push_str("\r\n");
            }
        })
    }

    /// 200 to a REGISTER: every current binding with its remaining time, a Date, the Path
    /// the request carried (RFC 3327 §5.3) and `Require: outbound` when a flow was
    /// registered (RFC 5626 §6).
    pub fn register_ok(
        &self,
        req: &Message,
        src: &Source,
        bindings: &[Binding],
        now: u64,
        outbound: bool,
    ) -> Vec<u8> {
        self.respond(req, src, 200, "", |out| {
            for b in bindings {
                out.push_str("Contact: ");
                b.push_contact_value(out, now);
                out.push_str("\r\n");
            }
            for p in req.all("path") {
                header_line(out, "Path", p);
            }
            if outbound {
                header_line(out, "Require", "outbound");
            }
            with_http_date(|d| header_line(out, "Date", d));
        })
    }
}

/// Calls `f` with the current time as an HTTP date (RFC 3261 §20.17), formatted once a
/// second per thread.
fn with_http_date<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((u64::MAX, String::new()))
        };
    }
    let now = clock::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        f(text)
    })
}

/// The edge's own listener of each transport (the dispatcher, delivery and the API build
/// the Via, Contact and Record-Route of the edge's requests from one): where the other
/// edges reach it (its member record's address), and where phones and carriers do, which
/// differs behind a load balancer or NAT (`--sip-external-address`).
#[derive(Clone, Debug, Default)]
pub struct Listening {
    internal: HashMap<Transport, SocketAddr>,
    external: HashMap<Transport, SocketAddr>,
}

impl Listening {
    /// Listeners reached at the same address by everyone.
    pub fn new(internal: HashMap<Transport, SocketAddr>) -> Self {
        Listening {
            internal,
            external: HashMap::new(),
        }
    }

    /// With the addresses phones and carriers reach some transports at instead.
    pub fn with_external(mut self, external: HashMap<Transport, SocketAddr>) -> Self {
        self.external = external;
        self
    }

    /// The edge's listener of `transport` as phones and carriers reach it (for what the
    /// edge writes towards them, and Record-Route, which both sides of a dialog follow).
    pub fn of(&self, transport: Transport) -> Option<Local> {
        let addr = *self.internal.get(&transport)?;
        let addr = self.external.get(&transport).copied().unwrap_or(addr);
        Some(Local { transport, addr })
    }

    /// Whether `at` names one of this edge's listeners, by either address.
    pub fn is_own(&self, at: crate::flow::FlowSource) -> bool {
        self.internal.get(&at.transport) == Some(&at.addr)
            || self.external.get(&at.transport) == Some(&at.addr)
    }
}

/// One of the edge's own listeners, for the Via and Contact of requests the edge sends.
#[derive(Clone, Copy, Debug)]
pub struct Local {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl Local {
    /// `SIP/2.0/UDP 127.0.0.1:5060;rport`: a Via without its branch. Over UDP it asks for
    /// the answer at the address and port the request came from (RFC 3581): the edge may
    /// name an address it is not bound at (`--sip-external-address`, behind a load
    /// balancer or NAT), and the answer must still reach the socket that sent it.
    pub fn via(&self) -> String {
        format!(
            "SIP/2.0/{} {}:{}{}",
            self.transport.via_name(),
            fmt_ip(self.addr),
            self.addr.port(),
            if self.transport == Transport::Udp {
                ";rport"
            } else {
                ""
            }
        )
    }

    /// `127.0.0.1:5060` (IPv6 in brackets), for URIs naming this listener.
    pub fn host_port(&self) -> String {
        format!("{}:{}", fmt_ip(self.addr), self.addr.port())
    }

    /// `<sip:[user@]127.0.0.1:5060;transport=udp>`.
    pub fn contact(&self, user: Option<&str>) -> String {
        let user = user.map(|u| format!("{u}@")).unwrap_or_default();
        format!(
            "<sip:{user}{}:{};transport={}>",
            fmt_ip(self.addr),
            self.addr.port(),
            self.transport.name()
        )
    }
}

/// A fresh RFC 3261 branch.
pub fn new_branch() -> String {
    format!("z9hG4bK{:016x}", rand::random::<u64>())
}

/// An IP for a SIP URI or Via (IPv6 in brackets).
pub fn fmt_ip(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => v.ip().to_string(),
        SocketAddr::V6(v) => format!("[{}]", v.ip()),
    }
}

/// An out-of-dialog request from the edge (NOTIFY check-sync).
pub struct OutRequest<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    /// `SIP/2.0/UDP 127.0.0.1:5060` style Via without the branch.
    pub via: &'a str,
    pub branch: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    pub extra: Vec<(&'a str, String)>,
    pub body: &'a [u8],
}

impl OutRequest<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!(
            "{m} {uri} SIP/2.0\r\nVia: {via};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {m}\r\n",
            m = self.method,
            uri = self.uri,
            via = self.via,
            branch = self.branch,
            from = self.from,
            to = self.to,
            cid = self.call_id,
            cseq = self.cseq,
        );
        for (n, v) in &self.extra {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut out = s.into_bytes();
        out.extend_from_slice(self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register() -> Message {
        dialtone_sip::parse(b"REGISTER sip:e SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport\r\nFrom: <sip:u@e>;tag=1\r\nTo: <sip:u@e>\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\nPath: <sip:p1;lr>\r\nContent-Length: 0\r\n\r\n").unwrap()
    }

    #[test]
    fn phones_see_the_external_address_edges_the_internal_one() {
        use super::Listening;
        use crate::flow::FlowSource;
        let internal: SocketAddr = "10.0.0.5:5060".parse().unwrap();
        let external: SocketAddr = "203.0.113.7:30060".parse().unwrap();
        let l = Listening::new([(Transport::Udp, internal), (Transport::Tcp, internal)].into())
            .with_external([(Transport::Udp, external)].into());
        assert_eq!(l.of(Transport::Udp).unwrap().addr, external);
        assert_eq!(
            l.of(Transport::Tcp).unwrap().addr,
            internal,
            "no external: the listener"
        );
        assert!(l.of(Transport::Tls).is_none());
        for (at, own) in [
            ((Transport::Udp, external), true),
            ((Transport::Udp, internal), true),
            ((Transport::Tcp, external), false),
            (
                (Transport::Udp, "203.0.113.8:30060".parse().unwrap()),
                false,
            ),
        ] {
            let at = FlowSource {
                transport: at.0,
                addr: at.1,
            };
            assert_eq!(l.is_own(at), own, "{at}");
        }
    }

    #[test]
    fn answers() {
        let r = Responder {
            to_tag: "t".into(),
            server: None,
        };
        let src = Source::from("192.0.2.1:40000".parse::<SocketAddr>().unwrap());
        let proxy = String::from_utf8(r.challenge(
            &register(),
            &src,
            ChallengeKind::Proxy,
            &[Algorithm::Md5],
            "dialtone",
            "n1",
            false,
        ))
        .unwrap();
        assert!(
            proxy.starts_with("SIP/2.0 407 Proxy Authentication Required\r\n"),
            "{proxy}"
        );
        assert!(
            proxy.contains("\r\nProxy-Authenticate: Digest realm=\"dialtone\""),
            "{proxy}"
        );
        assert!(!proxy.contains("WWW-Authenticate"), "{proxy}");
        let ch = String::from_utf8(r.challenge(
            &register(),
            &src,
            ChallengeKind::Registrar,
            &[Algorithm::Sha256, Algorithm::Md5],
            "dialtone",
            "n1",
            true,
        ))
        .unwrap();
        let sha = ch.find("algorithm=SHA-256").unwrap();
        let md5 = ch.find("algorithm=MD5").unwrap();
        assert!(sha < md5 && ch.contains("stale=true") && ch.starts_with("SIP/2.0 401"));
        assert!(!ch.contains("Server:"), "no Server header by default");

        let b = Binding {
            uri: "sip:u@10.0.0.1:5060".into(),
            instance: Some("\"<urn:uuid:1>\"".into()),
            reg_id: Some(1),
            call_id: "c".into(),
            cseq: 2,
            expires_at: 1_000_600,
            q: None,
            path: vec![],
            source: "udp:10.0.0.1:5060".parse().unwrap(),
            user_agent: None,
        };
        let ok =
            String::from_utf8(r.register_ok(&register(), &src, &[b], 1_000_000, true)).unwrap();
        for want in [
            "SIP/2.0 200 OK\r\n",
            "Contact: <sip:u@10.0.0.1:5060>;expires=600;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\n",
            "Path: <sip:p1;lr>\r\n",
            "Require: outbound\r\n",
            "Date: ",
            "To: <sip:u@e>;tag=t\r\n",
        ] {
            assert!(ok.contains(want), "{want}: {ok}");
        }
        let with_server = Responder {
            to_tag: "t".into(),
            server: Some("Dialtone".into()),
        };
        let o = String::from_utf8(with_server.reply(&register(), &src, 200, "", vec![])).unwrap();
        assert!(o.contains("Server: Dialtone\r\n"));
    }

    #[test]
    fn own_addresses() {
        let cases = [
            (
                Transport::Udp,
                "127.0.0.1:5060",
                "SIP/2.0/UDP 127.0.0.1:5060;rport",
                "<sip:d@127.0.0.1:5060;transport=udp>",
            ),
            (
                Transport::Wss,
                "[::1]:7443",
                "SIP/2.0/WSS [::1]:7443",
                "<sip:d@[::1]:7443;transport=wss>",
            ),
        ];
        for (transport, addr, via, contact) in cases {
            let l = Local {
                transport,
                addr: addr.parse().unwrap(),
            };
            assert_eq!(l.via(), via);
            assert_eq!(l.contact(Some("d")), contact);
        }
        assert!(new_branch().starts_with("z9hG4bK"));
    }

    #[test]
    fn out_request_parses() {
        let r = OutRequest {
            method: "NOTIFY",
            uri: "sip:u@10.0.0.1:5060",
            via: "SIP/2.0/UDP 127.0.0.1:5060",
            branch: "z9hG4bKx",
            from: "<sip:dialtone@dialtone>;tag=f",
            to: "<sip:u@dialtone>",
            call_id: "c1",
            cseq: 1,
            extra: vec![("Event", "check-sync;reboot=false".into())],
            body: b"",
        };
        let m = dialtone_sip::parse(&r.to_bytes()).unwrap();
        assert_eq!(dialtone_sip::check(&m), dialtone_sip::Verdict::Accept);
        assert_eq!(m.get("event"), Some("check-sync;reboot=false"));
    }
}
