//! What the edge does with a parsed message before any routing: accept it, answer it with
//! an error (400, 505, 416, 420, 415), or drop it (a broken response is never answered).
//! Pure; the reasons go into the reason phrase or a Warning.

use crate::{
    header::{self, parse_name_addr, parse_via, split_list},
    message::{ContentLength, Message, StartLine},
    uri,
};

/// Option tags the edge supports (RFC 3327 path, RFC 5626 outbound, RFC 5627 gruu).
pub const SUPPORTED: [&str; 3] = ["path", "outbound", "gruu"];

/// Body types the edge understands when it is the recipient.
pub const KNOWN_CONTENT_TYPES: [&str; 9] = [
    "application/sdp",
    "multipart/mixed",
    "multipart/alternative",
    "multipart/related",
    "message/sipfrag",
    "application/simple-message-summary",
    "application/pidf+xml",
    "application/dialog-info+xml",
    "text/plain",
];

/// The outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Well-formed: route or process it.
    Accept,
    /// Answer with this status code.
    Reject {
        /// Status code.
        code: u16,
        /// Why, for the reason phrase or a Warning.
        reason: String,
    },
    /// Discard silently (malformed responses, RFC 3261 §18.1.2).
    Drop {
        /// Why, for logs and metrics.
        reason: String,
    },
}

fn reject(code: u16, reason: impl Into<String>) -> Verdict {
    Verdict::Reject {
        code,
        reason: reason.into(),
    }
}

/// Headers that may appear once only.
const SINGLE: [&str; 7] = [
    "call-id",
    "to",
    "from",
    "cseq",
    "max-forwards",
    "content-type",
    "content-length",
];

/// What [`common`] read that the request checks need again.
struct Common<'a> {
    /// The method of the CSeq.
    cseq_method: &'a str,
    /// Whether the To URI is sip or sips.
    to_is_sip: bool,
    /// The Max-Forwards value, if any.
    max_forwards: Option<&'a str>,
    /// The Content-Type value, if any.
    content_type: Option<&'a str>,
    /// Whether there is a Contact header.
    contacts: bool,
    /// Whether there is a Require or Proxy-Require header.
    requires: bool,
    /// The first Date value, if any.
    date: Option<&'a str>,
}

/// Checks the headers every message needs; the error is the reason.
fn common(m: &Message) -> Result<Common<'_>, String> {
    // One pass over the headers counts what must be present and what may appear once, and
    // keeps the values the checks below read (a lookup by name is a pass of its own).
    let mut count = [0u32; SINGLE.len()];
    let mut first: [Option<&str>; SINGLE.len()] = [None; SINGLE.len()];
    let (mut vias, mut contacts, mut requires, mut date) = (0, false, false, None);
    for (name, value) in m.iter() {
        if let Some(i) = SINGLE.iter().position(|s| header::same_name(s, name)) {
            first[i] = first[i].or(Some(value));
            count[i] += 1;
        } else {
            match name {
                "via" => vias += 1,
                "contact" => contacts = true,
                "date" if date.is_none() => date = Some(value),
                "require" | "proxy-require" => requires = true,
                _ => {}
            }
        }
    }
    let at = |h: &str| {
        let i = SINGLE.iter().position(|s| *s == h);
        i.expect("a name of SINGLE")
    };
    let value = |h: &str| first[at(h)];
    for h in ["to", "from", "call-id", "cseq"] {
        if value(h).is_none() {
            return Err(format!("missing {h}"));
        }
    }
    if vias == 0 {
        return Err("missing via".into());
    }
    if let Some((h, _)) = SINGLE.iter().zip(count).find(|(_, n)| *n > 1) {
        return Err(format!("more than one {h}"));
    }
    match m.content_length {
        ContentLength::Invalid => return Err("invalid content-length".into()),
        ContentLength::Short => return Err("content-length larger than the message".into()),
        _ => {}
    }
    // CSeq, From and To are read once, and the reading kept in the message for whoever
    // handles it next.
    let addressing = m.addressing().map_err(|e| e.to_string())?;
    // The topmost Via is parsed once for the message (and kept); the others here.
    let top_ok = m.top_via().is_some();
    for (i, item) in m.all("via").flat_map(split_list).enumerate() {
        if i > 0 || !top_ok {
            parse_via(item).map_err(|e| format!("via: {e}"))?;
        }
    }
    Ok(Common {
        cseq_method: addressing.cseq_method,
        to_is_sip: addressing.to.sip,
        max_forwards: value("max-forwards"),
        content_type: value("content-type"),
        contacts,
        requires,
        date,
    })
}

/// The verdict on a message.
pub fn check(m: &Message) -> Verdict {
    match &m.start {
        StartLine::Response { version, code, .. } => {
            if !version.eq_ignore_ascii_case("SIP/2.0") {
                return Verdict::Drop {
                    reason: format!("version {version}"),
                };
            }
            if !(100..=699).contains(code) {
                return Verdict::Drop {
                    reason: format!("status code {code}"),
                };
            }
            match common(m) {
                Ok(_) => Verdict::Accept,
                Err(reason) => Verdict::Drop { reason },
            }
        }
        StartLine::Request {
            method,
            uri,
            version,
        } => check_request(m, method, uri, version),
    }
}

fn check_request(m: &Message, method: &str, ruri: &str, version: &str) -> Verdict {
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return reject(505, format!("version {version} not supported"));
    }
    if ruri.starts_with('<') {
        return reject(400, "request-uri in <>");
    }
    let target = match uri::parse(ruri) {
        Ok(u) => u,
        Err(e) => return reject(400, format!("request-uri: {e}")),
    };
    if !target.is_sip() && target.scheme != "tel" {
        return reject(416, format!("unsupported uri scheme {}", target.scheme));
    }
    if target.headers.is_some() {
        return reject(400, "request-uri has headers");
    }
    let parsed = match common(m) {
        Ok(p) => p,
        Err(reason) => return reject(400, reason),
    };
    if parsed.cseq_method != method {
        return reject(400, "cseq method differs from the request method");
    }
    if let Some(mf) = parsed.max_forwards
        && (!mf.chars().all(|c| c.is_ascii_digit())
            || mf.is_empty()
            || mf.parse::<u32>().map_or(true, |n| n > 255))
    {
        return reject(400, "max-forwards must be 0-255");
    }
    // A lookup by name is a pass over the headers: made only for what is there.
    if parsed.contacts {
        for item in m.all("contact").flat_map(split_list).filter(|i| *i != "*") {
            if let Err(e) = parse_name_addr(item) {
                return reject(400, format!("contact: {e}"));
            }
        }
    }
    if let Some(date) = parsed.date
        && !date.ends_with(" GMT")
    {
        return reject(400, "date must be in GMT");
    }
    if parsed.requires {
        let unsupported: Vec<&str> = m
            .all("require")
            .chain(m.all("proxy-require"))
            .flat_map(split_list)
            .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            return reject(420, unsupported.join(", "));
        }
    }
    if let Some(ct) = parsed.content_type {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !m.body.is_empty() && !KNOWN_CONTENT_TYPES.contains(&mime.as_str()) {
            return reject(415, format!("content type {mime}"));
        }
    }
    if method == "REGISTER" {
        if !target.is_sip() {
            return reject(416, "register request-uri must be sip or sips");
        }
        if !parsed.to_is_sip {
            return reject(400, "address of record must be a sip or sips uri");
        }
    }
    Verdict::Accept
}

/// Whether a string is a SIP token (for callers that check methods or option tags).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && header::all_token_chars(s)
}
