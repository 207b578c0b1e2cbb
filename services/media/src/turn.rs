//! TURN for browsers: which ICE servers a WebRTC phone is given, and its time-limited
//! credentials for them. Pure.
//!
//! The credentials follow the "TURN REST API" that coturn implements (`use-auth-secret`
//! with `static-auth-secret`, draft-uberti-behave-turn-rest): the user name is
//! `{expiry unix seconds}:{phone id}` and the password is
//! `base64(HMAC-SHA1(shared secret, user name))`. coturn checks the HMAC and refuses a
//! user name whose time has passed; Dialtone stores nothing per credential, and a leaked
//! one dies by itself.
//!
//! Expiry is rounded up to a step of a twenty-fourth of the lifetime (at least a minute),
//! so one phone's credential, and the document that carries it, stays the same bytes for
//! a while (a phone polling its file gets 304s) and lasts between `ttl` and `ttl + step`.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The shared secret coturn is started with (`static-auth-secret`). Never printed.
#[derive(Clone)]
pub struct TurnSecret(Hmac<Sha1>);

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnSecret(..)")
    }
}

/// Fewest characters a shared secret may have.
pub const MIN_SECRET: usize = 16;

impl TurnSecret {
    /// The secret in a secret file's text (surrounding whitespace ignored); none when it
    /// is shorter than [`MIN_SECRET`] characters.
    pub fn from_text(text: &str) -> Option<Self> {
        let s = text.trim();
        (s.chars().count() >= MIN_SECRET)
            .then(|| Self(Hmac::new_from_slice(s.as_bytes()).expect("hmac takes any key")))
    }
}

/// One phone's TURN credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// `{expires_at}:{phone_id}`.
    pub username: String,
    /// base64 of HMAC-SHA1(secret, username).
    pub password: String,
    /// Unix seconds after which the TURN server refuses it.
    pub expires_at: u64,
}

/// When a credential issued at `now` (unix seconds) for `ttl` seconds expires: `now + ttl`
/// rounded up to the step.
pub fn expiry(now: u64, ttl: u64) -> u64 {
    let step = (ttl / 24).max(60);
    (now + ttl).div_ceil(step) * step
}

/// The credential of phone `phone_id` issued at `now` for `ttl` seconds.
pub fn credential(secret: &TurnSecret, phone_id: &str, now: u64, ttl: u64) -> Credential {
    let expires_at = expiry(now, ttl);
    let username = format!("{expires_at}:{phone_id}");
    let mut mac = secret.0.clone();
    mac.update(username.as_bytes());
    Credential {
        password: STANDARD.encode(mac.finalize().into_bytes()),
        username,
        expires_at,
    }
}

/// Whether `url` is an ICE server URL a browser takes (RFC 7064, RFC 7065):
/// `stun:`/`stuns:` `host[:port]`, or `turn:`/`turns:` `host[:port][?transport=udp|tcp]`,
/// at most 255 characters, no spaces or controls. The reason when it is not.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    if url.len() > 255 {
        return Err("longer than 255 characters");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters");
    }
    let (scheme, rest) = url.split_once(':').ok_or("has no scheme")?;
    let turn = match scheme {
        "turn" | "turns" => true,
        "stun" | "stuns" => false,
        _ => return Err("scheme must be turn:, turns:, stun: or stuns:"),
    };
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    match query {
        None => {}
        Some("transport=udp" | "transport=tcp") if turn => {}
        Some(_) => return Err("only turn: and turns: take ?transport=udp or ?transport=tcp"),
    }
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or("has an unclosed [")?;
            addr.parse::<std::net::Ipv6Addr>()
                .map_err(|_| "has an invalid IPv6 address")?;
            (addr, after.strip_prefix(':'))
        }
        None => match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        },
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if !host_ok {
        return Err("has an invalid host");
    }
    if let Some(p) = port
        && !matches!(p.parse::<u16>(), Ok(1..))
    {
        return Err("has an invalid port");
    }
    Ok(())
}

/// How a site's phones use the relay (the site's "Relay/TURN behaviour").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relay {
    /// Direct media where ICE finds a way, TURN where it does not.
    Auto,
    /// TURN only (the browser's `iceTransportPolicy: relay`).
    Always,
    /// No TURN: STUN URLs only.
    Never,
}

/// One media server's TURN and STUN URLs, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayServer<'a> {
    pub id: &'a str,
    pub region: &'a str,
    pub weight: u32,
    pub urls: &'a [String],
}

/// The ICE servers of a site's phones, one per media server with URLs: the regions in
/// `regions`' order (the site's preference, or its order by measured latency), within a
/// region the heavier server first (then by id); `relay` drops TURN URLs (`Never`).
/// Pure.
pub fn ice_servers(
    regions: &[String],
    relay: Relay,
    servers: &[RelayServer<'_>],
) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for region in regions {
        let mut here: Vec<&RelayServer<'_>> =
            servers.iter().filter(|s| s.region == region).collect();
        here.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.id.cmp(b.id)));
        for s in here {
            let urls: Vec<String> = s
                .urls
                .iter()
                .filter(|u| relay != Relay::Never || u.starts_with("stun"))
                .cloned()
                .collect();
            if !urls.is_empty() {
                out.push(urls);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_coturns_rest_api() {
        let secret = TurnSecret::from_text("  north-wind-blows-cold\n").unwrap();
        let c = credential(&secret, "ph-1", 1_700_000_000, 86_400);
        // Rounded up to the hour (a 24th of a day) past now + ttl.
        assert_eq!(c.expires_at, 1_700_089_200);
        assert_eq!(c.username, "1700089200:ph-1");
        // The HMAC-SHA1 of the user name under the secret, as coturn computes it:
        // printf '1700089200:ph-1' | openssl dgst -sha1 -hmac north-wind-blows-cold -binary | base64
        assert_eq!(c.password, "nngmBd48ElpTNXi+Ymd8hycM4/4=");
        // The same within the step, another after it.
        assert_eq!(credential(&secret, "ph-1", 1_700_000_100, 86_400), c);
        assert_ne!(credential(&secret, "ph-1", 1_700_003_700, 86_400), c);
        assert!(TurnSecret::from_text("short").is_none());
        assert_eq!(format!("{secret:?}"), "TurnSecret(..)");
    }

    #[test]
    fn expiry_lasts_at_least_the_lifetime() {
        // (now, ttl, expires at)
        let cases = [
            (0, 600, 600),
            (1, 600, 660),
            (59, 60, 120),
            (100, 86_400, 86_400 + 3600),
            (3600, 86_400, 90_000),
        ];
        for (now, ttl, want) in cases {
            let e = expiry(now, ttl);
            assert_eq!(e, want, "{now} {ttl}");
            assert!(e >= now + ttl);
        }
    }

    #[test]
    fn ice_urls() {
        let cases = [
            ("turn:203.0.113.5:3478?transport=udp", Ok(())),
            ("turns:media.example.com:5349?transport=tcp", Ok(())),
            ("turn:[2001:db8::5]:3478", Ok(())),
            ("stun:stun.example.com", Ok(())),
            (
                "http://example.com",
                Err("scheme must be turn:, turns:, stun: or stuns:"),
            ),
            ("turn:", Err("has an invalid host")),
            ("turn:host:0", Err("has an invalid port")),
            ("turn:host:99999", Err("has an invalid port")),
            (
                "stun:host?transport=udp",
                Err("only turn: and turns: take ?transport=udp or ?transport=tcp"),
            ),
            (
                "turn:host?transport=sctp",
                Err("only turn: and turns: take ?transport=udp or ?transport=tcp"),
            ),
            ("turn:ho st", Err("contains spaces or control characters")),
            ("turn:[2001:db8::5:3478", Err("has an unclosed [")),
            ("turn:host_name", Err("has an invalid host")),
            ("example.com", Err("has no scheme")),
        ];
        for (url, want) in cases {
            assert_eq!(check_url(url), want, "{url}");
        }
        assert!(check_url(&format!("turn:{}", "a".repeat(260))).is_err());
    }

    #[test]
    fn ice_servers_follow_the_regions_and_the_relay_setting() {
        let u = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (a, b, c, d) = (
            u(&["turn:a:3478", "stun:a:3478"]),
            u(&["turn:b:3478"]),
            u(&["turns:c:5349"]),
            u(&[]),
        );
        let servers = [
            RelayServer {
                id: "a",
                region: "eu",
                weight: 1,
                urls: &a,
            },
            RelayServer {
                id: "b",
                region: "eu",
                weight: 5,
                urls: &b,
            },
            RelayServer {
                id: "c",
                region: "us",
                weight: 1,
                urls: &c,
            },
            RelayServer {
                id: "d",
                region: "us",
                weight: 9,
                urls: &d,
            },
        ];
        let regions = u(&["us", "eu", "ap"]);
        // (relay, ice servers)
        let cases = [
            (Relay::Auto, vec![c.clone(), b.clone(), a.clone()]),
            (Relay::Always, vec![c.clone(), b.clone(), a.clone()]),
            (Relay::Never, vec![u(&["stun:a:3478"])]),
        ];
        for (relay, want) in cases {
            assert_eq!(ice_servers(&regions, relay, &servers), want, "{relay:?}");
        }
        // A region the site does not list gives nothing.
        assert!(ice_servers(&u(&["ap"]), Relay::Auto, &servers).is_empty());
    }
}
