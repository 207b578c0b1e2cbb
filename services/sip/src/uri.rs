//! SIP, SIPS and other URIs (RFC 3261 §19.1, RFC 5118 for IPv6 references). Pure, and
//! borrowing: parsing a URI allocates nothing (it runs several times for every request).

use std::{
    borrow::Cow,
    net::{Ipv4Addr, Ipv6Addr},
};

use crate::header::Params;

/// A parsed URI, borrowing from the text it was parsed from. Only sip/sips URIs are split
/// into parts; others keep their scheme and opaque text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri<'a> {
    /// Lowercase scheme ("sip", "sips", "tel", ...).
    pub scheme: Cow<'a, str>,
    /// User part (still %-escaped), if any.
    pub user: Option<&'a str>,
    /// Host: a name, an IPv4 address, or an IPv6 reference with its brackets.
    pub host: &'a str,
    /// Port, if given.
    pub port: Option<u16>,
    /// URI parameters (`;name[=value]`), checked; names compare case-insensitively.
    pub params: Params<'a>,
    /// Headers part after `?`, still escaped.
    pub headers: Option<&'a str>,
}

impl Uri<'_> {
    /// Whether the scheme is sip or sips.
    pub fn is_sip(&self) -> bool {
        self.scheme == "sip" || self.scheme == "sips"
    }
}

/// Why a URI is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// No `scheme:`.
    #[error("no scheme")]
    NoScheme,
    /// Whitespace or control characters inside the URI.
    #[error("whitespace inside the URI")]
    Whitespace,
    /// The host is missing or has characters a host cannot have.
    #[error("invalid host")]
    Host,
    /// `[...]` does not hold a valid IPv6 address.
    #[error("invalid IPv6 reference")]
    Ipv6,
    /// The port is not a number 0-65535.
    #[error("invalid port")]
    Port,
    /// A parameter with an empty name.
    #[error("empty URI parameter")]
    Param,
}

/// Parses a URI. Non-SIP schemes are accepted with their opaque text in `host`.
pub fn parse(s: &str) -> Result<Uri<'_>, UriError> {
    let ascii_bad = |b: u8| b <= b' ' || b == 0x7f;
    if s.bytes().any(ascii_bad)
        || (!s.is_ascii() && s.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(UriError::Whitespace);
    }
    let (scheme, rest) = s.split_once(':').ok_or(UriError::NoScheme)?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(UriError::NoScheme);
    }
    let scheme = match scheme {
        s if s.eq_ignore_ascii_case("sip") => Cow::Borrowed("sip"),
        s if s.eq_ignore_ascii_case("sips") => Cow::Borrowed("sips"),
        other => crate::header::lowercase(other),
    };
    if scheme != "sip" && scheme != "sips" {
        return Ok(Uri {
            scheme,
            user: None,
            host: rest,
            port: None,
            params: Params::default(),
            headers: None,
        });
    }
    // A literal '@' can only be the userinfo separator ('@' is escaped elsewhere), while
    // the user part may hold '?', ';' and ','; so split the user off first.
    let (user, after_user) = match rest.find('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let (hostpart, headers) = match after_user.split_once('?') {
        Some((m, h)) => (m, Some(h)),
        None => (after_user, None),
    };
    let (hostport, params) = match hostpart.find(';') {
        Some(i) => (&hostpart[..i], &hostpart[i + 1..]),
        None => (hostpart, ""),
    };
    if !params.is_empty() && params.split(';').any(|p| p.split('=').next() == Some("")) {
        return Err(UriError::Param);
    }
    let (host, port) = host_port(hostport)?;
    Ok(Uri {
        scheme,
        user,
        host,
        port,
        params: Params::checked(params),
        headers,
    })
}

/// Splits and checks `host[:port]` (IPv6 references keep their brackets).
pub fn host_port(s: &str) -> Result<(&str, Option<u16>), UriError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or(UriError::Ipv6)?;
        rest[..end]
            .parse::<Ipv6Addr>()
            .map_err(|_| UriError::Ipv6)?;
        let port = match &rest[end + 1..] {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UriError::Port)?),
        };
        (&s[..end + 2], port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let name_ok = !host.is_empty()
            && host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
            && !host.starts_with(['.', '-']);
        let looks_v4 = host.bytes().all(|c| c.is_ascii_digit() || c == b'.');
        if !name_ok || (looks_v4 && host.contains('.') && host.parse::<Ipv4Addr>().is_err()) {
            return Err(UriError::Host);
        }
        (host, port)
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| UriError::Port)?),
        None => None,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let u = parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(
            (u.user, u.host),
            (Some("user;par=u%40example.net"), "example.com")
        );
        let u = parse("sips:[2001:db8::10]:5070;transport=tcp?Route=%3Csip:x%3E").unwrap();
        assert_eq!(
            (u.host, u.port, u.params.iter().count(), u.headers.is_some()),
            ("[2001:db8::10]", Some(5070), 1, true)
        );
        assert_eq!(parse("sip:[2001:db8::10:5070]").unwrap().port, None);
        assert_eq!(parse("isbn:2983792873").unwrap().scheme, "isbn");
        let bad: &[(&str, UriError)] = &[
            ("sip:2001:db8::10", UriError::Port),
            ("sip:[2001:db8:::192.0.2.1]", UriError::Ipv6),
            ("sip:user@host:99999", UriError::Port),
            ("sip:us er@host", UriError::Whitespace),
            ("sip:user@", UriError::Host),
            ("sip:user@host;;lr", UriError::Param),
            ("nocolon", UriError::NoScheme),
            ("sip:1.2.3.999", UriError::Host),
        ];
        for (s, e) in bad {
            assert_eq!(parse(s), Err(*e), "{s}");
        }
    }
}
