//! A simulated fleet against a real cluster: one etcd member, config+provisioning, status
//! and three edges as separate processes, and PHONES phones (loadtest/phonesim) registering
//! to their primary and secondary edge over UDP with digest auth.
//!
//! `cargo run --release -p dialtone-loadtest --bin fleet-bench -- [PHONES] [RATE]`
//! (defaults 100000 phones started at 2000 per second; needs `cargo build --release --bins`
//! and etcd 3.5: `scripts/deps.sh --bench`).
//!
//! Printed: the registration ramp (a line every 5 s); the status watch lag (from an edge
//! writing a binding to a status watcher receiving the phone's new status) p50/p99 over the
//! ramp, and how often the watcher fell behind; the status role's memory per phone (PSS
//! growth from an empty fleet to every phone configured and registered twice); each
//! process's memory; etcd's keys, database size and write rate over `FLEET_BENCH_STEADY_S`
//! seconds (default 30) after the ramp (the phones register for `FLEET_BENCH_EXPIRES`
//! seconds, default 600), and its write-ahead log's fsyncs (how many took over
//! 1 s: a disk stall, during which etcd applies nothing); how often each node found a
//! lease of its own expired (etcd answered none of its refreshes for a TTL); then the time from kill -9 of an edge
//! (lease TTL `FLEET_BENCH_LEASE_TTL`, default 3 s) to every phone it held shown DEGRADED,
//! with the number of phones that were ever OFFLINE meanwhile, the CPU each process (and
//! this bench's simulator and its clients apart) spent until then, how often the status
//! role resumed the bench's status watcher after it fell behind, the latency of config reads
//! meanwhile and from then until etcd has deleted the edge's bindings with their leases
//! (the revoke), and how many of the requests sent to those phones right after the kill
//! were lost; then a power cut of every edge and the fleet's return (`power_cut.rs`; not run
//! with `FLEET_BENCH_POWER_CUT=0`). With `FLEET_BENCH_LOGS` (a directory) every node's log
//! and etcd's are copied there after the kill and after the power cut; etcd logs errors
//! only unless `DIALTONE_TEST_ETCD_LOG_LEVEL=info` (its compactions, its slow requests).
//! The status watcher reads only the fields the lag is measured from (`lag_watch.rs`);
//! with `FLEET_BENCH_WATCHER=whole` it decodes every change whole, as a console does.

mod power_cut;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use dialtone_domain::{keys, placement};
use dialtone_loadtest::{
    etcd_figures::{etcd_metrics, mib},
    lag_watch,
    procfs::{MemoryPressure, cpu_us, pss, threads_cpu_us},
    reads::Reads,
};
use dialtone_phonesim::{PhoneSpec, Sim, SimConfig, stats::Histogram};
use dialtone_proto::config::v1 as pb;
use dialtone_store::{KeyValue, LeaseId, Store, lifecycle::shards};
use dialtone_tests::{ADMIN_TOKEN, ClusterSandbox, VIEWER_TOKEN, fleet};
use futures::StreamExt as _;
use parking_lot::Mutex;

const EDGES: [usize; 3] = [2, 3, 4];
/// The phones' registration period, seconds, unless `FLEET_BENCH_EXPIRES` says otherwise.
/// 600 puts refreshes inside a run (the steady state's writes are measured, and at a
/// million phones the registrations of mid-ramp fall due around the kill, about 4,000 a
/// second); 3600, the steady state, leaves none due before the run ends.
const EXPIRES: u32 = 600;
/// Requests to the killed edge's phones sent from one source address.
const PROBES_PER_SOURCE: usize = 400;
/// The killed edge's phones looked through for a binding on each of its leases.
const SAMPLED_PHONES: usize = 100_000;

/// How often each node found a lease of its own expired (its log's "lease lost": etcd said
/// so, and it was replaced) and its main lease unrefreshed for a whole TTL (kept, the node
/// unhealthy meanwhile).
pub(crate) fn leases_lost(sb: &ClusterSandbox) -> String {
    let lost: Vec<String> = sb
        .nodes
        .iter()
        .map(|n| {
            let log = n.log_text();
            let expired = log.matches("lease lost: expired").count();
            let stale = log
                .matches("main lease not refreshed for a whole ttl")
                .count();
            format!("{} {expired}/{stale}", n.node_id)
        })
        .collect();
    format!(
        "leases found expired / main lease unrefreshed for a TTL, by node: {}",
        lost.join(", ")
    )
}

/// Copies every node's log and etcd's to `FLEET_BENCH_LOGS` (a directory), when set: the
/// sandbox and its logs go when the benchmark ends.
fn keep_logs(sb: &ClusterSandbox) {
    let Ok(dir) = std::env::var("FLEET_BENCH_LOGS") else {
        return;
    };
    let _ = std::fs::create_dir_all(&dir);
    for n in &sb.nodes {
        let _ = std::fs::write(format!("{dir}/{}.log", n.node_id), n.log_text());
    }
    if let Some(etcd) = &sb.etcd {
        for m in &etcd.members {
            let log = etcd.dir().join(format!("{}.log", m.name));
            let _ = std::fs::copy(log, format!("{dir}/etcd-{}.log", m.name));
        }
    }
}

/// One binding key of edge `node` on each lease its bindings hang on (its binding leases,
/// `node-leases/{node}`, else its node lease, that of its membership record), taken from
/// the bindings of `phones`: a revoke deletes every key of its lease in one transaction,
/// so the lease's keys are gone once its sample is.
async fn binding_samples<'a>(
    store: &Store,
    node: &str,
    phones: impl Iterator<Item = &'a str>,
) -> anyhow::Result<Vec<String>> {
    let record = store.get(&keys::node_leases(node)).await?;
    let mut leases: Vec<LeaseId> = record.map_or_else(Vec::new, |kv| shards::parse_ids(&kv.value));
    if leases.is_empty() {
        let member = store
            .get(&keys::member("edge", node))
            .await?
            .with_context(|| format!("{node} has no membership record"))?;
        leases.push(member.lease);
    }
    let mut samples = Vec::with_capacity(leases.len());
    for phone in phones.take(SAMPLED_PHONES) {
        let key = keys::binding(phone, 0, node);
        if let Some(kv) = store.get(&key).await?
            && let Some(i) = leases.iter().position(|l| *l == kv.lease)
        {
            leases.swap_remove(i);
            samples.push(key);
            if leases.is_empty() {
                return Ok(samples);
            }
        }
    }
    anyhow::bail!(
        "no binding of {node} found on {} of its leases",
        leases.len()
    )
}

/// What etcd says of the leases of the first few of `left` (sample keys still there).
async fn leases_left(store: &Store, left: impl Iterator<Item = &KeyValue>) -> String {
    let mut out = Vec::new();
    for kv in left.take(3) {
        out.push(match store.lease_info(kv.lease).await {
            Ok(Some(i)) => format!(
                "lease {:x}: granted {} s, {} s left",
                kv.lease, i.granted_ttl_s, i.ttl_left_s
            ),
            Ok(None) => format!("lease {:x}: gone, its key still there", kv.lease),
            Err(e) => format!("lease {:x}: not read ({e})", kv.lease),
        });
    }
    out.join("; ")
}

fn now_ms() -> i64 {
    dialtone_common::clock::unix_ms_i64()
}

/// How often the status role has resumed a watch that fell behind: from its history, with
/// the phones changed since, with every phone.
async fn watch_resumes(status: &dialtone_tests::Node) -> [i64; 3] {
    let mut n = [0; 3];
    for (i, from) in ["history", "changed", "snapshot"].iter().enumerate() {
        n[i] = status.status_watch_resumes(from).await;
    }
    n
}

/// What [`cpu_split`] reads, in its order.
const CPU_PARTS: [&str; 6] = [
    "status role",
    "config role",
    "the two edges left",
    "etcd",
    "phonesim",
    "this bench's clients (its status watcher, probes, reads)",
];

/// utime + stime in microseconds of each of [`CPU_PARTS`] (the simulator is this process's
/// threads named `phonesim`; its clients are the rest of it).
fn cpu_split(sb: &ClusterSandbox) -> [u64; 6] {
    let pid = |i: usize| sb.nodes[i].pid().into_iter().collect::<Vec<_>>();
    let etcd = sb.etcd.as_ref().and_then(|e| e.members[0].pid());
    let me = std::process::id();
    let sim = threads_cpu_us(me, "phonesim");
    [
        cpu_us(&pid(1)),
        cpu_us(&pid(0)),
        cpu_us(&[pid(EDGES[1]), pid(EDGES[2])].concat()),
        cpu_us(&etcd.into_iter().collect::<Vec<_>>()),
        sim,
        cpu_us(&[me]).saturating_sub(sim),
    ]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let phones: usize = args.get(1).map_or(Ok(100_000), |s| s.parse())?;
    let rate: u32 = args.get(2).map_or(Ok(2000), |s| s.parse())?;
    let expires: u32 = match std::env::var("FLEET_BENCH_EXPIRES") {
        Ok(s) => s
            .parse()
            .ok()
            // The edges' --sip-max-expires (7200 by default) caps what they grant.
            .filter(|e| (60..=7_200).contains(e))
            .with_context(|| format!("FLEET_BENCH_EXPIRES={s}: seconds from 60 to 7200"))?,
        Err(_) => EXPIRES,
    };

    // 3 s by default, so a dead edge is noticed quickly; the chart's default is 10 s.
    let lease_ttl: u32 = std::env::var("FLEET_BENCH_LEASE_TTL").map_or(Ok(3), |s| s.parse())?;
    // What the machine waits for memory from here on: at a million phones every process
    // together comes close to this machine's memory, and a stall of the whole machine
    // looks like a stall of whichever process was being timed.
    let pressure_start = MemoryPressure::now();

    let tls = tempfile::tempdir()?;
    let (cert, key) = dialtone_tls::dev_pair(tls.path(), "provisioning")?;
    let mut sb = ClusterSandbox::with_etcd_lease_ttl(
        1,
        &["config,provisioning", "status", "edge", "edge", "edge"],
        &[
            &format!("--provisioning-tls-cert={}", cert.display()),
            &format!("--provisioning-tls-key={}", key.display()),
        ],
        &[],
        lease_ttl,
    )
    .await?;
    let status_pid = sb.nodes[1].pid().context("status pid")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pss_empty = pss(&[status_pid]);

    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await?;
    let edges = sb.udp_edges(&EDGES);
    fleet::seed_site_on(&mut cfg, pb::PhoneSettings::default(), &edges).await?;
    let group = fleet::placement_edges(&edges);
    let t = Instant::now();
    let created = fleet::import(&mut cfg, phones, "fleet").await?;
    eprintln!("imported {phones} phones in {:.1?}", t.elapsed());
    let addr_of = |node: &str| -> SocketAddr {
        edges
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, a)| a.parse().expect("address"))
            .expect("edge")
    };
    // The placement function the provisioning role's GetHowToRegister answers with.
    let mut held_by_victim = 0u32;
    let victim = sb.nodes[EDGES[0]].node_id.clone();
    let victim_addr = addr_of(&victim);
    let specs: Vec<PhoneSpec> = created
        .into_iter()
        .map(|(id, user, password)| {
            let p = placement::place(&id, &group, true).expect("placed");
            let secondary = p.secondary.expect("three edges");
            if p.primary.node_id == victim || secondary.node_id == victim {
                held_by_victim += 1;
            }
            PhoneSpec {
                registrars: vec![addr_of(&p.primary.node_id), addr_of(&secondary.node_id)],
                phone_id: id,
                user,
                password,
                domain: "dialtone".into(),
                managed: None,
            }
        })
        .collect();
    let mut st = sb.nodes[1].status_client(VIEWER_TOKEN).await?;
    while (fleet::site_summary(&mut st).await.total as usize) < phones {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the edges' credential caches take the import in.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pss_imported = pss(&[status_pid]);

    // Watch lag: every status a binding write caused, from that write to its arrival here.
    let lags = Arc::new(Mutex::new(Vec::<i64>::with_capacity(2 * phones)));
    // It reads only the fields the lag needs (`lag_watch`): it shares the machine with the
    // cluster, as a console would not. `FLEET_BENCH_WATCHER=whole` decodes every change
    // whole, as the bench did before (and a console does).
    let whole = std::env::var("FLEET_BENCH_WATCHER").is_ok_and(|v| v == "whole");
    let mut watch = lag_watch::watch(&sb.nodes[1].grpc_url, VIEWER_TOKEN, whole).await?;
    // `synced` markers after the first: the watcher fell behind the status role's channel
    // and was sent the phones changed since, or the whole fleet again (the role's
    // `dialtone_status_watch_resumes_total` says which; a resume from its history sends
    // no marker).
    let resyncs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let first_sync = Arc::new(tokio::sync::Notify::new());
    let watcher = {
        let (lags, resyncs, first_sync) = (lags.clone(), resyncs.clone(), first_sync.clone());
        tokio::spawn(async move {
            let mut synced = false;
            while let Some(Ok(c)) = watch.next().await {
                if c.synced {
                    if synced {
                        resyncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    synced = true;
                    first_sync.notify_one();
                    continue;
                }
                // A snapshot's statuses are sent again, not changed: a fresh snapshot (a
                // resync, counted above) would add every phone's age as if it were a lag.
                if let Some(newest) = c.newest_binding_ms().filter(|_| synced && !c.snapshot) {
                    lags.lock().push(now_ms() - newest);
                }
            }
        })
    };

    // The watcher's first snapshot (every phone, OFFLINE) is built in the status role's
    // memory and sent before the ramp: what it leaves behind is read apart.
    first_sync.notified().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pss_snapshot = pss(&[status_pid]);
    println!(
        "status role after the import: {:.0} B per phone; after a watcher's first snapshot: {:.0} B per phone (PSS growth from an empty fleet)",
        pss_imported.saturating_sub(pss_empty) as f64 / phones as f64,
        pss_snapshot.saturating_sub(pss_empty) as f64 / phones as f64
    );
    // What the kill phase needs of the fleet, taken before the simulator takes the fleet:
    // a second copy of a million phones' specs costs memory this machine is short of.
    // Up to 2,000 of the victim's phones are asked for (OPTIONS, through their other edge)
    // right after the kill: how many requests are lost in the window.
    let of_victim = || specs.iter().filter(|p| p.registrars.contains(&victim_addr));
    let probes: Vec<(String, String, SocketAddr)> = of_victim()
        .take(2000)
        .map(|p| {
            let other = *p
                .registrars
                .iter()
                .find(|a| **a != victim_addr)
                .expect("two edges");
            (p.user.clone(), p.domain.clone(), other)
        })
        .collect();
    let victim_phones: Vec<String> = of_victim()
        .take(SAMPLED_PHONES)
        .map(|p| p.phone_id.clone())
        .collect();
    // Asked by one of the fleet's lines, which proves itself to each edge (407).
    let asker = (specs[0].user.clone(), specs[0].password.clone());
    let read_phone = specs[0].phone_id.clone();
    // The phones run on threads of their own: a dead edge's phones retrying can keep a
    // runtime's every thread busy, and the bench's clients (the config reads, the deletion
    // check, the status watcher) would then wait behind them, timing the simulator, not
    // Dialtone (one run's check stalled 87 s, its reads up to 34 s). Never dropped: a
    // runtime may not be dropped from async code.
    let sim_rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("phonesim")
            .enable_all()
            .build()?,
    ));
    let sim = sim_rt
        .spawn(Sim::start(
            SimConfig {
                expires,
                sockets: 64,
                start_rate: rate,
                timeout: Duration::from_secs(8),
                // A failed registration is tried again as desk phones do (Yealink every
                // 30 s by default, Snom after 300 s), not within seconds: a dead edge's
                // 666,000 phones retrying every few seconds are a load no fleet makes.
                retry_first: Duration::from_secs(30),
                retry_most: Duration::from_secs(300),
                ..SimConfig::default()
            },
            specs,
        ))
        .await??;
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let s = sim.sample();
        let sum = fleet::site_summary(&mut st).await;
        println!(
            "{}  status: operational={} degraded={} offline={}",
            s.line(),
            sum.operational,
            sum.degraded,
            sum.offline
        );
        if sum.operational as usize == phones {
            break;
        }
        if start.elapsed() > Duration::from_secs(60 + (phones as u64) / u64::from(rate.max(1)) * 3)
        {
            anyhow::bail!("the fleet never became OPERATIONAL");
        }
    }
    let ramp = start.elapsed();
    let all = sim.stats().latency.snapshot();
    let q = |x| Histogram::quantile_ms(&all, x).unwrap_or(f64::NAN);
    println!(
        "\nregistered {phones} phones twice in {ramp:.1?} ({:.0} registrations/s); REGISTER→200 p50 {:.1} ms, p99 {:.1} ms; failures {}",
        (2 * phones) as f64 / ramp.as_secs_f64(),
        q(0.5),
        q(0.99),
        sim.stats().failures()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut l = lags.lock().clone();
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(-1)
    };
    println!(
        "status watch lag (edge writes a binding → a watcher has the new status), {} changes: p50 {} ms, p99 {} ms, max {} ms (target p99 < 200 ms); resumes after falling behind (a synced marker again): {}",
        l.len(),
        pct(0.5),
        pct(0.99),
        l.last().copied().unwrap_or(-1),
        resyncs.load(std::sync::atomic::Ordering::Relaxed)
    );
    let pss_full = pss(&[status_pid]);
    println!(
        "status role memory: {:.0} MiB for {phones} phones, {:.0} bytes per phone (PSS growth from an empty fleet)",
        pss_full as f64 / 1048576.0,
        (pss_full.saturating_sub(pss_empty)) as f64 / phones as f64
    );
    let etcd_url = sb.etcd.as_ref().context("etcd")?.members[0]
        .client_url
        .clone();
    let etcd_pid = sb.etcd.as_ref().and_then(|e| e.members[0].pid());
    let mut memory: Vec<String> = ["config,provisioning", "status", "edge", "edge", "edge"]
        .iter()
        .zip(&sb.nodes)
        .filter_map(|(role, n)| Some(format!("{role} {:.0} MiB", mib(pss(&[n.pid()?])))))
        .collect();
    memory.extend(etcd_pid.map(|p| format!("etcd {:.0} MiB", mib(pss(&[p])))));
    memory.push(format!(
        "phonesim (this process) {:.0} MiB",
        mib(pss(&[std::process::id()]))
    ));
    println!("memory (PSS): {}", memory.join(", "));
    let etcd_before = etcd_metrics(&etcd_url).await?;
    let steady = Duration::from_secs(
        std::env::var("FLEET_BENCH_STEADY_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    );
    tokio::time::sleep(steady).await;
    let etcd_after = etcd_metrics(&etcd_url).await?;
    println!(
        "etcd: {} keys, database {:.0} MiB ({:.0} MiB in use); {:.1} writes/s over the {steady:?} after the ramp (phones refresh every {} s)",
        etcd_after.keys,
        mib(etcd_after.db_bytes),
        mib(etcd_after.db_in_use_bytes),
        (etcd_after.writes() - etcd_before.writes()) as f64 / steady.as_secs_f64(),
        expires / 2,
    );
    // A disk stall shows here: etcd applies nothing while its WAL's fsync waits, and a
    // lease shorter than the wait expires.
    println!(
        "etcd so far (import and ramp): {}",
        etcd_after.wal_fsync_summary()
    );
    println!(
        "machine so far (import and ramp): {}",
        MemoryPressure::now().since(&pressure_start)
    );
    println!("before the kill: {}", leases_lost(&sb));
    let pressure_kill = MemoryPressure::now();

    let sent = probes.len();

    // The leases the victim's bindings hang on: etcd has deleted them all once these are
    // gone.
    let store = sb.store().await?;
    let victim_samples =
        binding_samples(&store, &victim, victim_phones.iter().map(String::as_str)).await?;

    // A config read every 20 ms from the kill until etcd has deleted the victim's
    // bindings with their leases: etcd must stay responsive.
    let reads = Reads::start(sb.nodes[0].config_client(ADMIN_TOKEN).await?, read_phone);

    // Where the two cores went from the kill until every phone was DEGRADED: the status
    // role's work shares them with the rest of the cluster and with this bench.
    let cpu_then = cpu_split(&sb);
    let resumes_then = watch_resumes(&sb.nodes[1]).await;
    // kill -9 an edge: time until every phone it held is DEGRADED; never OFFLINE.
    let t0 = Instant::now();
    sb.nodes[EDGES[0]].kill9();
    // From five loopback addresses at once: an edge lets one source have at most 500
    // deliveries under way, and a burst of 2,000 from one would be refused past that.
    let probing = tokio::spawn(async move {
        let askers = probes
            .chunks(PROBES_PER_SOURCE)
            .enumerate()
            .map(|(i, chunk)| {
                let refs: Vec<(&str, &str, SocketAddr)> = chunk
                    .iter()
                    .map(|(u, d, a)| (u.as_str(), d.as_str(), *a))
                    .collect();
                let (ip, asker) = (format!("127.0.0.{}", 2 + i), &asker);
                async move {
                    let from = (asker.0.as_str(), asker.1.as_str());
                    dialtone_tests::sip::requests_answered_at(
                        &ip,
                        "OPTIONS",
                        from,
                        &refs,
                        Duration::from_secs(10),
                    )
                    .await
                }
            });
        futures::future::join_all(askers)
            .await
            .into_iter()
            .sum::<usize>()
    });
    let mut worst_offline = 0;
    let took = loop {
        let s = fleet::site_summary(&mut st).await;
        if s.offline > worst_offline {
            eprintln!("{:.2?} after the kill: {s:?}", t0.elapsed());
        }
        worst_offline = worst_offline.max(s.offline);
        if s.degraded >= held_by_victim {
            break t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(60) {
            keep_logs(&sb);
            anyhow::bail!(
                "phones not DEGRADED after 60 s: {s:?}; {}",
                leases_lost(&sb)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "kill -9 of {victim} (lease TTL {lease_ttl} s): all {held_by_victim} phones it held DEGRADED after {took:.2?}; phones OFFLINE meanwhile: {worst_offline}"
    );
    let degraded_at = Instant::now();
    println!(
        "CPU from the kill until every phone was DEGRADED ({took:.2?}): {}",
        CPU_PARTS
            .iter()
            .zip(cpu_split(&sb).iter().zip(cpu_then))
            .map(|(part, (now, then))| {
                format!("{part} {:.2} s", now.saturating_sub(then) as f64 / 1e6)
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let resumes_degraded = watch_resumes(&sb.nodes[1]).await;
    // Asked until etcd answers that every sample is gone (a read it cannot answer in time
    // counts as not gone yet), for as long as the longest-lived binding lease lives and two
    // minutes more: one run's check, stalled by the bench's own threads (the simulator
    // then shared them), saw the last binding gone 77 s after that lease's TTL.
    let limit = Duration::from_secs(shards::binding_ttl_s(lease_ttl.into(), 255, 256) as u64 + 120);
    // Every 10 s it says what it found: two runs' checks passed late or never with etcd
    // logging nothing, and a failed read counts as every sample left.
    let mut report_at = Duration::from_secs(10);
    let deleted = loop {
        let read = store.get_many(&victim_samples).await;
        let left = match &read {
            Ok(kvs) => kvs.iter().filter(|kv| kv.is_some()).count(),
            Err(_) => victim_samples.len(),
        };
        if left == 0 {
            break t0.elapsed();
        }
        if t0.elapsed() >= report_at {
            report_at = t0.elapsed() + Duration::from_secs(10);
            let found = match &read {
                Ok(kvs) => leases_left(&store, kvs.iter().flatten()).await,
                Err(e) => format!("the read failed: {e}"),
            };
            eprintln!(
                "{:.1?} after the kill: {left} of {} sampled leases still hold keys; {found}",
                t0.elapsed(),
                victim_samples.len()
            );
        }
        if t0.elapsed() > limit {
            keep_logs(&sb);
            anyhow::bail!(
                "{left} of {victim}'s binding leases still hold keys {limit:?} after the kill"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (until_degraded, until_deleted) = reads.stop_split(degraded_at).await?;
    println!(
        "config reads (GetPhone) from the kill until every phone was DEGRADED: {until_degraded}"
    );
    println!(
        "its bindings deleted with their {} lease(s) {deleted:.2?} after the kill; config reads started from DEGRADED until then: {until_deleted}",
        victim_samples.len()
    );
    let answered = probing.await?;
    let since = |r: [i64; 3]| {
        let d = std::array::from_fn::<i64, 3, _>(|i| r[i] - resumes_then[i]);
        format!(
            "{} from its history, {} with the phones changed since, {} with every phone",
            d[0], d[1], d[2]
        )
    };
    println!(
        "the status watcher fell behind and was resumed, by the time every phone was DEGRADED (a resume made as the last phones turned DEGRADED may count in either): {}; by the time the bindings were deleted: {}",
        since(resumes_degraded),
        since(watch_resumes(&sb.nodes[1]).await)
    );
    println!(
        "requests sent to {sent} of its phones through their other edge right after the kill: {answered} answered, {} lost (target 0)",
        sent - answered
    );
    println!("{}", leases_lost(&sb));
    println!(
        "etcd so far (with the kill): {}",
        etcd_metrics(&etcd_url).await?.wal_fsync_summary()
    );
    println!(
        "machine during the kill phase: {}",
        MemoryPressure::now().since(&pressure_kill)
    );
    watcher.abort();
    // Kept now too: the power cut of a large fleet may be stopped by hand, or not run.
    keep_logs(&sb);
    if std::env::var("FLEET_BENCH_POWER_CUT").is_ok_and(|v| v == "0") {
        println!("power cut not run (FLEET_BENCH_POWER_CUT=0)");
        sim.stop(false, 1).await;
        return Ok(());
    }
    let cut = power_cut::run(&mut sb, &sim, &mut st, phones, &etcd_url).await;
    keep_logs(&sb);
    cut?;
    sim.stop(false, 1).await;
    Ok(())
}
