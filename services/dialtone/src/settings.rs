//! `dialtone serve` configuration: flags, then `DIALTONE_*` environment variables, then an
//! optional TOML file (`--config`, keys are the long flag names), then defaults.
//! Every value is validated before anything starts; errors name the flag and the value.

use std::{collections::HashSet, ffi::OsString, net::SocketAddr, path::PathBuf};

use anyhow::{Context, bail};
use clap::{CommandFactory, Parser};

/// Roles this build can run.
pub const ROLES: [&str; 4] = ["config", "edge", "provisioning", "status"];

/// File in the data dir holding the generated credentials key (dev mode, mode 0600).
pub const CREDENTIALS_KEY_FILE: &str = "credentials-key";

/// `dialtone serve` flags.
#[derive(Parser, Debug, Clone)]
#[command(name = "dialtone serve", args_override_self = true)]
pub struct ServeConfig {
    /// Optional TOML file with any of these settings (keys are the long flag names,
    /// e.g. `listen-grpc = "0.0.0.0:7700"`); flags and environment variables win over it.
    #[arg(long, env = "DIALTONE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Roles to run, comma-separated, or `all` (config, edge, provisioning, status).
    #[arg(
        long,
        env = "DIALTONE_ROLES",
        default_value = "all",
        value_delimiter = ','
    )]
    pub roles: Vec<String>,
    /// Directory of the embedded store, the generated admin token and the endpoint file.
    /// Default: $XDG_DATA_HOME/dialtone (~/.local/share/dialtone).
    #[arg(long, env = "DIALTONE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// etcd endpoints (comma-separated `http://host:port`); without it the embedded store
    /// in --data-dir is used (one node only).
    #[arg(
        long,
        env = "DIALTONE_ETCD",
        value_delimiter = ',',
        value_name = "URLS"
    )]
    pub etcd: Vec<String>,
    /// Root of Dialtone's keys in the store.
    #[arg(long, env = "DIALTONE_STORE_PREFIX", default_value = dialtone_store::DEFAULT_ROOT)]
    pub store_prefix: String,
    /// Address of the gRPC port (every service of the process).
    #[arg(
        long,
        env = "DIALTONE_LISTEN_GRPC",
        default_value = "127.0.0.1:7700",
        value_name = "ADDR"
    )]
    pub listen_grpc: SocketAddr,
    /// Address of the config role's REST API (`/api/v2/...`, shaped after Genesys Cloud's
    /// telephony API; over TLS with the --grpc-tls-cert certificate when given; port 0:
    /// one the OS picks, written to DATA_DIR/api-endpoint).
    #[arg(
        long,
        env = "DIALTONE_LISTEN_API",
        default_value = "127.0.0.1:7702",
        value_name = "ADDR"
    )]
    pub listen_api: SocketAddr,
    /// Address of the admin HTTP port (/healthz, /readyz, /metrics).
    #[arg(
        long,
        env = "DIALTONE_LISTEN_ADMIN",
        default_value = "127.0.0.1:7701",
        value_name = "ADDR"
    )]
    pub listen_admin: SocketAddr,
    /// This node's id (lowercase letters, digits, '-'); default: derived from --node-name,
    /// else from the host name. One process at a time holds an edge's id: one started with
    /// the id of an edge still running claims it, and the older one stops (exit status 1).
    #[arg(long, env = "DIALTONE_NODE_ID")]
    pub node_id: Option<String>,
    /// A host or Kubernetes node name to derive the node id from when --node-id is not
    /// given: lowercased, '.' and '_' made '-', and a name longer than 63 characters cut
    /// with a hash of the whole kept. The chart sets it to the node's name for a DaemonSet
    /// of edges, so an edge keeps its id across rollouts.
    #[arg(long, env = "DIALTONE_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// TTL of the node's lease in seconds (2-60): how long a dead node's records linger.
    #[arg(long, env = "DIALTONE_LEASE_TTL", default_value_t = 10, value_parser = clap::value_parser!(i64).range(2..=60))]
    pub lease_ttl: i64,
    /// Leases an edge hangs its phones' bindings on, chosen by phone id, besides its own
    /// (0-1024; 0: on the node's lease, with its membership record). Binding leases outlive
    /// the node's lease by 2 s at least, so when an edge dies its membership record goes
    /// first, in a transaction of its own, and the status role shows its phones DEGRADED at
    /// the TTL; each lives up to 120 s longer again, spread by shard, so etcd then deletes
    /// the bindings a few leases at a time. etcd 3.5 answers a lease refresh only once it
    /// has applied what it committed: one lease of 666,000 bindings held etcd 11 s and every
    /// other node's lease expired (`fleet-bench 1000000`). Keep an edge's bindings under
    /// about 3,000 a lease (256 hold 768,000). The node's lease is refreshed every TTL/3,
    /// the binding leases, granted 30 s longer for it, all together every 30 s. A restart
    /// after the node's lease expired still takes over the binding leases alive.
    #[arg(long, env = "DIALTONE_BINDING_LEASES", default_value_t = 256, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub binding_leases: u32,
    /// How often (seconds, 1-3600) the TLS listeners' certificate files are looked at: a
    /// renewed certificate (a new Secret from cert-manager, a replaced file) is served from
    /// the next handshake, without a restart.
    #[arg(long, env = "DIALTONE_TLS_RELOAD_INTERVAL", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tls_reload_interval: u64,
    /// API token file (TOML, see docs/api.md "API tokens"). Without it, with the embedded store, an admin
    /// token is generated on first start and stored in --data-dir/admin-token.
    #[arg(long, env = "DIALTONE_API_TOKENS", value_name = "FILE")]
    pub api_tokens: Option<PathBuf>,
    /// File with the credentials key (64 hex digits), shared by every config and
    /// provisioning node: line and device passwords are derived from it, so provisioning can
    /// push them to phones while the store keeps only hashes. Changing it changes every
    /// password. Required with --etcd; in the embedded dev mode generated into
    /// --data-dir/credentials-key.
    #[arg(long, env = "DIALTONE_CREDENTIALS_KEY_FILE", value_name = "FILE")]
    pub credentials_key_file: Option<PathBuf>,
    /// Digest realm of phone credentials.
    #[arg(long, env = "DIALTONE_SIP_REALM", default_value = dialtone_domain::DEFAULT_REALM)]
    pub sip_realm: String,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `dialtone_store=debug,info`.
    #[arg(long, env = "DIALTONE_LOG", default_value = "info")]
    pub log: String,
    /// How log lines look: `text` (for people) or `json` (one object per line, with the
    /// trace and span ids when traces are exported).
    #[arg(long, env = "DIALTONE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,
    #[command(flatten)]
    pub grpc_security: crate::grpc_tls_flags::GrpcTlsFlags,
    /// What `grpc_security` names, read and checked by validation.
    #[arg(skip)]
    pub grpc_tls: Option<crate::grpc_tls_flags::GrpcTls>,
    #[command(flatten)]
    pub etcd_security: crate::etcd_flags::EtcdFlags,
    /// What `etcd_security` names, read and checked by validation (files read once).
    #[arg(skip)]
    pub etcd_secured: dialtone_store::EtcdSecurity,
    #[command(flatten)]
    pub edge: crate::edge_flags::EdgeFlags,
    #[command(flatten)]
    pub provisioning: crate::provisioning_flags::ProvisioningFlags,
}

/// The default data directory.
pub fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("dialtone")
}

impl ServeConfig {
    /// Parses `args` (after `serve`), merging the config file under flags and environment.
    pub fn load(args: Vec<OsString>) -> anyhow::Result<Self> {
        let first = ServeConfig::try_parse_from(
            std::iter::once(OsString::from("serve")).chain(args.iter().cloned()),
        )?;
        let mut argv = vec![OsString::from("serve")];
        if let Some(path) = &first.config {
            argv.extend(file_args(path)?);
        }
        argv.extend(args);
        let mut c = ServeConfig::try_parse_from(argv)?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&mut self) -> anyhow::Result<()> {
        let mut roles = HashSet::new();
        for r in &self.roles {
            let r = r.trim();
            if r == "all" {
                roles.extend(ROLES.iter().map(|r| r.to_string()));
            } else if ROLES.contains(&r) {
                roles.insert(r.to_owned());
            } else {
                bail!(
                    "invalid value '{r}' for '--roles': known roles are all, {}",
                    ROLES.join(", ")
                );
            }
        }
        self.roles = ROLES
            .iter()
            .filter(|r| roles.contains(**r))
            .map(|r| r.to_string())
            .collect();
        for e in &self.etcd {
            if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() < 10 {
                bail!("invalid value '{e}' for '--etcd': endpoints look like http://host:2379");
            }
        }
        if !self.store_prefix.starts_with('/') || !self.store_prefix.ends_with('/') {
            bail!(
                "invalid value '{}' for '--store-prefix': must start and end with '/'",
                self.store_prefix
            );
        }
        let node = match (&self.node_id, &self.node_name) {
            (Some(n), _) => n.clone(),
            (None, Some(name)) => node_id_of(name),
            (None, None) => node_id_of(&hostname()),
        };
        let ok = (1..=63).contains(&node.len())
            && node
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !node.starts_with('-');
        if !ok {
            bail!(
                "invalid value '{node}' for '--node-id': use 1-63 lowercase letters, digits or '-'"
            );
        }
        self.node_id = Some(node);
        if self.sip_realm.is_empty()
            || self
                .sip_realm
                .chars()
                .any(|c| c.is_whitespace() || c == '"')
        {
            bail!(
                "invalid value '{}' for '--sip-realm': must be non-empty, without spaces or quotes",
                self.sip_realm
            );
        }
        if !self.etcd.is_empty() && self.api_tokens.is_none() {
            bail!(
                "'--api-tokens' is required with '--etcd' (tokens are generated only for the embedded dev mode)"
            );
        }
        // Read and checked here so a bad file stops the process at start, naming its flag.
        self.etcd_secured = self.etcd_security.security(&self.etcd)?;
        self.grpc_tls = self.grpc_security.tls(self.listen_grpc)?;
        // The OTLP exporters' headers and TLS files (standard OTEL_ variables).
        crate::otlp_env::check(&|v| std::env::var(v).ok())?;
        // The REST API carries the same tokens: the same rule.
        if self.roles.iter().any(|r| r == "config" || r == "all")
            && self.grpc_tls.is_none()
            && !self.listen_api.ip().is_loopback()
            && !self.grpc_security.insecure_grpc
        {
            bail!(
                "invalid value '{}' for '--listen-api': a plaintext REST API on a non-loopback address sends API tokens in clear; give '--grpc-tls-cert' and '--grpc-tls-key' (or '--insecure-grpc' where the network encrypts)",
                self.listen_api
            );
        }
        if self.data_dir.is_none() {
            self.data_dir = Some(default_data_dir());
        }
        if !self.etcd.is_empty()
            && self.credentials_key_file.is_none()
            && self
                .roles
                .iter()
                .any(|r| r == "config" || r == "provisioning")
        {
            bail!(
                "'--credentials-key-file' is required with '--etcd' (config and provisioning nodes must share it)"
            );
        }
        if self.roles.iter().any(|r| r == "provisioning") {
            self.provisioning
                .settings(self.node(), &self.sip_realm, self.etcd.is_empty())?;
        }
        if self.roles.iter().any(|r| r == "edge") {
            self.edge.check()?;
            if !self.etcd.is_empty() && self.edge.sip_nonce_key_file.is_none() {
                bail!(
                    "'--sip-nonce-key-file' is required with '--etcd' (the edges of a group must share it)"
                );
            }
        }
        Ok(())
    }

    /// The credentials key: from --credentials-key-file, or generated in dev mode.
    pub fn credentials_key(&self) -> anyhow::Result<dialtone_domain::credentials::CredentialKey> {
        let key = crate::secret_file::load(
            self.credentials_key_file.as_deref(),
            "--credentials-key-file",
            &self.data(),
            CREDENTIALS_KEY_FILE,
            self.etcd.is_empty(),
        )?;
        Ok(dialtone_domain::credentials::CredentialKey::new(key))
    }

    /// The node id (set by validation).
    pub fn node(&self) -> &str {
        self.node_id.as_deref().unwrap_or("node")
    }

    /// The data dir (set by validation).
    pub fn data(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "node-1".into())
}

/// A node id from a host or Kubernetes node name (a DNS subdomain of up to 253
/// characters): lowercase, '.' and '_' made '-', no leading or trailing '-'; past 63
/// characters, the first 54 and 8 hex digits of a hash of the whole name, so two long
/// names that share a beginning stay apart. Pure.
fn node_id_of(name: &str) -> String {
    let id: String = name
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let id = id.trim_matches('-');
    if id.len() <= 63 {
        return id.to_owned();
    }
    // FNV-1a: stable across releases and platforms (a node's id must not change with them).
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{}-{:08x}", id[..54].trim_end_matches('-'), hash as u32)
}

/// Turns a TOML config file into `--key=value` arguments, skipping keys whose environment
/// variable is set (the environment wins over the file).
fn file_args(path: &PathBuf) -> anyhow::Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
    let cmd = ServeConfig::command();
    let mut out = Vec::new();
    for (key, value) in table {
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
        else {
            bail!("unknown key '{key}' in config file {}", path.display());
        };
        if key == "config" {
            bail!("key 'config' is not allowed inside a config file");
        }
        if arg
            .get_env()
            .is_some_and(|env| std::env::var_os(env).is_some())
        {
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => bail!(
                "invalid value {other:?} for key '{key}' in config file {}",
                path.display()
            ),
        };
        out.push(OsString::from(format!("--{key}={text}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag is well formed (no flag named twice).
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        ServeConfig::command().debug_assert();
    }

    fn load(args: &[&str]) -> anyhow::Result<ServeConfig> {
        ServeConfig::load(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn defaults_and_all_roles() {
        let c = load(&["--node-id", "n1", "--data-dir", "/tmp/x"]).unwrap();
        assert_eq!(c.roles, vec!["config", "edge", "provisioning", "status"]);
        assert_eq!(c.provisioning.provisioning_https.port(), 8443);
        assert_eq!(c.listen_grpc.port(), 7700);
        assert_eq!(c.lease_ttl, 10);
    }

    #[test]
    fn node_ids_derive_from_host_and_node_names() {
        let long = format!("{}.eu-west-1.compute.internal", "ip-10-0-0-1".repeat(6));
        let cases = [
            (
                "ip-10-0-12-7.eu-west-1.compute.internal",
                "ip-10-0-12-7-eu-west-1-compute-internal",
            ),
            ("Worker_3", "worker-3"),
            ("  node-1\n", "node-1"),
            (".edge.", "edge"),
        ];
        for (name, want) in cases {
            assert_eq!(node_id_of(name), want, "{name:?}");
        }
        let cut = node_id_of(&long);
        assert!(cut.len() <= 63, "{cut}");
        assert_ne!(
            cut,
            node_id_of(&long.replace("west", "east")),
            "the hash keeps them apart"
        );
        assert_eq!(cut, node_id_of(&long), "stable");
        // --node-id wins; --node-name is used without it, and checked as any id is.
        let c = load(&["--node-name", "Node.A", "--data-dir", "/tmp/x"]).unwrap();
        assert_eq!(c.node(), "node-a");
        let c = load(&[
            "--node-name",
            "a.b",
            "--node-id",
            "n9",
            "--data-dir",
            "/tmp/x",
        ])
        .unwrap();
        assert_eq!(c.node(), "n9");
    }

    #[test]
    fn invalid_values_are_named() {
        let cases = [
            (vec!["--roles", "dns"], "'dns' for '--roles'"),
            (
                vec!["--sip-udp", "localhost"],
                "'localhost' for '--sip-udp'",
            ),
            (
                vec!["--sip-digest-algorithms", "sha1"],
                "'sha1' for '--sip-digest-algorithms'",
            ),
            (vec!["--listen-grpc", "nowhere"], "--listen-grpc"),
            (vec!["--lease-ttl", "0"], "--lease-ttl"),
            (vec!["--node-id", "Bad_Node"], "'Bad_Node' for '--node-id'"),
            (
                vec!["--etcd", "localhost:2379"],
                "'localhost:2379' for '--etcd'",
            ),
            (
                vec!["--etcd", "http://127.0.0.1:2379"],
                "'--api-tokens' is required",
            ),
            (
                vec![
                    "--etcd",
                    "http://127.0.0.1:2379",
                    "--api-tokens",
                    "/t",
                    "--roles",
                    "edge",
                ],
                "'--sip-nonce-key-file' is required",
            ),
            (vec!["--store-prefix", "dialtone"], "--store-prefix"),
            (
                vec!["--provisioning-tls-cert", "/c.pem"],
                "'--provisioning-tls-cert' and '--provisioning-tls-key' go together",
            ),
            (
                vec!["--provisioning-nonce-lifetime", "5"],
                "'5' for '--provisioning-nonce-lifetime'",
            ),
            (
                vec![
                    "--etcd",
                    "http://127.0.0.1:2379",
                    "--api-tokens",
                    "/t",
                    "--roles",
                    "provisioning",
                ],
                "'--credentials-key-file' is required",
            ),
            (
                vec![
                    "--etcd",
                    "http://127.0.0.1:2379",
                    "--api-tokens",
                    "/t",
                    "--credentials-key-file",
                    "/k",
                    "--roles",
                    "provisioning",
                ],
                "'--provisioning-tls-cert' and '--provisioning-tls-key' are required",
            ),
        ];
        for (args, want) in cases {
            let err = load(&args).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn file_is_under_flags() {
        let dir = std::env::temp_dir().join(format!("dialtone-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("d.toml");
        std::fs::write(
            &file,
            "listen-admin = \"127.0.0.1:9\"\nlease-ttl = 5\nnode-id = \"from-file\"\n",
        )
        .unwrap();
        let c = load(&["--config", file.to_str().unwrap(), "--node-id", "from-flag"]).unwrap();
        assert_eq!(c.listen_admin.port(), 9);
        assert_eq!(c.lease_ttl, 5);
        assert_eq!(c.node(), "from-flag");
        std::fs::write(&file, "colour = \"blue\"\n").unwrap();
        assert!(
            load(&["--config", file.to_str().unwrap()])
                .unwrap_err()
                .to_string()
                .contains("unknown key 'colour'")
        );
        std::fs::write(&file, "lease-ttl = 500\n").unwrap();
        assert!(
            load(&["--config", file.to_str().unwrap()])
                .unwrap_err()
                .to_string()
                .contains("--lease-ttl")
        );
    }
}
