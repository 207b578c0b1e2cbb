//! Kamailio (Debian's) as the benchmarks' peer: started from a configuration under
//! `loadtest/peers/kamailio` with its credentials in an in-memory table, and stopped with
//! every worker it forked.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context;

use crate::procfs::tree;

/// Where the peers' configurations and SIPp scenarios are.
pub fn peer_configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/kamailio")
}

/// Kamailio and the workers it forks: all stopped when dropped, also on an early return
/// (a SIGKILL of the main process alone leaves the workers running).
pub struct KamailioTree(pub Child);

impl std::ops::Deref for KamailioTree {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KamailioTree {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KamailioTree {
    fn drop(&mut self) {
        let pids = tree(self.0.id());
        for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill")
                .arg(signal)
                .args(pids.iter().map(u32::to_string))
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = self.0.wait();
    }
}

/// Starts Kamailio with `cfg` (a file of `loadtest/peers/kamailio`) on 127.0.0.1:`port`,
/// its credentials table holding `creds` (user, password), its files under `dir`; fails
/// when it is not running 3 s later (its log says why).
pub async fn start(
    dir: &Path,
    cfg: &str,
    port: u16,
    creds: &[(String, String)],
) -> anyhow::Result<KamailioTree> {
    start_with(dir, cfg, port, creds, None).await
}

/// [`start`], its media anchored at the rtpengine whose ng port is `rtpengine` (the cfg's
/// `WITH_RTPENGINE` part) when given.
pub async fn start_with(
    dir: &Path,
    cfg: &str,
    port: u16,
    creds: &[(String, String)],
    rtpengine: Option<std::net::SocketAddr>,
) -> anyhow::Result<KamailioTree> {
    let htdb = dir.join("htdb");
    std::fs::create_dir_all(&htdb)?;
    std::fs::create_dir_all(dir.join("run"))?;
    let mut t = String::from(
        "id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int) \n",
    );
    for (i, (u, p)) in creds.iter().enumerate() {
        t.push_str(&format!("{}:{u}:0:0:{p}:0\n", i + 1));
    }
    std::fs::write(htdb.join("htable"), t)?;
    std::fs::write(
        htdb.join("version"),
        "table_name(string) table_version(int) \nhtable:2\n",
    )?;
    let cfg = std::fs::read_to_string(peer_configs().join(cfg))?
        .replace("/tmp/kamabench", &dir.display().to_string())
        .replace("127.0.0.1:15060", &format!("127.0.0.1:{port}"))
        .replace(
            "127.0.0.1:22223",
            &rtpengine.map_or("127.0.0.1:22223".into(), |a| a.to_string()),
        );
    let cfg_path = dir.join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg)?;
    let log = std::fs::File::create(dir.join("kamailio.log"))?;
    let child = Command::new("kamailio")
        .arg("-f")
        .arg(&cfg_path)
        .args(["-DD", "-E", "-m", "512", "-M", "16", "-A", "BIGBUF"])
        .args(
            rtpengine
                .map(|_| ["-A", "WITH_RTPENGINE"])
                .into_iter()
                .flatten(),
        )
        .arg("-P")
        .arg(dir.join("run/kamailio.pid"))
        .arg("-Y")
        .arg(dir.join("run"))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting kamailio (apt install kamailio)")?;
    let mut k = KamailioTree(child);
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Ok(Some(s)) = k.try_wait() {
        anyhow::bail!(
            "kamailio exited with {s}; see {}",
            dir.join("kamailio.log").display()
        );
    }
    Ok(k)
}
