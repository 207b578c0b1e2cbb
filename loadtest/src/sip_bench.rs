//! The Dialtone edge against Kamailio (Debian), side by side in one run: the same SIPp
//! REGISTER-with-digest scenario (`loadtest/peers/kamailio/reg_auth_uac.xml`) and the same
//! users (imported into Dialtone, whose generated passwords are written into Kamailio's
//! credentials table), over UDP on 127.0.0.1.
//!
//! `cargo run --release -p dialtone-loadtest --bin sip-bench -- [USERS] [RATES] [SECONDS]`
//! (defaults 100000, `2000,4000,6000,8000,10000,12000,14000,16000`, 5; needs
//! `cargo build --release --bins`, Debian's `sip-tester` and `kamailio`).
//!
//! Printed for each server: memory per registered phone (PSS growth from no bindings to
//! USERS bindings, 35 s after the last registration, summed over the server's processes; Dialtone runs as a config node and an
//! edge node on one etcd member, and the edge process is measured), then for each rate of the ladder
//! the registrations done, failures, the p99 bucket of the whole transaction (RTD 3:
//! REGISTER → 401 → REGISTER → 200) and the server's CPU microseconds per registration
//! (utime + stime from /proc), and the highest clean rate (no failure, p99 under 10 ms).
//! The servers take turns at each rate so machine noise falls on both.
//!
//! With `SIP_BENCH_BASELINE=PATH` (another build of `dialtone`), the second server is an
//! edge of that build instead of Kamailio, on the same store and users: two builds compared
//! in one run, for changes smaller than the noise between runs (the ratios then read
//! this build / the baseline; the targets do not apply).
//!
//! With `SIP_BENCH_PIN=1`, each server's threads run on core 0 and SIPp on core 1
//! (`taskset`; etcd and the config node on either), closer to phones on other machines:
//! SIPp, woken by each answer, no longer preempts the server on its core, and the server is
//! woken as each datagram arrives instead of finding a burst queued when it next runs
//! (`docs/benchmarks.md` says what that does to each server).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Context;
use dialtone_loadtest::{
    kamailio::{self, peer_configs},
    procfs::{cpu_us, pss, tree},
    sipp_stats::{self, Run, summarize},
    wait_cached_lines,
};
use dialtone_proto::config::v1 as pb;
use dialtone_tests::{ClusterSandbox, fleet::seed_site, free_port_pair};

struct Server {
    name: &'static str,
    port: u16,
    /// SIPp's local port for this server.
    local: u16,
    pids: Box<dyn Fn() -> Vec<u32>>,
}

/// The core SIPp runs on, and the one the servers run on, with `SIP_BENCH_PIN=1`.
const SIPP_CORE: &str = "1";
const SERVER_CORE: &str = "0";

/// Whether `SIP_BENCH_PIN=1` asks for the servers and SIPp on cores of their own.
fn pinned() -> bool {
    std::env::var("SIP_BENCH_PIN").is_ok_and(|v| v == "1")
}

/// Runs every thread of `pids` on [`SERVER_CORE`] (threads they start later inherit it).
fn pin_server(pids: &[u32]) -> anyhow::Result<()> {
    for pid in pids {
        let ok = Command::new("taskset")
            .args(["-a", "-p", "-c", SERVER_CORE, &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .context("running taskset (util-linux)")?
            .success();
        anyhow::ensure!(ok, "taskset could not pin process {pid}");
    }
    Ok(())
}

/// One SIPp run of `calls` registrations at `rate`; returns (ok, failed, p99 bucket).
/// `local` stays the same for a server across runs, as a phone's port does across refreshes.
fn sipp(
    dir: &Path,
    port: u16,
    local: u16,
    users: &Path,
    rate: u32,
    calls: u64,
) -> anyhow::Result<(u64, u64, Option<u32>)> {
    std::fs::create_dir_all(dir)?;
    let stat = dir.join("stat.csv");
    let _ = std::fs::remove_file(&stat);
    // Pinned: `taskset -c 1 sipp ...` (see the module docs).
    let mut command = match pinned() {
        true => {
            let mut c = Command::new("taskset");
            c.args(["-c", SIPP_CORE, "sipp"]);
            c
        }
        false => Command::new("sipp"),
    };
    let status = command
        .current_dir(dir)
        .arg(format!("127.0.0.1:{port}"))
        .arg("-sf")
        .arg(peer_configs().join("reg_auth_uac.xml"))
        .arg("-inf")
        .arg(users)
        .args(["-i", "127.0.0.1", "-p", &local.to_string(), "-t", "u1"])
        .args([
            "-r",
            &rate.to_string(),
            "-rp",
            "1000",
            "-m",
            &calls.to_string(),
        ])
        .args(["-l", "15000", "-recv_timeout", "5000", "-nd", "-nostdin"])
        .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
        .args(["-max_socket", "5000", "-buff_size", "4194304"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running sipp (apt install sip-tester)")?;
    let _ = status;
    sipp_stats::read(&stat, 3)
}

async fn import(sb: &ClusterSandbox, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut c = sb.nodes[0]
        .config_client(dialtone_tests::ADMIN_TOKEN)
        .await?;
    seed_site(&mut c, pb::PhoneSettings::default()).await?;
    let phones = dialtone_tests::fleet::import(&mut c, n, "user").await?;
    Ok(phones.into_iter().map(|(_, u, p)| (u, p)).collect())
}

fn users_csv(path: &Path, creds: &[(String, String)]) -> anyhow::Result<()> {
    let mut s = String::from("SEQUENTIAL\n");
    for (u, p) in creds {
        s.push_str(&format!(
            "{u};{p};[authentication username={u} password={p}]\n"
        ));
    }
    std::fs::write(path, s)?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let users: usize = args
        .first()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let rates: Vec<u32> = args
        .get(1)
        .map(|s| s.split(',').map(|r| r.parse()).collect::<Result<_, _>>())
        .transpose()?
        .unwrap_or_else(|| vec![2000, 4000, 6000, 8000, 10000, 12000, 14000, 16000]);
    let seconds: u32 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let baseline = std::env::var_os("SIP_BENCH_BASELINE").map(PathBuf::from);

    // As in production: a config node and an edge node on etcd (one member), so the edge's
    // process holds only what an edge holds (the embedded store would keep every binding key
    // in the same process).
    let roles: &[&str] = match baseline {
        Some(_) => &["config", "edge", "edge"],
        None => &["config", "edge"],
    };
    let sb = ClusterSandbox::with_etcd_binaries(
        1,
        roles,
        &["--sip-digest-algorithms=md5", "--log=warn"],
        &[None, None, baseline.clone()],
    )
    .await?;
    let dir = sb.dir().to_path_buf();
    eprintln!("importing {users} users into dialtone");
    let creds = import(&sb, users).await?;
    let edge = &sb.nodes[1];
    for e in &sb.nodes[1..] {
        wait_cached_lines(e, users).await;
    }
    let csv = dir.join("users.csv");
    users_csv(&csv, &creds)?;
    // The peer: Kamailio, or the baseline build's edge.
    let mut kam = None;
    let (peer_name, peer_port, peer_pid) = match &baseline {
        Some(_) => {
            let b = &sb.nodes[2];
            ("baseline", b.sip.udp, b.pid().context("baseline edge pid")?)
        }
        None => {
            let port = free_port_pair();
            let k = kamailio::start(
                &dir.join("kamailio"),
                "kamailio-registrar.cfg",
                port,
                &creds,
            )
            .await?;
            let pid = k.id();
            kam = Some(k);
            ("kamailio", port, pid)
        }
    };
    let dt_pid = edge.pid().context("dialtone edge pid")?;
    let servers = [
        Server {
            name: "dialtone",
            port: edge.sip.udp,
            local: free_port_pair(),
            pids: Box::new(move || vec![dt_pid]),
        },
        Server {
            name: peer_name,
            port: peer_port,
            local: free_port_pair(),
            pids: Box::new(move || tree(peer_pid)),
        },
    ];

    if pinned() {
        for s in &servers {
            pin_server(&(s.pids)())?;
        }
        eprintln!("servers on core {SERVER_CORE}, sipp on core {SIPP_CORE}");
    }
    // Memory: from no bindings to every user registered once.
    let mut mem = Vec::new();
    for s in &servers {
        let before = pss(&(s.pids)());
        eprintln!("{}: registering {users} users", s.name);
        let (ok, failed, _) = sipp(
            &dir.join(format!("{}-fill", s.name)),
            s.port,
            s.local,
            &csv,
            4000,
            users as u64,
        )?;
        // Steady state: every transaction over (Timer J, 32 s), so each server holds its
        // registrations only (Dialtone's quiet phones have given up their actors by then).
        tokio::time::sleep(Duration::from_secs(35)).await;
        let after = pss(&(s.pids)());
        let per = (after.saturating_sub(before)) as f64 / ok.max(1) as f64;
        mem.push((ok, failed, per));
    }

    // The rate ladder, taking turns.
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(), Vec::new()];
    for &rate in &rates {
        for (i, s) in servers.iter().enumerate() {
            let calls = u64::from(rate) * u64::from(seconds);
            let pids = (s.pids)();
            let cpu0 = cpu_us(&pids);
            let (ok, failed, p99) = sipp(
                &dir.join(format!("{}-{rate}", s.name)),
                s.port,
                s.local,
                &csv,
                rate,
                calls,
            )?;
            let cpu = cpu_us(&(s.pids)()).saturating_sub(cpu0);
            eprintln!(
                "{} at {rate}/s: {ok} ok, {failed} failed, p99 < {p99:?} ms",
                s.name
            );
            runs[i].push(Run {
                rate,
                ok,
                failed,
                p99_ms: p99,
                cpu_us: cpu as f64 / ok.max(1) as f64,
            });
        }
    }
    drop(kam);

    println!(
        "\nSIP REGISTER with digest (MD5, qop=auth) over UDP, {users} users, {seconds} s per rate"
    );
    println!(
        "{:<10} {:>8} {:>10} {:>8} {:>10} {:>14}",
        "server", "rate/s", "registered", "failed", "p99 <ms", "cpu µs/reg"
    );
    for (i, s) in servers.iter().enumerate() {
        for r in &runs[i] {
            println!(
                "{:<10} {:>8} {:>10} {:>8} {:>10} {:>14.1}",
                s.name,
                r.rate,
                r.ok,
                r.failed,
                r.p99_ms.map_or("-".into(), |p| p.to_string()),
                r.cpu_us
            );
        }
    }
    println!(
        "\n{:<10} {:>16} {:>22} {:>20}",
        "server", "clean rate/s", "median cpu µs/reg", "bytes/registered"
    );
    let mut summary = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let (clean, median) = summarize(&runs[i], 10);
        println!(
            "{:<10} {:>16} {:>22.1} {:>20.0}",
            s.name, clean, median, mem[i].2
        );
        summary.push((clean, median, mem[i].2));
    }
    let (d, k) = (summary[0], summary[1]);
    if baseline.is_some() {
        println!(
            "\nratios dialtone/baseline: clean rate {:.2}, cpu per registration {:.3}, memory per phone {:.2}",
            d.0 as f64 / k.0.max(1) as f64,
            d.1 / k.1,
            d.2 / k.2
        );
        print_pairs(&runs);
        return Ok(());
    }
    println!(
        "\nratios dialtone/kamailio: clean rate {:.2} (target >= 1), cpu per registration {:.2} (target <= 0.35), memory per phone {:.2} (target <= 1)",
        d.0 as f64 / k.0.max(1) as f64,
        d.1 / k.1,
        d.2 / k.2
    );
    Ok(())
}

/// Rate by rate, this build's CPU per registration over the baseline's, and their mean:
/// a paired comparison, in which most of the machine's drift cancels.
fn print_pairs(runs: &[Vec<Run>]) {
    let ratios: Vec<f64> = runs[0]
        .iter()
        .zip(&runs[1])
        .filter(|(a, b)| a.failed == 0 && b.failed == 0)
        .map(|(a, b)| a.cpu_us / b.cpu_us)
        .collect();
    let list: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    let mean = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
    println!("cpu ratio rate by rate: {}; mean {mean:.3}", list.join(" "));
}
