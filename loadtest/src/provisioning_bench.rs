//! Dialtone's provisioning server against nginx (Debian), side by side in one run: the same
//! rendered files (Poly VVX: `{mac}.cfg`, `{mac}-registration.cfg`, `{mac}-settings.cfg`
//! of PHONES managed phones), fetched by the same load tool (`dialtone_phonesim::https`:
//! HTTP/1.1 over TLS with keep-alive, one connection per phone, each request carrying a
//! digest `Authorization` with a fresh nonce count), over the same certificate on 127.0.0.1.
//! Dialtone verifies each digest, checks the nonce count and records the fetch; nginx
//! serves the files as static files and ignores the header.
//!
//! `cargo run --release -p dialtone-loadtest --bin provisioning-bench -- [PHONES] [SECONDS] [ROUNDS]`
//! (defaults 64, 5, 3; needs `cargo build --release --bins` and Debian's `nginx-light`).
//!
//! Two workloads: full fetches (200 with the file) and polls (`If-None-Match` with the
//! server's own ETag: 304). Servers take turns within each round so machine noise falls on
//! both. Printed per workload: each server's median fetches per second over the rounds,
//! its CPU microseconds per fetch (utime + stime from /proc), and the ratio.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use dialtone_loadtest::procfs::{cpu_us, tree};
use dialtone_phonesim::https::{Connection, Device, TlsConfig, client_config};
use dialtone_proto::config::v1 as pb;
use dialtone_tests::{
    ClusterSandbox,
    fleet::{create_profile, seed_site},
    free_port,
};

/// One phone: its device credential and files.
#[derive(Clone)]
struct Phone {
    mac: String,
    password: String,
}

impl Phone {
    fn files(&self) -> [String; 3] {
        let m = &self.mac;
        [
            format!("/{m}.cfg"),
            format!("/{m}-registration.cfg"),
            format!("/{m}-settings.cfg"),
        ]
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Full,
    Poll,
}

struct Server {
    name: &'static str,
    addr: SocketAddr,
    pids: Vec<u32>,
}

/// One timed run: fetches per second and server CPU µs per fetch.
#[derive(Clone, Copy, Default)]
struct Sample {
    rate: f64,
    cpu_us: f64,
    errors: u64,
}

async fn seed(sb: &ClusterSandbox, phones: usize) -> anyhow::Result<Vec<Phone>> {
    let token = sb.nodes[0].admin_token();
    let mut c = sb.nodes[0].config_client(&token).await?;
    seed_site(&mut c, pb::PhoneSettings::default()).await?;
    create_profile(
        &mut c,
        "vvx",
        "VVX",
        pb::MetaBase::PolyVvx,
        pb::PhoneSettings::default(),
    )
    .await?;
    let mut out = Vec::with_capacity(phones);
    for i in 0..phones {
        let mac = format!("0004f2{i:06x}");
        let r = c
            .create_phone(pb::CreatePhoneRequest {
                phone: Some(pb::Phone {
                    name: format!("Desk {i}"),
                    kind: pb::PhoneKind::Managed as i32,
                    site_id: "hq".into(),
                    base_settings_id: "vvx".into(),
                    hardware_id: mac.clone(),
                    lines: vec![pb::Line {
                        sip_user: format!("{}", 2000 + i),
                        display_name: format!("Desk {i}"),
                        credentials: None,
                        password: String::new(),
                    }],
                    ..Default::default()
                }),
            })
            .await?
            .into_inner();
        let password = r
            .device_credentials
            .context("a managed phone gets a device credential")?
            .password;
        out.push(Phone { mac, password });
    }
    Ok(out)
}

/// Fetches every phone's files from Dialtone into `root` (nginx's document root); returns a
/// challenge Dialtone issued, which primes the nginx clients so they send the same headers.
async fn render_into(
    root: &Path,
    addr: SocketAddr,
    tls: TlsConfig,
    phones: &[Phone],
) -> anyhow::Result<String> {
    let mut challenge = String::new();
    for p in phones {
        let mut conn = Connection::connect(addr, "localhost", tls.clone()).await?;
        let mut dev = Device::new(&p.mac, &p.password);
        for f in p.files() {
            let r = dev.fetch(&mut conn, &f, None).await?;
            if r.status != 200 {
                bail!("{f}: {} from Dialtone", r.status);
            }
            std::fs::write(root.join(f.trim_start_matches('/')), &r.body)?;
        }
        challenge = dev.challenge().unwrap_or_default().to_owned();
    }
    Ok(challenge)
}

fn start_nginx(dir: &Path, port: u16, cert: &Path, key: &Path) -> anyhow::Result<Child> {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "user root;\nworker_processes auto;\ndaemon off;\npid {dir}/nginx.pid;\n\
             error_log {dir}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  keepalive_requests 100000000;\n\
               keepalive_timeout 120s;\n  types {{ application/xml cfg; }}\n\
               client_body_temp_path {dir}/tmp;\n  proxy_temp_path {dir}/tmp;\n\
               fastcgi_temp_path {dir}/tmp;\n  uwsgi_temp_path {dir}/tmp;\n  scgi_temp_path {dir}/tmp;\n\
               server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n\
                 ssl_certificate_key {key};\n    root {dir}/root;\n    etag on;\n  }}\n}}\n",
            dir = dir.display(),
            cert = cert.display(),
            key = key.display(),
        ),
    )?;
    std::fs::create_dir_all(dir.join("tmp"))?;
    let child = Command::new("nginx")
        .args(["-e", &format!("{}/error.log", dir.display()), "-c"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting nginx (apt-get install nginx-light)")?;
    Ok(child)
}

async fn wait_port(addr: SocketAddr) -> anyhow::Result<()> {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("nothing listens on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Every phone fetching its files in turn over its own connection for `secs`.
async fn run(
    server: &Server,
    tls: TlsConfig,
    phones: &[Phone],
    challenge: &str,
    workload: Workload,
    secs: u64,
) -> anyhow::Result<Sample> {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in phones {
        let (p, tls, done, errors, go, stop) = (
            p.clone(),
            tls.clone(),
            done.clone(),
            errors.clone(),
            go.clone(),
            stop.clone(),
        );
        let (addr, nginx) = (server.addr, server.name == "nginx");
        let challenge = challenge.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::connect(addr, "localhost", tls).await?;
            let mut dev = if nginx {
                Device::primed(&p.mac, &p.password, &challenge)
            } else {
                Device::new(&p.mac, &p.password)
            };
            // Each server's own ETags, learned before the clock starts (and the challenge).
            let mut etags = Vec::new();
            for f in p.files() {
                let r = dev.fetch(&mut conn, &f, None).await?;
                anyhow::ensure!(r.status == 200, "{f}: {}", r.status);
                etags.push(r.etag.unwrap_or_default());
            }
            while !go.load(Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let want = if workload == Workload::Full { 200 } else { 304 };
            'outer: loop {
                for (f, etag) in p.files().iter().zip(&etags) {
                    if stop.load(Relaxed) {
                        break 'outer;
                    }
                    let cond = (workload == Workload::Poll).then_some(etag.as_str());
                    let r = dev.fetch(&mut conn, f, cond).await?;
                    if r.status == want {
                        done.fetch_add(1, Relaxed);
                    } else {
                        errors.fetch_add(1, Relaxed);
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    // Connections up and ETags learned, then the clock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cpu0, n0) = (cpu_us(&server.pids), done.load(Relaxed));
    let t0 = Instant::now();
    go.store(true, Relaxed);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (n1, cpu1, elapsed) = (done.load(Relaxed), cpu_us(&server.pids), t0.elapsed());
    stop.store(true, Relaxed);
    for t in tasks {
        t.await??;
    }
    let n = (n1 - n0) as f64;
    Ok(Sample {
        rate: n / elapsed.as_secs_f64(),
        cpu_us: (cpu1 - cpu0) as f64 / n.max(1.0),
        errors: errors.load(Relaxed),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u64| -> anyhow::Result<u64> {
        args.get(i).map_or(Ok(d), |s| {
            s.parse().with_context(|| format!("bad argument '{s}'"))
        })
    };
    let (phones_n, secs, rounds) = (arg(0, 64)? as usize, arg(1, 5)?, arg(2, 3)? as usize);
    if Command::new("nginx").arg("-v").output().is_err() {
        bail!("nginx is missing: apt-get install nginx-light");
    }
    let sb = ClusterSandbox::embedded().await?;
    let node = &sb.nodes[0];
    let dialtone_addr: SocketAddr = format!("127.0.0.1:{}", node.https).parse()?;
    let cert: PathBuf = node.data_dir.join("tls/provisioning-cert.pem");
    let key: PathBuf = node.data_dir.join("tls/provisioning-key.pem");
    let tls = client_config(&std::fs::read(&cert)?)?;
    println!("seeding {phones_n} managed Poly VVX phones");
    let phones = seed(&sb, phones_n).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("root"))?;
    let challenge = render_into(
        &dir.path().join("root"),
        dialtone_addr,
        tls.clone(),
        &phones,
    )
    .await?;
    let nginx_port = free_port();
    let mut nginx = start_nginx(dir.path(), nginx_port, &cert, &key)?;
    let nginx_addr: SocketAddr = format!("127.0.0.1:{nginx_port}").parse()?;
    wait_port(nginx_addr).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let servers = [
        Server {
            name: "dialtone",
            addr: dialtone_addr,
            pids: tree(node.pid().context("dialtone pid")?),
        },
        Server {
            name: "nginx",
            addr: nginx_addr,
            pids: tree(nginx.id()),
        },
    ];
    println!(
        "{} connections (one per phone, keep-alive), {secs} s per run, {rounds} rounds; same certificate, files and client",
        phones.len()
    );
    let mut table = Vec::new();
    for workload in [Workload::Full, Workload::Poll] {
        let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            // Alternate who goes first.
            for k in 0..2 {
                let i = (k + round) % 2;
                let s = run(
                    &servers[i],
                    tls.clone(),
                    &phones,
                    &challenge,
                    workload,
                    secs,
                )
                .await?;
                println!(
                    "  {:<5} round {} {:<8} {:>9.0} fetches/s  {:>6.1} µs CPU/fetch  errors {}",
                    if workload == Workload::Full {
                        "full"
                    } else {
                        "304"
                    },
                    round + 1,
                    servers[i].name,
                    s.rate,
                    s.cpu_us,
                    s.errors
                );
                samples[i].push(s);
            }
        }
        let med = |i: usize, f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
        table.push((
            workload,
            med(0, |s| s.rate),
            med(1, |s| s.rate),
            med(0, |s| s.cpu_us),
            med(1, |s| s.cpu_us),
        ));
    }
    let _ = nginx.kill();
    let _ = nginx.wait();
    println!();
    println!(
        "| workload | Dialtone fetches/s | nginx fetches/s | ratio | target | Dialtone µs CPU/fetch | nginx µs CPU/fetch |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (w, d, n, dc, nc) in table {
        let (name, target) = match w {
            Workload::Full => ("full fetch (200)", 0.8),
            Workload::Poll => ("poll (304)", 1.0),
        };
        println!(
            "| {name} | {d:.0} | {n:.0} | {:.2} | ≥ {target:.1} {} | {dc:.1} | {nc:.1} |",
            d / n,
            if d / n >= target { "met" } else { "NOT met" }
        );
    }
    Ok(())
}
