//! The registrar's binding rules for one line (RFC 3261 §10.3, RFC 5626 §6, RFC 3327), as a
//! pure reducer: current bindings + a REGISTER → new bindings or the error to answer.
//! Nothing is applied unless the whole request is acceptable.

use crate::{
    header::{parse_name_addr, split_list},
    message::Message,
    transport::FlowSource,
};

/// Registration limits of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Shortest non-zero expiry accepted (423 below it).
    pub min_expires: u32,
    /// Longest expiry granted (longer requests are clamped).
    pub max_expires: u32,
    /// Expiry when the request names none.
    pub default_expires: u32,
    /// Most bindings the line may hold.
    pub max_bindings: usize,
}

/// One binding of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Contact URI as the phone wrote it.
    pub uri: String,
    /// `+sip.instance` (RFC 5626), quoted as received.
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626).
    pub reg_id: Option<u32>,
    /// Call-ID of the REGISTER that made or last refreshed it.
    pub call_id: String,
    /// Its CSeq.
    pub cseq: u32,
    /// Unix time the binding expires.
    pub expires_at: u64,
    /// `q` value, as written.
    pub q: Option<String>,
    /// Path header values (RFC 3327), in order.
    pub path: Vec<String>,
    /// Where the REGISTER came from.
    pub source: FlowSource,
    /// User-Agent.
    pub user_agent: Option<String>,
}

impl Binding {
    /// The contact as listed in a 200 OK.
    pub fn contact_value(&self, now: u64) -> String {
        let mut s = String::with_capacity(self.uri.len() + 32);
        self.push_contact_value(&mut s, now);
        s
    }

    /// Writes [`Binding::contact_value`] into `s` (every 200 OK lists every binding).
    pub fn push_contact_value(&self, s: &mut String, now: u64) {
        s.push('<');
        s.push_str(&self.uri);
        s.push_str(">;expires=");
        crate::response::push_number(s, self.expires_at.saturating_sub(now));
        if let Some(i) = &self.instance {
            s.push_str(";+sip.instance=");
            s.push_str(i);
        }
        if let Some(r) = self.reg_id {
            s.push_str(";reg-id=");
            crate::response::push_number(s, r.into());
        }
    }
}

/// One Contact of a REGISTER (borrowed from the message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactRequest<'a> {
    pub uri: &'a str,
    pub expires: Option<u32>,
    pub instance: Option<&'a str>,
    pub reg_id: Option<u32>,
    pub q: Option<&'a str>,
}

/// The Contact part of a REGISTER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contacts<'a> {
    /// No Contact: list the bindings.
    Query,
    /// `Contact: *`: remove every binding.
    Star,
    /// Add, refresh or remove these.
    List(Vec<ContactRequest<'a>>),
}

/// A REGISTER, reduced to what the rules need, borrowing from the message: a refresh
/// copies nothing out of it (the binding keeps its strings when they are the same).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Register<'a> {
    pub call_id: &'a str,
    pub cseq: u32,
    /// The Expires header.
    pub expires: Option<u32>,
    pub contacts: Contacts<'a>,
    pub path: Vec<&'a str>,
    pub source: FlowSource,
    pub user_agent: Option<&'a str>,
}

/// What to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 200 OK listing `bindings`; `changed` says whether they must be published.
    Ok {
        bindings: Vec<Binding>,
        changed: bool,
    },
    /// An error to answer; nothing is applied.
    Refused(Refusal),
}

/// Why a REGISTER is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 423 Interval Too Brief with this Min-Expires.
    IntervalTooBrief { min_expires: u32 },
    /// 400 with this reason.
    Invalid(&'static str),
    /// The request is older than a binding it touches (same Call-ID, CSeq not higher):
    /// 400, nothing changed (RFC 3261 §10.3 step 7).
    OutOfOrder,
    /// 403: the line would hold more than `max` bindings.
    TooManyBindings { max: usize },
}

/// An unsigned delta-seconds value; overlarge values saturate (they are clamped later).
fn delta_seconds(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(
        s.parse::<u64>()
            .map_or(u32::MAX, |n| n.min(u64::from(u32::MAX)) as u32),
    )
}

/// Reads the registration parts of a REGISTER that passed [`crate::verdict::check`].
pub fn from_message(m: &Message, source: FlowSource) -> Result<Register<'_>, &'static str> {
    let cseq = m.addressing().map_err(|_| "bad cseq")?.cseq;
    let expires = match m.get("expires") {
        Some(v) => Some(delta_seconds(v).ok_or("expires must be a number of seconds")?),
        None => None,
    };
    // One pass over the Contact values: `*` must be alone, and it outranks a malformed
    // contact; otherwise the first malformed contact is the error.
    let (mut n, mut star, mut bad) = (0, false, None);
    let mut list = Vec::with_capacity(1);
    for item in m.all("contact").flat_map(split_list) {
        n += 1;
        if item == "*" {
            star = true;
        } else if !star && bad.is_none() {
            match contact_request(item) {
                Ok(c) => list.push(c),
                Err(e) => bad = Some(e),
            }
        }
    }
    let contacts = match (n, star, bad) {
        (0, _, _) => Contacts::Query,
        (1, true, _) => Contacts::Star,
        (_, true, _) => return Err("contact * must be alone"),
        (_, false, Some(e)) => return Err(e),
        (_, false, None) => Contacts::List(list),
    };
    let path = m.all("path").flat_map(split_list).collect();
    Ok(Register {
        call_id: m.get("call-id").unwrap_or(""),
        cseq,
        expires,
        contacts,
        path,
        source,
        user_agent: m.get("user-agent"),
    })
}

/// One Contact of a REGISTER.
fn contact_request(item: &str) -> Result<ContactRequest<'_>, &'static str> {
    let a = parse_name_addr(item).map_err(|_| "bad contact")?;
    let param = |n: &str| a.params.value(n);
    let expires = match param("expires") {
        Some(v) => Some(delta_seconds(v).ok_or("contact expires must be a number of seconds")?),
        None => None,
    };
    let instance = param("+sip.instance");
    let reg_id = match (param("reg-id"), &instance) {
        (Some(r), Some(_)) => Some(r.parse().map_err(|_| "reg-id must be a number")?),
        _ => None, // RFC 5626 §6: reg-id without an instance is ignored.
    };
    Ok(ContactRequest {
        uri: a.uri_text,
        expires,
        instance,
        reg_id,
        q: param("q"),
    })
}

fn same_binding(b: &Binding, c: &ContactRequest) -> bool {
    match (c.instance, b.instance.as_deref()) {
        // RFC 5626: with an instance, the flow (instance, reg-id) is the key, not the URI.
        (Some(i), Some(bi)) => i == bi && c.reg_id == b.reg_id,
        (Some(_), None) | (None, Some(_)) => false,
        (None, None) => b.uri == c.uri,
    }
}

/// Whether new contact `c` of `req` takes the place of binding `b`: the same registration
/// (same Call-ID, an older CSeq, neither under RFC 5626's instance) that came over a
/// connection from another address. A phone over TCP or TLS whose connection broke
/// reconnects from a new port, and its Contact names that port: the old contact is
/// reached through a connection that is gone, so keeping it would only count against the
/// line's contacts until it expired (three reconnects within an hour, and the phone was
/// refused). A phone that registers one Call-ID over two connections at once (two
/// interfaces, without RFC 5626) keeps one contact, the latest: such a phone needs
/// RFC 5626's instance and reg-id, or a Call-ID per connection.
fn moved_connection(b: &Binding, c: &ContactRequest, req: &Register) -> bool {
    c.instance.is_none()
        && b.instance.is_none()
        && b.uri != c.uri
        && b.call_id == req.call_id
        && b.cseq < req.cseq
        && b.source.transport.is_stream()
        && b.source != req.source
}

/// The expiry contact `c` of `req` asks for: its own, else the request's, else the line's
/// default.
fn asked(c: &ContactRequest, req: &Register, policy: &Policy) -> u32 {
    c.expires.or(req.expires).unwrap_or(policy.default_expires)
}

/// Whether `req` is no newer than the request that made or refreshed `b` (same Call-ID,
/// CSeq not higher): it must not touch it (RFC 3261 §10.3 step 7).
fn not_newer(b: &Binding, req: &Register) -> bool {
    b.call_id == req.call_id && req.cseq <= b.cseq
}

/// `dst = src`, copying only when they differ.
fn set(dst: &mut String, src: &str) {
    if dst != src {
        dst.clear();
        dst.push_str(src);
    }
}

/// `dst = src` for optional strings, copying only when they differ.
fn set_opt(dst: &mut Option<String>, src: Option<&str>) {
    match (dst.as_mut(), src) {
        (Some(d), Some(s)) => set(d, s),
        (None, None) => {}
        (_, s) => *dst = s.map(str::to_owned),
    }
}

/// Refreshes binding `b` from contact `c` of `req` for `granted` seconds, in place (its
/// strings are reused: a phone refreshes with the same ones every time); true when a part
/// that is published changed.
fn refresh(b: &mut Binding, c: &ContactRequest, req: &Register, granted: u32, now: u64) -> bool {
    let same_path = b
        .path
        .iter()
        .map(String::as_str)
        .eq(req.path.iter().copied());
    let changed = b.uri != c.uri
        || b.instance.as_deref() != c.instance
        || b.reg_id != c.reg_id
        || !same_path
        || b.source != req.source;
    set(&mut b.uri, c.uri);
    set_opt(&mut b.instance, c.instance);
    b.reg_id = c.reg_id;
    set(&mut b.call_id, req.call_id);
    b.cseq = req.cseq;
    b.expires_at = now + u64::from(granted);
    set_opt(&mut b.q, c.q);
    if !same_path {
        b.path = owned_path(&req.path);
    }
    b.source = req.source;
    set_opt(&mut b.user_agent, req.user_agent);
    changed
}

fn owned_path(path: &[&str]) -> Vec<String> {
    path.iter().map(|p| (*p).to_owned()).collect()
}

/// [`register`] applied to `bindings` in place: `Ok(changed)` (whether they changed in a
/// way that must be published), or why it was refused, with `bindings` left as they were.
///
/// The common case, a phone refreshing its one live binding, is applied without copying
/// the line's bindings; every other request goes through [`register`].
pub fn apply(
    bindings: &mut Vec<Binding>,
    req: &Register,
    policy: &Policy,
    now: u64,
) -> Result<bool, Refusal> {
    if let Contacts::List(list) = &req.contacts
        && let [c] = list.as_slice()
        && bindings.len() <= policy.max_bindings
        && bindings.iter().all(|b| b.expires_at > now)
    {
        let asked = asked(c, req, policy);
        let found = bindings.iter().position(|b| same_binding(b, c));
        if let Some(i) = found
            && asked != 0
            && asked >= policy.min_expires
            && !not_newer(&bindings[i], req)
        {
            let granted = asked.min(policy.max_expires);
            return Ok(refresh(&mut bindings[i], c, req, granted, now));
        }
    }
    match register(bindings, req, policy, now) {
        Outcome::Ok {
            bindings: next,
            changed,
        } => {
            *bindings = next;
            Ok(changed)
        }
        Outcome::Refused(why) => Err(why),
    }
}

/// Applies a REGISTER to a line's bindings at `now` (Unix seconds).
pub fn register(current: &[Binding], req: &Register, policy: &Policy, now: u64) -> Outcome {
    let live: Vec<Binding> = current
        .iter()
        .filter(|b| b.expires_at > now)
        .cloned()
        .collect();
    let expired = live.len() != current.len();
    match &req.contacts {
        Contacts::Query => Outcome::Ok {
            bindings: live,
            changed: expired,
        },
        Contacts::Star => {
            if req.expires != Some(0) {
                return Outcome::Refused(Refusal::Invalid("contact * requires expires 0"));
            }
            if live.iter().any(|b| not_newer(b, req)) {
                return Outcome::Refused(Refusal::OutOfOrder);
            }
            Outcome::Ok {
                changed: !current.is_empty(),
                bindings: Vec::new(),
            }
        }
        Contacts::List(contacts) => {
            let mut next = live;
            let mut changed = expired;
            for c in contacts {
                let asked = asked(c, req, policy);
                if asked != 0 && asked < policy.min_expires {
                    return Outcome::Refused(Refusal::IntervalTooBrief {
                        min_expires: policy.min_expires,
                    });
                }
                let granted = asked.min(policy.max_expires);
                let mut found = next.iter().position(|b| same_binding(b, c));
                if let Some(i) = found
                    && not_newer(&next[i], req)
                {
                    return Outcome::Refused(Refusal::OutOfOrder);
                }
                if found.is_none() && granted > 0 {
                    found = next.iter().position(|b| moved_connection(b, c, req));
                }
                match (found, granted) {
                    (Some(i), 0) => {
                        next.remove(i);
                        changed = true;
                    }
                    (None, 0) => {}
                    (Some(i), _) => changed |= refresh(&mut next[i], c, req, granted, now),
                    (None, _) => {
                        changed = true;
                        next.push(Binding {
                            uri: c.uri.to_owned(),
                            instance: c.instance.map(str::to_owned),
                            reg_id: c.reg_id,
                            call_id: req.call_id.to_owned(),
                            cseq: req.cseq,
                            expires_at: now + u64::from(granted),
                            q: c.q.map(str::to_owned),
                            path: owned_path(&req.path),
                            source: req.source,
                            user_agent: req.user_agent.map(str::to_owned),
                        });
                    }
                }
            }
            if next.len() > policy.max_bindings {
                return Outcome::Refused(Refusal::TooManyBindings {
                    max: policy.max_bindings,
                });
            }
            Outcome::Ok {
                bindings: next,
                changed,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x_source() -> FlowSource {
        "udp:192.0.2.77:5060".parse().unwrap()
    }

    const POLICY: Policy = Policy {
        min_expires: 60,
        max_expires: 3600,
        default_expires: 600,
        max_bindings: 2,
    };

    fn contact(uri: &str, expires: Option<u32>) -> ContactRequest<'_> {
        ContactRequest {
            uri,
            expires,
            instance: None,
            reg_id: None,
            q: None,
        }
    }

    fn req<'a>(
        call_id: &'a str,
        cseq: u32,
        expires: Option<u32>,
        contacts: Contacts<'a>,
    ) -> Register<'a> {
        Register {
            call_id,
            cseq,
            expires,
            contacts,
            path: vec![],
            source: "udp:192.0.2.1:5060".parse().unwrap(),
            user_agent: None,
        }
    }

    fn ok(o: Outcome) -> (Vec<Binding>, bool) {
        match o {
            Outcome::Ok { bindings, changed } => (bindings, changed),
            other => panic!("expected ok, got {other:?}"),
        }
    }

    #[test]
    fn applying_in_place_agrees_with_the_reducer() {
        fn one(uri: &str, exp: Option<u32>) -> Contacts<'_> {
            Contacts::List(vec![contact(uri, exp)])
        }
        let (base, _) = ok(register(
            &[],
            &req("c1", 1, Some(3600), one("sip:a@h", None)),
            &POLICY,
            1000,
        ));
        let (two, _) = ok(register(
            &base,
            &req("c2", 1, Some(3600), one("sip:b@h", None)),
            &POLICY,
            1000,
        ));
        let mut moved = req("c1", 2, Some(3600), one("sip:a@h", None));
        moved.source = "udp:192.0.2.9:5060".parse().unwrap();
        let mut flow = contact("sip:a@h", None);
        flow.instance = Some("\"<urn:uuid:1>\"");
        flow.reg_id = Some(1);
        let tight = Policy {
            max_bindings: 1,
            ..POLICY
        };
        let cases: Vec<(&str, Vec<Binding>, Register, Policy, u64)> = vec![
            (
                "refresh",
                base.clone(),
                req("c1", 2, Some(3600), one("sip:a@h", None)),
                POLICY,
                2000,
            ),
            (
                "refresh, other call-id",
                base.clone(),
                req("c9", 1, None, one("sip:a@h", None)),
                POLICY,
                2000,
            ),
            (
                "refresh, per-contact expiry",
                base.clone(),
                req("c1", 2, None, one("sip:a@h", Some(120))),
                POLICY,
                2000,
            ),
            (
                "refresh, clamped",
                base.clone(),
                req("c1", 2, Some(99_999), one("sip:a@h", None)),
                POLICY,
                2000,
            ),
            (
                "refresh from a new source",
                base.clone(),
                moved,
                POLICY,
                2000,
            ),
            (
                "out of order",
                base.clone(),
                req("c1", 1, Some(3600), one("sip:a@h", None)),
                POLICY,
                2000,
            ),
            (
                "remove",
                base.clone(),
                req("c1", 2, Some(0), one("sip:a@h", None)),
                POLICY,
                2000,
            ),
            (
                "too brief",
                base.clone(),
                req("c1", 2, Some(30), one("sip:a@h", None)),
                POLICY,
                2000,
            ),
            (
                "new contact",
                base.clone(),
                req("c1", 2, Some(3600), one("sip:z@h", None)),
                POLICY,
                2000,
            ),
            (
                "expired one",
                base.clone(),
                req("c1", 2, Some(3600), one("sip:a@h", None)),
                POLICY,
                9000,
            ),
            (
                "over the limit",
                two.clone(),
                req("c1", 2, Some(3600), one("sip:a@h", None)),
                tight,
                2000,
            ),
            (
                "second of two",
                two.clone(),
                req("c2", 2, Some(3600), one("sip:b@h", None)),
                POLICY,
                2000,
            ),
            (
                "flow",
                base.clone(),
                req("c1", 2, None, Contacts::List(vec![flow])),
                POLICY,
                2000,
            ),
            (
                "query",
                two.clone(),
                req("c1", 2, None, Contacts::Query),
                POLICY,
                2000,
            ),
            (
                "star",
                two.clone(),
                req("c7", 1, Some(0), Contacts::Star),
                POLICY,
                2000,
            ),
        ];
        for (name, current, r, policy, now) in cases {
            let mut in_place = current.clone();
            match (
                register(&current, &r, &policy, now),
                apply(&mut in_place, &r, &policy, now),
            ) {
                (Outcome::Ok { bindings, changed }, Ok(c)) => {
                    assert_eq!((in_place, c), (bindings, changed), "{name}");
                }
                (want, Err(got)) => {
                    assert_eq!(Outcome::Refused(got), want, "{name}");
                    assert_eq!(in_place, current, "{name}: nothing changed");
                }
                (want, got) => panic!("{name}: {want:?} but {got:?}"),
            }
        }
    }

    #[test]
    fn add_refresh_remove() {
        let (b, changed) = ok(register(
            &[],
            &req(
                "c1",
                1,
                Some(3600),
                Contacts::List(vec![contact("sip:a@192.0.2.1", None)]),
            ),
            &POLICY,
            1000,
        ));
        assert!(changed);
        assert_eq!((b.len(), b[0].expires_at), (1, 4600));
        // a refresh from the same Call-ID with a higher CSeq changes nothing to publish
        let (b2, changed) = ok(register(
            &b,
            &req(
                "c1",
                2,
                Some(3600),
                Contacts::List(vec![contact("sip:a@192.0.2.1", None)]),
            ),
            &POLICY,
            2000,
        ));
        assert!(!changed);
        assert_eq!((b2[0].expires_at, b2[0].cseq), (5600, 2));
        // per-contact expires wins over the header; 0 removes
        let (b3, changed) = ok(register(
            &b2,
            &req(
                "c1",
                3,
                Some(3600),
                Contacts::List(vec![contact("sip:a@192.0.2.1", Some(0))]),
            ),
            &POLICY,
            2001,
        ));
        assert!(changed && b3.is_empty());
        // query lists, expired bindings vanish
        let (q, _) = ok(register(
            &b2,
            &req("c1", 4, None, Contacts::Query),
            &POLICY,
            2002,
        ));
        assert_eq!(q.len(), 1);
        let (q, changed) = ok(register(
            &b2,
            &req("c1", 4, None, Contacts::Query),
            &POLICY,
            9999,
        ));
        assert!(q.is_empty() && changed);
    }

    #[test]
    fn rules_and_errors() {
        let (one, _) = ok(register(
            &[],
            &req(
                "c1",
                5,
                None,
                Contacts::List(vec![contact("sip:a@h", None)]),
            ),
            &POLICY,
            0,
        ));
        assert_eq!(one[0].expires_at, 600, "default expiry");
        let cases: Vec<(&str, Vec<Binding>, Register, Outcome)> = vec![
            (
                "too brief",
                vec![],
                req(
                    "c",
                    1,
                    Some(30),
                    Contacts::List(vec![contact("sip:a@h", None)]),
                ),
                Outcome::Refused(Refusal::IntervalTooBrief { min_expires: 60 }),
            ),
            (
                "star needs expires 0",
                one.clone(),
                req("c2", 1, Some(60), Contacts::Star),
                Outcome::Refused(Refusal::Invalid("contact * requires expires 0")),
            ),
            (
                "star without expires",
                one.clone(),
                req("c2", 1, None, Contacts::Star),
                Outcome::Refused(Refusal::Invalid("contact * requires expires 0")),
            ),
            (
                "star out of order",
                one.clone(),
                req("c1", 5, Some(0), Contacts::Star),
                Outcome::Refused(Refusal::OutOfOrder),
            ),
            (
                "stale cseq",
                one.clone(),
                req(
                    "c1",
                    4,
                    None,
                    Contacts::List(vec![contact("sip:a@h", None)]),
                ),
                Outcome::Refused(Refusal::OutOfOrder),
            ),
            (
                "too many",
                one.clone(),
                req(
                    "c9",
                    1,
                    None,
                    Contacts::List(vec![contact("sip:b@h", None), contact("sip:c@h", None)]),
                ),
                Outcome::Refused(Refusal::TooManyBindings { max: 2 }),
            ),
        ];
        for (name, current, r, want) in cases {
            assert_eq!(register(&current, &r, &POLICY, 1), want, "{name}");
        }
        // star from another call removes everything; a long expiry is clamped
        assert_eq!(
            ok(register(
                &one,
                &req("c2", 1, Some(0), Contacts::Star),
                &POLICY,
                1
            )),
            (vec![], true)
        );
        let (b, _) = ok(register(
            &[],
            &req(
                "c",
                1,
                Some(u32::MAX),
                Contacts::List(vec![contact("sip:a@h", None)]),
            ),
            &POLICY,
            0,
        ));
        assert_eq!(b[0].expires_at, 3600);
        // a different Call-ID may update a binding whatever its CSeq
        let (b, _) = ok(register(
            &one,
            &req(
                "other",
                1,
                None,
                Contacts::List(vec![contact("sip:a@h", Some(120))]),
            ),
            &POLICY,
            10,
        ));
        assert_eq!((b.len(), b[0].call_id.as_str()), (1, "other"));
    }

    #[test]
    fn a_phone_reconnecting_over_a_stream_replaces_its_old_contact() {
        // (first source, second source, same Call-ID, instance, bindings after)
        let cases = [
            // TCP reconnect from a new port, same registration: replaced.
            ("tcp:192.0.2.1:40001", "tcp:192.0.2.1:40002", true, None, 1),
            ("tls:192.0.2.1:40001", "tls:192.0.2.1:40002", true, None, 1),
            ("tcp:192.0.2.1:40001", "tls:192.0.2.1:40002", true, None, 1),
            // Another registration (another Call-ID) of the line: a second contact.
            ("tcp:192.0.2.1:40001", "tcp:192.0.2.1:40002", false, None, 2),
            // Over UDP the old contact may still be reached: a second contact.
            ("udp:192.0.2.1:40001", "udp:192.0.2.1:40002", true, None, 2),
            // The same connection naming a second contact: a second contact.
            ("tcp:192.0.2.1:40001", "tcp:192.0.2.1:40001", true, None, 2),
            // RFC 5626 flows are keyed by instance and reg-id instead.
            (
                "tcp:192.0.2.1:40001",
                "tcp:192.0.2.1:40002",
                true,
                Some("\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\""),
                1,
            ),
        ];
        for (first, second, same_call, instance, want) in cases {
            let contact = |uri| ContactRequest {
                uri,
                expires: Some(600),
                instance,
                reg_id: instance.map(|_| 1),
                q: None,
            };
            let mut r1 = req(
                "c1",
                1,
                None,
                Contacts::List(vec![contact("sip:a@h:40001")]),
            );
            r1.source = first.parse().unwrap();
            let (b, _) = ok(register(&[], &r1, &POLICY, 0));
            let call = if same_call { "c1" } else { "c2" };
            let mut r2 = req(
                call,
                2,
                None,
                Contacts::List(vec![contact("sip:a@h:40002")]),
            );
            r2.source = second.parse().unwrap();
            let (b, changed) = ok(register(&b, &r2, &POLICY, 1));
            assert_eq!(
                b.len(),
                want,
                "{first} then {second}, same call {same_call}"
            );
            assert!(changed);
            assert!(
                b.iter()
                    .any(|b| b.uri == "sip:a@h:40002" && b.source == r2.source)
            );
            // Applied in place, the same.
            let mut in_place = ok(register(&[], &r1, &POLICY, 0)).0;
            apply(&mut in_place, &r2, &POLICY, 1).unwrap();
            assert_eq!(in_place, b);
        }
        // An older CSeq does not move it (a delayed REGISTER of the old connection).
        let mut r1 = req(
            "c1",
            5,
            None,
            Contacts::List(vec![contact("sip:a@h:40001", Some(600))]),
        );
        r1.source = "tcp:192.0.2.1:40001".parse().unwrap();
        let (b, _) = ok(register(&[], &r1, &POLICY, 0));
        let mut r2 = req(
            "c1",
            4,
            None,
            Contacts::List(vec![contact("sip:a@h:40002", Some(600))]),
        );
        r2.source = "tcp:192.0.2.1:40002".parse().unwrap();
        let (b, _) = ok(register(&b, &r2, &POLICY, 1));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn outbound_flows_are_keyed_by_instance_and_reg_id() {
        let inst = Some("\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\"");
        let flow = |uri: &'static str, reg_id| ContactRequest {
            uri,
            expires: None,
            instance: inst,
            reg_id: Some(reg_id),
            q: None,
        };
        let (b, _) = ok(register(
            &[],
            &req(
                "c",
                1,
                None,
                Contacts::List(vec![flow("sip:a@10.0.0.1:5060", 1)]),
            ),
            &POLICY,
            0,
        ));
        // the phone moved (new address, same flow): the binding is replaced, not added
        let (b, changed) = ok(register(
            &b,
            &req(
                "c",
                2,
                None,
                Contacts::List(vec![flow("sip:a@10.0.0.2:5060", 1)]),
            ),
            &POLICY,
            1,
        ));
        assert_eq!(
            (b.len(), b[0].uri.as_str(), changed),
            (1, "sip:a@10.0.0.2:5060", true)
        );
        // a second flow to the other edge is a second binding
        let (b, _) = ok(register(
            &b,
            &req(
                "c",
                3,
                None,
                Contacts::List(vec![flow("sip:a@10.0.0.2:5060", 2)]),
            ),
            &POLICY,
            2,
        ));
        assert_eq!(b.len(), 2);
        assert!(b[1].contact_value(2).ends_with(
            ";+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=2"
        ));
    }

    fn rfc4475(file: &str) -> Message {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/conformance/sip/rfc4475");
        crate::message::parse(
            &std::fs::read(dir.join(file)).expect("conformance data in testdata/"),
        )
        .unwrap()
    }

    #[test]
    fn torture_registers() {
        let policy = Policy {
            max_bindings: 10,
            ..POLICY
        };
        // escnull: two distinct contacts, nothing truncated at %00
        let m = rfc4475("escnull.dat");
        assert_eq!(crate::verdict::check(&m), crate::verdict::Verdict::Accept);
        let (b, _) = ok(register(
            &[],
            &from_message(&m, x_source()).unwrap(),
            &policy,
            0,
        ));
        assert_eq!(b.len(), 2);
        let (cparam01, cparam02, regescrt) = (
            rfc4475("cparam01.dat"),
            rfc4475("cparam02.dat"),
            rfc4475("regescrt.dat"),
        );
        // cparam01: a bare contact's ;unknownparam is a header param, not part of the URI
        let r = from_message(&cparam01, x_source()).unwrap();
        let Contacts::List(c) = &r.contacts else {
            panic!()
        };
        assert!(!c[0].uri.contains("unknownparam"));
        // cparam02: inside <> it is a URI param and part of the binding
        let Contacts::List(c) = from_message(&cparam02, x_source()).unwrap().contacts else {
            panic!()
        };
        assert!(c[0].uri.contains(";unknownparam"));
        // regescrt: the URI keeps its escaped header
        let Contacts::List(c) = from_message(&regescrt, x_source()).unwrap().contacts else {
            panic!()
        };
        assert!(c[0].uri.contains("?Route=%3C"));
        // dblreq: only the REGISTER is seen
        let (b, _) = ok(register(
            &[],
            &from_message(&rfc4475("dblreq.dat"), x_source()).unwrap(),
            &policy,
            0,
        ));
        assert_eq!(b.len(), 1);
    }
}
