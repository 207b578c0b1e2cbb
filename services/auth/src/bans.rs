//! Temporary bans after failed authentications, per source address and per user (a SIP
//! user at the edge, a device at the provisioning server), so password guessing (svcrack)
//! stops getting answers. Time is passed in, so the rules are tested without sleeping.
//!
//! Bounded whatever an attacker sends: each table is a fixed array of slots, split into
//! shards with a lock each, and a key (hashed with a random key, so nobody can aim at one
//! slot) lives in one of a few slots of its shard. A new key takes a free or expired slot
//! there, else the one whose count matters least (never a live ban while another slot
//! holds none). No sweep, no scan per failure; the check on every packet takes no lock at
//! all while no ban is in force. An IPv6 source counts by its /64.
//!
//! A user's lockout never blocks a source that authenticated as that user within the last
//! day (the phone itself, still holding the right password): guessing from elsewhere cannot
//! lock a working phone out.

use std::{
    hash::{BuildHasher, Hash},
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

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

/// Slots per table (sources, users, and the sources that proved a user).
pub const SLOTS: usize = 1 << 16;
const SHARDS: usize = 16;
/// Slots a key may live in.
const WAYS: usize = 4;
/// How long a successful authentication exempts its source from the user's lockout.
const TRUSTED_FOR_MS: u64 = 24 * 3600 * 1000;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// The key's hash; 0: free.
    key: u64,
    failures: u32,
    window_start_ms: u64,
    banned_until_ms: u64,
}

impl Slot {
    /// How much keeping this slot matters at `now_ms`: a live ban most, then a window with
    /// failures (more and newer first); expired ones not at all.
    fn worth(&self, now_ms: u64, window_ms: u64) -> (u8, u32, u64) {
        if self.key == 0 {
            (0, 0, 0)
        } else if self.banned_until_ms > now_ms {
            (3, 0, self.banned_until_ms)
        } else if now_ms.saturating_sub(self.window_start_ms) < window_ms {
            (2, self.failures, self.window_start_ms)
        } else {
            (0, 0, 0)
        }
    }
}

/// Failure counts and bans of one kind of key, in a fixed array.
struct Table {
    threshold: u32,
    hasher: std::hash::RandomState,
    shards: Box<[Mutex<Box<[Slot]>>]>,
    /// When the last ban in force ends (ms): before it nothing is banned and no lock is
    /// taken to say so.
    bans_until_ms: AtomicU64,
}

impl Table {
    fn new(threshold: u32) -> Self {
        Table {
            threshold,
            hasher: std::hash::RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![Slot::default(); SLOTS / SHARDS].into_boxed_slice()))
                .collect(),
            bans_until_ms: AtomicU64::new(0),
        }
    }

    /// The key's hash (never 0: that marks a free slot), its shard and first slot.
    fn place<K: Hash + ?Sized>(&self, k: &K) -> (u64, usize, usize) {
        let h = self.hasher.hash_one(k) | 1;
        let shard = (h as usize) % SHARDS;
        let first = ((h >> 32) as usize) % (SLOTS / SHARDS);
        (h, shard, first)
    }

    fn ways(first: usize) -> impl Iterator<Item = usize> {
        (0..WAYS).map(move |i| (first + i) % (SLOTS / SHARDS))
    }

    fn banned<K: Hash + ?Sized>(&self, k: &K, now_ms: u64) -> bool {
        if self.threshold == 0 || self.bans_until_ms.load(Ordering::Relaxed) <= now_ms {
            return false;
        }
        let (h, shard, first) = self.place(k);
        let slots = self.shards[shard].lock();
        Self::ways(first).any(|i| slots[i].key == h && slots[i].banned_until_ms > now_ms)
    }

    /// The slot of `k` in `slots`, taken (from the least worth keeping) when it has none.
    fn slot_of(slots: &mut [Slot], h: u64, first: usize, now_ms: u64, window_ms: u64) -> usize {
        if let Some(i) = Self::ways(first).find(|i| slots[*i].key == h) {
            return i;
        }
        let i = Self::ways(first)
            .min_by_key(|i| slots[*i].worth(now_ms, window_ms))
            .unwrap_or(first);
        slots[i] = Slot {
            key: h,
            ..Slot::default()
        };
        i
    }

    /// Records a failure; true when it starts a ban.
    fn fail<K: Hash + ?Sized>(
        &self,
        k: &K,
        now_ms: u64,
        window: Duration,
        duration: Duration,
    ) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let window_ms = window.as_millis() as u64;
        let (h, shard, first) = self.place(k);
        let mut slots = self.shards[shard].lock();
        let i = Self::slot_of(&mut slots, h, first, now_ms, window_ms);
        let e = &mut slots[i];
        if now_ms.saturating_sub(e.window_start_ms) >= window_ms {
            e.failures = 0;
            e.window_start_ms = now_ms;
        }
        e.failures += 1;
        if e.failures >= self.threshold && e.banned_until_ms <= now_ms {
            e.banned_until_ms = now_ms + duration.as_millis() as u64;
            e.failures = 0;
            e.window_start_ms = now_ms;
            self.bans_until_ms
                .fetch_max(e.banned_until_ms, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Marks `k` (its window is reused as "last seen").
    fn mark<K: Hash + ?Sized>(&self, k: &K, now_ms: u64) {
        let (h, shard, first) = self.place(k);
        let mut slots = self.shards[shard].lock();
        let i = Self::slot_of(&mut slots, h, first, now_ms, TRUSTED_FOR_MS);
        slots[i].window_start_ms = now_ms;
        slots[i].failures = 1;
    }

    /// Whether `k` was marked within `within_ms`.
    fn marked<K: Hash + ?Sized>(&self, k: &K, now_ms: u64, within_ms: u64) -> bool {
        let (h, shard, first) = self.place(k);
        let slots = self.shards[shard].lock();
        Self::ways(first).any(|i| {
            slots[i].key == h && now_ms.saturating_sub(slots[i].window_start_ms) < within_ms
        })
    }

    /// Bans in force (a scan: for metrics only).
    fn len(&self, now_ms: u64) -> usize {
        if self.bans_until_ms.load(Ordering::Relaxed) <= now_ms {
            return 0;
        }
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .iter()
                    .filter(|e| e.banned_until_ms > now_ms)
                    .count()
            })
            .sum()
    }
}

/// The address a source is counted by: an IPv4 address, or an IPv6 address's /64 (one
/// subscriber's prefix: its addresses are the attacker's to pick).
pub fn source_key(ip: IpAddr) -> IpAddr {
    // An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d: it is that IPv4
    // address, not one of the /64 `::` that every IPv4 client would then share.
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
    }
}

/// The tables.
pub struct Bans {
    policy: BanPolicy,
    sources: Table,
    users: Table,
    /// (user, source) pairs that authenticated.
    proven: Table,
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
            proven: Table::new(1),
        }
    }

    /// Whether requests from this address are ignored.
    pub fn source_banned(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.sources.banned(&source_key(ip), now_ms)
    }

    /// Whether this user's attempts from `ip` are refused: the user is locked out, and
    /// `ip` has not authenticated as the user lately.
    pub fn user_banned(&self, user: &str, ip: IpAddr, now_ms: u64) -> bool {
        self.users.banned(user, now_ms)
            && !self
                .proven
                .marked(&(user, source_key(ip)), now_ms, TRUSTED_FOR_MS)
    }

    /// Records one failed authentication (`user` empty: it counts against the source only).
    pub fn failure(&self, ip: IpAddr, user: &str, now_ms: u64) -> NewBans {
        let (w, d) = (self.policy.window, self.policy.duration);
        NewBans {
            source: self.sources.fail(&source_key(ip), now_ms, w, d),
            user: !user.is_empty() && self.users.fail(user, now_ms, w, d),
        }
    }

    /// Records a successful authentication as `user` from `ip`.
    pub fn success(&self, ip: IpAddr, user: &str, now_ms: u64) {
        self.proven.mark(&(user, source_key(ip)), now_ms);
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
            assert_eq!(b.user_banned("alice", other, *t), *alice_banned, "step {i}");
            assert!(!b.source_banned(other, *t));
        }
        // a user guessed at from many addresses is banned on its own count
        for n in 0..5u8 {
            let ip: IpAddr = format!("127.0.1.{n}").parse().unwrap();
            let nb = b.failure(ip, "carol", 100_000 + u64::from(n));
            assert_eq!(nb.user, n == 4);
        }
        assert!(b.user_banned("carol", other, 100_010));
        assert!(!b.user_banned("carol", other, 170_000));
        assert_eq!(b.active(100_010), (0, 1));
        // The phone that authenticated as carol before is not locked out with her.
        let phone: IpAddr = "192.0.2.7".parse().unwrap();
        b.success(phone, "carol", 90_000);
        assert!(!b.user_banned("carol", phone, 100_010));
        assert!(b.user_banned("carol", other, 100_010));
        // IPv6 sources count by their /64.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        for n in 0..3u8 {
            b.failure(v6(&format!("2001:db8::{n}")), "", 200_000);
        }
        assert!(b.source_banned(v6("2001:db8::ffff"), 200_001));
        assert!(!b.source_banned(v6("2001:db8:0:1::1"), 200_001));
        // IPv4 clients of a dual-stack listener are their IPv4 addresses, not one /64.
        assert_eq!(source_key(v6("::ffff:192.0.2.9")), v6("192.0.2.9"));
        assert_ne!(
            source_key(v6("::ffff:192.0.2.9")),
            source_key(v6("::ffff:192.0.2.10"))
        );
        // zero turns bans off
        let off = Bans::new(BanPolicy {
            per_source: 0,
            per_user: 0,
            ..Default::default()
        });
        for t in 0..100 {
            off.failure(a, "x", t);
        }
        assert!(!off.source_banned(a, 100) && !off.user_banned("x", a, 100));
    }

    #[test]
    fn a_flood_of_sources_costs_fixed_memory_and_keeps_live_bans() {
        let b = Bans::new(BanPolicy {
            per_source: 2,
            ..Default::default()
        });
        let banned: IpAddr = "198.51.100.1".parse().unwrap();
        b.failure(banned, "", 0);
        assert!(b.failure(banned, "", 1).source);
        // Four times as many guessing addresses as there are slots, each failing once.
        for n in 0..(4 * SLOTS as u32) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            b.failure(ip, "", 10);
        }
        assert!(b.source_banned(banned, 20), "a live ban outlives the flood");
        let slots: usize = b.sources.shards.iter().map(|s| s.lock().len()).sum();
        assert_eq!(slots, SLOTS);
    }
}
