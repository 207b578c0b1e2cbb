//! The commands, one module per noun.

mod backup;
mod base_settings;
pub mod context;
pub mod edge;
mod edge_groups;
mod explain;
mod import;
mod media_servers;
mod peers;
pub mod phone_list;
mod phones;
pub mod provisioning;
mod sites;
pub mod status;
mod trunks;
mod users;

use clap::{Args, Subcommand};
use dialtone_proto::config::v1 as pb;

use crate::{
    Client,
    output::{Format, json, table},
    refuse::OrRefuse,
};

pub use base_settings::BaseCmd;
pub use edge_groups::EdgeGroupCmd;
pub use media_servers::MediaServerCmd;
pub use peers::PeerCmd;
pub use phones::PhoneCmd;
pub use sites::SiteCmd;
pub use trunks::TrunkCmd;
pub use users::UserCmd;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Edge groups: the edges a site's phones register to.
    #[command(subcommand, name = "edge-groups")]
    EdgeGroups(EdgeGroupCmd),
    /// Sites.
    #[command(subcommand)]
    Sites(SiteCmd),
    /// Trusted SIP peers: requests from them reach phones without digest authentication.
    #[command(subcommand)]
    Peers(PeerCmd),
    /// Media servers (rtpengines) the edges anchor calls' media at, by media region.
    #[command(subcommand, name = "media-servers")]
    MediaServers(MediaServerCmd),
    /// Carrier trunks: where calls to numbers outside the fleet go, and which numbers
    /// (DIDs) come in on them.
    #[command(subcommand)]
    Trunks(TrunkCmd),
    /// Users: people whose companion phones all ring at their extension.
    #[command(subcommand)]
    Users(UserCmd),
    /// Base-settings profiles.
    #[command(subcommand, name = "base-settings")]
    BaseSettings(BaseCmd),
    /// Phones.
    #[command(subcommand)]
    Phones(PhoneCmd),
    /// A phone on one SIP edge (`--server` is that edge node's gRPC address).
    #[command(subcommand)]
    Edge(edge::EdgeCmd),
    /// Zero-touch provisioning: a phone's fetched vs desired configuration, and dynamic
    /// reload progress (`--server` is a provisioning node's gRPC address).
    #[command(subcommand)]
    Provisioning(provisioning::ProvisioningCmd),
    /// Live status of phones: per-site counts and a table refreshed in place, or `get`,
    /// `summary`, `watch` (`--server` is a status node's gRPC address).
    Status {
        #[command(subcommand)]
        cmd: Option<status::StatusCmd>,
        #[command(flatten)]
        filters: status::Filters,
    },
    /// Named contexts (each cluster's endpoints, token file and CA) in
    /// ~/.config/dialtone/config.toml: `list`, `use NAME`, `show`, `set NAME`, `delete NAME`.
    #[command(subcommand)]
    Context(context::ContextCmd),
    /// Backups of the configuration: `create -f FILE`, `restore -f FILE [--dry-run]`.
    #[command(subcommand)]
    Backup(backup::BackupCmd),
    /// Live cluster members.
    Members {
        /// Only this role.
        #[arg(long, default_value = "")]
        role: String,
    },
    /// Prints a shell completion script: `source <(dialtonectl completion bash)`, or save it
    /// where your shell loads completions (zsh: a `_dialtonectl` file in `$fpath`; fish:
    /// `~/.config/fish/completions/dialtonectl.fish`).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Object id.
    id: String,
    /// Expected version (0: current).
    #[arg(long, default_value_t = 0)]
    version: i64,
}

macro_rules! all_pages {
    ($c:expr, $method:ident, $field:ident) => {{
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let r = $c
                .$method(pb::ListRequest {
                    page_size: 1000,
                    page_token: token,
                })
                .await?
                .into_inner();
            all.extend(r.$field);
            if r.next_page_token.is_empty() {
                break all;
            }
            token = r.next_page_token;
        }
    }};
}

pub(crate) use all_pages;

/// The update mask of an update turning `current` into `new` (`dialtone.config.v1.{message}`
/// objects): the fields whose value it changes. Fields this build does not know are never
/// named, so a newer server keeps what it added, and an older one is not asked to change
/// what it cannot store.
pub(crate) fn changed_fields<M: prost::Message>(
    message: &str,
    current: &M,
    new: &M,
) -> Vec<String> {
    dialtone_proto::wire::changed_fields(
        &format!("dialtone.config.v1.{message}"),
        &current.encode_to_vec(),
        &new.encode_to_vec(),
    )
}

/// `changed!(client, get_site, "Site", new)`: reads the object `new` updates (by its id)
/// and gives the update mask of the change ([`changed_fields`]).
macro_rules! changed {
    ($c:expr, $get:ident, $kind:literal, $new:expr) => {{
        let current = $c
            .$get(dialtone_proto::config::v1::GetRequest {
                id: $new.id.clone(),
            })
            .await?
            .into_inner();
        $crate::commands::changed_fields($kind, &current, &$new)
    }};
}

pub(crate) use changed;

pub(crate) fn parse_settings(s: &str, flag: &str) -> anyhow::Result<pb::PhoneSettings> {
    serde_json::from_str(s).or_refuse(|| format!("invalid {flag} JSON (PhoneSettings fields)"))
}

pub async fn run(mut c: Client, out: Format, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Edge(_) => unreachable!("edge commands use the edge client"),
        Command::Provisioning(_) => {
            unreachable!("provisioning commands use the provisioning client")
        }
        Command::Status { .. } => unreachable!("status commands use the status client"),
        Command::Completion { .. } | Command::Context(_) => {
            unreachable!("run before connecting")
        }
        Command::EdgeGroups(cmd) => edge_groups::run(&mut c, out, cmd).await,
        Command::Sites(cmd) => sites::run(&mut c, out, cmd).await,
        Command::Peers(cmd) => peers::run(&mut c, out, cmd).await,
        Command::MediaServers(cmd) => media_servers::run(&mut c, out, cmd).await,
        Command::Users(cmd) => users::run(&mut c, out, cmd).await,
        Command::Trunks(cmd) => trunks::run(&mut c, out, cmd).await,
        Command::BaseSettings(cmd) => base_settings::run(&mut c, out, cmd).await,
        Command::Phones(cmd) => phones::run(&mut c, out, cmd).await,
        Command::Backup(cmd) => backup::run(&mut c, out, cmd).await,
        Command::Members { role } => {
            let r = c
                .list_members(pb::ListMembersRequest { role })
                .await?
                .into_inner();
            match out {
                Format::Json => json(&r),
                Format::Table => {
                    table(
                        &["role", "node", "grpc", "admin", "version"],
                        r.members
                            .iter()
                            .map(|m| {
                                vec![
                                    m.role.clone(),
                                    m.node_id.clone(),
                                    m.grpc_address.clone(),
                                    m.admin_address.clone(),
                                    m.version.clone(),
                                ]
                            })
                            .collect(),
                    );
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_json_takes_enum_names_in_lists() {
        let s = parse_settings(
            r#"{"digest_algorithms": ["DIGEST_ALGORITHM_SHA_256", "DIGEST_ALGORITHM_MD5"], "transport": "TRANSPORT_TLS"}"#,
            "--settings",
        )
        .unwrap();
        assert_eq!(
            s.digest_algorithms,
            [
                pb::DigestAlgorithm::Sha256 as i32,
                pb::DigestAlgorithm::Md5 as i32
            ]
        );
        assert_eq!(s.transport, pb::Transport::Tls as i32);
        let e = parse_settings(r#"{"digest_algorithms": ["SHA1"]}"#, "--settings").unwrap_err();
        assert!(format!("{e:#}").contains("--settings"), "{e:#}");
    }
}
