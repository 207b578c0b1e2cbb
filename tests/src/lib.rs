//! The cluster sandbox used by every cross-service test: real `etcd` members and real
//! `dialtone` processes with chosen roles, on 127.0.0.1 ports chosen by the OS, waited on
//! until ready, killed (and their files removed) when dropped.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub mod fleet;
pub mod pki;
pub mod sip;
pub mod softphones;

use anyhow::{Context, bail};
use dialtone_proto::config::v1::config_service_client::ConfigServiceClient;
use dialtone_store::{EtcdStore, Store};
use tonic::{
    metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel,
};

/// GET `path` from `addr` (`host:port`) with a plain HTTP/1.1 client (no keep-alive);
/// returns status and body, None when it does not answer within a few seconds.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = &buf[end + 4..];
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The payload of a chunked HTTP/1.1 body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..eol]);
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        let rest = &body[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// A free TCP port on 127.0.0.1 (the OS picks it; it is released for the child to bind).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A built binary of this workspace (`cargo build --bins` must have run: the test script does).
pub fn binary(name: &str) -> PathBuf {
    // Tests live in target/PROFILE/deps, binaries (like the benchmarks) in target/PROFILE.
    let exe = std::env::current_exe().expect("current exe");
    let dirs = [exe.parent(), exe.parent().and_then(Path::parent)];
    let found = dirs
        .into_iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "{name} is missing next to {}: run `cargo build --bins` first",
            exe.display()
        )
    })
}

/// Runs `dialtone serve ARGS`, which must stop by itself (within 30 s) with a failure;
/// returns what it printed on stderr.
pub fn serve_refused(args: &[String], what: &str) -> String {
    use std::io::Read;
    let mut child = std::process::Command::new(binary("dialtone"))
        .arg("serve")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dialtone");
    let status = wait_or_kill(&mut child, Duration::from_secs(30), what)
        .unwrap_or_else(|e| panic!("{what}: the node kept running: {e}"));
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(!status.success(), "{what}: exit {status}");
    err
}

/// Runs a sipvicious tool (`svwar`, `svcrack`) for at most 60 s; returns what it printed.
pub fn sipvicious(tool: &str, args: &[String]) -> String {
    let out = std::process::Command::new("timeout")
        .arg("60")
        .arg(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sipvicious (apt install sipvicious)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Kills a child with SIGKILL and reaps it.
pub(crate) fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits up to `within` for a child that was asked to stop (or must stop by itself);
/// SIGKILLs it after that.
pub fn wait_or_kill(
    child: &mut Child,
    within: Duration,
    what: &str,
) -> anyhow::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if Instant::now() > deadline {
            kill9(child);
            bail!("{what} did not stop within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One etcd member.
pub struct EtcdMember {
    pub name: String,
    pub client_url: String,
    peer_url: String,
    child: Option<Child>,
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
    Command::new("etcd")
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
        .args([
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--logger",
            "zap",
            "--log-level",
            "error",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting etcd (install Debian's etcd-server)")
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

/// Where a node's SIP edge listens (127.0.0.1, OS-chosen ports; UDP and TCP share one).
#[derive(Clone, Copy, Debug)]
pub struct SipPorts {
    pub udp: u16,
    pub tcp: u16,
    pub tls: u16,
    pub ws: u16,
    pub wss: u16,
}

impl SipPorts {
    fn pick() -> Self {
        let p = free_port_pair();
        SipPorts {
            udp: p,
            tcp: p,
            tls: free_port(),
            ws: free_port(),
            wss: free_port(),
        }
    }
}

/// A port free on both TCP and UDP of 127.0.0.1 (SIP uses the same number for both), and
/// the next one free on TCP too (baresip listens for TLS there). Drawn below Linux's
/// ephemeral range (32768-60999), so the outgoing connections other tests open at the
/// same time cannot take it between this check and the bind of whoever uses it.
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let p = 20_000 + 2 * (rand::random::<u16>() % 6_000);
        let free = std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok();
        if free {
            return p;
        }
    }
    panic!("no port free on both tcp and udp")
}

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
        }
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
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
        self.wait_ready(Duration::from_secs(30)).await
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

    /// SIGKILLs the process (a crash).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
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

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
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

/// Adds a bearer token to every call.
#[derive(Clone)]
pub struct BearerAuth(pub MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// A config client with a bearer token.
pub type ConfigClient = ConfigServiceClient<InterceptedService<Channel, BearerAuth>>;
pub type ProvisioningClient = ProvisioningServiceClient<InterceptedService<Channel, BearerAuth>>;
use dialtone_proto::provisioning::v1::provisioning_service_client::ProvisioningServiceClient;
/// A status client with a bearer token.
pub type StatusClient = StatusServiceClient<InterceptedService<Channel, BearerAuth>>;
use dialtone_proto::status::v1::status_service_client::StatusServiceClient;
/// An edge client with a bearer token.
pub type EdgeClient = dialtone_proto::edge::v1::edge_service_client::EdgeServiceClient<
    InterceptedService<Channel, BearerAuth>,
>;

/// Tokens every sandbox node accepts: `admin` (all), `viewer` (view) and `adder` (view+add).
pub const ADMIN_TOKEN: &str = "dt_test_admin_token_0000000000000000000000";
pub const VIEWER_TOKEN: &str = "dt_test_viewer_token_000000000000000000000";
pub const ADDER_TOKEN: &str = "dt_test_adder_token_0000000000000000000000";

/// etcd (optional) plus nodes, in the manner of Quickwit's `ClusterSandbox`.
pub struct ClusterSandbox {
    pub etcd: Option<EtcdCluster>,
    pub nodes: Vec<Node>,
    pub prefix: String,
    dir: tempfile::TempDir,
}

impl ClusterSandbox {
    /// One all-roles node on the embedded store (the dev mode, generated admin token).
    pub async fn embedded() -> anyhow::Result<Self> {
        Self::embedded_with(&[]).await
    }

    /// Like [`ClusterSandbox::embedded`], with more `serve` flags.
    pub async fn embedded_with(extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::embedded_with_env(extra_args, &[]).await
    }

    /// Like [`ClusterSandbox::embedded_with`], with environment variables for the node.
    pub async fn embedded_with_env(
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let spec = NodeSpec {
            node_id: "solo".into(),
            roles: "all".into(),
            etcd: vec![],
            store_prefix: dialtone_store::DEFAULT_ROOT.into(),
            tokens_file: None,
            lease_ttl: 5,
            key_file: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            binary: None,
        };
        let node = Node::start(&spec, dir.path().join("solo")).await?;
        Ok(ClusterSandbox {
            etcd: None,
            nodes: vec![node],
            prefix: spec.store_prefix,
            dir,
        })
    }

    /// An etcd cluster of `members` and one node per entry of `roles`, all on it.
    pub async fn with_etcd(members: usize, roles: &[&str]) -> anyhow::Result<Self> {
        Self::with_etcd_args(members, roles, &[]).await
    }

    /// Like [`ClusterSandbox::with_etcd`], with more `serve` flags for every node.
    pub async fn with_etcd_args(
        members: usize,
        roles: &[&str],
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::with_etcd_binaries(members, roles, extra_args, &[]).await
    }

    /// Like [`ClusterSandbox::with_etcd_args`], where node `i` runs `binaries[i]` when
    /// that is given (another build of `dialtone`).
    pub async fn with_etcd_binaries(
        members: usize,
        roles: &[&str],
        extra_args: &[&str],
        binaries: &[Option<PathBuf>],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let etcd = EtcdCluster::start(members).await?;
        let tokens = dir.path().join("tokens.toml");
        std::fs::write(
            &tokens,
            format!(
                "[[token]]\nname = \"admin\"\ntoken = \"{ADMIN_TOKEN}\"\npermissions = [\"telephony:plugin:all\"]\n\
                 [[token]]\nname = \"viewer\"\ntoken = \"{VIEWER_TOKEN}\"\npermissions = [\"telephony:sitesmanagedphones:view\"]\n\
                 [[token]]\nname = \"adder\"\ntoken = \"{ADDER_TOKEN}\"\npermissions = [\"telephony:sitesmanagedphones:view\", \"telephony:sitesmanagedphones:add\"]\n"
            ),
        )?;
        let prefix = format!("/dialtone-test-{}/", std::process::id());
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, format!("{:064x}\n", std::process::id()))?;
        let mut nodes = Vec::new();
        for (i, r) in roles.iter().enumerate() {
            let spec = NodeSpec {
                node_id: format!("node-{i}"),
                roles: r.to_string(),
                etcd: etcd.all_endpoints(),
                store_prefix: prefix.clone(),
                tokens_file: Some(tokens.clone()),
                lease_ttl: 3,
                key_file: Some(key_file.clone()),
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
                env: vec![],
                binary: binaries.get(i).cloned().flatten(),
            };
            nodes.push(Node::start(&spec, dir.path().join(format!("node-{i}"))).await?);
        }
        Ok(ClusterSandbox {
            etcd: Some(etcd),
            nodes,
            prefix,
            dir,
        })
    }

    /// A store client on the sandbox's store (etcd only; the embedded store is private to
    /// its process).
    pub async fn store(&self) -> anyhow::Result<Store> {
        match &self.etcd {
            Some(e) => e.store(&self.prefix).await,
            None => bail!("the embedded store belongs to its node"),
        }
    }

    /// (node id, UDP `127.0.0.1:port`) of the nodes at `indexes` (edges), as
    /// [`fleet::seed_site_on`] takes them.
    pub fn udp_edges(&self, indexes: &[usize]) -> Vec<(&str, String)> {
        indexes
            .iter()
            .map(|&i| {
                let n = &self.nodes[i];
                (n.node_id.as_str(), format!("127.0.0.1:{}", n.sip.udp))
            })
            .collect()
    }

    /// The sandbox's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
