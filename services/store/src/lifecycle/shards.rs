//! Which binding lease a phone's keys hang on, how long each lives, and how a node records
//! its binding leases: pure, no store.

use std::time::Duration;

use crate::LeaseId;

/// The shard of `phone` among `shards` (FNV-1a of the id: stable across processes and
/// builds, so a restarted edge puts a phone's refreshed binding on the lease it was on).
pub fn shard_of(phone: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in phone.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// How much longer than the main lease a binding lease lives (seconds): when a node dies,
/// its main lease, a key or two, is revoked before the bindings (etcd revokes leases that
/// expire together concurrently, and a big one delays the small one's deletion by seconds).
pub const BINDING_GRACE_S: i64 = 2;

/// Over how many seconds past the grace a node's binding leases' TTLs are spread (shard
/// `i` of `n` lives `i * BINDING_SPREAD_S / n` longer than shard 0), so that when it dies
/// etcd deletes its bindings a few leases at a time, no faster than it can apply them.
/// etcd 3.5 answers a lease refresh only once it has applied what it committed before it,
/// waiting at most 1 s; it revokes up to 16 expired leases at once. At a million phones on
/// two busy cores a lease of 2,600 bindings took 100 ms to 1.4 s to revoke, so expiring
/// together (or spread over 30 s, faster than etcd applied them) they kept refreshes
/// failing for 23-43 s, and other nodes' leases expired. Spread over 120 s, 256 leases
/// expire about two a second, and none did.
pub const BINDING_SPREAD_S: i64 = 120;

/// How long binding leases may go unrefreshed (seconds), all of them refreshed together so
/// that their spread holds, where the main lease is refreshed every [`keeper_round`]. They
/// are granted that much longer (and [`refresh_slack`]), so one refreshed that long before
/// its node died still outlives the main lease by the grace. Refreshing 256 binding
/// leases at a third of a 3 s TTL, three edges sent etcd 771 refreshes a second.
pub const BINDING_REFRESH_S: i64 = 30;

/// How often the keeper refreshes the main lease: a third of its TTL (at least 100 ms).
pub fn keeper_round(ttl_s: i64) -> Duration {
    Duration::from_millis((ttl_s.max(0) as u64 * 1000 / 3).max(100))
}

/// How long the keeper waits for one refresh, or one lookup: a round, at least 1 s.
pub fn refresh_limit(ttl_s: i64) -> Duration {
    keeper_round(ttl_s).max(Duration::from_secs(1))
}

/// How much later than due a binding lease's refresh may reach etcd, allowed for in its TTL:
/// two rounds and two refresh waits ([`refresh_limit`]), a round late after a round that
/// spent a refresh and a lookup at their longest. Not a bound: a round that also opens
/// keep-alives or replaces leases takes longer when etcd is slower than that, and then
/// the 2 s grace ([`BINDING_GRACE_S`]) is what is left.
pub fn refresh_slack(ttl_s: i64) -> Duration {
    2 * keeper_round(ttl_s) + 2 * refresh_limit(ttl_s)
}

/// The TTL binding lease `shard` of `count` is granted with when the main lease's is
/// `ttl_s`: [`BINDING_GRACE_S`], [`BINDING_REFRESH_S`] and [`refresh_slack`] (rounded up)
/// longer, and the shard's share of [`BINDING_SPREAD_S`].
pub fn binding_ttl_s(ttl_s: i64, shard: usize, count: usize) -> i64 {
    let spread = shard.min(count) as i64 * BINDING_SPREAD_S / count.max(1) as i64;
    first_binding_ttl_s(ttl_s) + spread
}

/// The TTL of a node's shortest-lived binding lease (shard 0).
fn first_binding_ttl_s(ttl_s: i64) -> i64 {
    let slack = refresh_slack(ttl_s).as_millis().div_ceil(1000) as i64;
    ttl_s + BINDING_GRACE_S + BINDING_REFRESH_S + slack
}

/// Whether `granted` is a TTL a binding lease of a node whose main lease's TTL is `ttl_s`
/// is granted with (of any shard, in any count: a restart with another count keeps it),
/// or was by a release that refreshed them as often as the main lease (with no
/// [`BINDING_REFRESH_S`]): the keeper refreshes a lease as often as its TTL needs
/// ([`unrefreshed_for`]).
pub fn is_binding_ttl(ttl_s: i64, granted: i64) -> bool {
    (ttl_s + BINDING_GRACE_S..first_binding_ttl_s(ttl_s) + BINDING_SPREAD_S).contains(&granted)
}

/// How long a binding lease granted `lease_ttl` may go between refreshes when the main
/// lease's TTL is `ttl_s`: as long as, refreshed that late ([`refresh_slack`] included),
/// it still outlives a main lease refreshed just before the node died by the grace. Zero
/// for a lease granted without that room.
pub fn unrefreshed_for(lease_ttl: Duration, ttl_s: i64) -> Duration {
    let main = Duration::from_secs((ttl_s + BINDING_GRACE_S).max(0) as u64);
    lease_ttl.saturating_sub(main + refresh_slack(ttl_s))
}

/// The record of a node's binding leases: their ids in hex, comma-separated, in shard order.
pub fn encode_ids(ids: &[LeaseId]) -> Vec<u8> {
    ids.iter()
        .map(|id| format!("{id:x}"))
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// The ids of a record written by [`encode_ids`]; none when it is not one (a record this
/// build cannot read is treated as no record: those leases expire, their phones register
/// again).
pub fn parse_ids(record: &[u8]) -> Vec<LeaseId> {
    let Ok(text) = std::str::from_utf8(record) else {
        return Vec::new();
    };
    if text.is_empty() {
        return Vec::new();
    }
    text.split(',')
        .map(|id| LeaseId::from_str_radix(id, 16))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_always_lands_on_the_same_shard_and_phones_spread() {
        assert_eq!(shard_of("p1", 64), shard_of("p1", 64));
        assert_eq!(shard_of("anything", 0), 0, "no shards: shard 0");
        assert_eq!(shard_of("anything", 1), 0);
        let mut per_shard = [0usize; 64];
        for i in 0..64_000 {
            per_shard[shard_of(&format!("{i:08x}-4f1c-4a2b-9c3d-0123456789ab"), 64)] += 1;
        }
        let (min, max) = (per_shard.iter().min(), per_shard.iter().max());
        assert!(
            min >= Some(&800) && max <= Some(&1200),
            "1,000 a shard give or take a fifth: {per_shard:?}"
        );
    }

    #[test]
    fn binding_leases_outlive_the_node_lease_and_expire_apart() {
        // (ttl, shard, count, ttl of the shard's lease)
        // At 10 s: 2 s of grace, 30 to go unrefreshed, 14 of slack (13.3 rounded up).
        // At 3 s: 2 + 30 + 4.
        let cases: Vec<(i64, usize, usize, i64)> = vec![
            (10, 0, 1, 56),
            (10, 0, 256, 56),
            (10, 2, 256, 56),
            (10, 3, 256, 57),
            (10, 128, 256, 116),
            (10, 255, 256, 175),
            (3, 0, 256, 39),
            (3, 255, 256, 158),
            (3, 1, 2, 99),
            (3, 7, 8, 144),
            (10, 300, 256, 176),
            (10, 0, 0, 56),
            (2, 0, 1, 38),
        ];
        for (ttl, shard, count, want) in cases {
            let got = binding_ttl_s(ttl, shard, count);
            assert_eq!(got, want, "ttl {ttl}, shard {shard} of {count}");
            if shard < count {
                assert!(is_binding_ttl(ttl, got), "{got} is a binding ttl of {ttl}");
            }
        }
        for (ttl, granted, is) in [
            (10, 10, false),
            (10, 11, false),
            // Granted by a release before BINDING_REFRESH_S.
            (10, 12, true),
            (10, 131, true),
            (10, 175, true),
            (10, 176, false),
            (3, 5, true),
            (3, 158, true),
            (3, 159, false),
        ] {
            assert_eq!(
                is_binding_ttl(ttl, granted),
                is,
                "ttl {ttl}, granted {granted}"
            );
        }
        let spread: std::collections::BTreeSet<i64> =
            (0..256).map(|i| binding_ttl_s(10, i, 256)).collect();
        assert_eq!(spread.len(), 120, "256 leases over 120 distinct seconds");
    }

    #[test]
    fn a_binding_lease_goes_unrefreshed_as_long_as_it_still_outlives_the_main_lease() {
        let s = Duration::from_secs;
        assert_eq!(keeper_round(3), s(1));
        assert_eq!(keeper_round(0), Duration::from_millis(100));
        assert_eq!(refresh_limit(2), s(1), "a round of 667 ms waits 1 s");
        assert_eq!(refresh_slack(3), s(4));
        // (main lease's TTL, binding lease's TTL, how long it may go unrefreshed)
        let cases: Vec<(i64, Duration, Duration)> = vec![
            (3, s(39), s(30)),
            (3, s(158), s(149)),
            (10, s(56), Duration::from_millis(30_668)),
            // A release before BINDING_REFRESH_S: shard 0 none, a later shard some.
            (3, s(5), Duration::ZERO),
            (3, s(65), s(56)),
            (3, s(3), Duration::ZERO),
        ];
        for (ttl, lease, want) in cases {
            assert_eq!(
                unrefreshed_for(lease, ttl),
                want,
                "ttl {ttl}, lease {lease:?}"
            );
        }
        for ttl in [2, 3, 10, 30, 60] {
            let first = s(binding_ttl_s(ttl, 0, 256) as u64);
            assert!(
                unrefreshed_for(first, ttl) >= s(BINDING_REFRESH_S as u64),
                "every TTL leaves shard 0 {BINDING_REFRESH_S} s: ttl {ttl}"
            );
        }
    }

    #[test]
    fn a_record_reads_back_as_written_and_anything_else_as_none() {
        let cases: Vec<(&str, &[u8], Vec<LeaseId>)> = vec![
            ("empty", b"", vec![]),
            ("one", b"694d9a1b2c3d4e5f", vec![0x694d_9a1b_2c3d_4e5f]),
            ("several", b"1,a,ff", vec![1, 10, 255]),
            ("not hex", b"1,zz", vec![]),
            ("a trailing comma", b"1,", vec![]),
            ("not text", &[0xff, 0xfe], vec![]),
        ];
        for (name, record, want) in cases {
            assert_eq!(parse_ids(record), want, "{name}");
        }
        let ids = vec![0x694d_9a1b_2c3d_4e5f, 7, LeaseId::MAX];
        assert_eq!(parse_ids(&encode_ids(&ids)), ids);
        assert_eq!(encode_ids(&[]), b"");
    }
}
