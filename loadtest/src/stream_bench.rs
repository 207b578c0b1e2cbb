//! Phones over TCP and TLS, each holding its connection to its edge (its flow), against
//! Kamailio's TCP in the same run: the memory a connected phone costs, whether that memory
//! comes back when the connections close, and reconnect waves (every connection dropped at
//! once, as a site's network blip or a load balancer losing its flows does, then each phone
//! registering again within the time the first wave took).
//!
//! `cargo build --release --bins &&
//! target/release/stream-bench [PHONES] [TRANSPORTS] [WAVES] [RATE]`
//! (defaults 10000, `tcp,tls`, 3, 2000, RATE in all; Kamailio from `scripts/deps.sh
//! --bench`). With `STREAM_BENCH_BASELINE=PATH` (another build of `dialtone`), each
//! transport also runs on a cluster of that build, after this build's, with this build's
//! `phonesim`: a same-run comparison of two builds. `STREAM_BENCH_RECONNECT_SPREAD_MS=MS`
//! makes every reconnect wave's phones connect again within MS instead (a load balancer
//! that drops every flow at once); `STREAM_BENCH_RECONNECT_AFTER_MS=MS` has every phone
//! wait MS first, so that, given enough, none reconnects while the wave's connections are
//! closing.
//!
//! This machine allows a process 20,000 open files, and a phone's connection is one on each
//! side: so PHONES are split into groups of at most [`GROUP`], each group with its own edge
//! (a process of its own, `--sip-max-connections=19000`) and its own `phonesim` process,
//! whose phones connect from 250 loopback addresses of their own (127.(10+g).0.1 and up;
//! `STREAM_BENCH_TCP_SOURCES`), as real phones each have theirs. The edges run as in
//! production: a config node and the edges on one etcd member. Kamailio (one process
//! tree) takes one group.
//!
//! Printed per transport and server: the edges' PSS growth per phone after the first wave,
//! after each reconnect wave and once every connection closed (the phones gone), each
//! 35 s after the wave ended; and per wave the registrations, their p50/p99 (the worst
//! group's), the failures (summed) and the connections the machine's accept queues refused
//! and the SYNs and SYN-ACKs sent again (`/proc/net/netstat`).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use dialtone_loadtest::{
    kamailio,
    procfs::{ListenQueue, pss},
    wait_cached_lines,
};
use dialtone_proto::config::v1 as pb;
use dialtone_tests::{ClusterSandbox, binary, fleet::seed_site, free_port_pair};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

/// Phones per edge and per phonesim process (each side holds one descriptor per phone).
const GROUP: usize = 15_000;

/// How long the fleet settles after a wave before its memory is read: past a transaction's
/// lifetime (32 s), after which the edge's quiet phones keep only their compact state (as
/// `sip-bench` waits).
const SETTLE: Duration = Duration::from_secs(35);

/// The number in environment variable `name`, when set (a value that is not one stops
/// the bench, naming it): `STREAM_BENCH_RECONNECT_SPREAD_MS`, the time within which every
/// phone of a reconnect wave connects again; `STREAM_BENCH_RECONNECT_AFTER_MS`, how long
/// every phone waits before that (0 unless set: a diagnostic that keeps the reconnects
/// clear of the closes); `STREAM_BENCH_TCP_SOURCES` ([`tcp_sources`]).
fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    match v.parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?}: not a number"),
    }
}

/// `STREAM_BENCH_TCP_SOURCES`: how many addresses each group's phones connect from
/// (`phonesim --tcp-sources`), 250 unless set; at most 65,535, so that group g's stay
/// within 127.(10+g).0.0/16. Real phones each have their own; before 2026-12-06 a group's
/// 15,000 came from one, and the kernel's search for a free port at each connect took
/// much of a reconnect wave's CPU (`docs/benchmarks.md`).
fn tcp_sources() -> u32 {
    match env_number("STREAM_BENCH_TCP_SOURCES") {
        None => 250,
        Some(n @ 1..=65_535) => n,
        Some(n) => {
            panic!("STREAM_BENCH_TCP_SOURCES={n}: not a number of addresses from 1 to 65535")
        }
    }
}

/// How long a wave may take before phonesim reports it unfinished (`--duration`, seconds):
/// 120 s, or a minute past the last phone's reconnect when that comes later.
fn wave_limit_s(after_ms: u64, spread_ms: u64) -> u64 {
    ((after_ms + spread_ms) / 1000 + 60).max(120)
}

/// One phonesim process, driven over its stdin (`run --waves`).
struct Phonesim {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Phonesim {
    fn start(
        fleet: &Path,
        transport: &str,
        ca: Option<&Path>,
        bind: &str,
        phones: usize,
        rate: u32,
        log: &Path,
    ) -> anyhow::Result<Self> {
        // Every phone of a wave reconnects within the time the first wave took to start
        // (after STREAM_BENCH_RECONNECT_AFTER_MS), unless told otherwise: a load balancer
        // that drops every flow at once sends the phones back within a second or two.
        let spread_ms = env_number("STREAM_BENCH_RECONNECT_SPREAD_MS")
            .unwrap_or((phones as u64 * 1000) / u64::from(rate.max(1)));
        let after_ms = env_number("STREAM_BENCH_RECONNECT_AFTER_MS").unwrap_or(0);
        let mut cmd = Command::new(binary("phonesim"));
        cmd.arg("run")
            .arg("--phones")
            .arg(fleet)
            .args(["--transport", transport, "--bind-ip", bind, "--waves"])
            .args(["--tcp-sources", &tcp_sources().to_string()])
            .args(["--rate", &rate.to_string(), "--expires", "3600"])
            .args(["--duration", &wave_limit_s(after_ms, spread_ms).to_string()])
            .arg("--no-unregister")
            .args(["--reconnect-spread-ms", &spread_ms.to_string()])
            .args(["--reconnect-after-ms", &after_ms.to_string()]);
        if let Some(ca) = ca {
            cmd.arg("--sip-ca").arg(ca);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .kill_on_drop(true)
            .spawn()
            .context("starting phonesim")?;
        let stdin = child.stdin.take().context("phonesim stdin")?;
        let lines = BufReader::new(child.stdout.take().context("phonesim stdout")?).lines();
        Ok(Phonesim {
            child,
            stdin,
            lines,
        })
    }

    /// The next line starting with `prefix`.
    async fn expect(&mut self, prefix: &str) -> anyhow::Result<String> {
        while let Some(l) = self.lines.next_line().await? {
            if l.starts_with(prefix) {
                return Ok(l);
            }
        }
        bail!("phonesim ended before printing {prefix:?}")
    }

    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }
}

/// A wave's figures, from phonesim's report lines.
#[derive(Debug, Default, Clone)]
struct Wave {
    all_registered: bool,
    registrations: u64,
    p50_ms: f64,
    p99_ms: f64,
    timeouts: u64,
    failures: u64,
    /// The edges' own p99 of REGISTER transactions in the wave (bucket bound, ms).
    server_p99_ms: Option<f64>,
    /// The bound of the edges' slowest REGISTER transaction's bucket in the wave (ms): a
    /// phone's registration that took seconds with the edges' all fast was slow before
    /// the edge read it or after it answered.
    server_max_ms: Option<f64>,
    /// The machine's accept queues in the wave: the connections they refused, and the
    /// SYNs and SYN-ACKs sent again (every process on the machine counts, both ends).
    listen: ListenQueue,
}

/// The number after `key` in `line` (`-`: 0).
fn number_after(line: &str, key: &str) -> f64 {
    line.split_once(key)
        .and_then(|(_, rest)| rest.split([' ', ',', ';']).find(|s| !s.is_empty()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Parses `ready: ...` and `wave N: ...` lines.
fn parse_wave(line: &str) -> Wave {
    let n = |k| number_after(line, k);
    let failures = ["timeout ", "forbidden ", "rejected ", "io "]
        .iter()
        .map(|k| n(k) as u64)
        .sum();
    Wave {
        all_registered: line.contains("all-registered true"),
        registrations: n("registrations ") as u64,
        p50_ms: n("p50 "),
        p99_ms: n("p99 "),
        timeouts: n("timeout ") as u64,
        failures,
        server_p99_ms: None,
        server_max_ms: None,
        listen: ListenQueue::default(),
    }
}

/// The groups' figures as one: sums, the worst quantiles.
fn merge(waves: &[Wave]) -> Wave {
    Wave {
        all_registered: waves.iter().all(|w| w.all_registered),
        registrations: waves.iter().map(|w| w.registrations).sum(),
        p50_ms: waves.iter().map(|w| w.p50_ms).fold(0.0, f64::max),
        p99_ms: waves.iter().map(|w| w.p99_ms).fold(0.0, f64::max),
        timeouts: waves.iter().map(|w| w.timeouts).sum(),
        failures: waves.iter().map(|w| w.failures).sum(),
        server_p99_ms: None,
        server_max_ms: None,
        listen: ListenQueue::default(),
    }
}

/// The edges' REGISTER transaction histogram, summed: (upper bound in seconds, cumulative
/// count) per bucket.
async fn register_buckets(edges: &[&dialtone_tests::Node]) -> Vec<(f64, u64)> {
    let mut sum: Vec<(f64, u64)> = Vec::new();
    for e in edges {
        let Some((_, text)) = e.http_get("/metrics").await else {
            continue;
        };
        let register = text.lines().filter(|l| {
            l.starts_with("dialtone_sip_transaction_duration_seconds_bucket{")
                && l.contains("method=\"REGISTER\"")
        });
        for (i, l) in register.enumerate() {
            let le = l
                .split_once("le=\"")
                .and_then(|(_, r)| r.split('"').next())
                .map_or(f64::INFINITY, |v| v.parse().unwrap_or(f64::INFINITY));
            let n: u64 = l
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            match sum.get_mut(i) {
                Some(b) => b.1 += n,
                None => sum.push((le, n)),
            }
        }
    }
    sum
}

/// The `q` quantile's bucket bound, in ms, of what the buckets counted between two reads.
fn bucket_quantile_ms(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    let diff: Vec<(f64, u64)> = after
        .iter()
        .enumerate()
        .map(|(i, (le, n))| (*le, n.saturating_sub(before.get(i).map_or(0, |b| b.1))))
        .collect();
    let total = diff.last()?.1;
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    diff.iter()
        .find(|(_, n)| *n >= rank)
        .map(|(le, _)| le * 1000.0)
}

/// The servers' PSS once it stops moving (two reads 5 s apart within 1 MiB, for at most a
/// minute): the baseline must not count memory the import left behind to be freed, or a
/// later read comes out too low.
async fn settled_pss(pids: &dyn Fn() -> Vec<u32>) -> u64 {
    let mut last = pss(&pids());
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = pss(&pids());
        if now.abs_diff(last) < 1 << 20 {
            return now;
        }
        last = now;
    }
    last
}

/// One server's run: memory per phone at each point and each wave's figures.
struct Outcome {
    server: String,
    phones: usize,
    /// (what, bytes per phone).
    memory: Vec<(String, f64)>,
    waves: Vec<Wave>,
}

/// Writes group `g`'s fleet file: its phones, each with one registrar.
fn fleet_file(
    path: &Path,
    creds: &[(String, String, String)],
    registrar: &str,
) -> anyhow::Result<()> {
    let mut s = String::from("phone_id,sip_user,password,domain,primary,secondary\n");
    for (id, user, password) in creds {
        s.push_str(&format!("{id},{user},{password},,{registrar},\n"));
    }
    std::fs::write(path, s)?;
    Ok(())
}

/// What the edges and the kernel counted during `wave`, since `buckets` (the edges'
/// REGISTER histogram, moved on to now) and `listen` were read at its start.
async fn counted_in_wave(
    wave: &mut Wave,
    edges: &[&dialtone_tests::Node],
    buckets: &mut Vec<(f64, u64)>,
    listen: &ListenQueue,
) {
    let now = register_buckets(edges).await;
    wave.server_p99_ms = bucket_quantile_ms(buckets, &now, 0.99);
    wave.server_max_ms = bucket_quantile_ms(buckets, &now, 1.0);
    wave.listen = ListenQueue::now().since(listen);
    *buckets = now;
}

/// Registers every group's phones to its server, runs the waves and reads the servers'
/// memory (`pids`) along the way.
async fn drive(
    server: &str,
    groups: Vec<(PathBuf, usize)>,
    (transport, ca): (&str, Option<&Path>),
    (rate, waves): (u32, usize),
    pids: &dyn Fn() -> Vec<u32>,
    edges: &[&dialtone_tests::Node],
) -> anyhow::Result<Outcome> {
    let phones: usize = groups.iter().map(|g| g.1).sum();
    let group_rate = (rate / groups.len() as u32).max(1);
    let before = settled_pss(pids).await;
    let per_phone = |now: u64| now.saturating_sub(before) as f64 / phones.max(1) as f64;
    let mut sims = Vec::new();
    // Read before the first phone starts: its REGISTERs and connections are the wave's.
    let mut buckets = register_buckets(edges).await;
    let listen = ListenQueue::now();
    for (g, (fleet, n)) in groups.iter().enumerate() {
        let log = std::env::temp_dir().join(format!("stream-bench-{server}-{transport}-{g}.log"));
        // Group g's phones come from 127.(10+g).0.1 and up, TCP_SOURCES addresses.
        let bind = format!("127.{}.0.1", 10 + g);
        sims.push(Phonesim::start(
            fleet, transport, ca, &bind, *n, group_rate, &log,
        )?);
    }
    let mut out = Outcome {
        server: server.into(),
        phones,
        memory: Vec::new(),
        waves: Vec::new(),
    };
    let mut first = Vec::new();
    for s in &mut sims {
        first.push(parse_wave(&s.expect("ready").await?));
    }
    out.waves.push(merge(&first));
    counted_in_wave(&mut out.waves[0], edges, &mut buckets, &listen).await;
    tokio::time::sleep(SETTLE).await;
    out.memory
        .push(("first wave".into(), per_phone(pss(&pids()))));
    eprintln!("{server} {transport}: first wave {:?}", out.waves[0]);
    for w in 1..=waves {
        let listen = ListenQueue::now();
        for s in &mut sims {
            s.send("wave").await?;
        }
        let mut each = Vec::new();
        for s in &mut sims {
            each.push(parse_wave(&s.expect("wave").await?));
        }
        out.waves.push(merge(&each));
        counted_in_wave(&mut out.waves[w], edges, &mut buckets, &listen).await;
        tokio::time::sleep(SETTLE).await;
        out.memory
            .push((format!("wave {w}"), per_phone(pss(&pids()))));
        eprintln!("{server} {transport}: wave {w} {:?}", out.waves[w]);
    }
    // The phones go away: their connections close (no unregistering).
    for mut s in sims {
        let _ = s.child.start_kill();
        let _ = s.child.wait().await;
    }
    tokio::time::sleep(SETTLE).await;
    out.memory
        .push(("all closed".into(), per_phone(pss(&pids()))));
    Ok(out)
}

fn print(outcomes: &[(String, Outcome)]) {
    println!(
        "\n{:<6} {:<10} {:>7} {:>6} {:>12} {:>10} {:>10} {:>9} {:>9} {:>16} {:>14} {:>12} {:>10} {:>10}",
        "trans",
        "server",
        "phones",
        "wave",
        "registered",
        "p50 ms",
        "p99 ms",
        "timeouts",
        "failures",
        "bytes/phone",
        "edge p99 ms",
        "edge max ms",
        "overflows",
        "SYN resent"
    );
    for (transport, o) in outcomes {
        for (i, w) in o.waves.iter().enumerate() {
            let mem = o.memory.get(i).map_or(0.0, |m| m.1);
            println!(
                "{:<6} {:<10} {:>7} {:>6} {:>12} {:>10.1} {:>10.1} {:>9} {:>9} {:>16.0} {:>14} {:>12} {:>10} {:>10}",
                transport,
                o.server,
                o.phones,
                i,
                format!(
                    "{}{}",
                    w.registrations,
                    if w.all_registered { "" } else { "*" }
                ),
                w.p50_ms,
                w.p99_ms,
                w.timeouts,
                w.failures,
                mem,
                w.server_p99_ms.map_or("-".into(), |v| format!("<{v}")),
                w.server_max_ms.map_or("-".into(), |v| format!("<{v}")),
                w.listen.overflows,
                w.listen.syn_retransmits
            );
        }
        if let Some((what, m)) = o.memory.last() {
            println!(
                "{transport:<6} {:<10} {what}: {m:.0} bytes/phone still held",
                o.server
            );
        }
    }
    println!(
        "(* not every phone registered again within the wave's limit, 120 s or a minute past the last reconnect; p50/p99 are the worst group's)"
    );
    println!(
        "(overflows: connections the machine's full accept queues refused in the wave; SYN resent: SYNs and SYN-ACKs sent again, 1, 3 and 7 s after the first)"
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let phones: usize = args.first().map_or(Ok(10_000), |s| s.parse())?;
    let transports: Vec<String> = args
        .get(1)
        .map_or("tcp,tls", String::as_str)
        .split(',')
        .map(str::to_owned)
        .collect();
    let waves: usize = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let rate: u32 = args.get(3).map_or(Ok(2000), |s| s.parse())?;
    let baseline = std::env::var_os("STREAM_BENCH_BASELINE").map(PathBuf::from);
    let mut outcomes = Vec::new();
    for transport in &transports {
        // A cluster of its own for each transport (and build): what one run's phones leave
        // behind (their bindings, the allocator's kept pages) would count against the next.
        outcomes.extend(measure(transport, phones, waves, rate, None).await?);
        if let Some(b) = &baseline {
            outcomes.extend(measure(transport, phones, waves, rate, Some(b)).await?);
        }
    }
    print(&outcomes);
    Ok(())
}

/// One transport's run on a fresh cluster of this build (and, over TCP, Kamailio), or of
/// the `baseline` build of `dialtone` (`STREAM_BENCH_BASELINE`; no Kamailio then).
async fn measure(
    transport: &str,
    phones: usize,
    waves: usize,
    rate: u32,
    baseline: Option<&Path>,
) -> anyhow::Result<Vec<(String, Outcome)>> {
    let groups = phones.div_ceil(GROUP).max(1);

    let mut roles = vec!["config"];
    roles.extend(std::iter::repeat_n("edge", groups));
    let binaries = vec![baseline.map(Path::to_path_buf); roles.len()];
    let sb = ClusterSandbox::with_etcd_binaries(
        1,
        &roles,
        &[
            "--log=warn",
            "--sip-max-connections=19000",
            "--sip-max-connections-per-source=19000",
        ],
        &binaries,
    )
    .await?;
    let server = if baseline.is_some() {
        "baseline"
    } else {
        "dialtone"
    };
    let dir = sb.dir().to_path_buf();
    let mut c = sb.nodes[0]
        .config_client(dialtone_tests::ADMIN_TOKEN)
        .await?;
    seed_site(&mut c, pb::PhoneSettings::default()).await?;
    eprintln!("importing {phones} phones");
    let creds = dialtone_tests::fleet::import(&mut c, phones, "user").await?;
    for e in &sb.nodes[1..] {
        wait_cached_lines(e, phones).await;
    }
    let chunks: Vec<&[(String, String, String)]> = creds.chunks(GROUP).collect();
    let edge_pids: Vec<u32> = sb.nodes[1..]
        .iter()
        .map(|n| n.pid().context("edge pid"))
        .collect::<anyhow::Result<_>>()?;

    // The peer, on TCP: one process tree holds one group.
    let peer_creds: Vec<(String, String)> = chunks[0]
        .iter()
        .map(|(_, u, p)| (u.clone(), p.clone()))
        .collect();
    let kam_port = free_port_pair();
    let kam = if transport != "tcp" || baseline.is_some() {
        None
    } else {
        match kamailio::start(
            &dir.join("kamailio"),
            "kamailio-registrar.cfg",
            kam_port,
            &peer_creds,
        )
        .await
        {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("kamailio not measured: {e:#}");
                None
            }
        }
    };

    let mut outcomes = Vec::new();
    {
        let (ca, port_of): (Option<PathBuf>, fn(&dialtone_tests::Node) -> u16) = match transport {
            "tcp" => (None, |n| n.sip.tcp),
            "tls" => (Some(sb.nodes[1].data_dir.join("tls/edge-cert.pem")), |n| {
                n.sip.tls
            }),
            other => bail!("unknown transport {other} (tcp or tls)"),
        };
        let mut files = Vec::new();
        for (g, chunk) in chunks.iter().enumerate() {
            let edge = &sb.nodes[1 + g];
            let f = dir.join(format!("fleet-{transport}-{g}.csv"));
            fleet_file(&f, chunk, &format!("127.0.0.1:{}", port_of(edge)))?;
            files.push((f, chunk.len()));
        }
        // Every edge generated its own certificate: trust them all.
        let ca = match ca {
            Some(_) => {
                let mut pem = Vec::new();
                for e in &sb.nodes[1..] {
                    pem.extend(std::fs::read(e.data_dir.join("tls/edge-cert.pem"))?);
                }
                let p = dir.join("edges-ca.pem");
                std::fs::write(&p, pem)?;
                Some(p)
            }
            None => None,
        };
        let pids = edge_pids.clone();
        let o = drive(
            server,
            files,
            (transport, ca.as_deref()),
            (rate, waves),
            &move || pids.clone(),
            &sb.nodes[1..].iter().collect::<Vec<_>>(),
        )
        .await?;
        outcomes.push((transport.to_owned(), o));
        if let Some(k) = &kam {
            let f = dir.join("fleet-kamailio.csv");
            fleet_file(&f, chunks[0], &format!("127.0.0.1:{kam_port}"))?;
            let root = k.id();
            let o = drive(
                "kamailio",
                vec![(f, chunks[0].len())],
                ("tcp", None),
                (rate / groups as u32, waves),
                &move || dialtone_loadtest::procfs::tree(root),
                &[],
            )
            .await?;
            outcomes.push((transport.to_owned(), o));
        }
    }
    drop(kam);
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wave_lines_parse() {
        let w = parse_wave(
            "wave 2: dropped 10000; all-registered true; registrations 10000 p50 0.7 ms p90 1.2 ms p99 3.4 ms max 9.0 ms; failures: timeout 3, forbidden 0, rejected 1, io 2; 5.1 s",
        );
        assert!(w.all_registered);
        assert_eq!((w.registrations, w.timeouts, w.failures), (10000, 3, 6));
        assert_eq!((w.p50_ms, w.p99_ms), (0.7, 3.4));
        let r = parse_wave(
            "ready: all-registered false; registrations 5 p50 - ms p90 - ms p99 - ms max - ms; failures: timeout 0, forbidden 0, rejected 0, io 0; 1.0 s",
        );
        assert!(!r.all_registered);
        assert_eq!(r.p99_ms, 0.0);
    }

    #[test]
    fn a_quantile_is_the_bound_of_its_bucket_in_what_was_counted_between_reads() {
        let before = [(0.005, 10), (0.01, 10), (1.0, 10), (f64::INFINITY, 10)];
        let after = [(0.005, 108), (0.01, 109), (1.0, 110), (f64::INFINITY, 110)];
        // (q, expected bound in ms): 100 counted, 98 under 5 ms, one under 10, one under 1 s.
        let cases = [
            (0.5, Some(5.0)),
            (0.98, Some(5.0)),
            (0.99, Some(10.0)),
            (1.0, Some(1000.0)),
        ];
        for (q, want) in cases {
            assert_eq!(bucket_quantile_ms(&before, &after, q), want, "q {q}");
        }
        // Nothing counted between the reads: no quantile.
        assert_eq!(bucket_quantile_ms(&after, &after, 1.0), None);
    }

    #[test]
    fn a_wave_may_take_a_minute_past_its_last_reconnect_and_at_least_120_s() {
        // (after ms, spread ms, limit s)
        let cases = [
            (0, 50_000, 120),
            (10_000, 50_000, 120),
            (60_000, 60_000, 180),
        ];
        for (after, spread, want) in cases {
            assert_eq!(wave_limit_s(after, spread), want, "{after} {spread}");
        }
    }
}
