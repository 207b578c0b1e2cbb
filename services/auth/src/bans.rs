//! Temporary bans after failed authentications, per source address and per user (a SIP
//! user at the edge, a device at the provisioning server), so password guessing (svcrack)
//! stops getting answers. Time is passed in, so the rules are tested without sleeping.

use std::{collections::HashMap, hash::Hash, net::IpAddr, time::Duration};

use parking_lot::Mutex;

/// When failed authentications ban.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanPolicy {
    /// Failures from one source address within `window` that ban it (0: never).
    pub per_source: u32,
    /// Failures for one user within `window` that ban it (0: never).
    pub per_user: u32,
    /// Window the failures are counted in.
    pub window: Duration,
    /// How long a ban lasts.
    pub duration: Duration,
}

impl Default for BanPolicy {
    fn default() -> Self {
        BanPolicy {
            per_source: 10,
            per_user: 20,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    failures: u32,
    window_start_ms: u64,
    banned_until_ms: u64,
}

/// Failure counts and bans of one kind of key.
struct Table<K> {
    threshold: u32,
    entries: Mutex<HashMap<K, Entry>>,
}

/// Most keys tracked per table before expired ones are swept.
const SWEEP_AT: usize = 10_000;

impl<K: Eq + Hash + Clone> Table<K> {
    fn new(threshold: u32) -> Self {
        Table {
            threshold,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn banned<Q: Eq + Hash + ?Sized>(&self, k: &Q, now_ms: u64) -> bool
    where
        K: std::borrow::Borrow<Q>,
    {
        if self.threshold == 0 {
            return false;
        }
        let map = self.entries.lock();
        map.get(k).is_some_and(|e| e.banned_until_ms > now_ms)
    }

    /// Records a failure; true when it starts a ban.
    fn fail(&self, k: &K, now_ms: u64, window: Duration, duration: Duration) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let window_ms = window.as_millis() as u64;
        let mut map = self.entries.lock();
        if map.len() >= SWEEP_AT {
            map.retain(|_, e| {
                e.banned_until_ms > now_ms || now_ms - e.window_start_ms.min(now_ms) < window_ms
            });
        }
        let e = map.entry(k.clone()).or_default();
        if now_ms.saturating_sub(e.window_start_ms) >= window_ms {
            e.failures = 0;
            e.window_start_ms = now_ms;
        }
        e.failures += 1;
        if e.failures >= self.threshold && e.banned_until_ms <= now_ms {
            e.banned_until_ms = now_ms + duration.as_millis() as u64;
            e.failures = 0;
            e.window_start_ms = now_ms;
            return true;
        }
        false
    }

    fn len(&self, now_ms: u64) -> usize {
        self.entries
            .lock()
            .values()
            .filter(|e| e.banned_until_ms > now_ms)
            .count()
    }
}

/// Both tables.
pub struct Bans {
    policy: BanPolicy,
    sources: Table<IpAddr>,
    users: Table<String>,
}

/// What a recorded failure did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewBans {
    pub source: bool,
    pub user: bool,
}

impl Bans {
    pub fn new(policy: BanPolicy) -> Self {
        Bans {
            policy,
            sources: Table::new(policy.per_source),
            users: Table::new(policy.per_user),
        }
    }

    /// Whether requests from this address are ignored.
    pub fn source_banned(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.sources.banned(&ip, now_ms)
    }

    /// Whether this user's attempts are refused.
    pub fn user_banned(&self, user: &str, now_ms: u64) -> bool {
        self.users.banned(user, now_ms)
    }

    /// Records one failed authentication.
    pub fn failure(&self, ip: IpAddr, user: &str, now_ms: u64) -> NewBans {
        let (w, d) = (self.policy.window, self.policy.duration);
        NewBans {
            source: self.sources.fail(&ip, now_ms, w, d),
            user: !user.is_empty() && self.users.fail(&user.to_owned(), now_ms, w, d),
        }
    }

    /// Bans in force (sources, users), for metrics.
    pub fn active(&self, now_ms: u64) -> (usize, usize) {
        (self.sources.len(now_ms), self.users.len(now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_follow_the_policy() {
        let b = Bans::new(BanPolicy {
            per_source: 3,
            per_user: 5,
            window: Duration::from_secs(10),
            duration: Duration::from_secs(60),
        });
        let a: IpAddr = "127.0.0.9".parse().unwrap();
        let other: IpAddr = "127.0.0.10".parse().unwrap();
        // (time ms, record failure for user, expect source banned after, expect user banned after)
        let steps: &[(u64, Option<&str>, bool, bool)] = &[
            (0, Some("alice"), false, false),
            (1_000, Some("alice"), false, false),
            // failures spread beyond the window do not add up
            (20_000, Some("bob"), false, false),
            (21_000, Some("bob"), false, false),
            (22_000, Some("bob"), true, false),
            (81_000, None, true, false),
            (82_001, None, false, false),
        ];
        for (i, (t, user, src_banned, alice_banned)) in steps.iter().enumerate() {
            if let Some(u) = user {
                b.failure(a, u, *t);
            }
            assert_eq!(b.source_banned(a, *t), *src_banned, "step {i}");
            assert_eq!(b.user_banned("alice", *t), *alice_banned, "step {i}");
            assert!(!b.source_banned(other, *t));
        }
        // a user guessed at from many addresses is banned on its own count
        for n in 0..5u8 {
            let ip: IpAddr = format!("127.0.1.{n}").parse().unwrap();
            let nb = b.failure(ip, "carol", 100_000 + u64::from(n));
            assert_eq!(nb.user, n == 4);
        }
        assert!(b.user_banned("carol", 100_010));
        assert!(!b.user_banned("carol", 170_000));
        assert_eq!(b.active(100_010), (0, 1));
        // zero turns bans off
        let off = Bans::new(BanPolicy {
            per_source: 0,
            per_user: 0,
            ..Default::default()
        });
        for t in 0..100 {
            off.failure(a, "x", t);
        }
        assert!(!off.source_banned(a, 100) && !off.user_banned("x", 100));
    }
}
