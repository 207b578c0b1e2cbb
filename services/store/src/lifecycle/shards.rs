//! Which binding lease a phone's keys hang on, and how a node records its binding leases:
//! pure, no store.

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
