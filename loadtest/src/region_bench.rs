//! Two regions on one machine, each on its own etcd cluster, as `docs/capacity.md` ("Past
//! one etcd cluster") plans them: what one region's failures cost the other, and what a
//! call between regions costs against one within a region.
//!
//! `cargo build --release --bins && target/release/region-bench [PHONES] [RATE] [CALLS]`
//! (defaults 100000 phones a region, each region's phones started at 1000 a second, 200
//! calls of each kind; needs etcd 3.5: `scripts/deps.sh --bench`).
//!
//! Each region (`east`, `west`) is what the call tests stand on: one etcd member, a
//! config+status node and two edges, separate processes; its site `hq` is placed on its
//! two edges, and PHONES phones (one phonesim per region, on a loopback address of its
//! own) register to both. The regions know each other as a carrier and a PBX do: each
//! has a peer (the other's edges, by address and port) and a trunk to the other's edges
//! whose DIDs are its own first CALLEES phones' numbers (`+1555` then 2 for east, 3 for
//! west, then six digits); its site sends national calls through that trunk. The global
//! cluster of the plan (settings every region reads, the directory of sites' regions) is
//! not built: each region here has the whole configuration it needs.
//!
//! Printed, in order:
//! 1. each region's import and registration ramp, and its etcd's keys and database size;
//! 2. call setup (INVITE with credentials → 200; each call then ACKed and hung up), CALLS
//!    calls of each kind one after another: east → east (an extension), east → west and
//!    west → east (a national number, through the trunk), west → west: p50, p99, max,
//!    failures;
//! 3. kill -9 of one of east's edges (its bindings, every east phone's, revoked in east's
//!    etcd): the time until every east phone is DEGRADED, and meanwhile config reads in
//!    each region (GetPhone every 20 ms) and calls west → west and west → east;
//! 4. east's etcd killed for `REGION_BENCH_OUTAGE_S` seconds (default 15): config reads in
//!    each region, and calls within east (its surviving edge serves from its caches),
//!    east → west, west → east and west → west meanwhile.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use dialtone_loadtest::{
    etcd_figures::{etcd_metrics, mib},
    reads::Reads,
};
use dialtone_phonesim::{Sim, SimConfig};
use dialtone_proto::config::v1 as pb;
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, ConfigClient, StatusClient, VIEWER_TOKEN, carriers, fleet,
    sip::{self, Caller},
};

/// The phones' registration period, seconds (they refresh at half of it).
const EXPIRES: u32 = 600;
/// A region's phone `i` is its site's extension `FIRST_EXTENSION + i`.
const FIRST_EXTENSION: usize = 100_000;
/// A trunk's DIDs: at most 1,000 entries.
const MAX_CALLEES: usize = 1000;

/// One region: its cluster, an admin config client, its phones (id, SIP user, password).
struct Region {
    name: &'static str,
    /// Its numbers are `+1555{digit}` and six digits.
    digit: u8,
    sb: ClusterSandbox,
    cfg: ConfigClient,
    st: StatusClient,
    phones: Vec<(String, String, String)>,
}

impl Region {
    async fn start(name: &'static str, digit: u8, phones: usize) -> anyhow::Result<Self> {
        let (sb, mut cfg) = ClusterSandbox::two_edges(&[]).await?;
        let t = Instant::now();
        let phones = fleet::import_at_extensions(&mut cfg, phones, name, FIRST_EXTENSION).await?;
        eprintln!(
            "{name}: imported {} phones in {:.1?}",
            phones.len(),
            t.elapsed()
        );
        let st = sb.nodes[0].status_client(VIEWER_TOKEN).await?;
        Ok(Region {
            name,
            digit,
            sb,
            cfg,
            st,
            phones,
        })
    }

    /// Its edges' UDP addresses, in the order its peers' trunks try them.
    fn edges(&self) -> [SocketAddr; 2] {
        [self.sb.udp(1), self.sb.udp(2)]
    }

    /// The E.164 number of its phone `i`.
    fn number(&self, i: usize) -> String {
        format!("+1{}", self.dialled(i))
    }

    /// Its phone `i`'s number as a phone of the NANP plan dials it (national).
    fn dialled(&self, i: usize) -> String {
        format!("555{}{i:06}", self.digit)
    }

    fn etcd_url(&self) -> anyhow::Result<String> {
        Ok(self.sb.etcd.as_ref().context("etcd")?.members[0]
            .client_url
            .clone())
    }

    /// A caller on `ip` holding the line of its last phone (never a callee).
    async fn caller(&self, ip: &str) -> anyhow::Result<Caller> {
        let (_, user, password) = self.phones.last().context("phones")?;
        Caller::line_at(ip, user, password).await
    }

    /// Config reads of its first phone, every 20 ms from now.
    async fn reads(&self) -> anyhow::Result<Reads> {
        let cfg = self.sb.nodes[0].config_client(ADMIN_TOKEN).await?;
        Ok(Reads::start(cfg, self.phones[0].0.clone()))
    }

    /// Its phones registering to both its edges from `ip`, `rate` started a second.
    async fn register(&self, ip: [u8; 4], rate: u32) -> anyhow::Result<Sim> {
        let specs = self
            .phones
            .iter()
            .map(|p| self.sb.dual_registered(&[1, 2], p))
            .collect();
        let config = SimConfig {
            expires: EXPIRES,
            sockets: 32,
            start_rate: rate,
            bind_ip: ip.into(),
            timeout: Duration::from_secs(8),
            ..SimConfig::default()
        };
        Ok(Sim::start(config, specs).await?)
    }
}

/// Makes `other`'s edges a peer of `r`, its first `callees` phones reachable from there by
/// their numbers, and `r`'s national calls go to `other`'s edges.
async fn link(r: &mut Region, other: &Region, callees: usize) -> anyhow::Result<()> {
    let id = format!("region-{}", other.name);
    let peer = pb::Peer {
        id: id.clone(),
        name: format!("Region {}", other.name),
        addresses: other.edges().iter().map(SocketAddr::to_string).collect(),
        ..Default::default()
    };
    r.cfg
        .create_peer(pb::CreatePeerRequest { peer: Some(peer) })
        .await?;
    let dids = (0..callees)
        .map(|i| pb::Did {
            numbers: r.number(i),
            target: Some(pb::did::Target::PhoneId(r.phones[i].0.clone())),
        })
        .collect();
    let mut trunk = carriers::trunk(&id, &id, other.edges()[0], dids);
    trunk.targets.push(pb::TrunkTarget {
        address: other.edges()[1].to_string(),
        transport: "udp".into(),
        tls_name: String::new(),
    });
    r.cfg
        .create_trunk(pb::CreateTrunkRequest { trunk: Some(trunk) })
        .await?;
    carriers::route_out(
        &mut r.cfg,
        false,
        vec![carriers::route(&["national"], &[id.as_str()])],
    )
    .await;
    Ok(())
}

/// One call from `caller` to `dialled` through `edge`, hung up once answered: its setup
/// time (INVITE → 200), or the final response it ended with (none within 5 s: empty).
async fn one_call(caller: &Caller, dialled: &str, edge: SocketAddr) -> Result<Duration, String> {
    let t = Instant::now();
    let invite = caller.text("INVITE", dialled, &sip::branch(), "INVITE");
    caller.send(&invite, edge).await;
    let call_id = sip::headers(&invite, "call-id")[0].to_owned();
    let answers = |method| caller.call_responses(&call_id, method, Duration::from_secs(5));
    let responses = answers("INVITE").await;
    let took = t.elapsed();
    match responses.last() {
        Some(ok) if sip::status(ok) == 200 => {
            let target = sip::contact_uri(ok);
            let (ack, hop) = sip::in_dialog(&invite, ok, "ACK", 1, &target);
            caller.send_raw(&ack, hop).await;
            let (bye, hop) = sip::in_dialog(&invite, ok, "BYE", 2, &target);
            caller.send_raw(&bye, hop).await;
            answers("BYE").await;
            Ok(took)
        }
        last => Err(last.cloned().unwrap_or_default()),
    }
}

/// Calls of one kind: who calls, through which edge, what.
struct Calls {
    label: &'static str,
    caller: Caller,
    edge: SocketAddr,
    dialled: Vec<String>,
}

impl Calls {
    /// Places its calls one after another, through its callees in turn, until `n` are
    /// placed or `on` is cleared: a line of what they did.
    async fn run(&self, n: usize, on: &AtomicBool) -> String {
        let (mut setups, mut failed) = (Vec::new(), Vec::new());
        for dialled in self.dialled.iter().cycle().take(n) {
            if !on.load(Relaxed) {
                break;
            }
            match one_call(&self.caller, dialled, self.edge).await {
                Ok(took) => setups.push(took),
                Err(last) => failed.push(if last.is_empty() {
                    0
                } else {
                    sip::status(&last)
                }),
            }
        }
        setups.sort();
        let ms = |p: f64| {
            setups
                .get(((setups.len() as f64 * p) as usize).min(setups.len().saturating_sub(1)))
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        };
        let not_answered = failed.len();
        failed.sort();
        failed.dedup();
        format!(
            "{}: {} answered, setup p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} not answered{}",
            self.label,
            setups.len(),
            ms(0.5),
            ms(0.99),
            ms(1.0),
            not_answered,
            if failed.is_empty() {
                String::new()
            } else {
                format!(" (ended with {failed:?}; 0: nothing within 5 s)")
            }
        )
    }

    /// Places calls until one is answered (an edge learns trunks and routes a moment
    /// after they are written), within 30 s.
    async fn warm_up(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match one_call(&self.caller, &self.dialled[0], self.edge).await {
                Ok(_) => return Ok(()),
                Err(last) if Instant::now() > deadline => {
                    anyhow::bail!(
                        "{}: no call answered in 30 s; the last ended with:\n{last}",
                        self.label
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// The four kinds of call, each from a caller of its own on `ips` (four addresses): east →
/// east, east → west, west → east, west → west, through each caller's region's first edge.
async fn kinds(
    east: &Region,
    west: &Region,
    callees: usize,
    ips: [&str; 4],
) -> anyhow::Result<[Calls; 4]> {
    // Both regions' site `hq` numbers its phones alike.
    let extensions: Vec<String> = (0..callees)
        .map(|i| (FIRST_EXTENSION + i).to_string())
        .collect();
    let numbers = |r: &Region| -> Vec<String> { (0..callees).map(|i| r.dialled(i)).collect() };
    Ok([
        Calls {
            label: "east → east",
            caller: east.caller(ips[0]).await?,
            edge: east.edges()[0],
            dialled: extensions.clone(),
        },
        Calls {
            label: "east → west",
            caller: east.caller(ips[1]).await?,
            edge: east.edges()[0],
            dialled: numbers(west),
        },
        Calls {
            label: "west → east",
            caller: west.caller(ips[2]).await?,
            edge: west.edges()[0],
            dialled: numbers(east),
        },
        Calls {
            label: "west → west",
            caller: west.caller(ips[3]).await?,
            edge: west.edges()[0],
            dialled: extensions,
        },
    ])
}

/// Runs `calls` until `on` is cleared, each as many as `n` at most.
async fn calling(calls: &[&Calls], n: usize, on: &AtomicBool) -> Vec<String> {
    futures::future::join_all(calls.iter().map(|c| c.run(n, on))).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let phones: usize = args.get(1).map_or(Ok(100_000), |s| s.parse())?;
    let rate: u32 = args.get(2).map_or(Ok(1000), |s| s.parse())?;
    let calls: usize = args.get(3).map_or(Ok(200), |s| s.parse())?;
    let outage = Duration::from_secs(
        std::env::var("REGION_BENCH_OUTAGE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(15),
    );
    anyhow::ensure!(phones >= 2, "PHONES is at least 2");
    let callees = calls.clamp(1, MAX_CALLEES).min(phones - 1);
    println!(
        "region-bench: 2 regions of {phones} phones (started at {rate}/s each), {calls} calls of each kind to {callees} callees"
    );

    let mut east = Region::start("east", 2, phones).await?;
    let mut west = Region::start("west", 3, phones).await?;
    link(&mut east, &west, callees).await?;
    link(&mut west, &east, callees).await?;

    // 1. Both regions register at once.
    let t = Instant::now();
    let sims = [
        east.register([127, 0, 0, 2], rate).await?,
        west.register([127, 0, 0, 3], rate).await?,
    ];
    let within = Duration::from_secs(120 + 3 * phones as u64 / rate.max(1) as u64);
    for r in [&mut east, &mut west] {
        let n = phones as u32;
        anyhow::ensure!(
            fleet::wait_operational(&mut r.st, n, within.saturating_sub(t.elapsed())).await,
            "{}: not every phone OPERATIONAL within {within:?}: {:?}",
            r.name,
            fleet::site_summary(&mut r.st).await
        );
    }
    println!(
        "both regions OPERATIONAL (every phone registered to its two edges) after {:.1?}",
        t.elapsed()
    );
    for r in [&east, &west] {
        let f = etcd_metrics(&r.etcd_url()?).await?;
        println!(
            "{} etcd: {} keys, database {:.0} MiB",
            r.name,
            f.keys,
            mib(f.db_bytes)
        );
    }

    // 2. Calls within and between regions, one kind after another.
    let on = AtomicBool::new(true);
    let all = kinds(&east, &west, callees, ["127.0.0.4"; 4]).await?;
    for c in &all {
        c.warm_up().await?;
    }
    for c in &all {
        println!("{}", c.run(calls, &on).await);
    }

    // 3. One of east's edges dies: etcd revokes its lease and every east phone's binding.
    // Callers of their own, each proven to its edge (a first call) before the window.
    let during = kinds(&east, &west, callees, ["127.0.0.5"; 4]).await?;
    let watched = [&during[3], &during[2]];
    for c in watched {
        c.warm_up().await?;
    }
    let reads = [east.reads().await?, west.reads().await?];
    let on = AtomicBool::new(true);
    let t0 = Instant::now();
    east.sb.nodes[2].kill9();
    let (lines, took) = tokio::join!(calling(&watched, usize::MAX, &on), async {
        let took = loop {
            let s = fleet::site_summary(&mut east.st).await;
            if s.degraded as usize >= phones || t0.elapsed() > Duration::from_secs(60) {
                break (t0.elapsed(), s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        on.store(false, Relaxed);
        took
    });
    println!(
        "kill -9 of an east edge (lease TTL 3 s): east's phones DEGRADED after {:.2?} ({} of {phones})",
        took.0, took.1.degraded
    );
    let [east_reads, west_reads] = reads;
    println!(
        "  config reads meanwhile, east: {}",
        east_reads.stop().await?
    );
    println!(
        "  config reads meanwhile, west: {}",
        west_reads.stop().await?
    );
    for l in lines {
        println!("  calls meanwhile, {l}");
    }

    // 4. East's etcd dies; east's surviving edge serves from what it holds.
    let during = kinds(&east, &west, callees, ["127.0.0.6"; 4]).await?;
    for c in &during {
        c.warm_up().await?;
    }
    let reads = [east.reads().await?, west.reads().await?];
    let on = Arc::new(AtomicBool::new(true));
    east.sb.etcd.as_mut().context("etcd")?.kill(0);
    let stopper = {
        let on = on.clone();
        tokio::spawn(async move {
            tokio::time::sleep(outage).await;
            on.store(false, Relaxed);
        })
    };
    let lines = calling(&during.iter().collect::<Vec<_>>(), usize::MAX, &on).await;
    stopper.await?;
    println!("east's etcd killed, {outage:?}:");
    let [east_reads, west_reads] = reads;
    println!("  config reads, east: {}", east_reads.stop().await?);
    println!("  config reads, west: {}", west_reads.stop().await?);
    for l in lines {
        println!("  calls, {l}");
    }
    for sim in sims {
        sim.stop(false, 1).await;
    }
    Ok(())
}
