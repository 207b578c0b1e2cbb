//! `fleet-bench`'s last phase, a power cut: every phone loses power (it sends nothing) and
//! every edge dies at once (kill -9), stays down until its leases expire, the whole fleet
//! is OFFLINE and etcd has deleted every binding, and comes back; then every phone boots
//! and registers from scratch, the boots spread evenly over `FLEET_BENCH_POWER_SPREAD_S`
//! seconds (default 60), as a site's desk phones come back when the power does. Printed:
//! the time from the first boot until 99 % and 100 % of the phones are OPERATIONAL, the
//! peak registrations a second (phonesim) and etcd writes a second (its `/metrics`,
//! sampled every second), the failed attempts, and the 503s the edges answered (with and
//! without Retry-After; phonesim waits as told, and backs off with jitter otherwise).

use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use dialtone_loadtest::etcd_figures::etcd_metrics;
use dialtone_phonesim::{Mark, Sim};
use dialtone_tests::{ClusterSandbox, StatusClient};

use super::EDGES;

/// How long the fleet may take to come back before the phase gives up.
const COME_BACK_LIMIT: Duration = Duration::from_secs(600);

/// Runs the phase; `phones` is the fleet's size.
pub async fn run(
    sb: &mut ClusterSandbox,
    sim: &Sim,
    st: &mut StatusClient,
    phones: usize,
    etcd_url: &str,
) -> anyhow::Result<()> {
    let spread = Duration::from_secs(
        std::env::var("FLEET_BENCH_POWER_SPREAD_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let cut = Instant::now();
    // The phones lose power with the edges: none retries meanwhile.
    sim.power_off();
    for &i in &EDGES {
        sb.nodes[i].kill9();
    }
    // Down until every lease is gone: the phones' registrations with it.
    loop {
        let s = dialtone_tests::fleet::site_summary(st).await;
        if s.offline as usize >= phones {
            break;
        }
        anyhow::ensure!(
            cut.elapsed() < COME_BACK_LIMIT,
            "the fleet not OFFLINE {COME_BACK_LIMIT:?} after every edge died: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // And the binding leases, which outlive the edges' own (`binding_ttl_s`, minutes with
    // the spread): down until etcd has deleted every binding, so the edges start cold.
    // Watched through the records of the binding leases, a key an edge on the last,
    // longest-lived of them (a count of the bindings walks every one left: a million
    // keys a second while etcd revokes), then checked with one count every few seconds.
    // A count etcd cannot answer in time counts as keys left.
    let store = sb.store().await?;
    for (prefix, every) in [
        (dialtone_domain::keys::NODE_LEASES, Duration::from_secs(1)),
        (dialtone_domain::keys::BINDINGS, Duration::from_secs(5)),
    ] {
        while store.count(prefix).await.map_or(true, |n| n > 0) {
            anyhow::ensure!(
                cut.elapsed() < COME_BACK_LIMIT,
                "etcd still holds {prefix} keys {COME_BACK_LIMIT:?} after every edge died"
            );
            tokio::time::sleep(every).await;
        }
    }
    let down = cut.elapsed();
    // Together, as after a power cut; each loads every line's credentials before it is ready.
    let restarts = sb
        .nodes
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| EDGES.contains(i))
        .map(|(_, n)| n.restart_within(COME_BACK_LIMIT));
    for r in futures::future::join_all(restarts).await {
        r?;
    }
    let restarted = cut.elapsed();

    let stats = sim.stats();
    let mark = sim.mark();
    let t0 = Instant::now();
    sim.power_cut(spread);
    let (mut t99, mut t100) = (None, None);
    let mut last = (
        Instant::now(),
        stats.registered.load(Relaxed),
        etcd_metrics(etcd_url).await?,
    );
    let (mut peak_reg, mut peak_writes) = (0.0f64, 0.0f64);
    while t100.is_none() {
        anyhow::ensure!(
            t0.elapsed() < spread + COME_BACK_LIMIT,
            "not every phone OPERATIONAL {:?} after the first boot: {:?}",
            t0.elapsed(),
            dialtone_tests::fleet::site_summary(st).await
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let s = dialtone_tests::fleet::site_summary(st).await;
        let operational = s.operational as usize;
        if t99.is_none() && operational * 100 >= phones * 99 {
            t99 = Some(t0.elapsed());
        }
        if operational >= phones {
            t100 = Some(t0.elapsed());
        }
        let now = (
            Instant::now(),
            stats.registered.load(Relaxed),
            etcd_metrics(etcd_url).await?,
        );
        let secs = now.0.duration_since(last.0).as_secs_f64();
        peak_reg = peak_reg.max((now.1 - last.1) as f64 / secs);
        peak_writes = peak_writes.max(now.2.writes().saturating_sub(last.2.writes()) as f64 / secs);
        last = now;
        eprintln!(
            "t={:6.1}s after the first boot: operational={operational} degraded={} offline={}",
            t0.elapsed().as_secs_f64(),
            s.degraded,
            s.offline
        );
    }
    eprintln!("{}", super::leases_lost(sb));
    let Mark {
        failed,
        unavailable,
        ..
    } = sim.since(&mark);
    let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    println!(
        "power cut: every edge killed, every binding gone after {:.1} s, the edges back after {:.1} s; {phones} phones booting over {spread:?}: 99 % OPERATIONAL {:.1} s after the first boot, 100 % after {:.1} s; peak {peak_reg:.0} registrations/s (phonesim), {peak_writes:.0} etcd writes/s; failed attempts: {} timed out, {} forbidden, {} refused, {} socket errors; 503 answers {} ({} with Retry-After)",
        down.as_secs_f64(),
        restarted.as_secs_f64(),
        secs(t99),
        secs(t100),
        failed[0],
        failed[1],
        failed[2],
        failed[3],
        unavailable[0],
        unavailable[1],
    );
    Ok(())
}
