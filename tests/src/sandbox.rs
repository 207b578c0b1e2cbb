//! The cluster sandbox: etcd (optional) plus nodes, and the tokens its nodes accept.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::bail;
use dialtone_domain::placement;
use dialtone_phonesim::PhoneSpec;
use dialtone_store::Store;

use crate::{
    etcd::EtcdCluster,
    node::{Node, NodeSpec},
};

/// Tokens every sandbox node accepts: `admin` (all), `viewer` (view) and `adder` (view+add).
pub const ADMIN_TOKEN: &str = "dt_test_admin_token_0000000000000000000000";
pub const VIEWER_TOKEN: &str = "dt_test_viewer_token_000000000000000000000";
pub const ADDER_TOKEN: &str = "dt_test_adder_token_0000000000000000000000";
/// Tokens holding one `telephony:sitesmanagedphones` permission each (no view).
pub const ADD_ONLY_TOKEN: &str = "dt_test_add_only_token_0000000000000000000";
pub const EDIT_ONLY_TOKEN: &str = "dt_test_edit_only_token_000000000000000000";
pub const DELETE_ONLY_TOKEN: &str = "dt_test_delete_only_token_0000000000000000";

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

    /// [`ClusterSandbox::embedded_with`] `extra_args`, its site `hq` and profile `desk` of
    /// `settings` seeded (`fleet::seed_site`): the sandbox and admin config and edge
    /// clients.
    pub async fn embedded_seeded(
        extra_args: &[&str],
        settings: dialtone_proto::config::v1::PhoneSettings,
    ) -> anyhow::Result<(Self, crate::ConfigClient, crate::EdgeClient)> {
        let sb = Self::embedded_with(extra_args).await?;
        let token = sb.nodes[0].admin_token();
        let mut c = sb.nodes[0].config_client(&token).await?;
        crate::fleet::seed_site(&mut c, settings).await?;
        let e = sb.nodes[0].edge_client(&token).await?;
        Ok((sb, c, e))
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
        Self::with_etcd_lease_ttl(members, roles, extra_args, binaries, 3).await
    }

    /// Like [`ClusterSandbox::with_etcd_binaries`], with every node's lease TTL (3 s
    /// elsewhere, so a dead node is noticed quickly).
    pub async fn with_etcd_lease_ttl(
        members: usize,
        roles: &[&str],
        extra_args: &[&str],
        binaries: &[Option<PathBuf>],
        lease_ttl: u32,
    ) -> anyhow::Result<Self> {
        Self::start_on_etcd(members, roles, extra_args, binaries, lease_ttl, &[]).await
    }

    /// Like [`ClusterSandbox::with_etcd_args`], node `i` with the environment `env[i]` too
    /// (settings that differ per node, as `DIALTONE_*` variables).
    pub async fn with_etcd_env(
        members: usize,
        roles: &[&str],
        extra_args: &[&str],
        env: &[&[(&str, &str)]],
    ) -> anyhow::Result<Self> {
        Self::start_on_etcd(members, roles, extra_args, &[], 3, env).await
    }

    async fn start_on_etcd(
        members: usize,
        roles: &[&str],
        extra_args: &[&str],
        binaries: &[Option<PathBuf>],
        lease_ttl: u32,
        env: &[&[(&str, &str)]],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let etcd = EtcdCluster::start(members).await?;
        let tokens = dir.path().join("tokens.toml");
        write_test_tokens(&tokens)?;
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
                lease_ttl,
                key_file: Some(key_file.clone()),
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
                env: env
                    .get(i)
                    .map(|e| {
                        e.iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect()
                    })
                    .unwrap_or_default(),
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
    /// [`crate::fleet::seed_site_on`] takes them.
    pub fn udp_edges(&self, indexes: &[usize]) -> Vec<(&str, String)> {
        indexes
            .iter()
            .map(|&i| {
                let n = &self.nodes[i];
                (n.node_id.as_str(), format!("127.0.0.1:{}", n.sip.udp))
            })
            .collect()
    }

    /// The UDP SIP address of node `i`.
    pub fn udp(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.nodes[i].sip.udp))
    }

    /// A simulated hand-configured phone (`phone`: id, SIP user and password, as
    /// [`crate::fleet::import`] returns them) registering to its primary, then its
    /// secondary edge among the nodes at `edges` (the site's edge group), as placement puts
    /// them.
    pub fn dual_registered(&self, edges: &[usize], phone: &(String, String, String)) -> PhoneSpec {
        let (id, user, password) = phone;
        let group = crate::fleet::placement_edges(&self.udp_edges(edges));
        let p = placement::place(id, &group, true).expect("an edge group to place in");
        let udp_of = |node: &str| {
            let i = edges
                .iter()
                .find(|&&i| self.nodes[i].node_id == node)
                .expect("placed on an edge of the group");
            self.udp(*i)
        };
        let mut registrars = vec![udp_of(&p.primary.node_id)];
        registrars.extend(p.secondary.map(|s| udp_of(&s.node_id)));
        PhoneSpec {
            phone_id: id.clone(),
            user: user.clone(),
            password: password.clone(),
            domain: "dialtone".into(),
            registrars,
            managed: None,
        }
    }

    /// What the call tests stand on: one etcd member, a config+status node and two edges
    /// (nodes 1 and 2, with `extra` serve flags besides `--sip-min-expires=10`) forming the
    /// edge group of site `hq`, with profile `desk`; and an admin config client.
    pub async fn two_edges(extra: &[&str]) -> anyhow::Result<(Self, crate::ConfigClient)> {
        Self::two_edges_after("config,status", extra).await
    }

    /// Like [`ClusterSandbox::two_edges`], node 0 with `roles`.
    pub async fn two_edges_after(
        roles: &str,
        extra: &[&str],
    ) -> anyhow::Result<(Self, crate::ConfigClient)> {
        Self::two_edges_on(roles, extra, 3).await
    }

    /// Like [`ClusterSandbox::two_edges`], every node's lease `lease_ttl` seconds (a dead
    /// edge's bindings stay listed that long).
    pub async fn two_edges_with_lease_ttl(
        extra: &[&str],
        lease_ttl: u32,
    ) -> anyhow::Result<(Self, crate::ConfigClient)> {
        Self::two_edges_on("config,status", extra, lease_ttl).await
    }

    async fn two_edges_on(
        roles: &str,
        extra: &[&str],
        lease_ttl: u32,
    ) -> anyhow::Result<(Self, crate::ConfigClient)> {
        let mut args = vec!["--sip-min-expires=10"];
        args.extend_from_slice(extra);
        let sb =
            Self::with_etcd_lease_ttl(1, &[roles, "edge", "edge"], &args, &[], lease_ttl).await?;
        let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await?;
        let edges = sb.udp_edges(&[1, 2]);
        crate::fleet::seed_site_on(
            &mut cfg,
            dialtone_proto::config::v1::PhoneSettings::default(),
            &edges,
        )
        .await?;
        Ok((sb, cfg))
    }

    /// The sandbox's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes the test tokens file (admin, viewer, adder, add-only, edit-only, delete-only,
/// the tokens of this module) to `path`, for `--api-tokens`.
pub fn write_test_tokens(path: &Path) -> anyhow::Result<()> {
    std::fs::write(
        path,
        format!(
            "[[token]]\nname = \"admin\"\ntoken = \"{ADMIN_TOKEN}\"\npermissions = [\"telephony:plugin:all\"]\n\
                 [[token]]\nname = \"viewer\"\ntoken = \"{VIEWER_TOKEN}\"\npermissions = [\"telephony:sitesmanagedphones:view\"]\n\
                 [[token]]\nname = \"adder\"\ntoken = \"{ADDER_TOKEN}\"\npermissions = [\"telephony:sitesmanagedphones:view\", \"telephony:sitesmanagedphones:add\"]\n\
                 [[token]]\nname = \"add-only\"\ntoken = \"{ADD_ONLY_TOKEN}\"\npermissions = [\"telephony:sitesmanagedphones:add\"]\n\
                 [[token]]\nname = \"edit-only\"\ntoken = \"{EDIT_ONLY_TOKEN}\"\npermissions = [\"telephony:sitesmanagedphones:edit\"]\n\
                 [[token]]\nname = \"delete-only\"\ntoken = \"{DELETE_ONLY_TOKEN}\"\npermissions = [\"telephony:sitesmanagedphones:delete\"]\n"
        ),
    )?;
    Ok(())
}
