//! Header-level grammar (RFC 3261 §25): compact names, comma lists, name-addr, parameters,
//! Via and CSeq. Pure functions over unfolded header values.

use std::borrow::Cow;

pub use crate::params::{Params, lowercase};
use crate::{
    scan,
    uri::{self, Uri},
};

/// The long, lowercase name of a header, expanding compact forms (RFC 3261 §7.3.3 and the
/// later registrations).
pub fn canonical_name(name: &str) -> Cow<'static, str> {
    let long = match name.as_bytes() {
        [c] => match c.to_ascii_lowercase() {
            b'i' => "call-id",
            b'm' => "contact",
            b'e' => "content-encoding",
            b'l' => "content-length",
            b'c' => "content-type",
            b'f' => "from",
            b's' => "subject",
            b'k' => "supported",
            b't' => "to",
            b'v' => "via",
            b'o' => "event",
            b'r' => "refer-to",
            b'b' => "referred-by",
            b'u' => "allow-events",
            b'x' => "session-expires",
            b'y' => "identity",
            b'a' => "accept-contact",
            b'j' => "reject-contact",
            b'd' => "request-disposition",
            b'n' => "identity-info",
            _ => return Cow::Owned(name.to_ascii_lowercase()),
        },
        // The headers of nearly every message need no allocation.
        _ => match common_name(name) {
            Some(c) => c,
            None => return Cow::Owned(name.to_ascii_lowercase()),
        },
    };
    Cow::Borrowed(long)
}

/// The lowercase long name of a header seen in nearly every message, if `name` is one
/// (any case). This runs for every header line: it picks candidates by length and first
/// letter before comparing, instead of comparing with every name.
fn common_name(name: &str) -> Option<&'static str> {
    let b = name.as_bytes();
    let first = b.first()?.to_ascii_lowercase();
    let candidates: &[&'static str] = match (b.len(), first) {
        (2, b't') => &["to"],
        (3, b'v') => &["via"],
        (4, b'f') => &["from"],
        (4, b'c') => &["cseq"],
        (4, b'p') => &["path"],
        (4, b'd') => &["date"],
        (5, b'a') => &["allow"],
        (5, b'e') => &["event"],
        (5, b'r') => &["route"],
        (6, b'a') => &["accept"],
        (6, b's') => &["server"],
        (7, b'c') => &["call-id", "contact"],
        (7, b'e') => &["expires"],
        (7, b'r') => &["require"],
        (9, b's') => &["supported"],
        (10, b'u') => &["user-agent"],
        (11, b'm') => &["min-expires"],
        (12, b'm') => &["max-forwards"],
        (12, b'c') => &["content-type"],
        (12, b'a') => &["allow-events"],
        (12, b'r') => &["record-route"],
        (13, b'a') => &["authorization"],
        (13, b'p') => &["proxy-require"],
        (14, b'c') => &["content-length"],
        (16, b'w') => &["www-authenticate"],
        (18, b's') => &["subscription-state"],
        (19, b'p') => &["proxy-authorization"],
        _ => &[],
    };
    candidates
        .iter()
        .copied()
        .find(|c| c.as_bytes().eq_ignore_ascii_case(b))
}

/// Whether two canonical (lowercase) header names are the same. Header lookups run this
/// against every header of a message; most names differ in length or in their first or
/// last letter, which settles it without a full comparison.
#[inline]
pub fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.first() == b.first() && a.last() == b.last() && a == b
}

/// Whether every byte of `s` is a `token` character (true for ""). A table lookup per byte:
/// header names, methods and parameter names of every message go through this.
pub fn all_token_chars(s: &str) -> bool {
    const TABLE: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 128 {
            t[i] = is_token_char(i as u8 as char);
            i += 1;
        }
        t
    };
    s.bytes().all(|b| TABLE[usize::from(b)])
}

/// RFC 3261 `token` characters.
pub const fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '!' | '%' | '*' | '_' | '+' | '`' | '\'' | '~'
        )
}

/// Splits a header value at top-level commas (not inside quotes or `<...>`), each item
/// trimmed.
pub fn split_list(v: &str) -> ListItems<'_> {
    ListItems {
        rest: v,
        done: false,
    }
}

/// The items of a comma-separated header value (see [`split_list`]).
#[derive(Clone, Debug)]
pub struct ListItems<'a> {
    rest: &'a str,
    done: bool,
}

impl<'a> Iterator for ListItems<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let v = self.rest;
        let bytes = v.as_bytes();
        let mut i = 0;
        // Jump from delimiter to delimiter (memchr): a comma ends the item; a quoted string
        // or an <...> is skipped whole. Every delimiter is ASCII, so each split falls on a
        // char boundary.
        while let Some(d) = memchr::memchr3(b',', b'"', b'<', &bytes[i..]) {
            let at = i + d;
            match bytes[at] {
                b',' => {
                    self.rest = &v[at + 1..];
                    return Some(v[..at].trim_ascii());
                }
                b'"' => i = closing_quote(bytes, at + 1),
                _ => match memchr::memchr(b'>', &bytes[at + 1..]) {
                    Some(e) => i = at + 1 + e + 1,
                    None => i = bytes.len(),
                },
            }
        }
        self.done = true;
        Some(v.trim_ascii())
    }
}

/// Where the quoted string opened before `from` ends (just after its closing quote, or the
/// end of the text); backslash escapes inside it are skipped.
fn closing_quote(bytes: &[u8], mut from: usize) -> usize {
    while let Some(d) = memchr::memchr2(b'"', b'\\', &bytes[from..]) {
        let at = from + d;
        if bytes[at] == b'"' {
            return at + 1;
        }
        from = at + 2;
        if from >= bytes.len() {
            break;
        }
    }
    bytes.len()
}

/// Why a header value is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A quoted string never ends.
    #[error("unterminated quoted string")]
    Unterminated,
    /// An unquoted display name with characters a token cannot have.
    #[error("display name must be quoted")]
    DisplayName,
    /// `<` without `>`, or whitespace inside `<...>`.
    #[error("malformed <uri>")]
    Angle,
    /// A URI with headers, commas or parameters ambiguity must be in `<...>`.
    #[error("uri must be enclosed in <>")]
    NeedsAngle,
    /// The URI itself is malformed.
    #[error("bad uri: {0}")]
    Uri(#[from] uri::UriError),
    /// An empty parameter (`;;`) or an empty list element (`,,`).
    #[error("empty parameter or list element")]
    Empty,
    /// Anything else that breaks the grammar.
    #[error("malformed value")]
    Malformed,
}

/// Header parameters: `;name[=value]`, LWS around `;` and `=` allowed.
pub fn parse_params(s: &str) -> Result<Params<'_>, HeaderError> {
    let s = s.trim_ascii();
    if s.is_empty() {
        return Ok(Params::default());
    }
    let s = s.strip_prefix(';').ok_or(HeaderError::Malformed)?;
    let params = Params::checked(s);
    for (n, v) in params.iter() {
        if n.is_empty() || !all_token_chars(n) || v == Some("") {
            return Err(HeaderError::Empty);
        }
    }
    Ok(params)
}

/// A From, To, Contact or Route value, borrowing from the header value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name, unquoted.
    pub display: Option<Cow<'a, str>>,
    /// The URI.
    pub uri: Uri<'a>,
    /// The URI exactly as written (for storing bindings).
    pub uri_text: &'a str,
    /// Header parameters (after the URI).
    pub params: Params<'a>,
}

/// A quoted display name without its quotes and escapes, and the text after it.
fn quoted_display(q: &str) -> Result<(Cow<'_, str>, &str), HeaderError> {
    let bytes = q.as_bytes();
    let mut i = 0;
    let mut escaped = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                escaped = true;
                i += 2;
                continue;
            }
            b'"' => break,
            _ => i += 1,
        }
    }
    if i >= bytes.len() {
        return Err(HeaderError::Unterminated);
    }
    let inner = &q[..i];
    let display = if escaped {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            out.push(if c == '\\' {
                chars.next().unwrap_or(c)
            } else {
                c
            });
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(inner)
    };
    Ok((display, &q[i + 1..]))
}

/// Parses `name-addr / addr-spec *(;param)`.
pub fn parse_name_addr(v: &str) -> Result<NameAddr<'_>, HeaderError> {
    let s = v.trim_ascii();
    let (display, rest) = if let Some(q) = s.strip_prefix('"') {
        let (display, after) = quoted_display(q)?;
        let rest = after.trim_ascii_start();
        if !rest.starts_with('<') {
            return Err(HeaderError::Angle);
        }
        (Some(display), rest)
    } else if let Some(i) = scan::find(s, b'<') {
        let name = s[..i].trim_ascii();
        if !name
            .chars()
            .all(|c| is_token_char(c) || c == ' ' || c == '\t')
        {
            return Err(HeaderError::DisplayName);
        }
        // Runs of whitespace between the words count as one space.
        let display = if name.contains("  ") || name.contains('\t') {
            Cow::Owned(name.split_ascii_whitespace().collect::<Vec<_>>().join(" "))
        } else {
            Cow::Borrowed(name)
        };
        (Some(display).filter(|n| !n.is_empty()), &s[i..])
    } else {
        (None, s)
    };
    if let Some(inner) = rest.strip_prefix('<') {
        let end = scan::find(inner, b'>').ok_or(HeaderError::Angle)?;
        let text = &inner[..end];
        if text.trim_ascii() != text || text.is_empty() {
            return Err(HeaderError::Angle);
        }
        Ok(NameAddr {
            display,
            uri: uri::parse(text)?,
            uri_text: text,
            params: parse_params(&inner[end + 1..])?,
        })
    } else {
        // addr-spec: everything up to the first ';' is the URI, the rest header params.
        let (text, params) = match scan::find(rest, b';') {
            Some(i) => (rest[..i].trim_ascii(), &rest[i..]),
            None => (rest.trim_ascii(), ""),
        };
        if text.contains(['?', ',']) {
            return Err(HeaderError::NeedsAngle);
        }
        Ok(NameAddr {
            display,
            uri: uri::parse(text)?,
            uri_text: text,
            params: parse_params(params)?,
        })
    }
}

/// One Via value, borrowing from the header value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport as written ("UDP", "TCP", ...; compare ignoring case).
    pub transport: &'a str,
    /// Sent-by host (IPv6 in brackets).
    pub host: &'a str,
    /// Sent-by port.
    pub port: Option<u16>,
    /// Parameters (branch, received, rport, ...).
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.value(name)
    }
}

/// Parses one Via value: `SIP / 2.0 / transport sent-by *(;param)` (LWS around `/` allowed).
pub fn parse_via(v: &str) -> Result<Via<'_>, HeaderError> {
    let (head, params) = match scan::find(v, b';') {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let mut parts = scan::split(head, b'/').map(str::trim_ascii);
    let (Some(name), Some(version), Some(rest), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeaderError::Malformed);
    };
    if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
        return Err(HeaderError::Malformed);
    }
    let mut words = rest.split_ascii_whitespace();
    let (Some(transport), Some(sent_by), None) = (words.next(), words.next(), words.next()) else {
        return Err(HeaderError::Malformed);
    };
    if !all_token_chars(transport) {
        return Err(HeaderError::Malformed);
    }
    let (host, port) = uri::host_port(sent_by)?;
    Ok(Via {
        transport,
        host,
        port,
        params: parse_params(params)?,
    })
}

/// Parses CSeq: `number method`, the number below 2^31 (RFC 3261 §8.1.1.5).
pub fn parse_cseq(v: &str) -> Result<(u32, &str), HeaderError> {
    let mut words = v.split_ascii_whitespace();
    let (Some(n), Some(m), None) = (words.next(), words.next(), words.next()) else {
        return Err(HeaderError::Malformed);
    };
    let n: u32 = n
        .parse()
        .ok()
        .filter(|n| *n < 1 << 31)
        .ok_or(HeaderError::Malformed)?;
    if !all_token_chars(m) {
        return Err(HeaderError::Malformed);
    }
    Ok((n, m))
}

/// The package an Event header value names, without its parameters (`check-sync` of
/// `check-sync;reboot=true`). Compare it case-insensitively (RFC 6665 §8.2.1).
pub fn event_package(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

/// Whether an Event value names check-sync, the event that makes a phone fetch its
/// configuration again or reboot (only an edge sends one).
pub fn is_check_sync(value: &str) -> bool {
    event_package(value).eq_ignore_ascii_case("check-sync")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_their_package() {
        for (event, check_sync) in [
            ("check-sync", true),
            ("Check-Sync;reboot=true", true),
            (" check-sync ", true),
            ("check-syncx", false),
            ("message-summary", false),
            ("", false),
        ] {
            assert_eq!(is_check_sync(event), check_sync, "{event}");
        }
        assert_eq!(event_package("message-summary;id=1"), "message-summary");
    }

    #[test]
    fn common_names_need_no_allocation() {
        let common = [
            "via",
            "from",
            "to",
            "call-id",
            "cseq",
            "contact",
            "max-forwards",
            "expires",
            "user-agent",
            "authorization",
            "content-length",
            "content-type",
            "allow",
            "supported",
            "require",
            "proxy-require",
            "www-authenticate",
            "event",
            "accept",
            "path",
            "route",
            "record-route",
            "subscription-state",
            "min-expires",
            "date",
            "server",
            "allow-events",
            "proxy-authorization",
        ];
        for name in common {
            for written in [name.to_owned(), name.to_ascii_uppercase()] {
                let c = canonical_name(&written);
                assert!(matches!(c, Cow::Borrowed(_)), "{written}");
                assert_eq!(c, name);
            }
        }
        let cases = [
            ("X-Custom", "x-custom"),
            ("CSEQ", "cseq"),
            ("Contacts", "contacts"),
        ];
        for (written, want) in cases {
            assert_eq!(canonical_name(written), want);
        }
        for t in [
            "",
            "REGISTER",
            "x-custom.1!%*_+`'~",
            "a b",
            "a:b",
            "é",
            "a\u{7f}",
            "<sip>",
        ] {
            assert_eq!(all_token_chars(t), t.chars().all(is_token_char), "{t}");
        }
        assert!(same_name("call-id", "call-id"));
        assert!(!same_name("call-id", "contact"));
        assert!(!same_name("to", "t"));
    }

    #[test]
    fn name_addrs() {
        let a = parse_name_addr(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ;  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(a.display.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(
            a.params.iter().collect::<Vec<_>>(),
            [("tag", Some("98asjd8"))]
        );
        let a = parse_name_addr("sip:user@example.com;unknownparam").unwrap();
        assert!(
            a.uri.params.is_empty() && a.params.iter().count() == 1,
            "a bare URI's params belong to the header"
        );
        let a = parse_name_addr("<sip:user@example.com;unknownparam>").unwrap();
        assert!(a.uri.params.iter().count() == 1 && a.params.is_empty());
        let bad: &[(&str, HeaderError)] = &[
            (
                r#""Mr. J. User <sip:j.user@example.com>"#,
                HeaderError::Unterminated,
            ),
            (
                "Bell, Alexander <sip:a.g.bell@example.com>",
                HeaderError::DisplayName,
            ),
            ("< sip:t.watson@example.org >", HeaderError::Angle),
            (
                "sip:user@example.com?Route=%3Csip:x%3E",
                HeaderError::NeedsAngle,
            ),
            (r#""Joe" <sip:joe@example.org>;;;;"#, HeaderError::Empty),
            ("<sip:a@b", HeaderError::Angle),
        ];
        for (v, e) in bad {
            assert_eq!(parse_name_addr(v).unwrap_err(), *e, "{v}");
        }
    }

    #[test]
    fn vias_and_cseq() {
        let v = parse_via("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(
            (v.transport, v.host, v.param("branch")),
            ("UDP", "192.0.2.2", Some("390skdjuw"))
        );
        let v = parse_via("SIP/2.0/TCP [2001:db8::9:1]:5061;received=2001:db8::9:255").unwrap();
        assert_eq!(v.port, Some(5061));
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP",
            "SIP/3.0/UDP h",
            "SIP/2.0/UDP h h2",
        ] {
            assert!(parse_via(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_cseq("0009 INVITE").unwrap(), (9, "INVITE"));
        for bad in [
            "36893488147419103232 REGISTER",
            "1",
            "1 INVITE x",
            "-1 INVITE",
        ] {
            assert!(parse_cseq(bad).is_err(), "{bad}");
        }
        for (list, want) in [
            (
                r#""a,b" <sip:x>, <sip:y;p=1,2>, sip:z"#,
                vec![r#""a,b" <sip:x>"#, "<sip:y;p=1,2>", "sip:z"],
            ),
            (r#""a\",b" <sip:x>,c"#, vec![r#""a\",b" <sip:x>"#, "c"]),
            (
                "SIP/2.0/UDP h;branch=z9 , SIP/2.0/TCP g",
                vec!["SIP/2.0/UDP h;branch=z9", "SIP/2.0/TCP g"],
            ),
            ("outbound", vec!["outbound"]),
            (r#""unterminated, x"#, vec![r#""unterminated, x"#]),
            ("<sip:a,b, c", vec!["<sip:a,b, c"]),
            (r#""a\\", b"#, vec![r#""a\\""#, "b"]),
            (r#""a\", b"#, vec![r#""a\", b"#]),
            ("", vec![""]),
        ] {
            assert_eq!(split_list(list).collect::<Vec<_>>(), want, "{list}");
        }
    }
}
