//! `phonesim`: a simulated phone fleet against a Dialtone cluster.
//!
//! ```sh
//! # create N phones through the config API and ask the provisioning API how each registers
//! phonesim seed --server http://127.0.0.1:7700 --token "$TOKEN" --count 1000 \
//!               --site hq --base-settings desk --out phones.csv
//! # register them all (primary and secondary), refresh, answer requests; report every second
//! phonesim run --phones phones.csv --rate 2000 --expires 120 --duration 60
//!
//! # managed phones (a JSON-document profile: generic SIP phones with a MAC, or the
//! # desktop softphone): the file holds device
//! # credentials; each phone boots from its configuration over HTTPS, then registers
//! phonesim seed ... --base-settings ac --managed --out devices.csv
//! phonesim run --phones devices.csv --provisioning 127.0.0.1:8443 \
//!              --ca ~/.local/share/dialtone/tls/provisioning-cert.pem
//! ```

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use dialtone_phonesim::{
    PhoneSpec, Sim, SimConfig, SimTransport,
    https::client_config,
    managed::{ManagedDevice, ProvisioningSource, boot},
    stats::Histogram,
};
use dialtone_proto::{
    config::v1::{self as pb, config_service_client::ConfigServiceClient},
    provisioning::v1::{self as ppb, provisioning_service_client::ProvisioningServiceClient},
};
use tonic::{metadata::MetadataValue, transport::Channel};

/// A simulated phone fleet.
#[derive(Parser)]
#[command(name = "phonesim", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create phones through the config API (CSV import) and write the fleet file
    /// (`phone_id,sip_user,password,domain,primary,secondary`) from GetHowToRegister.
    Seed {
        /// gRPC endpoint of a node running config and provisioning.
        #[arg(long, env = "DIALTONE_SERVER")]
        server: String,
        /// API token with add permission.
        #[arg(long, env = "DIALTONE_TOKEN", hide_env_values = true)]
        token: String,
        /// Phones to create.
        #[arg(long)]
        count: usize,
        /// Their site (must exist).
        #[arg(long)]
        site: String,
        /// Their base settings (must exist).
        #[arg(long)]
        base_settings: String,
        /// Line name prefix (each phone gets one line `{prefix}{n:06}`).
        #[arg(long, default_value = "sim")]
        prefix: String,
        /// Create managed phones (MAC `{mac-prefix}{n:06x}`) and write their device
        /// credentials (`phone_id,hardware_id,device_password`) instead: `run` boots them
        /// from their configuration. The profile must render the JSON document: a generic
        /// SIP profile (the phones are created unmanaged, with a MAC).
        #[arg(long)]
        managed: bool,
        /// First six hex digits of the managed phones' MACs.
        #[arg(long, default_value = "02dd00")]
        mac_prefix: String,
        /// The fleet file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Register the fleet and keep it registered; print a line per second and a summary.
    Run {
        /// The fleet file written by `seed`.
        #[arg(long)]
        phones: PathBuf,
        /// Phones started per second (0: all at once).
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        /// Expires asked for, seconds (refreshes at half).
        #[arg(long, default_value_t = 120)]
        expires: u32,
        /// Seconds to run.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// UDP sockets shared by the phones.
        #[arg(long, default_value_t = 16)]
        sockets: usize,
        /// `udp` (shared sockets), `tcp` or `tls` (a connection per phone and registrar;
        /// mind the open-files limit: two per phone).
        #[arg(long, default_value = "udp", value_parser = ["udp", "tcp", "tls"])]
        transport: String,
        /// PEM certificate(s) to trust for the edges' SIP over TLS (checked for the edge's
        /// IP address); `--transport tls` needs it.
        #[arg(long)]
        sip_ca: Option<PathBuf>,
        /// Local address the phones' sockets bind (the first of --tcp-sources).
        #[arg(long, default_value = "127.0.0.1")]
        bind_ip: std::net::IpAddr,
        /// TCP/TLS: the phones' connections come from this many addresses, --bind-ip and
        /// up (phone i's from --bind-ip + i mod N), as real phones each have their own:
        /// thousands of connections from one address to one edge make the kernel search
        /// the port range at every connect. More than one only within 127.0.0.0/8.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        tcp_sources: u32,
        /// After a lost TCP/TLS connection, a phone registers again after a random wait up
        /// to this many milliseconds, which starts --reconnect-after-ms after the loss.
        #[arg(long, default_value_t = 1000)]
        reconnect_spread_ms: u64,
        /// After a lost TCP/TLS connection, every phone waits this many milliseconds before
        /// its random wait (a diagnostic: long enough, no reconnect falls among the closes
        /// of a wave's other connections).
        #[arg(long, default_value_t = 0)]
        reconnect_after_ms: u64,
        /// After a failed registration (no Retry-After), a phone waits between half this
        /// many milliseconds and this many, doubled at each failure up to
        /// --retry-most-ms. Desk phones wait tens of seconds (Yealink retries every 30 s
        /// by default).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
        retry_first_ms: u64,
        /// The longest wait between failed registrations, milliseconds.
        #[arg(long, default_value_t = 8000, value_parser = clap::value_parser!(u64).range(1..))]
        retry_most_ms: u64,
        /// Reconnect waves, driven from stdin: once every phone is registered, print
        /// `ready`; then each `wave` line drops every connection at once and prints the
        /// wave's registrations, latency and failures once every phone is registered
        /// again (or after --duration seconds); `stop` or the end of stdin stops.
        #[arg(long)]
        waves: bool,
        /// Final answer to INVITEs (after 180 when 2xx).
        #[arg(long, default_value_t = 200)]
        invite_answer: u16,
        /// Leave the registrations in place at the end (no Expires: 0).
        #[arg(long)]
        no_unregister: bool,
        /// The provisioning server managed phones boot from (`ip:port`); the fleet file
        /// then holds device credentials (`seed --managed`).
        #[arg(long, requires = "ca")]
        provisioning: Option<SocketAddr>,
        /// PEM certificate(s) to trust for the provisioning server (named `localhost`).
        #[arg(long)]
        ca: Option<PathBuf>,
    },
}

/// What `seed` creates.
struct SeedArgs {
    server: String,
    token: String,
    count: usize,
    site: String,
    base: String,
    prefix: String,
    out: PathBuf,
    managed: Option<String>,
}

async fn seed(a: SeedArgs) -> anyhow::Result<()> {
    let SeedArgs {
        server,
        token,
        count,
        site,
        base,
        prefix,
        out,
        managed,
    } = a;
    let channel = Channel::from_shared(server.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    let auth: MetadataValue<_> = format!("Bearer {token}").parse()?;
    let with_auth = move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", auth.clone());
        Ok(req)
    };
    let mut config = ConfigServiceClient::with_interceptor(channel.clone(), with_auth.clone());
    let mut csv = String::from("name,kind,site_id,base_settings_id,hardware_id,lines\n");
    for i in 0..count {
        let (kind, hw) = match &managed {
            // A generic SIP phone with a MAC fetches its JSON document as a managed one.
            Some(mac) => ("unmanaged", format!("{mac}{i:06x}")),
            None => ("unmanaged", String::new()),
        };
        csv.push_str(&format!(
            "Sim {prefix} {i},{kind},{site},{base},{hw},{prefix}{i:06}\n"
        ));
    }
    let chunks: Vec<pb::ImportPhonesRequest> = csv
        .as_bytes()
        .chunks(1 << 20)
        .map(|b| pb::ImportPhonesRequest { chunk: b.to_vec() })
        .collect();
    let mut s = config
        .import_phones(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    let mut created = Vec::with_capacity(count);
    let mut devices = Vec::new();
    while let Some(r) = s.message().await? {
        if !r.reason.is_empty() {
            bail!("row {}: {}", r.row, r.reason);
        }
        if let Some(d) = r.device_credentials {
            devices.push(format!("{},{},{}", r.phone_id, d.user, d.password));
        }
        if let Some(c) = r.credentials.into_iter().next() {
            created.push((r.phone_id, c.sip_user, c.password));
        }
    }
    if managed.is_some() {
        let text = format!(
            "phone_id,hardware_id,device_password\n{}\n",
            devices.join("\n")
        );
        std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {} ({} managed phones)", out.display(), devices.len());
        return Ok(());
    }
    eprintln!(
        "created {} phones; asking how each registers",
        created.len()
    );
    let prov = ProvisioningServiceClient::with_interceptor(channel, with_auth);
    let mut lines = Vec::with_capacity(created.len());
    for batch in created.chunks(64) {
        let calls = batch.iter().map(|(id, _, _)| {
            let mut p = prov.clone();
            let id = id.clone();
            async move {
                p.get_how_to_register(ppb::GetHowToRegisterRequest { phone_id: id })
                    .await
                    .map(|r| r.into_inner())
            }
        });
        for ((id, user, password), how) in batch.iter().zip(futures::future::join_all(calls).await)
        {
            let how = how?;
            let addr = |r: &Option<ppb::Registrar>| {
                r.as_ref()
                    .map(|r| format!("{}:{}", r.host, r.port))
                    .unwrap_or_default()
            };
            lines.push(format!(
                "{id},{user},{password},{},{},{}",
                how.domain,
                addr(&how.primary),
                addr(&how.secondary)
            ));
        }
    }
    let text = format!(
        "phone_id,sip_user,password,domain,primary,secondary\n{}\n",
        lines.join("\n")
    );
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {} ({} phones)", out.display(), lines.len());
    Ok(())
}

/// Reads a device file (`seed --managed`) and boots every phone from its configuration.
async fn boot_fleet(source: &ProvisioningSource, path: &PathBuf) -> anyhow::Result<Vec<PhoneSpec>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut devices = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let [id, hw, password] = f[..] else {
            bail!(
                "{}:{}: expected 3 columns (seed --managed)",
                path.display(),
                n + 1
            );
        };
        devices.push(ManagedDevice {
            phone_id: id.into(),
            hardware_id: hw.into(),
            password: password.into(),
        });
    }
    let started = std::time::Instant::now();
    let mut phones = Vec::with_capacity(devices.len());
    for r in boot(source, devices, 64).await {
        phones.push(r.map_err(|e| anyhow::anyhow!("boot: {e}"))?);
    }
    eprintln!(
        "booted {} managed phones from their configuration in {:.1} s",
        phones.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(phones)
}

/// Reads the fleet file.
async fn load(path: &PathBuf) -> anyhow::Result<Vec<PhoneSpec>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut phones = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let [id, user, password, domain, primary, secondary] = f[..] else {
            bail!("{}:{}: expected 6 columns", path.display(), n + 1);
        };
        let mut registrars = Vec::new();
        for a in [primary, secondary].into_iter().filter(|a| !a.is_empty()) {
            let addr: SocketAddr = tokio::net::lookup_host(a)
                .await
                .with_context(|| format!("{}:{}: cannot resolve {a}", path.display(), n + 1))?
                .next()
                .with_context(|| format!("{}:{}: no address for {a}", path.display(), n + 1))?;
            registrars.push(addr);
        }
        phones.push(PhoneSpec {
            phone_id: id.into(),
            user: user.into(),
            password: password.into(),
            domain: domain.into(),
            registrars,
            managed: None,
        });
    }
    Ok(phones)
}

/// Waits (up to `within`) until every phone holds every registration; whether it did.
async fn all_registered(sim: &Sim, within: Duration) -> bool {
    let until = std::time::Instant::now() + within;
    loop {
        let s = sim.sample();
        if s.full as usize == sim.len() {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        // A sample walks every phone: every 50 ms, seven simulators of 15,000 phones spent
        // 2 % of the machine on it in a reconnect wave.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `run --waves`: the first registration of the fleet, then one reconnect wave per `wave`
/// line on stdin, each reported on one line.
async fn run_waves(sim: &Sim, within: Duration) -> anyhow::Result<()> {
    let start = sim.mark();
    let done = all_registered(sim, within).await;
    println!("ready: all-registered {done}; {}", sim.since(&start).line());
    // Stdin is read on a thread of its own (blocking reads), a line at a time.
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut n = 0;
    while let Some(line) = lines.recv().await {
        match line.trim() {
            "wave" => {
                n += 1;
                let mark = sim.mark();
                let dropped = sim.drop_connections().await;
                // Give the phones' flow-loss handlers time to mark their registrations gone.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let done = all_registered(sim, within).await;
                println!(
                    "wave {n}: dropped {dropped}; all-registered {done}; {}",
                    sim.since(&mark).line()
                );
            }
            "stop" => break,
            "" => {}
            other => eprintln!("unknown command {other:?} (wave or stop)"),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Seed {
            server,
            token,
            count,
            site,
            base_settings,
            prefix,
            out,
            managed,
            mac_prefix,
        } => {
            if managed
                && !(mac_prefix.len() == 6 && mac_prefix.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                bail!("--mac-prefix must be six hex digits, not '{mac_prefix}'");
            }
            seed(SeedArgs {
                server,
                token,
                count,
                site,
                base: base_settings,
                prefix,
                out,
                managed: managed.then(|| mac_prefix.to_ascii_lowercase()),
            })
            .await
        }
        Cmd::Run {
            phones,
            rate,
            expires,
            duration,
            sockets,
            transport,
            invite_answer,
            no_unregister,
            provisioning,
            ca,
            sip_ca,
            bind_ip,
            tcp_sources,
            reconnect_spread_ms,
            reconnect_after_ms,
            retry_first_ms,
            retry_most_ms,
            waves,
        } => {
            if !dialtone_phonesim::sources_are_loopback(bind_ip, tcp_sources) {
                bail!(
                    "--tcp-sources {tcp_sources} from --bind-ip {bind_ip}: more than one \
                     address only within 127.0.0.0/8, where a host has them all"
                );
            }
            let tls = match (&transport[..], sip_ca) {
                ("tls", Some(ca)) => Some(client_config(
                    &std::fs::read(&ca).with_context(|| format!("reading {}", ca.display()))?,
                )?),
                ("tls", None) => bail!("--transport tls needs --sip-ca"),
                _ => None,
            };
            let source = match (provisioning, ca) {
                (Some(addr), Some(ca)) => Some(ProvisioningSource {
                    addr,
                    tls: client_config(
                        &std::fs::read(&ca).with_context(|| format!("reading {}", ca.display()))?,
                    )?,
                }),
                _ => None,
            };
            let phones = match &source {
                Some(source) => boot_fleet(source, &phones).await?,
                None => load(&phones).await?,
            };
            let n = phones.len();
            let sim = Sim::start(
                SimConfig {
                    expires,
                    sockets,
                    start_rate: rate,
                    invite_answer,
                    provisioning: source,
                    transport: match &transport[..] {
                        "tcp" => SimTransport::Tcp,
                        "tls" => SimTransport::Tls,
                        _ => SimTransport::Udp,
                    },
                    tls,
                    bind_ip,
                    tcp_sources,
                    reconnect_spread: Duration::from_millis(reconnect_spread_ms),
                    reconnect_after: Duration::from_millis(reconnect_after_ms),
                    retry_first: Duration::from_millis(retry_first_ms),
                    retry_most: Duration::from_millis(retry_most_ms),
                    ..SimConfig::default()
                },
                phones,
            )
            .await?;
            if waves {
                run_waves(&sim, Duration::from_secs(duration)).await?;
                sim.stop(!no_unregister, 512).await;
                return Ok(());
            }
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            for _ in 0..duration {
                tick.tick().await;
                println!("{}", sim.sample().line());
            }
            let s = sim.stats();
            let all = s.latency.snapshot();
            let q = |x| Histogram::quantile_ms(&all, x).map_or("-".into(), |v| format!("{v:.1}"));
            let load =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            println!(
                "phones {n}: registrations {} (p50 {} ms, p90 {} ms, p99 {} ms); failures: timeout {}, forbidden {}, rejected {}, io {}",
                load(&s.registered),
                q(0.5),
                q(0.9),
                q(0.99),
                load(&s.failed[0]),
                load(&s.failed[1]),
                load(&s.failed[2]),
                load(&s.failed[3]),
            );
            println!(
                "requests received: INVITE {}, OPTIONS {}, NOTIFY {} (check-sync {}, of which reboot {}), MESSAGE {}, other {}; misdelivered {}",
                load(&s.received[0]),
                load(&s.received[1]),
                load(&s.received[2]),
                load(&s.check_syncs),
                load(&s.reboots),
                load(&s.received[3]),
                load(&s.received[4]),
                load(&s.misdelivered),
            );
            if sim.stats().fetches.iter().any(|f| load(f) > 0) {
                println!(
                    "managed phones after check-sync: fetched changed {}, unchanged {}, failed {}; rebooted {}",
                    load(&s.fetches[0]),
                    load(&s.fetches[1]),
                    load(&s.fetches[2]),
                    load(&s.rebooted),
                );
            }
            sim.stop(!no_unregister, 512).await;
            Ok(())
        }
    }
}
