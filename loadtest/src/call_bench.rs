//! Calls through the Dialtone edge against Kamailio (Debian), side by side in one run: the
//! same SIPp caller scenario (`loadtest/peers/kamailio/call_auth_uac.xml`: INVITE → 407 →
//! INVITE with Proxy-Authorization → 100/180/200 → ACK → 1 s hold → BYE → 200, ACK and BYE
//! along the Record-Route), the same users (imported into Dialtone, whose generated
//! passwords are written into Kamailio's credentials table), the same callees (simulated
//! phones, `loadtest/phonesim`, registered to each server and answering at once), over UDP
//! on 127.0.0.1. Every call is for one of them: SIPp's digest covers one URI per run. Kamailio runs `kamailio-proxy.cfg`: an authenticating (`pv_proxy_authenticate`),
//! record-routing (`record_route`), stateful (`t_relay`) proxy over its location table.
//!
//! `cargo run --release -p dialtone-loadtest --bin call-bench -- [PAIRS] [RATES] [SECONDS]`
//! (defaults 2000 caller/callee pairs, `100,200,400,600,800,1000`, 10; needs
//! `cargo build --release --bins`, Debian's `sip-tester` and `kamailio`).
//!
//! Printed per server and rate: calls completed and failed, the p99 bucket of call setup
//! (first INVITE to 200, the 407 round trip included) and the server's CPU microseconds per
//! call (utime + stime from /proc, over every process of the server: Dialtone's edge, and
//! Kamailio's main process and workers), then each server's highest clean rate (no failed
//! call, p99 setup within 20 ms) and median CPU per call. The servers take turns at each
//! rate so machine noise falls on both.
//!
//! `CALL_BENCH_ANCHOR=1`: every call's media is anchored at one real rtpengine (Debian's,
//! userspace) that both servers share: the INVITEs carry an SDP offer and the callees
//! answer with SDP; the Dialtone site anchors every call (`media_anchoring: ALWAYS`), and
//! Kamailio runs the same cfg with its `rtpengine` module (offer, answer, delete). The
//! rtpengine's own CPU is printed apart (it is the same work for both).

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use dialtone_loadtest::{
    kamailio::{self, peer_configs},
    procfs::{cpu_us, tree},
    sipp_stats::{self, Run, cpu_ratio, summarize},
    wait_cached_lines,
};
use dialtone_phonesim::{PhoneSpec, Sim, SimConfig};
use dialtone_proto::config::v1 as pb;
use dialtone_tests::{
    ClusterSandbox,
    fleet::{import_csv, seed_site_on},
    free_port_pair,
    media::{Rtpengine, serve_hq},
};

/// The processes of a server, listed afresh (Kamailio's workers).
type Pids = Box<dyn Fn() -> Vec<u32>>;

/// The longest setup time a clean rate allows.
const CLEAN_P99_MS: u32 = 20;

/// Imports `2 * pairs` phones at extensions of site hq: (SIP user, password) of each.
async fn import(sb: &ClusterSandbox, pairs: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut c = sb.nodes[0]
        .config_client(dialtone_tests::ADMIN_TOKEN)
        .await?;
    // The edge is every phone's primary, as an edge group of one makes it.
    seed_site_on(&mut c, pb::PhoneSettings::default(), &sb.udp_edges(&[1])).await?;
    let mut csv = String::from("name,kind,site_id,base_settings_id,lines,assignment\n");
    for i in 0..2 * pairs {
        csv.push_str(&format!(
            "Call {i},unmanaged,hq,desk,call{i:06},site:{}\n",
            100_000 + i
        ));
    }
    let mut out = Vec::with_capacity(2 * pairs);
    for r in import_csv(&mut c, &csv, 1 << 20).await? {
        anyhow::ensure!(r.reason.is_empty(), "row {}: {}", r.row, r.reason);
        let line = r.credentials.into_iter().next().context("a line")?;
        out.push((line.sip_user, line.password));
    }
    Ok(out)
}

/// SIPp's injection file: caller, its password, the callee, and the caller's credentials.
/// Every call is for the one `callee`: SIPp computes the digest of a request over one URI
/// for the whole run (`-auth_uri`), and the edge, as RFC 3261 §22.4 asks, refuses a digest
/// whose URI is not the Request-URI's.
fn calls_csv(path: &Path, callers: &[(String, String)], callee: &str) -> anyhow::Result<()> {
    let mut s = String::from("SEQUENTIAL\n");
    for (u, p) in callers {
        s.push_str(&format!(
            "{u};{p};{callee};[authentication username={u} password={p}]\n"
        ));
    }
    std::fs::write(path, s)?;
    Ok(())
}

/// The caller scenario, with an SDP offer (PCMU) in each INVITE when `sdp`.
fn scenario(dir: &Path, sdp: bool) -> anyhow::Result<std::path::PathBuf> {
    let plain = peer_configs().join("call_auth_uac.xml");
    if !sdp {
        return Ok(plain);
    }
    let text = std::fs::read_to_string(&plain)?;
    let offer = "Content-Type: application/sdp\n      Content-Length: [len]\n\n      v=0\n      \
                 o=sipp 1 1 IN IP4 [local_ip]\n      s=-\n      c=IN IP4 [local_ip]\n      \
                 t=0 0\n      m=audio [auto_media_port] RTP/AVP 0\n      a=rtpmap:0 PCMU/8000\n";
    // Each INVITE's `Content-Length: 0` (the first in its message) becomes the offer.
    let with: Vec<String> = text
        .split("<send")
        .map(|part| {
            if part.contains("INVITE sip:") {
                part.replacen("Content-Length: 0\n", offer, 1)
            } else {
                part.to_owned()
            }
        })
        .collect();
    let path = dir.join("call_auth_uac_sdp.xml");
    std::fs::write(&path, with.join("<send"))?;
    Ok(path)
}

/// One SIPp run of `calls` calls at `rate` against 127.0.0.1:`port` with `scenario`.
fn sipp(
    dir: &Path,
    port: u16,
    (scenario, users, callee): (&Path, &Path, &str),
    rate: u32,
    calls: u64,
) -> anyhow::Result<(u64, u64, Option<u32>)> {
    std::fs::create_dir_all(dir)?;
    let stat = dir.join("stat.csv");
    let _ = std::fs::remove_file(&stat);
    Command::new("sipp")
        .current_dir(dir)
        .arg(format!("127.0.0.1:{port}"))
        .arg("-sf")
        .arg(scenario)
        .arg("-inf")
        .arg(users)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &free_port_pair().to_string(),
            "-t",
            "u1",
        ])
        // SIPp writes the scheme itself.
        .args(["-auth_uri", &format!("{callee}@127.0.0.1:{port}")])
        .args([
            "-r",
            &rate.to_string(),
            "-rp",
            "1000",
            "-m",
            &calls.to_string(),
        ])
        .args([
            "-l",
            &(rate * 4).to_string(),
            "-recv_timeout",
            "10000",
            "-nd",
            "-nostdin",
        ])
        .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
        .args(["-buff_size", "4194304"])
        // CALL_BENCH_TRACE=DIR: every message and error, in DIR (kept after the run).
        .args(match std::env::var_os("CALL_BENCH_TRACE") {
            Some(_) => &["-trace_msg", "-trace_err"][..],
            None => &[][..],
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running sipp (apt install sip-tester)")?;
    let reasons = sipp_stats::failure_reasons(&stat);
    if !reasons.is_empty() {
        eprintln!("  sipp: {}", reasons.join(", "));
    }
    sipp_stats::read(&stat, 1)
}

/// The callees, registered to 127.0.0.1:`port` and answering every INVITE at once.
async fn callees(port: u16, callees: &[(String, String)]) -> anyhow::Result<Sim> {
    let registrar = format!("127.0.0.1:{port}").parse()?;
    let specs = callees
        .iter()
        .map(|(u, p)| PhoneSpec {
            phone_id: u.clone(),
            user: u.clone(),
            password: p.clone(),
            domain: "dialtone".into(),
            registrars: vec![registrar],
            managed: None,
        })
        .collect();
    let sim = Sim::start(
        SimConfig {
            expires: 3600,
            sockets: 8,
            start_rate: 2000,
            invite_answer: 200,
            ..SimConfig::default()
        },
        specs,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.stats().registered.load(Relaxed) < callees.len() as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} callees registered to port {port}",
                sim.stats().registered.load(Relaxed),
                callees.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(sim)
}

/// The edge's site anchors every call at `engine`.
async fn anchor_every_call(sb: &ClusterSandbox, engine: &Rtpengine) -> anyhow::Result<()> {
    let mut c = sb.nodes[0]
        .config_client(dialtone_tests::ADMIN_TOKEN)
        .await?;
    serve_hq(&mut c, ("bench", engine), vec![], |hq| {
        hq.media_anchoring = pb::MediaAnchoring::Always as i32
    })
    .await?;
    // The edge learns it through its watch, and pings the media server UP.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pairs: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let rates: Vec<u32> = args
        .get(1)
        .map(|s| s.split(',').map(|r| r.parse()).collect::<Result<_, _>>())
        .transpose()?
        .unwrap_or_else(|| vec![100, 200, 400, 600, 800, 1000]);
    let seconds: u32 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(10);

    // As in production: a config node and an edge node on etcd (one member).
    let sb = ClusterSandbox::with_etcd_binaries(
        1,
        &["config", "edge"],
        &["--sip-digest-algorithms=md5", "--log=warn"],
        &[None, None],
    )
    .await?;
    let dir = sb.dir().to_path_buf();
    eprintln!("working in {}", dir.display());
    eprintln!("importing {} phones into dialtone", 2 * pairs);
    let creds = import(&sb, pairs).await?;
    let edge = &sb.nodes[1];
    wait_cached_lines(edge, 2 * pairs).await;
    let (callers, called) = creds.split_at(pairs);
    let callee = called[0].0.clone();
    let csv = dir.join("calls.csv");
    calls_csv(&csv, callers, &callee)?;

    // Anchored: one rtpengine both servers use, with ports for every call under way. Its
    // media ports stay out of the ranges the servers' and SIPp's own ports are drawn from
    // (free_port 10000-19999, free_port_pair 20000-31999): rtpengine binds its ports with
    // SO_REUSEADDR, as Kamailio binds its SIP port, and a later bind of the same port
    // takes that port's datagrams, which once left Kamailio deaf a few hundred calls into
    // a run. Above 40000 they can only meet ports the kernel hands out, which it never
    // hands out while rtpengine holds them.
    let anchor = std::env::var_os("CALL_BENCH_ANCHOR").is_some_and(|v| v == "1");
    let engine = if anchor {
        let engine =
            Rtpengine::start_with_ports(&dir.join("media"), "bench", (40_000, 60_999), 4).await?;
        anchor_every_call(&sb, &engine).await?;
        Some(engine)
    } else {
        None
    };
    let scenario = scenario(&dir, anchor)?;

    let kam_port = free_port_pair();
    let kam = kamailio::start_with(
        &dir.join("kamailio"),
        "kamailio-proxy.cfg",
        kam_port,
        &creds,
        engine.as_ref().map(|e| e.ng),
    )
    .await?;
    let kam_pid = kam.id();
    let dt_pid = edge.pid().context("dialtone edge pid")?;
    let servers: [(&str, u16, Pids); 2] = [
        ("dialtone", edge.sip.udp, Box::new(move || vec![dt_pid])),
        ("kamailio", kam_port, Box::new(move || tree(kam_pid))),
    ];
    let mut sims = Vec::new();
    for (name, port, _) in &servers {
        eprintln!("{name}: registering {pairs} callees");
        sims.push(callees(*port, called).await?);
    }

    let mut runs: Vec<Vec<Run>> = vec![Vec::new(), Vec::new()];
    let engine_pid = engine.as_ref().and_then(Rtpengine::pid);
    let mut engine_cpu: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
    for &rate in &rates {
        for (i, (name, port, pids)) in servers.iter().enumerate() {
            let calls = u64::from(rate) * u64::from(seconds);
            let sessions0 = match &engine {
                Some(e) => e.ended_sessions().await?,
                None => (0, 0),
            };
            let cpu0 = cpu_us(&pids());
            let media0 = cpu_us(&engine_pid.into_iter().collect::<Vec<_>>());
            let runs_dir = std::env::var_os("CALL_BENCH_TRACE").map_or(dir.clone(), Into::into);
            let (ok, failed, p99) = sipp(
                &runs_dir.join(format!("{name}-{rate}")),
                *port,
                (&scenario, &csv, &callee),
                rate,
                calls,
            )?;
            let cpu = cpu_us(&pids()).saturating_sub(cpu0);
            let media = cpu_us(&engine_pid.into_iter().collect::<Vec<_>>()).saturating_sub(media0);
            engine_cpu[i].push(media as f64 / ok.max(1) as f64);
            eprintln!("{name} at {rate}/s: {ok} ok, {failed} failed, p99 setup < {p99:?} ms");
            runs[i].push(Run {
                rate,
                ok,
                failed,
                p99_ms: p99,
                cpu_us: cpu as f64 / ok.max(1) as f64,
            });
            // Let the last calls' transactions end before the other server's turn.
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Some(e) = &engine {
                // Every completed call was anchored (rtpengine ended a session for it),
                // by its BYE's delete (none by rtpengine's timeout), and none is left.
                let left = e.calls().await.map(|c| c.len()).unwrap_or(usize::MAX);
                let (ended, timed_out) = e.ended_sessions().await?;
                let (ended, timed_out) = (ended - sessions0.0, timed_out - sessions0.1);
                eprintln!(
                    "{name} at {rate}/s: rtpengine ended {ended} sessions ({timed_out} by \
                     timeout) for {ok} completed calls, {left} left"
                );
                if ended < ok as i64 || timed_out > 0 || left > 0 {
                    eprintln!("  WARNING: {name}'s calls were not all anchored and deleted");
                }
            }
        }
    }
    for s in sims {
        s.stop(false, 1).await;
    }
    drop(kam);

    println!(
        "\nCalls with proxy authentication (MD5) over UDP: INVITE/407/INVITE/100/180/200/ACK, 1 s hold, BYE/200; {pairs} caller/callee pairs, {seconds} s per rate{}",
        if anchor {
            "; media anchored at one rtpengine (SDP offer/answer, delete on BYE)"
        } else {
            ""
        }
    );
    println!(
        "{:<10} {:>8} {:>10} {:>8} {:>14} {:>14}",
        "server", "rate/s", "completed", "failed", "p99 setup <ms", "cpu µs/call"
    );
    for (i, (name, ..)) in servers.iter().enumerate() {
        for (j, r) in runs[i].iter().enumerate() {
            let media = if anchor {
                format!("  (rtpengine {:.1} µs/call)", engine_cpu[i][j])
            } else {
                String::new()
            };
            println!(
                "{:<10} {:>8} {:>10} {:>8} {:>14} {:>14.1}{media}",
                name,
                r.rate,
                r.ok,
                r.failed,
                r.p99_ms.map_or("-".into(), |p| p.to_string()),
                r.cpu_us
            );
        }
    }
    println!(
        "\n{:<10} {:>16} {:>22}",
        "server", "clean rate/s", "median cpu µs/call"
    );
    let mut summary = Vec::new();
    for (i, (name, ..)) in servers.iter().enumerate() {
        let (clean, m) = summarize(&runs[i], CLEAN_P99_MS);
        println!("{name:<10} {clean:>16} {m:>22.1}");
        summary.push((clean, m));
    }
    let (d, k) = (summary[0], summary[1]);
    println!(
        "\nratios dialtone/kamailio: clean rate {:.2} (target >= 1), cpu per call {:.2} (median of the per-rate ratios at rates both ran without failure; target <= 0.5)",
        d.0 as f64 / k.0.max(1) as f64,
        cpu_ratio(&runs[0], &runs[1])
    );
    Ok(())
}
