//! A real rtpengine (Debian `rtpengine-daemon`, userspace forwarding) for the media tests,
//! on loopback, and a way to ask it what it holds over its `ng` port; and a real coturn
//! (Debian `coturn`) checking TURN REST API credentials with a shared secret.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use dialtone_media::{client::NgClient, ng};
use dialtone_proto::config::v1 as pb;

use crate::{ConfigClient, ports::free_port};

/// Registers `engine` as media server `id` of region `local` (with `turn_urls`) and gives
/// site hq the region, then `site`'s changes (its anchoring, its relay).
pub async fn serve_hq(
    cfg: &mut ConfigClient,
    (id, engine): (&str, &Rtpengine),
    turn_urls: Vec<String>,
    site: impl FnOnce(&mut pb::Site),
) -> anyhow::Result<()> {
    cfg.create_media_server(pb::CreateMediaServerRequest {
        media_server: Some(pb::MediaServer {
            id: id.into(),
            region: "local".into(),
            ng_address: engine.ng.to_string(),
            turn_urls,
            ..Default::default()
        }),
    })
    .await?;
    let mut hq = cfg
        .get_site(pb::GetRequest { id: "hq".into() })
        .await?
        .into_inner();
    hq.media_regions = vec!["local".into()];
    site(&mut hq);
    cfg.update_site(pb::UpdateSiteRequest {
        update_mask: crate::whole(),
        site: Some(hq),
    })
    .await?;
    Ok(())
}

/// An rtpengine process; killed when dropped.
pub struct Rtpengine {
    child: Option<Child>,
    /// Its `ng` control address.
    pub ng: SocketAddr,
    log: PathBuf,
    client: Arc<NgClient>,
}

impl Rtpengine {
    /// Starts one named `name` (its log in `dir`), with media ports in a range of 100
    /// below the ephemeral range, and waits until it answers `ping`.
    pub async fn start(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let base = crate::ports::free_block(5_000, 50, 100);
        Self::start_with_ports(dir, name, (base, base + 99), 6).await
    }

    /// [`Rtpengine::start`] with media ports `ports` (first, last) and log level `level`
    /// (6: info; a benchmark keeps it at 4, warnings).
    pub async fn start_with_ports(
        dir: &Path,
        name: &str,
        ports: (u16, u16),
        level: u8,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ng: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let log = dir.join(format!("rtpengine-{name}.log"));
        let child = Command::new("rtpengine")
            .args([
                "--config-file=none",
                "--foreground",
                "--interface=127.0.0.1",
                "--table=-1",
                "--log-stderr",
                "--delete-delay=0",
            ])
            .arg(format!("--log-level={level}"))
            .arg(format!("--listen-ng={ng}"))
            .arg(format!("--port-min={}", ports.0))
            .arg(format!("--port-max={}", ports.1))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("rtpengine (apt install rtpengine-daemon)")?;
        let client = NgClient::bind("127.0.0.1:0".parse()?).await?;
        let r = Rtpengine {
            child: Some(child),
            ng,
            log,
            client,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.client.ping(ng).await != Some(true) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "rtpengine never answered:\n{}",
                r.log_text()
            );
        }
        Ok(r)
    }

    /// The Call-IDs of the sessions it holds.
    pub async fn calls(&self) -> anyhow::Result<Vec<String>> {
        let reply = self.client.request(self.ng, &ng::list()).await?;
        Ok(ng::calls(&reply))
    }

    /// Sessions it has ended since it started, and how many of them ended by its own
    /// timeout rather than a `delete` (its `statistics`: `managedsessions`,
    /// `timeoutsessions`).
    pub async fn ended_sessions(&self) -> anyhow::Result<(i64, i64)> {
        let reply = self
            .client
            .request(
                self.ng,
                &dialtone_media::bencode::Value::dict([(
                    "command",
                    dialtone_media::bencode::Value::str("statistics"),
                )]),
            )
            .await?;
        let total = reply
            .get("statistics")
            .and_then(|s| s.get("totalstatistics"))
            .context("no totalstatistics in rtpengine's statistics")?;
        let count = |k| total.get(k).and_then(|v| v.int()).unwrap_or(0);
        Ok((count("managedsessions"), count("timeoutsessions")))
    }

    /// The Call-ID of a session it holds, once it holds one (within `within`).
    pub async fn session(&self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(call) = self.calls().await.unwrap_or_default().pop() {
                return Some(call);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Whether it holds no session (any more) within `within`.
    pub async fn emptied(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.calls().await.unwrap_or_default().is_empty() {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    /// Whether every party of `call_id` sent it packets, within `within`; the packets by
    /// tag as last seen.
    pub async fn both_ways(&self, call_id: &str, within: Duration) -> (bool, Vec<(String, i64)>) {
        let deadline = Instant::now() + within;
        loop {
            let p = self.packets(call_id).await.unwrap_or_default();
            let flowing = p.len() >= 2 && p.iter().all(|(_, n)| *n > 0);
            if flowing || Instant::now() > deadline {
                return (flowing, p);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Packets it received from each party of call `call_id`, by tag.
    pub async fn packets(&self, call_id: &str) -> anyhow::Result<Vec<(String, i64)>> {
        let reply = self.client.request(self.ng, &ng::query(call_id)).await?;
        Ok(ng::packets_by_tag(&reply))
    }

    /// Its process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it at once (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What it logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A coturn TURN server on loopback with the TURN REST API (`use-auth-secret`); killed
/// when dropped.
pub struct Coturn {
    child: Option<Child>,
    /// Its ICE server URL, `turn:127.0.0.1:PORT?transport=udp`.
    pub url: String,
    log: PathBuf,
}

impl Coturn {
    /// Starts one (its config and log in `dir`) checking credentials against `secret`,
    /// relaying to loopback peers (where the tests' rtpengine is), and waits until it
    /// listens.
    pub async fn start(dir: &Path, secret: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = free_port();
        // Relay ports above the kernel's ephemeral range (to 60999) and apart from every
        // range the tests draw ports from: coturn binds them with SO_REUSEADDR, and a later
        // bind of a port a node holds that way would take its datagrams.
        let base = crate::ports::free_block(61_000, 40, 100);
        let conf = dir.join("turnserver.conf");
        // The secret in a file, as a deployment keeps it (not on the command line).
        std::fs::write(
            &conf,
            format!(
                "listening-ip=127.0.0.1\nrelay-ip=127.0.0.1\nlistening-port={port}\n\
                 min-port={base}\nmax-port={}\nuse-auth-secret\nstatic-auth-secret={secret}\n\
                 realm=dialtone\nfingerprint\nno-tls\nno-dtls\nno-cli\nallow-loopback-peers\n\
                 simple-log\nlog-file=stdout\nverbose\n",
                base + 99
            ),
        )?;
        let log = dir.join("coturn.log");
        let child = Command::new("turnserver")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::null())
            .spawn()
            .context("turnserver (apt install coturn)")?;
        let c = Coturn {
            child: Some(child),
            url: format!("turn:127.0.0.1:{port}?transport=udp"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !c.log_text().contains("UDP listener opened on") {
            anyhow::ensure!(
                Instant::now() < deadline,
                "coturn never listened:\n{}",
                c.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(c)
    }

    /// What it logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
