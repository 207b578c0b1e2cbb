//! Which media server a call uses: weighted rendezvous hashing of its Call-ID over the
//! servers of the caller's site's first media region that has one up, so every edge that
//! sees the call (the caller's and the callee's) picks the same server without asking
//! anyone, and a server that goes away moves only its own calls. Pure.

use std::net::SocketAddr;

/// A media server as the edge knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub id: String,
    pub region: String,
    /// Its `ng` control address.
    pub ng: SocketAddr,
    /// Relative share of calls (1-1000).
    pub weight: u32,
}

/// The servers of the first region in `regions` with one `up`, best first for
/// `call_id` (the next ones are where the call goes when the best does not answer).
/// Empty when no region listed has a server up.
pub fn candidates<'a>(
    call_id: &str,
    regions: &[String],
    servers: &'a [Server],
    up: impl Fn(&Server) -> bool,
) -> Vec<&'a Server> {
    for region in regions {
        let mut here: Vec<(f64, &Server)> = servers
            .iter()
            .filter(|s| &s.region == region && up(s))
            .map(|s| (score(call_id, s), s))
            .collect();
        if here.is_empty() {
            continue;
        }
        here.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        return here.into_iter().map(|(_, s)| s).collect();
    }
    Vec::new()
}

/// `regions` lowest latency first: `rtt` gives a region's round trip in ms (none: not
/// measured), unmeasured regions keep their order after the measured ones, equal ones
/// keep theirs. Pure.
pub fn by_latency(regions: &[String], rtt: impl Fn(&str) -> Option<u32>) -> Vec<String> {
    let mut order: Vec<(Option<u32>, usize, &String)> = regions
        .iter()
        .enumerate()
        .map(|(i, r)| (rtt(r), i, r))
        .collect();
    order.sort_by_key(|(rtt, i, _)| (rtt.is_none(), *rtt, *i));
    order.into_iter().map(|(_, _, r)| r.clone()).collect()
}

/// A round trip of `us` microseconds as a bucket: milliseconds rounded up to a power of
/// two, at least 1. Pure.
pub fn rtt_bucket(us: u64) -> u32 {
    let ms = us.div_ceil(1000).max(1);
    u32::try_from(ms.next_power_of_two()).unwrap_or(u32::MAX)
}

/// Weighted rendezvous score: `-weight / ln(u)` for `u` the hash of (Call-ID, server id)
/// mapped into (0, 1): each server wins a share of Call-IDs proportional to its weight.
fn score(call_id: &str, s: &Server) -> f64 {
    let h = fnv1a(call_id.as_bytes(), s.id.as_bytes());
    // 53 bits into (0, 1), never 0 or 1.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(s.weight.max(1)) / u.ln()
}

/// FNV-1a over `a`, a separator and `b`, then a final mix (a stable hash: every edge
/// must compute the same one, whatever its build).
fn fnv1a(a: &[u8], b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in a.iter().chain(&[0xff]).chain(b) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser, so nearby inputs spread over all 64 bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: &str, region: &str, weight: u32) -> Server {
        Server {
            id: id.into(),
            region: region.into(),
            ng: "127.0.0.1:2223".parse().unwrap(),
            weight,
        }
    }

    #[test]
    fn the_first_region_with_a_server_up_takes_the_call() {
        let servers = [
            server("eu-1", "eu", 1),
            server("eu-2", "eu", 1),
            server("us-1", "us", 1),
        ];
        let regions = ["eu".to_owned(), "us".to_owned()];
        let ids = |up: &dyn Fn(&Server) -> bool| -> Vec<String> {
            candidates("call-1", &regions, &servers, up)
                .iter()
                .map(|s| s.id.clone())
                .collect()
        };
        let all = ids(&|_| true);
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all.iter().all(|id| id.starts_with("eu")), "{all:?}");
        // One eu server down: the other takes it; both down: the next region.
        assert_eq!(ids(&|s| s.id != all[0]), [all[1].clone()]);
        assert_eq!(ids(&|s| s.region != "eu"), ["us-1"]);
        assert!(ids(&|_| false).is_empty());
        assert!(candidates("c", &["ap".to_owned()], &servers, |_| true).is_empty());
    }

    #[test]
    fn calls_spread_by_weight_and_every_edge_agrees() {
        let servers = [server("a", "r", 1), server("b", "r", 3)];
        let regions = ["r".to_owned()];
        let mut to_b = 0;
        for i in 0..4000 {
            let call = format!("{i}@host");
            let first = candidates(&call, &regions, &servers, |_| true)[0];
            // The same answer every time (what the other edge of the call computes).
            assert_eq!(first, candidates(&call, &regions, &servers, |_| true)[0]);
            to_b += usize::from(first.id == "b");
        }
        // Three quarters to b, within a few percent.
        assert!((2850..3150).contains(&to_b), "{to_b} of 4000");
    }

    #[test]
    fn regions_by_latency() {
        let regions: Vec<String> = ["eu", "us", "ap", "sa"].map(String::from).to_vec();
        // (round trips by region, order)
        type Rtts<'a> = &'a [(&'a str, u32)];
        let cases: [(Rtts, [&str; 4]); 4] = [
            (&[], ["eu", "us", "ap", "sa"]),
            (&[("us", 4), ("eu", 64)], ["us", "eu", "ap", "sa"]),
            (&[("ap", 2), ("sa", 2), ("eu", 8)], ["ap", "sa", "eu", "us"]),
            (
                &[("eu", 1), ("us", 1), ("ap", 1), ("sa", 1)],
                ["eu", "us", "ap", "sa"],
            ),
        ];
        for (rtts, want) in cases {
            let rtt = |r: &str| rtts.iter().find(|(n, _)| *n == r).map(|(_, v)| *v);
            assert_eq!(by_latency(&regions, rtt), want, "{rtts:?}");
        }
        // (µs, bucket)
        for (us, want) in [
            (0, 1),
            (200, 1),
            (1000, 1),
            (1001, 2),
            (2500, 4),
            (70_000, 128),
        ] {
            assert_eq!(rtt_bucket(us), want, "{us}");
        }
    }
}
