//! The admin console over a large fleet: how fast the Phones page's first page is served,
//! and how soon a phone's status change reaches a page that is open.
//!
//! `cargo run --release -p dialtone-loadtest --bin console-bench -- [PHONES] [CHANGES]`
//! (defaults 100000 phones and 100 phones registered then unregistered; needs
//! `cargo build --release --bins`).
//!
//! One all-in-one node on the embedded store, then a config node on a one-member etcd;
//! PHONES phones imported from CSV into each. Printed:
//! - on both backends, the first page of the console's Phones list (50 phones with their status, the filter
//!   choices and the page chrome, as HTML) p50/p99 over 1,000 requests, beside the same
//!   page of the REST API (`/api/v2/telephony/providers/edges/phones?pageSize=50&expand=status`)
//!   and of gRPC (`ListPhones`, no status) measured in the same run (target: ≤ 100 ms p99);
//! - for CHANGES phones, one after another, registered (phonesim, UDP, digest) then
//!   unregistered: the time from the phone starting its REGISTER to the open page's event
//!   stream (`/events/phones`) saying so, beside the status role's `WatchPhoneStatuses`
//!   receiving the same change (target: ≤ 1 s p99).
//!
//! There is no peer to run here: Genesys Cloud's console is a hosted service. The
//! comparison is with the node's own APIs, which do less (no HTML, no status or no page).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use dialtone_phonesim::{PhoneSpec, Sim, SimConfig};
use dialtone_proto::{config::v1 as pb, status::v1 as spb};
use dialtone_tests::{ADMIN_TOKEN, ClusterSandbox, fleet};
use parking_lot::Mutex;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::mpsc,
};

/// Page requests timed per client (after ten warm-ups).
const SAMPLES: usize = 1000;

/// When each phone was last seen in each status by a watcher: (phone, status) → instant.
type Seen = Arc<Mutex<HashMap<(String, String), Instant>>>;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One HTTP/1.1 exchange on a new connection; returns status, head and body.
async fn http(addr: SocketAddr, head: &str, body: &[u8]) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of head")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    Ok((status, head, buf[end + 4..].to_vec()))
}

async fn get(addr: SocketAddr, path: &str, auth: &str) -> anyhow::Result<usize> {
    let head =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\nConnection: close\r\n\r\n");
    let (status, _, body) = http(addr, &head, b"").await?;
    ensure!(
        status == 200,
        "GET {path}: {status} {}",
        String::from_utf8_lossy(&body)
            .chars()
            .take(2000)
            .collect::<String>()
    );
    Ok(body.len())
}

/// Logs in to the console with `token`; returns the `Cookie` header of the session.
async fn login(addr: SocketAddr, token: &str) -> anyhow::Result<String> {
    let body = format!("token={token}&next=%2Fphones");
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (status, head, _) = http(addr, &head, body.as_bytes()).await?;
    ensure!(status == 303 || status == 302, "login: {status}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        })
        .and_then(|(_, v)| v.trim().split(';').next())
        .context("no session cookie")?;
    Ok(format!("Cookie: {cookie}"))
}

fn quantiles(mut took: Vec<Duration>) -> (Duration, Duration) {
    took.sort();
    (pct(&took, 0.5), pct(&took, 0.99))
}

/// Follows the console's event stream of `ids`, noting when each status arrives.
async fn follow_page(
    addr: SocketAddr,
    cookie: &str,
    ids: &[String],
    seen: Seen,
) -> anyhow::Result<mpsc::Receiver<()>> {
    let mut s = TcpStream::connect(addr).await?;
    let head = format!(
        "GET /events/phones?ids={} HTTP/1.1\r\nHost: {addr}\r\n{cookie}\r\nAccept: text/event-stream\r\n\r\n",
        ids.join(",")
    );
    s.write_all(head.as_bytes()).await?;
    let (ready_tx, ready) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut lines = BufReader::new(s).lines();
        let mut first = 0;
        // Chunked framing puts sizes on lines of their own; only `data:` lines matter.
        while let Ok(Some(line)) = lines.next_line().await {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                continue;
            };
            let (Some(id), Some(status)) = (v["id"].as_str(), v["status"].as_str()) else {
                continue;
            };
            seen.lock()
                .insert((id.to_owned(), status.to_owned()), Instant::now());
            first += 1;
            if first == 1 {
                let _ = ready_tx.try_send(());
            }
        }
    });
    Ok(ready)
}

/// Follows the status role's watch, noting when each status arrives.
async fn follow_watch(
    mut st: dialtone_tests::StatusClient,
    seen: Seen,
) -> anyhow::Result<mpsc::Receiver<()>> {
    let mut watch = st
        .watch_phone_statuses(spb::WatchPhoneStatusesRequest::default())
        .await?
        .into_inner();
    let (synced_tx, synced) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Ok(Some(c)) = watch.message().await {
            if c.synced {
                let _ = synced_tx.try_send(());
                continue;
            }
            if let Some(s) = c.status {
                let status = spb::OperationalStatus::try_from(s.status)
                    .map(|s| {
                        s.as_str_name()
                            .trim_start_matches("OPERATIONAL_STATUS_")
                            .to_owned()
                    })
                    .unwrap_or_default();
                seen.lock().insert((c.phone_id, status), Instant::now());
            }
        }
    });
    Ok(synced)
}

/// Waits until `seen` holds `phone` in `status` at or after `since`; returns when.
async fn seen_after(seen: &Seen, phone: &str, status: &str, since: Instant) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(at) = seen
            .lock()
            .get(&(phone.to_owned(), status.to_owned()))
            .filter(|at| **at >= since)
        {
            return Some(*at);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// When the phone of `sim` holds (`want`) or no longer holds its registration.
async fn registered_at(sim: &Sim, want: bool) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.is_registered(0, 0) != want {
        ensure!(Instant::now() < deadline, "the phone never registered");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(Instant::now())
}

/// The first page of 50 phones, p50 and p99, through each client.
struct Pages {
    bytes: usize,
    console: (Duration, Duration),
    rest: (Duration, Duration),
    grpc: (Duration, Duration),
}

fn api_addr(node: &dialtone_tests::Node) -> anyhow::Result<SocketAddr> {
    node.api_url()
        .trim_start_matches("http://")
        .parse()
        .context("the API's address")
}

async fn pages(
    addr: SocketAddr,
    token: &str,
    cookie: &str,
    c: &dialtone_tests::ConfigClient,
) -> anyhow::Result<Pages> {
    let bearer = format!("Authorization: Bearer {token}");
    let bytes = get(addr, "/phones", cookie).await?;
    const REST: &str =
        "/api/v2/telephony/providers/edges/phones?pageSize=50&pageNumber=1&expand=status";
    let grpc_page = || {
        let mut c = c.clone();
        async move {
            c.list_phones(pb::ListPhonesRequest {
                page_size: 50,
                ..Default::default()
            })
            .await
        }
    };
    // The three clients take turns, so the store's background work (a snapshot after the
    // import, a compaction) falls on each alike.
    let mut took: [Vec<Duration>; 3] = Default::default();
    for i in 0..SAMPLES + 10 {
        let t = Instant::now();
        get(addr, "/phones", cookie).await?;
        let console = t.elapsed();
        let t = Instant::now();
        get(addr, REST, &bearer).await?;
        let rest = t.elapsed();
        let t = Instant::now();
        grpc_page().await?;
        let grpc = t.elapsed();
        if i >= 10 {
            for (v, d) in took.iter_mut().zip([console, rest, grpc]) {
                v.push(d);
            }
        }
    }
    let [console, rest, grpc] = took.map(quantiles);
    Ok(Pages {
        bytes,
        console,
        rest,
        grpc,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(Ok(100_000), |s| s.parse())?;
    let changes: usize = args.get(2).map_or(Ok(100), |s| s.parse())?;
    ensure!(
        changes <= 100 && changes <= n,
        "CHANGES: at most 100, and at most PHONES"
    );

    let sb = ClusterSandbox::embedded().await?;
    let node = &sb.nodes[0];
    let token = node.admin_token();
    let mut c = node.config_client(&token).await?;
    fleet::seed_site_on(&mut c, pb::PhoneSettings::default(), &sb.udp_edges(&[0])).await?;
    let t = Instant::now();
    let phones = fleet::import(&mut c, n, "b").await?;
    eprintln!("imported {n} phones in {:.1} s", t.elapsed().as_secs_f64());
    dialtone_loadtest::wait_cached_lines(node, n).await;

    let addr = api_addr(node)?;
    let cookie = login(addr, &token).await?;
    let embedded = pages(addr, &token, &cookie, &c).await?;
    let etcd = {
        let sb = ClusterSandbox::with_etcd(1, &["config"]).await?;
        let node = &sb.nodes[0];
        let mut c = node.config_client(ADMIN_TOKEN).await?;
        fleet::seed_site(&mut c, pb::PhoneSettings::default()).await?;
        fleet::import(&mut c, n, "b").await?;
        let addr = api_addr(node)?;
        let cookie = login(addr, ADMIN_TOKEN).await?;
        pages(addr, ADMIN_TOKEN, &cookie, &c).await?
    };

    // Status changes: every followed phone starts OFFLINE, then each registers and
    // unregisters in turn.
    let followed: Vec<(String, String, String)> = phones.into_iter().take(changes).collect();
    let ids: Vec<String> = followed.iter().map(|p| p.0.clone()).collect();
    let page_seen = Seen::default();
    let watch_seen = Seen::default();
    let mut ready = follow_page(addr, &cookie, &ids, page_seen.clone()).await?;
    let mut synced = follow_watch(node.status_client(&token).await?, watch_seen.clone()).await?;
    for (what, rx) in [("page stream", &mut ready), ("status watch", &mut synced)] {
        if tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .ok()
            .flatten()
            .is_none()
        {
            bail!("the {what} never started");
        }
    }
    let (mut page_lag, mut watch_lag) = (Vec::new(), Vec::new());
    for (id, user, password) in &followed {
        let spec = PhoneSpec {
            phone_id: id.clone(),
            user: user.clone(),
            password: password.clone(),
            domain: "dialtone".into(),
            registrars: vec![sb.udp(0)],
            managed: None,
        };
        let since = Instant::now();
        let sim = Sim::start(
            SimConfig {
                expires: 300,
                ..SimConfig::default()
            },
            vec![spec],
        )
        .await?;
        registered_at(&sim, true).await?;
        // Measured from the phone starting its REGISTER: the edge publishes the binding
        // as it answers, so the change often lands before the phone has read its 200 OK;
        // the digest round trips (about a millisecond) are in every figure alike.
        for (seen, lags) in [(&page_seen, &mut page_lag), (&watch_seen, &mut watch_lag)] {
            let at = seen_after(seen, id, "OPERATIONAL", since)
                .await
                .with_context(|| format!("phone {id} never shown OPERATIONAL"))?;
            lags.push(at - since);
        }
        let since = Instant::now();
        sim.stop(true, 1).await;
        for (seen, lags) in [(&page_seen, &mut page_lag), (&watch_seen, &mut watch_lag)] {
            let at = seen_after(seen, id, "OFFLINE", since)
                .await
                .with_context(|| format!("phone {id} never shown OFFLINE again"))?;
            lags.push(at - since);
        }
    }
    page_lag.sort();
    watch_lag.sort();

    println!("console over {n} phones, one node, {SAMPLES} requests per client after 10 warm-ups");
    println!(
        "{:<44}{:>20}{:>20}{:>10}",
        "first page of 50 phones, p50 / p99", "embedded", "etcd (1 member)", "target"
    );
    let both = |a: (Duration, Duration)| format!("{} / {}", ms(a.0), ms(a.1));
    for (what, e, d, target) in [
        (
            format!("console /phones (HTML, {} bytes)", embedded.bytes),
            embedded.console,
            etcd.console,
            "100 ms",
        ),
        (
            "REST phones?pageSize=50&expand=status".into(),
            embedded.rest,
            etcd.rest,
            "",
        ),
        (
            "gRPC ListPhones (no status)".into(),
            embedded.grpc,
            etcd.grpc,
            "",
        ),
    ] {
        println!("{what:<44}{:>20}{:>20}{target:>10}", both(e), both(d));
    }
    println!(
        "console/REST p99 ratio: {:.2} embedded, {:.2} etcd",
        embedded.console.1.as_secs_f64() / embedded.rest.1.as_secs_f64(),
        etcd.console.1.as_secs_f64() / etcd.rest.1.as_secs_f64()
    );
    println!(
        "from a REGISTER sent to its change shown ({} changes: {changes} phones registered, then unregistered)",
        page_lag.len()
    );
    println!("{:<44}{:>12}{:>12}{:>10}", "", "p50", "p99", "target");
    println!(
        "{:<44}{:>12}{:>12}{:>10}",
        "console event stream",
        ms(pct(&page_lag, 0.5)),
        ms(pct(&page_lag, 0.99)),
        "1 s"
    );
    println!(
        "{:<44}{:>12}{:>12}",
        "status role WatchPhoneStatuses",
        ms(pct(&watch_lag, 0.5)),
        ms(pct(&watch_lag, 0.99))
    );
    Ok(())
}
