//! SIP, SIPS and other URIs (RFC 3261 §19.1, RFC 5118 for IPv6 references). Pure.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A parsed URI. Only sip/sips URIs are split into parts; others keep their scheme and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    /// Lowercase scheme ("sip", "sips", "tel", ...).
    pub scheme: String,
    /// User part (still %-escaped), if any.
    pub user: Option<String>,
    /// Host: a name, an IPv4 address, or an IPv6 reference with its brackets.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// URI parameters (`;name[=value]`), names lowercased.
    pub params: Vec<(String, Option<String>)>,
    /// Headers part after `?`, still escaped.
    pub headers: Option<String>,
}

impl Uri {
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
pub fn parse(s: &str) -> Result<Uri, UriError> {
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
        s if s.eq_ignore_ascii_case("sip") => "sip".to_owned(),
        s if s.eq_ignore_ascii_case("sips") => "sips".to_owned(),
        other => other.to_ascii_lowercase(),
    };
    if scheme != "sip" && scheme != "sips" {
        return Ok(Uri {
            scheme,
            user: None,
            host: rest.to_owned(),
            port: None,
            params: Vec::new(),
            headers: None,
        });
    }
    // A literal '@' can only be the userinfo separator ('@' is escaped elsewhere), while
    // the user part may hold '?', ';' and ','; so split the user off first.
    let (user, after_user) = match rest.find('@') {
        Some(i) => (Some(rest[..i].to_owned()), &rest[i + 1..]),
        None => (None, rest),
    };
    let (hostpart, headers) = match after_user.split_once('?') {
        Some((m, h)) => (m, Some(h.to_owned())),
        None => (after_user, None),
    };
    let mut pieces = hostpart.split(';');
    let hostport = pieces.next().unwrap_or("");
    let mut params = Vec::new();
    for p in pieces {
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (p, None),
        };
        if n.is_empty() {
            return Err(UriError::Param);
        }
        params.push((crate::header::lowercase(n), v));
    }
    let (host, port) = host_port(hostport)?;
    Ok(Uri {
        scheme,
        user,
        host,
        port,
        params,
        headers,
    })
}

/// Splits and checks `host[:port]` (IPv6 references in brackets).
pub fn host_port(s: &str) -> Result<(String, Option<u16>), UriError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or(UriError::Ipv6)?;
        rest[..end]
            .parse::<Ipv6Addr>()
            .map_err(|_| UriError::Ipv6)?;
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UriError::Port)?),
        };
        (format!("[{}]", &rest[..end]), port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.to_owned(), None),
        }
    };
    if !host.starts_with('[') {
        let name_ok = !host.is_empty()
            && host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
            && !host.starts_with(['.', '-']);
        let looks_v4 = host.bytes().all(|c| c.is_ascii_digit() || c == b'.');
        if !name_ok || (looks_v4 && host.parse::<Ipv4Addr>().is_err() && host.contains('.')) {
            return Err(UriError::Host);
        }
    }
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
            (u.user.as_deref(), u.host.as_str()),
            (Some("user;par=u%40example.net"), "example.com")
        );
        let u = parse("sips:[2001:db8::10]:5070;transport=tcp?Route=%3Csip:x%3E").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.params.len(), u.headers.is_some()),
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
