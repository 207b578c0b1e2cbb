//! Real etcd clusters on loopback.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use dialtone_store::{EtcdStore, Store};

use crate::{ports::free_port, process::kill9};

/// One etcd member.
pub struct EtcdMember {
    pub name: String,
    pub client_url: String,
    peer_url: String,
    child: Option<Child>,
}

impl EtcdMember {
    /// The member's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A real etcd cluster of N members on loopback.
pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut members: Vec<EtcdMember> = (0..n)
            .map(|i| EtcdMember {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{}", free_port()),
                peer_url: format!("http://127.0.0.1:{}", free_port()),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.child = Some(spawn_etcd(m, dir.path(), &initial)?);
        }
        let cluster = EtcdCluster { members, dir };
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// The members' data and logs (`{name}.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Client endpoints of the members still running.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client_url.clone())
            .collect()
    }

    /// Every client endpoint, running or not.
    pub fn all_endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            kill9(&mut c);
        }
    }

    /// Freezes member `i` (SIGSTOP): it holds its connections and answers nothing, as a
    /// member starved of CPU or disk does, until [`EtcdCluster::resume`].
    pub fn pause(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    /// Lets a paused member run again (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    fn signal(&self, i: usize, sig: i32) {
        if let Some(pid) = self.members[i].pid() {
            // SAFETY: a signal to a child this cluster spawned and still holds.
            unsafe { libc::kill(pid as i32, sig) };
        }
    }

    /// Restarts member `i` on its old data.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let initial = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let child = spawn_etcd(&self.members[i], self.dir.path(), &initial)?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// A store on this cluster under a fresh root.
    pub async fn store(&self, root: &str) -> anyhow::Result<Store> {
        Ok(Store::Etcd(
            EtcdStore::connect(&self.all_endpoints(), root).await?,
        ))
    }

    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_secs(2),
                EtcdStore::connect(&self.endpoints(), "/probe/"),
            )
            .await
                && Store::Etcd(s)
                    .put("ready", b"1".to_vec(), None)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("etcd cluster not ready after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn spawn_etcd(m: &EtcdMember, dir: &Path, initial: &str) -> anyhow::Result<Child> {
    let data = dir.join(&m.name);
    let state = if data.exists() { "existing" } else { "new" };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{}.log", m.name)))?;
    Command::new(env_or("DIALTONE_TEST_ETCD", "etcd"))
        .args(["--name", &m.name])
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--listen-client-urls",
            &m.client_url,
            "--advertise-client-urls",
            &m.client_url,
        ])
        .args([
            "--listen-peer-urls",
            &m.peer_url,
            "--initial-advertise-peer-urls",
            &m.peer_url,
        ])
        .args([
            "--initial-cluster",
            initial,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            "dialtone-test",
        ])
        // History compacted past 100,000 revisions, as the Helm chart runs it, so a fleet's
        // refreshes do not fill the backend; and room for a million phones' keys (the
        // chart's `etcd.quotaBackendBytes`).
        .args([
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=100000",
            "--quota-backend-bytes=8589934592",
        ])
        .args([
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--logger",
            "zap",
            "--log-level",
        ])
        .arg(env_or("DIALTONE_TEST_ETCD_LOG_LEVEL", "error"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting etcd (scripts/deps.sh --test installs it)")
}

/// Environment variable `name`, else `default`. The sandbox's etcd is
/// `DIALTONE_TEST_ETCD` (a path; else `etcd` on the PATH, which the TLS test, the chart and
/// the compose checks run in any case), logging at `DIALTONE_TEST_ETCD_LOG_LEVEL` (`error`;
/// `info` shows each compaction and every request that took too long, for a benchmark's
/// investigation).
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                kill9(&mut c);
            }
        }
    }
}
