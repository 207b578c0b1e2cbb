//! A WebRTC phone in a real browser: `tests/browser/phone.mjs` runs JsSIP (npm) in Debian's
//! headless Chromium through Playwright (`playwright-core`, no browser download), with
//! Chromium's fake microphone. It registers over WSS, answers calls by itself, and talks
//! JSON lines: commands on its stdin, events on its stdout (kept here, and in a log file
//! shown when a test fails). `scripts/deps.sh --test` installs Chromium and the npm
//! packages.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::fleet::Seeded;

/// The browser phone's process; killed if dropped without [`BrowserPhone::stop`].
pub struct BrowserPhone {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    events: Arc<Mutex<Vec<Value>>>,
    /// Every line it wrote (shown when a test fails).
    pub log: PathBuf,
}

/// Where `phone.mjs` and its `node_modules` are.
fn driver_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

impl BrowserPhone {
    /// A free port for the page: its origin, `http://127.0.0.1:{port}`, is what the edges
    /// must allow (`--sip-ws-allowed-origins`).
    pub fn page_port() -> u16 {
        crate::free_port()
    }

    /// Starts the browser phone, its page on `page_port`, registering `p` at `wss`
    /// (`wss://ip:port`), with `ice_servers` (RTCIceServer objects) and
    /// `ice_transport_policy` (`all` or `relay`).
    pub fn start(
        dir: &Path,
        page_port: u16,
        wss: &str,
        p: &Seeded,
        ice_servers: Value,
        ice_transport_policy: &str,
    ) -> anyhow::Result<Self> {
        let driver = driver_dir();
        if !driver.join("node_modules/playwright-core").exists() {
            bail!(
                "{}/node_modules is missing: run `bash scripts/deps.sh --test`",
                driver.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let log = dir.join(format!("browser-{}.log", p.sip_user));
        let cfg = json!({
            "wss": wss,
            "user": p.sip_user,
            "password": p.password,
            "domain": "dialtone",
            "iceServers": ice_servers,
            "iceTransportPolicy": ice_transport_policy,
            "pagePort": page_port,
        });
        let mut child = Command::new("node")
            .arg(driver.join("phone.mjs"))
            .arg(cfg.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(
                dir.join(format!("browser-{}.err", p.sip_user)),
            )?)
            .spawn()
            .context("node (apt install nodejs)")?;
        let stdout = child.stdout.take().expect("piped");
        let events = Arc::new(Mutex::new(Vec::new()));
        let (seen, path) = (events.clone(), log.clone());
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(path).ok();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    seen.lock().push(v);
                }
            }
        });
        Ok(BrowserPhone {
            stdin: child.stdin.take(),
            child: Some(child),
            events,
            log,
        })
    }

    fn send(&mut self, cmd: Value) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stopped")?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Calls `target` (a SIP URI).
    pub fn call(&mut self, target: &str) -> anyhow::Result<()> {
        self.send(json!({"cmd": "call", "target": target}))
    }

    /// Hangs up the current call.
    pub fn hang_up(&mut self) -> anyhow::Result<()> {
        self.send(json!({"cmd": "hangup"}))
    }

    /// How many events named `name` it has reported.
    pub fn count(&self, name: &str) -> usize {
        let events = self.events.lock();
        events.iter().filter(|e| e["event"] == name).count()
    }

    /// Waits (up to `within`) until it has reported `n` events named `name`; the last one.
    pub async fn wait_event(&self, name: &str, n: usize, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            {
                let events = self.events.lock();
                let mut found = events.iter().filter(|e| e["event"] == name);
                if let Some(v) = found.nth(n - 1) {
                    return Some(v.clone());
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's `getStats()` of the current call: audio packets received and sent, and the
    /// local candidate types of the nominated pairs.
    pub async fn stats(&mut self) -> anyhow::Result<(u64, u64, Vec<String>)> {
        let n = self.count("stats") + 1;
        self.send(json!({"cmd": "stats"}))?;
        let v = self
            .wait_event("stats", n, Duration::from_secs(5))
            .await
            .context("no stats")?;
        let candidates = v["candidates"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok((
            v["inbound"].as_u64().unwrap_or(0),
            v["outbound"].as_u64().unwrap_or(0),
            candidates,
        ))
    }

    /// Closes the browser and waits for the process.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let _ = self.send(json!({"cmd": "quit"}));
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            crate::wait_or_kill(&mut c, Duration::from_secs(10), "the browser phone")?;
        }
        Ok(())
    }

    /// What it reported, and what node and Chromium wrote on stderr.
    pub fn log_text(&self) -> String {
        let err = self.log.with_extension("err");
        format!(
            "{}\nstderr:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }
}

impl Drop for BrowserPhone {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::kill9(&mut c);
        }
    }
}
