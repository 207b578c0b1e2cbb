//! Which binding lease a phone's keys hang on, how long each lives, and how a node records
//! its binding leases: pure, no store.

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
/// that their spread holds, where the main lease is refreshed at a third of its TTL. They
/// are granted that much longer, so one refreshed that long before its node died still
/// outlives the main lease by the grace. Refreshing 256 binding leases at a third of a
/// 3 s TTL, three edges sent etcd 771 refreshes a second; every 30 s, about 30.
pub const BINDING_REFRESH_S: i64 = 30;

/// The TTL binding lease `shard` of `count` is granted with when the main lease's is
/// `ttl_s`: [`BINDING_GRACE_S`] and [`BINDING_REFRESH_S`] longer, and the shard's share of
/// [`BINDING_SPREAD_S`].
pub fn binding_ttl_s(ttl_s: i64, shard: usize, count: usize) -> i64 {
    let spread = shard.min(count) as i64 * BINDING_SPREAD_S / count.max(1) as i64;
    ttl_s + BINDING_GRACE_S + BINDING_REFRESH_S + spread
}

/// Whether `granted` is a TTL a binding lease of a node whose main lease's TTL is `ttl_s`
/// is granted with (of any shard, in any count: a restart with another count keeps it),
/// or was by a release that refreshed them as often as the main lease (no
/// [`BINDING_REFRESH_S`]): the keeper refreshes a lease as often as its TTL needs.
pub fn is_binding_ttl(ttl_s: i64, granted: i64) -> bool {
    let first = ttl_s + BINDING_GRACE_S;
    (first..first + BINDING_REFRESH_S + BINDING_SPREAD_S).contains(&granted)
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
        let cases: Vec<(i64, usize, usize, i64)> = vec![
            (10, 0, 1, 42),
            (10, 0, 256, 42),
            (10, 2, 256, 42),
            (10, 3, 256, 43),
            (10, 128, 256, 102),
            (10, 255, 256, 161),
            (3, 255, 256, 154),
            (3, 1, 2, 95),
            (3, 7, 8, 140),
            (10, 300, 256, 162),
            (10, 0, 0, 42),
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
            (10, 161, true),
            (10, 162, false),
            (3, 5, true),
            (3, 154, true),
            (3, 155, false),
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
