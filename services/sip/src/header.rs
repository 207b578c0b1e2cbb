//! Header-level grammar (RFC 3261 §25): compact names, comma lists, name-addr, parameters,
//! Via and CSeq. Pure functions over unfolded header values.

use std::borrow::Cow;

use crate::uri::{self, Uri};

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
        _ => match COMMON.iter().find(|c| c.eq_ignore_ascii_case(name)) {
            Some(c) => c,
            None => return Cow::Owned(name.to_ascii_lowercase()),
        },
    };
    Cow::Borrowed(long)
}

/// Long names seen in nearly every message, lowercase.
const COMMON: [&str; 28] = [
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

/// `s` in lowercase, allocating no more than the copy.
pub fn lowercase(s: &str) -> String {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        s.to_ascii_lowercase()
    } else {
        s.to_owned()
    }
}

/// RFC 3261 `token` characters.
pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '!' | '%' | '*' | '_' | '+' | '`' | '\'' | '~'
        )
}

/// Splits a header value at top-level commas (not inside quotes or `<...>`).
pub fn split_list(v: &str) -> Vec<&str> {
    // Without quotes or angle brackets every comma separates.
    if !v.bytes().any(|b| b == b'"' || b == b'<') {
        return v.split(',').map(str::trim_ascii).collect();
    }
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escape, mut start) = (false, false, false, 0);
    // Bytes, not chars: every delimiter is ASCII, so each split falls on a char boundary.
    for (i, c) in v.bytes().enumerate() {
        if escape {
            escape = false;
            continue;
        }
        match c {
            b'\\' if quoted => escape = true,
            b'"' if !angle => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => {
                out.push(v[start..i].trim_ascii());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(v[start..].trim_ascii());
    out
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

/// Header parameters: `;name[=value]`, names lowercased, LWS around `=` allowed.
pub fn parse_params(s: &str) -> Result<Vec<(String, Option<String>)>, HeaderError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let s = s.strip_prefix(';').ok_or(HeaderError::Malformed)?;
    let mut out = Vec::new();
    for p in s.split(';') {
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().to_owned())),
            None => (p.trim(), None),
        };
        if n.is_empty() || !n.chars().all(is_token_char) || v.as_deref() == Some("") {
            return Err(HeaderError::Empty);
        }
        out.push((lowercase(n), v));
    }
    Ok(out)
}

/// A From, To, Contact or Route value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// The URI exactly as written (for storing bindings).
    pub uri_text: String,
    /// Header parameters (after the URI).
    pub params: Vec<(String, Option<String>)>,
}

/// Parses `name-addr / addr-spec *(;param)`.
pub fn parse_name_addr(v: &str) -> Result<NameAddr, HeaderError> {
    let s = v.trim();
    let (display, rest) = if let Some(q) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, e) = chars.next().ok_or(HeaderError::Unterminated)?;
                    out.push(e);
                }
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => out.push(c),
            }
        }
        let end = end.ok_or(HeaderError::Unterminated)?;
        let rest = q[end..].trim_start();
        if !rest.starts_with('<') {
            return Err(HeaderError::Angle);
        }
        (Some(out), rest)
    } else if let Some(i) = s.find('<') {
        let name = s[..i].trim();
        if !name
            .chars()
            .all(|c| is_token_char(c) || c == ' ' || c == '\t')
        {
            return Err(HeaderError::DisplayName);
        }
        (
            Some(name.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|n| !n.is_empty()),
            &s[i..],
        )
    } else {
        (None, s)
    };
    if let Some(inner) = rest.strip_prefix('<') {
        let end = inner.find('>').ok_or(HeaderError::Angle)?;
        let text = &inner[..end];
        if text.trim() != text || text.is_empty() {
            return Err(HeaderError::Angle);
        }
        let uri = uri::parse(text)?;
        let params = parse_params(&inner[end + 1..])?;
        Ok(NameAddr {
            display,
            uri,
            uri_text: text.to_owned(),
            params,
        })
    } else {
        // addr-spec: everything up to the first ';' is the URI, the rest header params.
        let (text, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim(), &rest[i..]),
            None => (rest.trim(), ""),
        };
        if text.contains(['?', ',']) {
            return Err(HeaderError::NeedsAngle);
        }
        let uri = uri::parse(text)?;
        Ok(NameAddr {
            display,
            uri,
            uri_text: text.to_owned(),
            params: parse_params(params)?,
        })
    }
}

/// One Via value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// Transport, uppercase ("UDP", "TCP", ...).
    pub transport: String,
    /// Sent-by host (IPv6 in brackets).
    pub host: String,
    /// Sent-by port.
    pub port: Option<u16>,
    /// Parameters (branch, received, rport, ...).
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Parses one Via value: `SIP / 2.0 / transport sent-by *(;param)` (LWS around `/` allowed).
pub fn parse_via(v: &str) -> Result<Via, HeaderError> {
    let (head, params) = match v.find(';') {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let parts: Vec<&str> = head.split('/').map(str::trim).collect();
    let [name, version, rest] = parts.as_slice() else {
        return Err(HeaderError::Malformed);
    };
    if !name.eq_ignore_ascii_case("SIP") || *version != "2.0" {
        return Err(HeaderError::Malformed);
    }
    let mut words = rest.split_whitespace();
    let (Some(transport), Some(sent_by), None) = (words.next(), words.next(), words.next()) else {
        return Err(HeaderError::Malformed);
    };
    if !transport.chars().all(is_token_char) {
        return Err(HeaderError::Malformed);
    }
    let (host, port) = uri::host_port(sent_by)?;
    Ok(Via {
        transport: transport.to_ascii_uppercase(),
        host,
        port,
        params: parse_params(params)?,
    })
}

/// Parses CSeq: `number method`, the number below 2^31 (RFC 3261 §8.1.1.5).
pub fn parse_cseq(v: &str) -> Result<(u32, String), HeaderError> {
    let mut words = v.split_whitespace();
    let (Some(n), Some(m), None) = (words.next(), words.next(), words.next()) else {
        return Err(HeaderError::Malformed);
    };
    let n: u32 = n
        .parse()
        .ok()
        .filter(|n| *n < 1 << 31)
        .ok_or(HeaderError::Malformed)?;
    if !m.chars().all(is_token_char) {
        return Err(HeaderError::Malformed);
    }
    Ok((n, m.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addrs() {
        let a = parse_name_addr(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ;  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(a.display.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(a.params, vec![("tag".into(), Some("98asjd8".into()))]);
        let a = parse_name_addr("sip:user@example.com;unknownparam").unwrap();
        assert!(
            a.uri.params.is_empty() && a.params.len() == 1,
            "a bare URI's params belong to the header"
        );
        let a = parse_name_addr("<sip:user@example.com;unknownparam>").unwrap();
        assert!(a.uri.params.len() == 1 && a.params.is_empty());
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
            (v.transport.as_str(), v.host.as_str(), v.param("branch")),
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
        assert_eq!(parse_cseq("0009 INVITE").unwrap(), (9, "INVITE".into()));
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
            // the fast path: no quotes, no angle brackets
            (
                "SIP/2.0/UDP h;branch=z9 , SIP/2.0/TCP g",
                vec!["SIP/2.0/UDP h;branch=z9", "SIP/2.0/TCP g"],
            ),
            ("outbound", vec!["outbound"]),
            ("", vec![""]),
        ] {
            assert_eq!(split_list(list), want, "{list}");
        }
    }
}
