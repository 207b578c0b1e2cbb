//! `dialtonectl`: the admin CLI over Dialtone's gRPC APIs.
//!
//! It finds the server and token by itself in the all-in-one dev mode (the files
//! `dialtone serve` writes into its data dir); otherwise pass `--server` and `--token`
//! (or `DIALTONE_SERVER` / `DIALTONE_TOKEN`).

mod commands;
mod encode;
mod output;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use dialtone_proto::config::v1::config_service_client::ConfigServiceClient;
use tonic::{
    metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel,
};

use crate::output::OutputArg;

/// Dialtone admin CLI.
#[derive(Parser, Debug)]
#[command(name = "dialtonectl", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// gRPC endpoint of any config node (default: from the data dir's `endpoint` file).
    #[arg(long, global = true, env = "DIALTONE_SERVER")]
    server: Option<String>,
    /// API token (default: the data dir's generated `admin-token`).
    #[arg(long, global = true, env = "DIALTONE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data dir of a local `dialtone serve` (default: $XDG_DATA_HOME/dialtone).
    #[arg(long, global = true, env = "DIALTONE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PEM CA certificate to verify an `https://` server with (default: the system's roots
    /// are not used: give the CA that issued the server's --grpc-tls-cert).
    #[arg(long, global = true, env = "DIALTONE_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// PEM client certificate, for a server with --grpc-client-ca (mutual TLS).
    #[arg(long, global = true, env = "DIALTONE_CERT", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// PEM key of --cert.
    #[arg(long, global = true, env = "DIALTONE_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Name to verify the server's certificate against (default: the --server host).
    #[arg(long, global = true, env = "DIALTONE_TLS_NAME")]
    tls_name: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    output: OutputArg,
    /// Tables without their header line.
    #[arg(long, global = true)]
    no_headers: bool,
    #[command(subcommand)]
    command: commands::Command,
}

/// What the exit status says, for scripts.
const EXIT_CODES: &str = "Exit status: 0 done; 1 failed (anything else, including a \
combination of flags dialtonectl itself refuses); 2 bad input (a command line that does \
not parse, or a value the server refused); 3 not found; 4 not allowed (no or unknown \
token, or a token without the permission); 5 conflict or precondition (already exists, \
changed since read, in use, or not possible now, e.g. a phone with no registration); 6 \
unavailable (the server cannot be reached or is not ready: try again).";

/// The exit status of a failed command (see [`EXIT_CODES`]).
fn exit_code(e: &anyhow::Error) -> u8 {
    use tonic::Code;
    let Some(status) = e.chain().find_map(|c| c.downcast_ref::<tonic::Status>()) else {
        let unreachable = e
            .chain()
            .any(|c| c.downcast_ref::<tonic::transport::Error>().is_some());
        return if unreachable { 6 } else { 1 };
    };
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => 2,
        Code::NotFound => 3,
        Code::Unauthenticated | Code::PermissionDenied => 4,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => 5,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => 6,
        _ => 1,
    }
}

/// A config client that adds the bearer token to every call.
pub type Client = ConfigServiceClient<InterceptedService<Channel, Auth>>;

/// A status client that adds the bearer token to every call.
pub type StatusClient = dialtone_proto::status::v1::status_service_client::StatusServiceClient<
    InterceptedService<Channel, Auth>,
>;

/// Adds `authorization: Bearer …`.
#[derive(Clone)]
pub struct Auth(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

fn data_dir(cli: &Cli) -> PathBuf {
    cli.data_dir.clone().unwrap_or_else(|| {
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("dialtone")
    })
}

async fn connect(cli: &Cli) -> anyhow::Result<(Channel, Auth)> {
    let dir = data_dir(cli);
    let server = match &cli.server {
        Some(s) => s.clone(),
        None => std::fs::read_to_string(dir.join("endpoint"))
            .map(|s| s.trim().to_owned())
            .with_context(|| {
                format!(
                    "no --server given and no {} (is `dialtone serve` running?)",
                    dir.join("endpoint").display()
                )
            })?,
    };
    let token = match &cli.token {
        Some(t) => t.clone(),
        None => std::fs::read_to_string(dir.join("admin-token"))
            .map(|s| s.trim().to_owned())
            .with_context(|| {
                format!(
                    "no --token given and no {}",
                    dir.join("admin-token").display()
                )
            })?,
    };
    let mut endpoint = Channel::from_shared(server.clone())
        .with_context(|| format!("invalid --server '{server}'"))?
        .connect_timeout(std::time::Duration::from_secs(3));
    if let Some(tls) = tls_config(cli, &server)? {
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("invalid TLS settings for {server}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    let header: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .context("the token has characters a header cannot carry")?;
    Ok((channel, Auth(header)))
}

/// TLS for an `https://` server: its CA (--ca, or the local server's data dir CA), and a
/// client certificate when given.
fn tls_config(
    cli: &Cli,
    server: &str,
) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |flag: &str, p: &PathBuf| {
        std::fs::read(p).with_context(|| format!("invalid value '{}' for '--{flag}'", p.display()))
    };
    if !server.starts_with("https://") {
        if cli.ca.is_some() || cli.cert.is_some() {
            anyhow::bail!("'--ca' and '--cert' need an https:// --server");
        }
        return Ok(None);
    }
    let ca = cli
        .ca
        .as_ref()
        .context("an https:// --server needs '--ca' (the CA of its --grpc-tls-cert)")?;
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca", ca)?));
    match (&cli.cert, &cli.key) {
        (Some(c), Some(k)) => {
            tls = tls.identity(Identity::from_pem(read("cert", c)?, read("key", k)?));
        }
        (None, None) => {}
        _ => anyhow::bail!("'--cert' and '--key' go together"),
    }
    if let Some(name) = &cli.tls_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(Some(tls))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let format = output::configure(cli.output, cli.no_headers);
    if let commands::Command::Completion { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "dialtonectl",
            &mut std::io::stdout(),
        );
        return std::process::ExitCode::SUCCESS;
    }
    let result = async {
        let (channel, auth) = connect(&cli).await?;
        if let commands::Command::Edge(cmd) = cli.command {
            let c =
                dialtone_proto::edge::v1::edge_service_client::EdgeServiceClient::with_interceptor(
                    channel, auth,
                );
            return commands::edge::run(c, format, cmd).await;
        }
        if let commands::Command::Phones(commands::PhoneCmd::HowToRegister { id }) = cli.command {
            let c = dialtone_proto::provisioning::v1::provisioning_service_client::ProvisioningServiceClient::with_interceptor(channel, auth);
            return commands::provisioning::how_to_register(c, format, id).await;
        }
        if let commands::Command::Provisioning(cmd) = cli.command {
            let c = dialtone_proto::provisioning::v1::provisioning_service_client::ProvisioningServiceClient::with_interceptor(channel, auth);
            return commands::provisioning::run(c, format, cmd).await;
        }
        if let commands::Command::Status { cmd, filters } = cli.command {
            let c = dialtone_proto::status::v1::status_service_client::StatusServiceClient::with_interceptor(channel, auth)
                .max_decoding_message_size(64 << 20);
            return commands::status::run(c, format, cmd, filters).await;
        }
        let mut client = ConfigServiceClient::with_interceptor(channel.clone(), auth.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(16 << 20);
        // The Phones list and a phone's page show the live status too.
        if let commands::Command::Phones(
            cmd @ (commands::PhoneCmd::List(_) | commands::PhoneCmd::Get { .. }),
        ) = cli.command
        {
            let mut status = dialtone_proto::status::v1::status_service_client::StatusServiceClient::with_interceptor(channel, auth)
                .max_decoding_message_size(64 << 20);
            return match cmd {
                commands::PhoneCmd::List(a) => {
                    commands::phone_list::list(&mut client, &mut status, format, a).await
                }
                commands::PhoneCmd::Get { id } => {
                    commands::phone_list::get(&mut client, &mut status, format, id).await
                }
                _ => unreachable!("matched above"),
            };
        }
        commands::run(client, format, cli.command).await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("error: {:?}: {}", s.code(), s.message()),
                None => eprintln!("error: {e:#}"),
            }
            std::process::ExitCode::from(exit_code(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every command's flags are well formed (no flag named twice, as a subcommand's
    /// `--output` would clash with the global one).
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
