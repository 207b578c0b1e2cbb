//! One `dialtone serve` process: how it is started, waited on, probed, stopped, and the
//! gRPC clients to it.

use std::{
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use dialtone_proto::{
    config::v1::config_service_client::ConfigServiceClient,
    provisioning::v1::provisioning_service_client::ProvisioningServiceClient,
    status::v1::status_service_client::StatusServiceClient,
};
use tonic::transport::Channel;

use crate::{
    clients::{BearerAuth, ConfigClient, EdgeClient, ProvisioningClient, StatusClient},
    http::http_get,
    ports::{SipPorts, free_port},
    process::{binary, kill9, wait_or_kill},
};

/// A running `dialtone serve` process.
pub struct Node {
    pub node_id: String,
    pub grpc_url: String,
    pub admin_url: String,
    pub sip: SipPorts,
    /// The provisioning server's HTTPS port (used when the node runs that role).
    pub https: u16,
    pub data_dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    binary: Option<PathBuf>,
    child: Option<Child>,
    log: PathBuf,
    spec: NodeSpec,
}

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub node_id: String,
    pub roles: String,
    /// etcd endpoints; empty: embedded store in the data dir.
    pub etcd: Vec<String>,
    pub store_prefix: String,
    pub tokens_file: Option<PathBuf>,
    pub lease_ttl: u32,
    /// One key file shared by the nodes (required with etcd), passed as both
    /// `--sip-nonce-key-file` and `--credentials-key-file`.
    pub key_file: Option<PathBuf>,
    /// More `serve` flags (e.g. `--sip-digest-algorithms=md5`).
    pub extra_args: Vec<String>,
    /// Environment variables of the process (e.g. `OTEL_*`).
    pub env: Vec<(String, String)>,
    /// Another build of `dialtone` to run (benchmarks compare two builds); none: this
    /// workspace's.
    pub binary: Option<PathBuf>,
}

impl Node {
    /// Starts a node and waits for /readyz. Ports are picked free, but another process
    /// may take one before the node binds it: then the node starts again on new ports.
    pub async fn start(spec: &NodeSpec, data_dir: PathBuf) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            let mut node = Node::on_free_ports(spec, data_dir.clone());
            match node.spawn().await {
                Ok(()) => return Ok(node),
                Err(e) if attempt < 5 && e.to_string().contains("Address already in use") => {
                    eprintln!(
                        "node {}: a port was taken meanwhile; new ports",
                        spec.node_id
                    );
                    let _ = std::fs::remove_file(&node.log);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn on_free_ports(spec: &NodeSpec, data_dir: PathBuf) -> Self {
        let grpc = free_port();
        let admin = free_port();
        let sip = SipPorts::pick();
        let https = free_port();
        let mut args = vec![
            "serve".to_string(),
            format!("--provisioning-https=127.0.0.1:{https}"),
            format!("--roles={}", spec.roles),
            format!("--node-id={}", spec.node_id),
            format!("--listen-grpc=127.0.0.1:{grpc}"),
            format!("--listen-admin=127.0.0.1:{admin}"),
            "--listen-api=127.0.0.1:0".to_string(),
            format!("--data-dir={}", data_dir.display()),
            format!("--lease-ttl={}", spec.lease_ttl),
            format!("--store-prefix={}", spec.store_prefix),
            format!("--sip-udp=127.0.0.1:{}", sip.udp),
            format!("--sip-tcp=127.0.0.1:{}", sip.tcp),
            format!("--sip-tls=127.0.0.1:{}", sip.tls),
            format!("--sip-ws=127.0.0.1:{}", sip.ws),
            format!("--sip-wss=127.0.0.1:{}", sip.wss),
        ];
        if let Some(k) = &spec.key_file {
            args.push(format!("--sip-nonce-key-file={}", k.display()));
            args.push(format!("--credentials-key-file={}", k.display()));
        }
        args.extend(spec.extra_args.iter().cloned());
        if !spec.etcd.is_empty() {
            args.push(format!("--etcd={}", spec.etcd.join(",")));
        }
        if let Some(t) = &spec.tokens_file {
            args.push(format!("--api-tokens={}", t.display()));
        }
        Node {
            node_id: spec.node_id.clone(),
            grpc_url: format!("http://127.0.0.1:{grpc}"),
            admin_url: format!("http://127.0.0.1:{admin}"),
            sip,
            https,
            log: data_dir.join("node.log"),
            data_dir,
            args,
            env: spec.env.clone(),
            binary: spec.binary.clone(),
            child: None,
            spec: spec.clone(),
        }
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        self.spawn_within(Duration::from_secs(30)).await
    }

    /// Starts the process and waits up to `ready` for /readyz.
    async fn spawn_within(&mut self, ready: Duration) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let bin = self.binary.clone().unwrap_or_else(|| binary("dialtone"));
        let child = Command::new(bin)
            .args(&self.args)
            .env_remove("DIALTONE_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.wait_ready(ready).await
    }

    /// Waits until /readyz answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "node {} exited with {status}: {}",
                    self.node_id,
                    self.log_text()
                );
            }
            if self.http_status("/readyz").await == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} not ready after {timeout:?}: {}",
                    self.node_id,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The node's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on the admin port; returns the status code (None if it does not answer).
    pub async fn http_status(&self, path: &str) -> Option<u16> {
        self.http_get(path).await.map(|(s, _)| s)
    }

    /// GET on the admin port with a plain HTTP/1.1 client; returns status and body.
    pub async fn http_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.admin_url.trim_start_matches("http://"), path).await
    }

    /// A sample from `/metrics`: the first line of metric `name` whose labels contain
    /// `label` (`""` for any), as a number; None if there is none.
    pub async fn metric(&self, name: &str, label: &str) -> Option<i64> {
        let (_, text) = self.http_get("/metrics").await?;
        text.lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
            .find(|l| l.contains(label))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// How often this status node resumed a watch that fell behind its live changes,
    /// `from` one way: `history`, `changed` (the phones changed since) or `snapshot` (the
    /// whole fleet again); 0 when the metric has no sample yet.
    pub async fn status_watch_resumes(&self, from: &str) -> i64 {
        let label = format!("from=\"{from}\"");
        self.metric("dialtone_status_watch_resumes_total", &label)
            .await
            .unwrap_or(0)
    }

    /// SIGKILLs the process (a crash).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
    }

    /// How the node was started: another process with the same node id and flags (on ports
    /// of its own) starts from it.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// Waits up to `within` for the process to exit by itself (SIGKILLed after that, an
    /// error).
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let mut c = self.child.take().context("not running")?;
        let what = format!("node {}", self.node_id);
        wait_or_kill(&mut c, within, &what)
    }

    /// SIGTERMs the process and waits for it to exit (graceful shutdown).
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut c = self.child.take().context("not running")?;
        // SAFETY: kill(2) with a pid we own; no memory is touched.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let what = format!("node {} (SIGTERM)", self.node_id);
        wait_or_kill(&mut c, Duration::from_secs(15), &what)
    }

    /// Starts the process again with the same flags and data dir.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn().await
    }

    /// [`Node::restart`], waiting up to `ready` for it to be ready (an edge loading a large
    /// fleet's credentials from a busy etcd takes longer than the usual 30 s).
    pub async fn restart_within(&mut self, ready: Duration) -> anyhow::Result<()> {
        self.kill9();
        self.spawn_within(ready).await
    }

    /// Starts the process again after [`Node::terminate`] (a rollout's new pod), with the
    /// same flags and data dir.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "node {} still runs", self.node_id);
        self.spawn().await
    }

    /// Starts the process again after [`Node::terminate`] from another build of `dialtone`
    /// (`None`: this workspace's), with the same flags and data dir: a rolling upgrade's
    /// new pod.
    pub async fn start_again_as(&mut self, binary: Option<PathBuf>) -> anyhow::Result<()> {
        self.binary = binary;
        self.start_again().await
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The URL of the node's REST API (config role), as it wrote it once listening.
    pub fn api_url(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("api-endpoint"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    /// The admin token generated in the data dir (embedded dev mode).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    /// A channel to the node's gRPC port and the interceptor that sends `token`.
    async fn authed(&self, token: &str) -> anyhow::Result<(Channel, BearerAuth)> {
        let channel = Channel::from_shared(self.grpc_url.clone())?
            .connect()
            .await?;
        Ok((channel, BearerAuth(format!("Bearer {token}").parse()?)))
    }

    /// An edge client authenticated with `token`.
    pub async fn edge_client(&self, token: &str) -> anyhow::Result<EdgeClient> {
        let (c, a) = self.authed(token).await?;
        Ok(
            dialtone_proto::edge::v1::edge_service_client::EdgeServiceClient::with_interceptor(
                c, a,
            ),
        )
    }

    /// The calls up on this edge that phone `phone` is in (every call for "").
    pub async fn calls_now(
        &self,
        token: &str,
        phone: &str,
    ) -> anyhow::Result<Vec<dialtone_proto::edge::v1::Call>> {
        let mut edge = self.edge_client(token).await?;
        let r = edge
            .list_calls(dialtone_proto::edge::v1::ListCallsRequest {
                phone_id: phone.to_owned(),
                page_size: 0,
            })
            .await?;
        Ok(r.into_inner().calls)
    }

    /// [`Node::calls_now`] once there are `n` of them (within 5 s; the last list seen
    /// otherwise): an edge records a call once its INVITE's delivery has ended.
    pub async fn calls_of(
        &self,
        token: &str,
        phone: &str,
        n: usize,
    ) -> anyhow::Result<Vec<dialtone_proto::edge::v1::Call>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let calls = self.calls_now(token, phone).await?;
            if calls.len() == n || std::time::Instant::now() >= deadline {
                return Ok(calls);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A provisioning client authenticated with `token`.
    pub async fn provisioning_client(&self, token: &str) -> anyhow::Result<ProvisioningClient> {
        let (c, a) = self.authed(token).await?;
        Ok(ProvisioningServiceClient::with_interceptor(c, a))
    }

    /// A status client authenticated with `token`.
    pub async fn status_client(&self, token: &str) -> anyhow::Result<StatusClient> {
        let (c, a) = self.authed(token).await?;
        Ok(StatusServiceClient::with_interceptor(c, a).max_decoding_message_size(64 << 20))
    }

    /// A config client authenticated with `token`.
    pub async fn config_client(&self, token: &str) -> anyhow::Result<ConfigClient> {
        let (c, a) = self.authed(token).await?;
        Ok(ConfigServiceClient::with_interceptor(c, a).max_decoding_message_size(64 << 20))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}
