//! An edge under attack while its fleet refreshes: one `dialtone serve` (all roles,
//! embedded store), PHONES phones (loadtest/phonesim) registering over UDP with a short
//! Expires so they refresh all the time, measured first alone for SECONDS, then for SECONDS
//! more while, at the same edge:
//! - worst-case datagrams arrive at RATE per second in turn: a 64 KB OPTIONS folded into
//!   16,000 continuation lines, a request with 64 Vias, and a REGISTER with a bad digest
//!   answer from one of 4,096 forged sources (127.3.x.y: loopback lets this process send
//!   from them, as a spoofing attacker would);
//! - 2,000 TCP connections are opened and left idle (from 127.4.0.1-16);
//! - one TCP peer sends requests without ever reading the answers.
//!
//! `cargo build --release --bins && target/release/attack-bench [PHONES] [RATE] [SECONDS]`
//! (defaults 10000, 5000, 30). Printed, for both phases: registrations completed and failed,
//! the edge's peak RSS (sampled every 100 ms) and its CPU seconds; then the ratios. Targets:
//! no failed registration, peak RSS under attack at most twice the peak without.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use dialtone_loadtest::procfs::cpu_us;
use dialtone_phonesim::{PhoneSpec, Sim, SimConfig};
use dialtone_proto::config::v1 as pb;
use dialtone_tests::{ClusterSandbox, fleet};
use tokio::{io::AsyncWriteExt, net::UdpSocket};

/// Resident memory of a process, bytes.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// What one phase saw.
#[derive(Debug, Default)]
struct Phase {
    registered: u64,
    failed: u64,
    peak_rss: u64,
    cpu_s: f64,
}

/// Runs for `secs` seconds, sampling the edge's RSS, and reports the phase.
async fn phase(pid: u32, sim: &Sim, secs: u64) -> Phase {
    let (reg0, fail0, cpu0) = (
        sim.stats().registered.load(Ordering::Relaxed),
        sim.stats().failures(),
        cpu_us(&[pid]),
    );
    let mut peak = 0;
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        peak = peak.max(rss(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Phase {
        registered: sim.stats().registered.load(Ordering::Relaxed) - reg0,
        failed: sim.stats().failures() - fail0,
        peak_rss: peak,
        cpu_s: (cpu_us(&[pid]) - cpu0) as f64 / 1e6,
    }
}

/// The three worst-case datagrams, in turn.
fn datagram(i: u64, from: SocketAddr) -> Vec<u8> {
    let head = |method: &str, extra: &str| {
        format!(
            "{method} sip:attack@dialtone SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKa{i}\r\n{extra}From: <sip:attack@dialtone>;tag={i}\r\nTo: <sip:attack@dialtone>\r\nCall-ID: a{i}\r\nCSeq: 1 {method}\r\n"
        )
    };
    match i % 3 {
        0 => {
            let mut m = head("OPTIONS", "").into_bytes();
            m.extend_from_slice(b"X-Fold: a\r\n");
            while m.len() + 6 < 65_000 {
                m.extend_from_slice(b" b\r\n");
            }
            m.extend_from_slice(b"\r\n");
            m
        }
        1 => {
            let vias: String = (0..63)
                .map(|n| {
                    format!(
                        "Via: SIP/2.0/UDP 192.0.2.{}:5060;branch=z9hG4bKv{n}\r\n",
                        n % 250
                    )
                })
                .collect();
            format!("{}Content-Length: 0\r\n\r\n", head("OPTIONS", &vias)).into_bytes()
        }
        _ => {
            let auth = format!(
                "Authorization: Digest username=\"attack\", realm=\"dialtone\", nonce=\"{:064x}\", uri=\"sip:attack@dialtone\", response=\"{:032x}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\"\r\n",
                i, i
            );
            format!(
                "{}Contact: <sip:attack@{from}>\r\nContent-Length: 0\r\n\r\n",
                head("REGISTER", &auth)
            )
            .into_bytes()
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let phones: usize = args.get(1).map_or(Ok(10_000), |s| s.parse())?;
    let rate: u64 = args.get(2).map_or(Ok(5000), |s| s.parse())?;
    let secs: u64 = args.get(3).map_or(Ok(30), |s| s.parse())?;

    let sb =
        ClusterSandbox::embedded_with(&["--sip-min-expires=10", "--sip-digest-algorithms=md5"])
            .await?;
    let node = &sb.nodes[0];
    let pid = node.pid().context("edge pid")?;
    let udp = SocketAddr::from(([127, 0, 0, 1], node.sip.udp));
    let tcp = SocketAddr::from(([127, 0, 0, 1], node.sip.tcp));
    let mut cfg = node.config_client(&node.admin_token()).await?;
    fleet::seed_site(&mut cfg, pb::PhoneSettings::default()).await?;
    let created = fleet::import(&mut cfg, phones, "atk").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let specs: Vec<PhoneSpec> = created
        .into_iter()
        .map(|(phone_id, user, password)| PhoneSpec {
            phone_id,
            user,
            password,
            domain: "dialtone".into(),
            registrars: vec![udp],
            managed: None,
        })
        .collect();
    // Expires 20: each phone refreshes about every 10 s.
    let sim = Sim::start(
        SimConfig {
            expires: 20,
            sockets: 16,
            start_rate: 2000,
            timeout: Duration::from_secs(8),
            ..SimConfig::default()
        },
        specs,
    )
    .await?;
    while sim.stats().registered.load(Ordering::Relaxed) < phones as u64 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("{phones} phones registered; measuring {secs} s without attack");
    let calm = phase(pid, &sim, secs).await;

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // Worst-case datagrams at `rate`, from 4,096 forged loopback sources.
    {
        let (stop, sent) = (stop.clone(), sent.clone());
        let mut socks = Vec::new();
        for n in 0..4096u32 {
            let ip = Ipv4Addr::new(127, 3, (n >> 8) as u8, (n & 0xff) as u8 + 1);
            socks.push(UdpSocket::bind((ip, 0)).await?);
        }
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let per_tick = (rate / 100).max(1);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                for _ in 0..per_tick {
                    let s = &socks[(i % socks.len() as u64) as usize];
                    let from = s.local_addr().expect("bound");
                    let _ = s.send_to(&datagram(i, from), udp).await;
                    i += 1;
                }
                sent.store(i, Ordering::Relaxed);
            }
        }));
    }
    // 2,000 idle connections, 125 from each of 16 addresses.
    let mut idle = Vec::new();
    for n in 0..2000u32 {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 4, 0, (n % 16) as u8 + 1)),
            0,
        ))?;
        if let Ok(c) = s.connect(tcp).await {
            idle.push(c);
        }
    }
    println!("{} idle connections open", idle.len());
    // One peer that never reads.
    {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = tokio::net::TcpStream::connect(tcp).await else {
                    break;
                };
                let local = s.local_addr().expect("bound");
                let batch: String = (0..50)
                    .map(|n| format!("OPTIONS sip:edge SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKn{n}\r\nFrom: <sip:a@e>;tag=1\r\nTo: <sip:edge>\r\nCall-ID: n\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"))
                    .collect();
                while !stop.load(Ordering::Relaxed) {
                    if s.write_all(batch.as_bytes()).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    println!("measuring {secs} s under attack");
    let attacked = phase(pid, &sim, secs).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    for (name, p) in [("without attack", &calm), ("under attack", &attacked)] {
        println!(
            "{name:>15}: registrations {:>7} completed, {:>3} failed; edge peak RSS {:>6.1} MiB; edge CPU {:>5.1} s",
            p.registered,
            p.failed,
            mib(p.peak_rss),
            p.cpu_s
        );
    }
    println!(
        "attack: {} worst-case datagrams ({:.0}/s), {} idle connections, one peer that never reads",
        sent.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed) as f64 / secs as f64,
        idle.len()
    );
    println!(
        "peak RSS under attack / without: {:.2} (target <= 2); CPU under attack / without: {:.2}; failed registrations under attack: {} (target 0)",
        attacked.peak_rss as f64 / calm.peak_rss.max(1) as f64,
        attacked.cpu_s / calm.cpu_s.max(0.001),
        attacked.failed
    );
    drop(idle);
    Ok(())
}
