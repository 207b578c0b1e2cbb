//! Message framing and raw headers (RFC 3261 §7): bytes in, a message out, no IO.
//! Liberal where the RFC allows (LF-only lines, folding, compact names, LWS before ':'),
//! strict where a liberal reading would be ambiguous (the request line).

use std::borrow::Cow;

use crate::{
    header::{all_token_chars, canonical_name, same_name},
    scan,
};

/// Largest message accepted (also the UDP datagram limit).
pub const MAX_MESSAGE: usize = 65_535;

/// The first line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD SP Request-URI SP SIP-Version`.
    Request {
        /// Method, case-sensitive (the methods of RFC 3261 and its extensions are not
        /// copied).
        method: Cow<'static, str>,
        /// Request-URI as written.
        uri: String,
        /// Version as written ("SIP/2.0" is not copied).
        version: Cow<'static, str>,
    },
    /// `SIP-Version SP Status-Code SP Reason-Phrase`.
    Response {
        /// Version as written.
        version: String,
        /// Status code.
        code: u16,
        /// Reason phrase (may be empty).
        reason: String,
    },
}

/// What the Content-Length header(s) said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentLength {
    /// No Content-Length: the body is the rest of the datagram.
    Absent,
    /// A valid length, within the datagram.
    Valid(usize),
    /// Negative, not a number, or several different values.
    Invalid,
    /// Larger than what the datagram holds.
    Short,
}

/// A parsed message.
#[derive(Clone, Debug)]
pub struct Message {
    /// The first line.
    pub start: StartLine,
    /// Headers in order: canonical (long, lowercase) name and where its unfolded, trimmed
    /// value lies in `text` (read them with [`Message::all`] and [`Message::get`]).
    headers: Vec<(Cow<'static, str>, u32, u32)>,
    /// The header values, copied once: one allocation for all of them.
    text: String,
    /// The body (exactly Content-Length octets when that is valid).
    pub body: Vec<u8>,
    /// Content-Length as found.
    pub content_length: ContentLength,
    /// The topmost Via, parsed once (a request's answer needs it three times), as ranges
    /// of `text`; none when it does not parse.
    top_via: std::sync::OnceLock<Option<ViaRanges>>,
}

/// Where the parts of a parsed Via lie in a message's value text.
#[derive(Clone, Copy, Debug)]
struct ViaRanges {
    transport: (u32, u32),
    host: (u32, u32),
    port: Option<u16>,
    params: (u32, u32),
}

impl Message {
    /// Every value of a header (by canonical name), in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _, _)| same_name(n, name))
            .map(|(_, a, b)| value(&self.text, *a, *b))
    }

    /// Every header in order: (canonical name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|(n, a, b)| (n.as_ref(), value(&self.text, *a, *b)))
    }

    /// The first value of a header.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _, _)| same_name(n, name))
            .map(|(_, a, b)| value(&self.text, *a, *b))
    }

    /// The topmost Via (the first entry of the first Via header), parsed (once).
    pub fn top_via(&self) -> Option<crate::header::Via<'_>> {
        let r = (*self.top_via.get_or_init(|| {
            let first = self.get("via")?;
            let top = crate::header::split_list(first).next()?;
            let v = crate::header::parse_via(top).ok()?;
            // Every non-empty part is a slice of `text`: its range is its offset in it.
            let at = |part: &str| {
                if part.is_empty() {
                    return (0, 0);
                }
                let start = (part.as_ptr() as usize).wrapping_sub(self.text.as_ptr() as usize);
                debug_assert!(start + part.len() <= self.text.len());
                (start as u32, (start + part.len()) as u32)
            };
            Some(ViaRanges {
                transport: at(v.transport),
                host: at(v.host),
                port: v.port,
                params: at(v.params.text()),
            })
        }))?;
        let part = |(a, b): (u32, u32)| value(&self.text, a, b);
        Some(crate::header::Via {
            transport: part(r.transport),
            host: part(r.host),
            port: r.port,
            params: crate::header::Params::checked(part(r.params)),
        })
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        matches!(self.start, StartLine::Response { .. })
    }
}

/// A header value: its range in the message's value text.
fn value(text: &str, start: u32, end: u32) -> &str {
    &text[start as usize..end as usize]
}

/// Why a datagram is not a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace.
    #[error("empty message")]
    Empty,
    /// Larger than [`MAX_MESSAGE`].
    #[error("message too large")]
    TooLarge,
    /// The header section never ends with an empty line.
    #[error("header section not terminated")]
    Unterminated,
    /// The first line is not a request or status line.
    #[error("malformed start line")]
    StartLine,
    /// A header line without a name and ':'.
    #[error("malformed header line")]
    HeaderLine,
    /// Headers that are not UTF-8.
    #[error("headers are not UTF-8")]
    NotUtf8,
}

/// Whether bytes that failed to parse look like a response (responses are dropped, never
/// answered).
pub fn looks_like_response(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(buf.len());
    buf[start..].starts_with(b"SIP/")
}

/// Parses one message from a datagram. Octets after the body (beyond Content-Length) are
/// ignored, as RFC 3261 §18.3 says.
pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
    if buf.len() > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    // Leading CRLFs (keep-alives) are ignored.
    let start = buf
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .ok_or(ParseError::Empty)?;
    let buf = &buf[start..];
    // One pass over the lines of the header section, which ends at the first empty line
    // (CRLF or LF alone). Values are copied into one string; a folded value is
    // re-assembled at its end. A broken line is remembered and the scan goes on, so that
    // the errors rank as they always have: unterminated, then not UTF-8, then the first
    // malformed line.
    let mut values = String::with_capacity(buf.len().min(2048));
    let mut headers: Vec<(Cow<'static, str>, u32, u32)> = Vec::with_capacity(16);
    let mut start_line = None;
    let mut broken = None;
    let mut not_utf8 = false;
    let mut pos = 0;
    let body_start = loop {
        let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
            return Err(ParseError::Unterminated);
        };
        let raw = &buf[pos..pos + nl];
        pos += nl + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            break pos;
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            not_utf8 = true;
            continue;
        };
        if broken.is_some() || not_utf8 {
            continue;
        }
        if start_line.is_none() {
            match parse_start_line(line) {
                Ok(l) => start_line = Some(l),
                Err(e) => broken = Some(e),
            }
            continue;
        }
        if let Err(e) = header_line(line, &mut values, &mut headers) {
            broken = Some(e);
        }
    };
    if not_utf8 {
        return Err(ParseError::NotUtf8);
    }
    if let Some(e) = broken {
        return Err(e);
    }
    let start = start_line.ok_or(ParseError::StartLine)?;
    let rest = &buf[body_start..];
    let mut lengths = headers
        .iter()
        .filter(|(n, _, _)| same_name(n, "content-length"))
        .map(|(_, a, b)| value(&values, *a, *b).parse::<usize>().ok());
    let content_length = match lengths.next() {
        None => ContentLength::Absent,
        Some(first) => {
            let all_same = lengths.all(|l| l == first);
            match first {
                Some(n) if all_same && n <= rest.len() => ContentLength::Valid(n),
                Some(_) if all_same => ContentLength::Short,
                _ => ContentLength::Invalid,
            }
        }
    };
    let body = match content_length {
        ContentLength::Valid(n) => rest[..n].to_vec(),
        _ => rest.to_vec(),
    };
    Ok(Message {
        start,
        headers,
        text: values,
        body,
        content_length,
        top_via: std::sync::OnceLock::new(),
    })
}

/// Adds one header line (or the continuation of the last one) to `values` and `headers`.
fn header_line(
    line: &str,
    values: &mut String,
    headers: &mut Vec<(Cow<'static, str>, u32, u32)>,
) -> Result<(), ParseError> {
    if line.starts_with([' ', '\t']) {
        let last = headers.last_mut().ok_or(ParseError::HeaderLine)?;
        let v = line.trim_ascii();
        if !v.is_empty() {
            let (a, b) = (last.1 as usize, last.2 as usize);
            let start = values.len();
            values.extend_from_within(a..b);
            if b > a {
                values.push(' ');
            }
            values.push_str(v);
            (last.1, last.2) = (start as u32, values.len() as u32);
        }
        return Ok(());
    }
    let (name, value) = scan::split_once(line, b':').ok_or(ParseError::HeaderLine)?;
    let name = name.trim_end_matches([' ', '\t']);
    if name.is_empty() || !all_token_chars(name) {
        return Err(ParseError::HeaderLine);
    }
    let start = values.len() as u32;
    // SIP's linear whitespace is ASCII (RFC 3261 §25.1).
    values.push_str(value.trim_ascii());
    headers.push((canonical_name(name), start, values.len() as u32));
    Ok(())
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (version, rest) = scan::split_once(rest, b' ').ok_or(ParseError::StartLine)?;
        let (code, reason) = scan::split_once(rest, b' ').unwrap_or((rest, ""));
        let code: u16 = (code.len() == 3)
            .then(|| code.parse().ok())
            .flatten()
            .ok_or(ParseError::StartLine)?;
        return Ok(StartLine::Response {
            version: format!("SIP/{version}"),
            code,
            reason: reason.to_owned(),
        });
    }
    let mut parts = scan::split(line, b' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::StartLine);
    };
    if method.is_empty()
        || !all_token_chars(method)
        || uri.is_empty()
        || !version.starts_with("SIP/")
    {
        return Err(ParseError::StartLine);
    }
    Ok(StartLine::Request {
        method: known(method, &METHODS),
        uri: uri.to_owned(),
        version: known(version, &["SIP/2.0"]),
    })
}

/// Methods a request line names without a copy.
const METHODS: [&str; 14] = [
    "REGISTER",
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "SUBSCRIBE",
    "NOTIFY",
    "MESSAGE",
    "INFO",
    "PRACK",
    "UPDATE",
    "REFER",
    "PUBLISH",
];

/// `s` borrowed from `table` when it is there (exactly), else copied.
fn known(s: &str, table: &[&'static str]) -> Cow<'static, str> {
    match table.iter().find(|k| **k == s) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(s.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_via_is_parsed_once_and_read_the_same() {
        for via in [
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport, SIP/2.0/TCP p",
            "SIP/2.0/TLS [2001:db8::1]",
            "SIP/2.0/UDP h ; received=1.2.3.4",
            "not a via",
        ] {
            let m =
                parse(format!("OPTIONS sip:a SIP/2.0\r\nVia: {via}\r\n\r\n").as_bytes()).unwrap();
            let top = crate::header::split_list(via).next().unwrap();
            let want = crate::header::parse_via(top).ok();
            assert_eq!(m.top_via(), want, "{via}");
            assert_eq!(m.top_via(), want, "{via} (kept)");
            assert_eq!(m.clone().top_via(), want, "{via} (cloned)");
        }
    }

    #[test]
    fn framing() {
        let m = parse(
            b"\r\nOPTIONS sip:a@b SIP/2.0\nv: SIP/2.0/UDP h\n  ;branch=z9hG4bK1\nl: 3\n\nabcEXTRA",
        )
        .unwrap();
        assert_eq!(m.get("via"), Some("SIP/2.0/UDP h ;branch=z9hG4bK1"));
        assert_eq!(
            (m.body.as_slice(), m.content_length),
            (&b"abc"[..], ContentLength::Valid(3))
        );
        let m = parse(b"SIP/2.0 100 \r\n\r\n").unwrap();
        assert!(
            matches!(m.start, StartLine::Response { code: 100, ref reason, .. } if reason.is_empty())
        );
        let cases: &[(&[u8], ContentLength)] = &[
            (b"A sip:a SIP/2.0\r\nl: 9\r\n\r\nabc", ContentLength::Short),
            (
                b"A sip:a SIP/2.0\r\nl: -1\r\n\r\nabc",
                ContentLength::Invalid,
            ),
            (
                b"A sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nabc",
                ContentLength::Invalid,
            ),
            (b"A sip:a SIP/2.0\r\n\r\nabc", ContentLength::Absent),
        ];
        for (buf, want) in cases {
            assert_eq!(parse(buf).unwrap().content_length, *want);
        }
        let bad: &[(&[u8], ParseError)] = &[
            (b"", ParseError::Empty),
            (b"\r\n\r\n", ParseError::Empty),
            (
                b"INVITE sip:a SIP/2.0\r\nTo: x\r\n",
                ParseError::Unterminated,
            ),
            (b"INVITE  sip:a SIP/2.0\r\n\r\n", ParseError::StartLine),
            (b"INVITE sip:a SIP/2.0 \r\n\r\n", ParseError::StartLine),
            (b"INVITE sip:a; lr SIP/2.0\r\n\r\n", ParseError::StartLine),
            (
                b"INVITE sip:a SIP/2.0\r\nno colon here\r\n\r\n",
                ParseError::HeaderLine,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\n folded first\r\n\r\n",
                ParseError::HeaderLine,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\nTo: \xff\r\n\r\n",
                ParseError::NotUtf8,
            ),
            (b"SIP/2.0 2000 OK\r\n\r\n", ParseError::StartLine),
        ];
        for (buf, want) in bad {
            assert_eq!(
                parse(buf).unwrap_err(),
                *want,
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
        assert!(looks_like_response(b"\r\nSIP/2.0 200 OK"));
    }
}
