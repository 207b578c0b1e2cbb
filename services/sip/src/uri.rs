//! SIP, SIPS and other URIs (RFC 3261 §19.1, RFC 5118 for IPv6 references). Pure, and
//! borrowing: parsing a URI allocates nothing (it runs several times for every request).

use std::{borrow::Cow, net::Ipv6Addr};

use crate::{
    params::{Params, lowercase},
    scan,
};

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
    // One branch-free pass for the ASCII cases (spaces, controls, DEL) and non-ASCII.
    let (bad, high) = s.bytes().fold((false, false), |(bad, high), b| {
        (bad | (b <= b' ') | (b == 0x7f), high | (b >= 0x80))
    });
    if bad || (high && s.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err(UriError::Whitespace);
    }
    let (scheme, rest) = scan::split_once(s, b':').ok_or(UriError::NoScheme)?;
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
        other => lowercase(other),
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
    let (user, after_user) = match scan::find(rest, b'@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let (hostpart, headers) = match scan::split_once(after_user, b'?') {
        Some((m, h)) => (m, Some(h)),
        None => (after_user, None),
    };
    let (hostport, params) = match scan::find(hostpart, b';') {
        Some(i) => (&hostpart[..i], &hostpart[i + 1..]),
        None => (hostpart, ""),
    };
    if !params.is_empty() && scan::split(params, b';').any(|p| p.is_empty() || p.starts_with('=')) {
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
        let end = scan::find(rest, b']').ok_or(UriError::Ipv6)?;
        rest[..end]
            .parse::<Ipv6Addr>()
            .map_err(|_| UriError::Ipv6)?;
        let port = match &rest[end + 1..] {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UriError::Port)?),
        };
        (&s[..end + 2], port)
    } else {
        // One pass over the host: its characters, and whether it is all digits and dots
        // (then it must be an IPv4 address: no top label of a name is numeric).
        let b = s.as_bytes();
        let end = scan::find(s, b':').unwrap_or(b.len());
        let (mut name_ok, mut numeric, mut dots) = (end > 0, true, false);
        for c in &b[..end] {
            match c {
                b'0'..=b'9' => {}
                b'.' => dots = true,
                b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'_' => numeric = false,
                _ => name_ok = false,
            }
        }
        let host = &s[..end];
        if !name_ok || host.starts_with(['.', '-']) || (numeric && dots && !is_ipv4(host)) {
            return Err(UriError::Host);
        }
        (host, s.get(end + 1..))
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| UriError::Port)?),
        None => None,
    };
    Ok((host, port))
}

/// Whether `s` is a dotted-quad IPv4 address, by the rules of `Ipv4Addr`'s parser (four
/// decimal octets up to 255, no leading zeros), without its generic machinery: every
/// numeric Via and URI host of a request goes through this.
fn is_ipv4(s: &str) -> bool {
    let mut octets = 0;
    for part in scan::split(s, b'.') {
        let b = part.as_bytes();
        let ok = match b {
            [d] => d.is_ascii_digit(),
            [b'1'..=b'9', d] => d.is_ascii_digit(),
            [b'1', d, e] => d.is_ascii_digit() && e.is_ascii_digit(),
            [b'2', b'0'..=b'4', e] => e.is_ascii_digit(),
            [b'2', b'5', b'0'..=b'5'] => true,
            _ => false,
        };
        octets += 1;
        if !ok || octets > 4 {
            return false;
        }
    }
    octets == 4
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn ipv4_hosts_as_the_standard_parser_reads_them() {
        let mut cases: Vec<String> = [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            ".1.2.3",
            "1.2.3.",
            "",
            "1",
            "199.249.250.251",
            "300.2.3.4",
            "1.2.3.04",
        ]
        .map(String::from)
        .into();
        for n in [
            0, 7, 9, 10, 19, 20, 99, 100, 199, 200, 249, 250, 255, 256, 260, 299, 300, 999,
        ] {
            cases.push(format!("{n}.1.1.1"));
            cases.push(format!("1.1.1.{n}"));
            cases.push(format!("0{n}.1.1.1"));
        }
        for c in cases {
            assert_eq!(is_ipv4(&c), c.parse::<Ipv4Addr>().is_ok(), "{c}");
        }
    }

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
