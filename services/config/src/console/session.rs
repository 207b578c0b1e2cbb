//! The console's sessions: a random id in an `HttpOnly; Secure; SameSite=Strict` cookie
//! names a session held here, with the API token it logged in with (never sent back to the
//! browser), its CSRF token and a one-shot message (a password shown once). Sessions end
//! when idle too long, when too old, at logout, or when the table is full (the least
//! recently used goes first). Time is passed in, so every rule is tested without sleeping.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// The cookie naming a session.
pub const COOKIE: &str = "dialtone_session";

/// How long a session lives unused.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// How long a session lives at all.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at once; a login beyond that ends the least recently used one.
pub const MAX_SESSIONS: usize = 10_000;
/// Sessions one token may hold; its login beyond that ends its own least recently used
/// one, so no token holder can push everyone else out.
pub const MAX_PER_TOKEN: usize = 50;

/// What a logged-in browser is.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// The API token it logged in with; every request is checked against the node's
    /// current tokens with it, so a revoked token ends its sessions' rights at once.
    pub token: String,
    /// The token's name (who did it, in the audit log).
    pub who: String,
    /// The CSRF token every state-changing form carries.
    pub csrf: String,
    /// A message for the next page only (a password shown once).
    pub flash: Option<Flash>,
    created: Instant,
    last_used: Instant,
}

/// A one-shot message.
#[derive(Clone, PartialEq, Eq)]
pub struct Flash {
    /// The page it is for (a path); another page leaves it waiting.
    pub for_path: String,
    /// Secrets to show once: `(label, value)`.
    pub secrets: Vec<(String, String)>,
}

// Debug never prints the token, the CSRF token or a password.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("who", &self.who)
            .field("flash", &self.flash)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Flash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flash")
            .field("for_path", &self.for_path)
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// The sessions of one node (a console behind several config nodes needs sticky sessions;
/// see docs/console.md).
#[derive(Debug)]
pub struct Sessions {
    by_hash: HashMap<[u8; 32], Session>,
    idle: Duration,
    absolute: Duration,
    max: usize,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(IDLE, ABSOLUTE, MAX_SESSIONS)
    }
}

/// 32 random bytes, base64url: a session id or a CSRF token.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Sessions are found by the hash of their id, so the table holds no usable cookie.
fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// What other tables key a session by (import reports, stream counts): the hash of its
/// id, hex, so none holds a usable cookie.
pub fn key_hex(id: &str) -> String {
    hex::encode(key(id))
}

/// Whether two secrets are equal, in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    /// A table with these limits.
    pub fn new(idle: Duration, absolute: Duration, max: usize) -> Self {
        Sessions {
            by_hash: HashMap::new(),
            idle,
            absolute,
            max: max.max(1),
        }
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_used) < self.idle
            && now.saturating_duration_since(s.created) < self.absolute
    }

    /// Starts a session for `token` (named `who`); returns its id, for the cookie.
    pub fn start(&mut self, token: &str, who: &str, now: Instant) -> String {
        let own: Vec<([u8; 32], Instant)> = self
            .by_hash
            .iter()
            .filter(|(_, s)| s.who == who)
            .map(|(k, s)| (*k, s.last_used))
            .collect();
        if own.len() >= MAX_PER_TOKEN
            && let Some((oldest, _)) = own.iter().min_by_key(|(_, t)| *t)
        {
            self.by_hash.remove(oldest);
        }
        if self.by_hash.len() >= self.max {
            self.by_hash.retain(|_, s| {
                now.saturating_duration_since(s.last_used) < self.idle
                    && now.saturating_duration_since(s.created) < self.absolute
            });
        }
        if self.by_hash.len() >= self.max
            && let Some(oldest) = self
                .by_hash
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| *k)
        {
            self.by_hash.remove(&oldest);
        }
        let id = random_secret();
        self.by_hash.insert(
            key(&id),
            Session {
                token: token.to_owned(),
                who: who.to_owned(),
                csrf: random_secret(),
                flash: None,
                created: now,
                last_used: now,
            },
        );
        id
    }

    /// The live session `id` names, marked used; an expired one is removed.
    pub fn touch(&mut self, id: &str, now: Instant) -> Option<Session> {
        let k = key(id);
        let s = self.by_hash.get(&k)?;
        if !self.live(s, now) {
            self.by_hash.remove(&k);
            return None;
        }
        let s = self.by_hash.get_mut(&k)?;
        s.last_used = now;
        Some(s.clone())
    }

    /// The live session `id` names, without marking it used (what a live status stream
    /// asks: an open page must not keep an idle session alive).
    pub fn peek(&self, id: &str, now: Instant) -> Option<Session> {
        self.by_hash
            .get(&key(id))
            .filter(|s| self.live(s, now))
            .cloned()
    }

    /// Whether `id` names a live session, without marking it used (live status streams
    /// must not keep an idle session alive).
    pub fn alive(&self, id: &str, now: Instant) -> bool {
        self.by_hash
            .get(&key(id))
            .is_some_and(|s| self.live(s, now))
    }

    /// Leaves `flash` for the next page of session `id`.
    pub fn set_flash(&mut self, id: &str, flash: Flash) {
        if let Some(s) = self.by_hash.get_mut(&key(id)) {
            s.flash = Some(flash);
        }
    }

    /// The flash waiting for `path`, taken: it is shown once.
    pub fn take_flash(&mut self, id: &str, path: &str) -> Option<Flash> {
        let s = self.by_hash.get_mut(&key(id))?;
        if s.flash.as_ref().is_some_and(|f| f.for_path == path) {
            s.flash.take()
        } else {
            None
        }
    }

    /// Ends session `id` (logout).
    pub fn end(&mut self, id: &str) {
        self.by_hash.remove(&key(id));
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// The `Set-Cookie` value starting a session (`secure`: served over TLS; on a plaintext
/// loopback listener browsers would drop a `Secure` cookie only where they do not treat
/// the host as a secure context, so it is always sent).
pub fn cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        ABSOLUTE.as_secs()
    )
}

/// The `Set-Cookie` value ending it.
pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

/// The session id in a `Cookie` header.
pub fn id_in(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (Sessions, Instant) {
        (
            Sessions::new(Duration::from_secs(60), Duration::from_secs(300), 3),
            Instant::now(),
        )
    }

    #[test]
    fn a_session_lives_while_used_and_ends_idle_old_or_logged_out() {
        let (mut t, t0) = table();
        let id = t.start("tok", "admin", t0);
        let s = t.touch(&id, t0 + Duration::from_secs(50)).expect("live");
        assert_eq!((s.token.as_str(), s.who.as_str()), ("tok", "admin"));
        // Used every 50 s it stays until its absolute limit.
        for k in 2..6 {
            assert!(t.touch(&id, t0 + Duration::from_secs(50 * k)).is_some());
        }
        assert!(t.touch(&id, t0 + Duration::from_secs(300)).is_none());
        assert!(t.is_empty(), "an expired session is removed when seen");

        let id = t.start("tok", "admin", t0);
        assert!(t.touch(&id, t0 + Duration::from_secs(61)).is_none(), "idle");
        let id = t.start("tok", "admin", t0);
        t.end(&id);
        assert!(t.touch(&id, t0).is_none(), "logged out");
        assert!(t.touch("nonsense", t0).is_none());
        // Peeking is no use: a session only peeked at goes idle.
        let id = t.start("tok", "admin", t0);
        assert!(t.peek(&id, t0 + Duration::from_secs(50)).is_some());
        assert!(t.peek(&id, t0 + Duration::from_secs(61)).is_none());
    }

    #[test]
    fn a_full_table_drops_expired_then_least_recently_used() {
        let (mut t, t0) = table();
        let a = t.start("a", "a", t0);
        let b = t.start("b", "b", t0 + Duration::from_secs(1));
        let c = t.start("c", "c", t0 + Duration::from_secs(2));
        t.touch(&a, t0 + Duration::from_secs(3));
        let d = t.start("d", "d", t0 + Duration::from_secs(4));
        assert_eq!(t.len(), 3);
        assert!(
            t.touch(&b, t0 + Duration::from_secs(5)).is_none(),
            "b was least used"
        );
        for id in [&a, &c, &d] {
            assert!(t.touch(id, t0 + Duration::from_secs(5)).is_some());
        }
        // Expired ones go before any live one.
        let e = t.start("e", "e", t0 + Duration::from_secs(200));
        assert!(t.touch(&e, t0 + Duration::from_secs(200)).is_some());
    }

    #[test]
    fn one_token_cannot_push_the_others_out() {
        let mut t = Sessions::new(Duration::from_secs(600), Duration::from_secs(600), 1000);
        let t0 = Instant::now();
        let admin = t.start("a", "admin", t0);
        let first = t.start("v", "viewer", t0);
        for i in 0..MAX_PER_TOKEN * 3 {
            t.start("v", "viewer", t0 + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(t.len(), MAX_PER_TOKEN + 1);
        assert!(
            t.peek(&admin, t0).is_some(),
            "another token's session stays"
        );
        assert!(t.peek(&first, t0).is_none(), "its own oldest went");
    }

    #[test]
    fn ids_and_csrf_tokens_are_random_and_unshared() {
        let (mut t, t0) = table();
        let a = t.start("x", "x", t0);
        let b = t.start("x", "x", t0);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let (sa, sb) = (t.touch(&a, t0).unwrap(), t.touch(&b, t0).unwrap());
        assert_ne!(sa.csrf, sb.csrf);
        assert!(same_secret(&sa.csrf, &sa.csrf.clone()));
        assert!(!same_secret(&sa.csrf, &sb.csrf));
        assert!(!same_secret(&sa.csrf, ""));
    }

    #[test]
    fn debug_shows_no_secret() {
        let (mut t, t0) = table();
        let id = t.start("dt_secret_token", "admin", t0);
        t.set_flash(
            &id,
            Flash {
                for_path: "/p".into(),
                secrets: vec![("l".into(), "pw-secret".into())],
            },
        );
        let s = t.touch(&id, t0).unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("dt_secret_token")
                && !shown.contains(&s.csrf)
                && !shown.contains("pw-secret"),
            "{shown}"
        );
        assert!(shown.contains("admin"));
    }

    #[test]
    fn a_flash_is_shown_once_on_its_own_page() {
        let (mut t, t0) = table();
        let id = t.start("x", "x", t0);
        t.set_flash(
            &id,
            Flash {
                for_path: "/phones/p1".into(),
                secrets: vec![("line 1".into(), "pw".into())],
            },
        );
        assert!(t.take_flash(&id, "/phones").is_none(), "another page");
        assert!(t.take_flash(&id, "/phones/p1").is_some());
        assert!(t.take_flash(&id, "/phones/p1").is_none(), "shown once");
    }

    #[test]
    fn the_cookie_is_read_among_others_and_bounded() {
        let cases = [
            ("dialtone_session=abc", Some("abc")),
            ("a=1; dialtone_session=abc; b=2", Some("abc")),
            ("dialtone_session=", None),
            ("other=abc", None),
            ("dialtone_sessionx=abc", None),
        ];
        for (header, want) in cases {
            assert_eq!(id_in(header), want, "{header}");
        }
        let long = format!("dialtone_session={}", "a".repeat(65));
        assert_eq!(id_in(&long), None);
        let c = cookie("abc");
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(attr), "{c}");
        }
    }
}
