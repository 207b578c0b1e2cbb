//! Message framing and raw headers (RFC 3261 §7): bytes in, a message out, no IO.
//! Liberal where the RFC allows (LF-only lines, folding, compact names, LWS before ':'),
//! strict where a liberal reading would be ambiguous (the request line).

use std::borrow::Cow;

use crate::{
    addressing::{Addressing, AddressingError, AddressingRanges},
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
    /// From, To and CSeq, read once (normally by the verdict), as ranges of `text`.
    addressing: std::sync::OnceLock<Result<AddressingRanges, AddressingError>>,
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

    /// The user part of a request's Request-URI (none: a response, or a URI without one,
    /// which addresses the server itself).
    pub fn request_user(&self) -> Option<&str> {
        let StartLine::Request { uri, .. } = &self.start else {
            return None;
        };
        crate::uri::parse(uri).ok()?.user
    }

    /// From, To and CSeq, read (once) from their first values: the verdict's reading, handed
    /// on to whoever handles the message next.
    pub fn addressing(&self) -> Result<Addressing<'_>, AddressingError> {
        let read = self.addressing.get_or_init(|| {
            AddressingRanges::read(
                &self.text,
                self.get("from"),
                self.get("to"),
                self.get("cseq"),
            )
        });
        read.map(|r| r.view(&self.text))
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

/// Bounds on what one message may hold. Every one is far above what a phone, a proxy or the
/// RFC 4475 torture messages use; each stops an input that would cost later code (the
/// verdict, the registrar, a proxied copy) work or memory out of proportion to its size.
pub mod limits {
    /// Header fields (lines that start a header; continuations not counted).
    pub const HEADERS: usize = 256;
    /// Continuation lines of one header field (folding, RFC 3261 §7.3.1).
    pub const FOLDS: usize = 32;
    /// Octets of a header name.
    pub const NAME: usize = 128;
    /// Octets of one header value, unfolded.
    pub const VALUE: usize = 8192;
    /// Via entries in all the Via headers together.
    pub const VIAS: usize = 64;
    /// Contact entries in all the Contact headers together.
    pub const CONTACTS: usize = 32;
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
    /// More than [`limits::HEADERS`] header fields.
    #[error("too many header fields")]
    TooManyHeaders,
    /// A header folded over more than [`limits::FOLDS`] continuation lines.
    #[error("header folded over too many lines")]
    TooManyFolds,
    /// A header name longer than [`limits::NAME`].
    #[error("header name too long")]
    NameTooLong,
    /// A header value longer than [`limits::VALUE`].
    #[error("header value too long")]
    ValueTooLong,
    /// More than [`limits::VIAS`] Via entries.
    #[error("too many via entries")]
    TooManyVias,
    /// More than [`limits::CONTACTS`] Contact entries.
    #[error("too many contact entries")]
    TooManyContacts,
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
///
/// Linear in the input and bounded in memory: the header values are copied once into one
/// string sized to the header section (folding appends to the value being unfolded, which
/// is always the last one), and every count and length is capped by [`limits`].
pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
    let (buf, head_len) = head(buf)?;
    let head_text = std::str::from_utf8(&buf[..head_len]).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = HeaderLines::new(head_text);
    let start = parse_start_line(lines.next().ok_or(ParseError::StartLine)?)?;
    let mut values = String::with_capacity(head_len);
    let mut headers: Vec<(Cow<'static, str>, u32, u32)> = Vec::with_capacity(16);
    let mut folds = 0;
    for line in lines {
        header_line(line, &mut values, &mut headers, &mut folds)?;
    }
    count_entries(&values, &headers)?;
    let rest = &buf[head_len..];
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
        addressing: std::sync::OnceLock::new(),
    })
}

/// The message without its leading CRLFs (keep-alives, ignored) and the length of its head:
/// the start line and headers up to and including the empty line (CRLF or LF alone).
fn head(buf: &[u8]) -> Result<(&[u8], usize), ParseError> {
    if buf.len() > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    let start = buf
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .ok_or(ParseError::Empty)?;
    let buf = &buf[start..];
    for nl in memchr::memchr_iter(b'\n', buf) {
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Ok((buf, nl + 2)),
            Some([b'\r', b'\n', ..]) => return Ok((buf, nl + 3)),
            _ => {}
        }
    }
    Err(ParseError::Unterminated)
}

/// The non-empty lines of a head, without their line ends.
struct HeaderLines<'a> {
    rest: &'a str,
}

impl<'a> HeaderLines<'a> {
    fn new(head: &'a str) -> Self {
        Self { rest: head }
    }
}

impl<'a> Iterator for HeaderLines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let nl = memchr::memchr(b'\n', self.rest.as_bytes())?;
        let line = &self.rest[..nl];
        self.rest = &self.rest[nl + 1..];
        let line = line.strip_suffix('\r').unwrap_or(line);
        (!line.is_empty()).then_some(line)
    }
}

/// Adds one header line (or the continuation of the last one) to `values` and `headers`.
/// The last header's value always ends `values`, so a continuation is appended in place.
fn header_line(
    line: &str,
    values: &mut String,
    headers: &mut Vec<(Cow<'static, str>, u32, u32)>,
    folds: &mut usize,
) -> Result<(), ParseError> {
    if line.starts_with([' ', '\t']) {
        let last = headers.last_mut().ok_or(ParseError::HeaderLine)?;
        *folds += 1;
        if *folds > limits::FOLDS {
            return Err(ParseError::TooManyFolds);
        }
        let v = line.trim_ascii();
        if !v.is_empty() {
            debug_assert_eq!(last.2 as usize, values.len());
            if last.2 > last.1 {
                values.push(' ');
            }
            values.push_str(v);
            last.2 = values.len() as u32;
            if (last.2 - last.1) as usize > limits::VALUE {
                return Err(ParseError::ValueTooLong);
            }
        }
        return Ok(());
    }
    *folds = 0;
    if headers.len() == limits::HEADERS {
        return Err(ParseError::TooManyHeaders);
    }
    let (name, value) = scan::split_once(line, b':').ok_or(ParseError::HeaderLine)?;
    let name = name.trim_end_matches([' ', '\t']);
    if name.len() > limits::NAME {
        return Err(ParseError::NameTooLong);
    }
    if name.is_empty() || !all_token_chars(name) {
        return Err(ParseError::HeaderLine);
    }
    // SIP's linear whitespace is ASCII (RFC 3261 §25.1).
    let value = value.trim_ascii();
    if value.len() > limits::VALUE {
        return Err(ParseError::ValueTooLong);
    }
    let start = values.len() as u32;
    values.push_str(value);
    headers.push((canonical_name(name), start, values.len() as u32));
    Ok(())
}

/// Checks the number of Via and Contact entries (comma-separated ones counted one by one).
fn count_entries(
    values: &str,
    headers: &[(Cow<'static, str>, u32, u32)],
) -> Result<(), ParseError> {
    let (mut vias, mut contacts) = (0, 0);
    for (name, a, b) in headers {
        let (count, max, err) = match name.as_ref() {
            "via" => (&mut vias, limits::VIAS, ParseError::TooManyVias),
            "contact" => (&mut contacts, limits::CONTACTS, ParseError::TooManyContacts),
            _ => continue,
        };
        *count += crate::header::split_list(value(values, *a, *b))
            .take(max + 1)
            .count();
        if *count > max {
            return Err(err);
        }
    }
    Ok(())
}

/// What can be read of a request that does not parse, to answer it with 400 (RFC 3261
/// §21.4.1): the Via, From, To, Call-ID and CSeq lines that are well formed (within the
/// same limits), after a start line that may be broken. None when it has no Via (there is
/// nowhere to answer) or is not a request at all.
pub fn salvage(buf: &[u8]) -> Option<Message> {
    let (buf, head_len) = head(buf).ok()?;
    if looks_like_response(buf) {
        return None;
    }
    let head_text = std::str::from_utf8(&buf[..head_len]).ok()?;
    let mut lines = HeaderLines::new(head_text);
    let first = lines.next()?;
    // The method as written, when the first word is one (ACK is never answered).
    let method = first
        .split([' ', '\t'])
        .next()
        .filter(|m| !m.is_empty() && all_token_chars(m))?;
    let mut values = String::with_capacity(head_len.min(limits::VALUE * 4));
    let mut headers: Vec<(Cow<'static, str>, u32, u32)> = Vec::new();
    let mut vias = 0;
    for line in lines.take(limits::HEADERS * (limits::FOLDS + 1)) {
        let Some((name, v)) = scan::split_once(line, b':') else {
            continue;
        };
        let name = canonical_name(name.trim_end_matches([' ', '\t']));
        let v = v.trim_ascii();
        let keep = match name.as_ref() {
            "via" => vias < limits::VIAS,
            "from" | "to" | "call-id" | "cseq" => !headers.iter().any(|(n, _, _)| *n == name),
            _ => false,
        };
        if !keep || v.len() > limits::VALUE || line.starts_with([' ', '\t']) {
            continue;
        }
        if name == "via" {
            vias += crate::header::split_list(v).count();
            if vias > limits::VIAS {
                continue;
            }
        }
        let start = values.len() as u32;
        values.push_str(v);
        headers.push((name, start, values.len() as u32));
    }
    if !headers.iter().any(|(n, _, _)| n == "via") {
        return None;
    }
    Some(Message {
        start: StartLine::Request {
            method: known(method, &METHODS),
            uri: String::new(),
            version: Cow::Borrowed("SIP/2.0"),
        },
        headers,
        text: values,
        body: Vec::new(),
        content_length: ContentLength::Absent,
        top_via: std::sync::OnceLock::new(),
        addressing: std::sync::OnceLock::new(),
    })
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
    fn a_requests_user_is_read_from_its_uri() {
        let with = |u: &str| {
            parse(format!("OPTIONS {u} SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n").as_bytes()).unwrap()
        };
        assert_eq!(with("sip:u1@e").request_user(), Some("u1"));
        assert_eq!(with("sip:e:5060").request_user(), None);
        assert_eq!(
            with("sips:+1415@e;user=phone").request_user(),
            Some("+1415")
        );
        let response = parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n").unwrap();
        assert_eq!(response.request_user(), None);
    }

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

    /// A request of about `size` octets whose last header goes on in `folds` continuation
    /// lines (the datagram that once took 400 MB).
    pub(crate) fn folded(folds: usize) -> Vec<u8> {
        let mut m = b"OPTIONS sip:e SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@e>;tag=1\r\nTo: <sip:a@e>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nX-Fold: a\r\n".to_vec();
        for _ in 0..folds {
            m.extend_from_slice(b" b\r\n");
        }
        m.extend_from_slice(b"\r\n");
        m
    }

    #[test]
    fn folding_is_appended_in_place() {
        let m = parse(&folded(limits::FOLDS)).unwrap();
        let want = format!("a{}", " b".repeat(limits::FOLDS));
        assert_eq!(m.get("x-fold"), Some(want.as_str()));
        // Folds of an earlier header do not count against a later one.
        let two = b"A sip:a SIP/2.0\r\nXa: a\r\n b\r\nYa: c\r\n\td\r\n \r\n e\r\n\r\n";
        let m = parse(two).unwrap();
        assert_eq!((m.get("xa"), m.get("ya")), (Some("a b"), Some("c d e")));
    }

    #[test]
    fn limits_are_errors() {
        let header = |name: &str, value: &str, n: usize| {
            let mut m = String::from("OPTIONS sip:e SIP/2.0\r\n");
            for _ in 0..n {
                m.push_str(&format!("{name}: {value}\r\n"));
            }
            m.push_str("\r\n");
            m.into_bytes()
        };
        let long = "v".repeat(limits::VALUE);
        let name = "n".repeat(limits::NAME);
        let vias = vec!["SIP/2.0/UDP h"; limits::VIAS].join(", ");
        let contacts = vec!["\"Doe, J\" <sip:a@b>"; limits::CONTACTS].join(", ");
        let cases: Vec<(Vec<u8>, Option<ParseError>)> = vec![
            (folded(limits::FOLDS + 1), Some(ParseError::TooManyFolds)),
            (folded(16_000), Some(ParseError::TooManyFolds)),
            (header("X-A", "1", limits::HEADERS), None),
            (
                header("X-A", "1", limits::HEADERS + 1),
                Some(ParseError::TooManyHeaders),
            ),
            (header("X-A", &long, 1), None),
            (
                header("X-A", &format!("{long}v"), 1),
                Some(ParseError::ValueTooLong),
            ),
            (header(&name, "1", 1), None),
            (
                header(&format!("{name}n"), "1", 1),
                Some(ParseError::NameTooLong),
            ),
            (header("Via", &vias, 1), None),
            (
                header("Via", &format!("{vias}, SIP/2.0/UDP h"), 1),
                Some(ParseError::TooManyVias),
            ),
            (
                header("v", "SIP/2.0/UDP h", limits::VIAS + 1),
                Some(ParseError::TooManyVias),
            ),
            (header("Contact", &contacts, 1), None),
            (header("m", &contacts, 2), Some(ParseError::TooManyContacts)),
        ];
        for (i, (buf, want)) in cases.iter().enumerate() {
            assert_eq!(parse(buf).err(), *want, "case {i}");
        }
        // Folding cannot grow a value past the limit either.
        let mut m = header("X-A", &long[..limits::VALUE - 1], 1);
        m.truncate(m.len() - 2);
        m.extend_from_slice(b" b\r\n\r\n");
        assert_eq!(parse(&m).err(), Some(ParseError::ValueTooLong));
    }

    #[test]
    fn a_broken_request_keeps_what_its_answer_needs() {
        type Case<'a> = (&'a [u8], Option<(&'a str, usize)>);
        let cases: &[Case] = &[
            // Broken request lines (RFC 4475 3.1.2.8-10) with a readable Via.
            (b"INVITE sip:a b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:f@e>;tag=1\r\nTo: <sip:t@e>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n", Some(("INVITE", 5))),
            (b"INVITE  sip:a SIP/2.0\r\nv: SIP/2.0/UDP h\r\nv: SIP/2.0/UDP i\r\n\r\n", Some(("INVITE", 2))),
            // A malformed header among good ones: the good ones are kept.
            (b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nno colon\r\nCall-ID: c\r\n\r\n", Some(("OPTIONS", 2))),
            // Without a Via there is nowhere to answer.
            (b"INVITE sip:a b SIP/2.0\r\nCall-ID: c\r\n\r\n", None),
            // Responses are never answered.
            (b"SIP/2.0 2000 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n", None),
            (b"INVITE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n", None),
        ];
        for (buf, want) in cases {
            let got = salvage(buf).map(|m| {
                let StartLine::Request { method, .. } = &m.start else {
                    panic!()
                };
                (method.to_string(), m.iter().count())
            });
            assert_eq!(
                got,
                want.map(|(m, n)| (m.to_owned(), n)),
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
        let m = salvage(&folded(16_000)).unwrap();
        assert_eq!((m.get("call-id"), m.get("x-fold")), (Some("c"), None));
    }
}
