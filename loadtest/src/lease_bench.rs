//! What a dead edge's lease expiry costs etcd, by how many leases its bindings are split
//! over: the same KEYS binding-sized keys on 1 lease, then on each other count given, each
//! on a fresh etcd member (run as the chart and `fleet-bench` run it).
//!
//! `cargo build --release --bins && target/release/lease-bench [KEYS] [LEASES,...]`
//! (defaults 666000 and `1,128`: the bindings an edge of a million-phone fleet holds).
//!
//! For each count: the keys are written on the leases (kept alive meanwhile, TTL 3 s as in
//! `fleet-bench`), 10,000 keys with no lease stand for the configuration, then the leases
//! stop being refreshed, as when an edge is killed. Printed: when a watcher on the
//! bindings saw the first, half, 99 % and every deletion (from the last refresh; the
//! leases expire 3 s after it), the largest watch batch, and the latency of a read of a
//! configuration key every 20 ms meanwhile (p50/p99/max, cut off at 5 s).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use dialtone_store::{LeaseId, MAX_TXN_OPS, Op, WatchEvent};
use dialtone_tests::EtcdCluster;
use futures::{StreamExt, stream};
use parking_lot::Mutex;

const TTL_S: i64 = 3;
const CONFIG_KEYS: usize = 10_000;
/// About what an edge writes for a binding.
const VALUE_BYTES: usize = 280;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let keys: usize = args.get(1).map_or(Ok(666_000), |s| s.parse())?;
    let counts: Vec<usize> = args
        .get(2)
        .map_or("1,128", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("LEASES is a list of counts, as 1,128")?;
    println!("lease-bench: {keys} keys, leases {counts:?}, ttl {TTL_S} s");
    for leases in counts {
        run(keys, leases.max(1)).await?;
    }
    Ok(())
}

async fn run(keys: usize, leases: usize) -> anyhow::Result<()> {
    let etcd = EtcdCluster::start(1).await?;
    let store = etcd.store("/bench/").await?;
    let mut ids: Vec<LeaseId> = Vec::with_capacity(leases);
    for _ in 0..leases {
        ids.push(store.lease_grant(TTL_S).await?);
    }
    let mut keepers = Vec::with_capacity(leases);
    for id in &ids {
        keepers.push(store.lease_keep_alive(*id).await?);
    }
    let keepers = Arc::new(tokio::sync::Mutex::new(keepers));
    let refreshing = {
        let keepers = keepers.clone();
        tokio::spawn(async move {
            loop {
                // All at once: one after another, 128 refreshes under a write load can
                // take longer than the TTL.
                let mut keepers = keepers.lock().await;
                futures::future::join_all(keepers.iter_mut().map(|k| k.refresh())).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let started = Instant::now();
    let value = vec![b'v'; VALUE_BYTES];
    let chunks: Vec<Vec<Op>> = (0..keys)
        .collect::<Vec<_>>()
        .chunks(MAX_TXN_OPS)
        .map(|c| {
            c.iter()
                .map(|i| Op::Put {
                    key: format!("bindings/p{i:07}/1/edge-a"),
                    value: value.clone(),
                    lease: Some(ids[i % leases]),
                })
                .collect()
        })
        .collect();
    let written: Vec<_> = stream::iter(chunks)
        .map(|ops| {
            let store = store.clone();
            async move { store.txn(Vec::new(), ops).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for w in written {
        w.context("writing the keys")?;
    }
    for i in 0..CONFIG_KEYS {
        if i % MAX_TXN_OPS == 0 {
            let ops = (i..(i + MAX_TXN_OPS).min(CONFIG_KEYS))
                .map(|j| Op::Put {
                    key: format!("config/phones/p{j:07}"),
                    value: value.clone(),
                    lease: None,
                })
                .collect();
            store.txn(Vec::new(), ops).await?;
        }
    }
    println!(
        "  {leases} lease(s): {keys} keys written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut watch = store
        .watch("bindings/", store.revision().await? + 1)
        .await?;
    // The edge dies: one last refresh, then none.
    refreshing.abort();
    let _ = refreshing.await;
    for left in
        futures::future::join_all(keepers.lock().await.iter_mut().map(|k| k.refresh())).await
    {
        anyhow::ensure!(left? > 0, "a lease expired while the keys were written");
    }
    let dead = Instant::now();
    drop(keepers);

    let reads: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let timeouts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let (store, reads, timeouts) = (store.clone(), reads.clone(), timeouts.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let key = format!("config/phones/p{:07}", n % CONFIG_KEYS);
                n += 7919;
                let t = Instant::now();
                match tokio::time::timeout(Duration::from_secs(5), store.get(&key)).await {
                    Ok(Ok(_)) => reads.lock().push(t.elapsed()),
                    _ => {
                        timeouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        reads.lock().push(Duration::from_secs(5));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let (mut deleted, mut largest, mut batches) = (0usize, 0usize, 0usize);
    let mut marks: Vec<(&str, Option<Duration>)> = vec![
        ("first", None),
        ("50 %", None),
        ("99 %", None),
        ("all", None),
    ];
    let deadline = dead + Duration::from_secs(120);
    while deleted < keys {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(batch) = tokio::time::timeout(left, watch.next()).await else {
            break;
        };
        let Some(batch) = batch? else { break };
        let n = batch
            .events
            .iter()
            .filter(|e| matches!(e, WatchEvent::Delete { .. }))
            .count();
        batches += 1;
        largest = largest.max(n);
        deleted += n;
        let at = dead.elapsed();
        for (mark, threshold) in marks
            .iter_mut()
            .zip([1, keys.div_ceil(2), keys * 99 / 100, keys])
        {
            if mark.1.is_none() && deleted >= threshold {
                mark.1 = Some(at);
            }
        }
    }
    reader.abort();
    let seen: Vec<String> = marks
        .iter()
        .map(|(name, at)| match at {
            Some(at) => format!("{name} {:.2} s", at.as_secs_f64()),
            None => format!("{name} never"),
        })
        .collect();
    println!(
        "  {leases} lease(s): deletions seen (from the last refresh; expiry at {TTL_S} s): {}; {deleted} of {keys} in {batches} watch batches, the largest {largest}",
        seen.join(", ")
    );
    let mut reads = reads.lock().clone();
    reads.sort();
    let q = |x: f64| {
        ms(reads
            .get(((reads.len() as f64 * x) as usize).min(reads.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default())
    };
    println!(
        "  {leases} lease(s): config reads meanwhile: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} ({} cut off at 5 s)",
        q(0.5),
        q(0.99),
        q(1.0),
        reads.len(),
        timeouts.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
