//! `dialtonectl`: the admin CLI over Dialtone's gRPC APIs.
//!
//! Where it connects, in order: the flags (or their `DIALTONE_…` environment); the named
//! context (`--context`, else the contexts file's current one: `context.rs`); the local
//! all-in-one `dialtone serve` (the `endpoint` and `admin-token` files in its data dir).

mod commands;
mod context;
mod encode;
mod output;
mod refuse;

use std::path::{Path, PathBuf};

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
    /// The named context to use (default: the contexts file's `current-context`; without
    /// one, the local `dialtone serve`'s data dir). See `dialtonectl context --help`.
    #[arg(long, global = true, env = "DIALTONE_CONTEXT")]
    context: Option<String>,
    /// The contexts file.
    #[arg(
        long,
        global = true,
        env = "DIALTONE_CONTEXTS_FILE",
        value_name = "FILE",
        default_value_os_t = commands::context::default_path()
    )]
    contexts_file: PathBuf,
    /// gRPC endpoint of the node the command talks to (a config node; for `status`,
    /// `provisioning` and `edge`, a node with that role). Default: the context's, else the
    /// data dir's `endpoint` file.
    #[arg(long, global = true, env = "DIALTONE_SERVER")]
    server: Option<String>,
    /// API token (default: the context's token file, else the data dir's generated
    /// `admin-token`).
    #[arg(long, global = true, env = "DIALTONE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the API token (keeps it out of the command line and the environment).
    #[arg(long, global = true, env = "DIALTONE_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
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
    /// Output format (`wide`: tables with more columns).
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
    if e.chain()
        .any(|c| c.downcast_ref::<refuse::BadInput>().is_some())
    {
        return 2;
    }
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

/// The connection flags as the contexts see them.
fn given(cli: &Cli) -> context::Given {
    context::Given {
        context: cli.context.clone(),
        server: cli.server.clone(),
        token: cli.token.clone(),
        token_file: cli.token_file.clone(),
        ca: cli.ca.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
        tls_name: cli.tls_name.clone(),
    }
}

/// Where `api` is reached, from the flags, the context and the local data dir.
fn target(cli: &Cli, api: context::Api) -> anyhow::Result<context::Target> {
    let file = commands::context::load(&cli.contexts_file)?;
    let base = cli.contexts_file.parent().unwrap_or(Path::new("."));
    let mut t = context::resolve(&given(cli), file.as_ref(), base, api)?;
    let dir = data_dir(cli);
    let local = |name: &str, missing: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .with_context(|| {
                format!(
                    "{missing}, and no {} (is `dialtone serve` running?)",
                    path.display()
                )
            })
    };
    if t.server.is_none() {
        t.server = Some(local(
            "endpoint",
            "no --server, --context or current context",
        )?);
    }
    if t.token.is_none() {
        let missing = if t.context.is_none() && cli.server.is_some() {
            "no --token or --token-file (a --server without --context uses no context)"
        } else {
            "no --token or --token-file, and no token file in the context"
        };
        t.token = Some(context::Token::Inline(local("admin-token", missing)?));
    }
    Ok(t)
}

/// A channel to `api` (lazy: the first call connects, and fails as that call).
fn connect(cli: &Cli, api: context::Api) -> anyhow::Result<(Channel, Auth, String)> {
    let t = target(cli, api)?;
    let server = t.server.clone().unwrap_or_default();
    let token = match &t.token {
        Some(context::Token::Inline(s)) => s.clone(),
        Some(context::Token::File(p)) => std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .with_context(|| format!("reading the token file {}", p.display()))?,
        None => unreachable!("target() fills the token"),
    };
    let mut endpoint = Channel::from_shared(server.clone())
        .map_err(|e| refuse::BadInput::new(format!("invalid --server '{server}': {e}")))?
        .connect_timeout(std::time::Duration::from_secs(3));
    if let Some(tls) = tls_config(&t, &server)? {
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("invalid TLS settings for {server}"))?;
    }
    let header: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .map_err(|_| refuse::BadInput::new("the token has characters a header cannot carry"))?;
    Ok((endpoint.connect_lazy(), Auth(header), server))
}

/// TLS for an `https://` server: its CA (--ca, or the local server's data dir CA), and a
/// client certificate when given.
fn tls_config(
    cli: &context::Target,
    server: &str,
) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |flag: &str, p: &PathBuf| {
        std::fs::read(p)
            .map_err(|e| refuse::BadInput::new(format!("invalid --{flag} '{}': {e}", p.display())))
    };
    if !server.starts_with("https://") {
        if cli.ca.is_some() || cli.cert.is_some() {
            refuse::refuse!("'--ca' and '--cert' need an https:// --server");
        }
        return Ok(None);
    }
    let Some(ca) = cli.ca.as_ref() else {
        refuse::refuse!("an https:// --server needs '--ca' (the CA of its --grpc-tls-cert)");
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca", ca)?));
    match (&cli.cert, &cli.key) {
        (Some(c), Some(k)) => {
            tls = tls.identity(Identity::from_pem(read("cert", c)?, read("key", k)?));
        }
        (None, None) => {}
        _ => refuse::refuse!("'--cert' and '--key' go together"),
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
        use context::Api;
        if matches!(cli.command, commands::Command::Context(_)) {
            let saved = given(&cli);
            let commands::Command::Context(cmd) = cli.command else {
                unreachable!("matched above")
            };
            return commands::context::run(&cli.contexts_file, format, cmd, saved);
        }
        use commands::{Command, PhoneCmd};
        let api = match &cli.command {
            Command::Edge(_) => Api::Edge,
            Command::Provisioning(_) | Command::Phones(PhoneCmd::HowToRegister { .. }) => {
                Api::Provisioning
            }
            Command::Status { .. } => Api::Status,
            _ => Api::Config,
        };
        let (channel, auth, server) = connect(&cli, api)?;
        // The Phones list and a phone's page show the live status too (from the context's
        // status node when it names one apart).
        let status_channel = match &cli.command {
            Command::Phones(PhoneCmd::List(_) | PhoneCmd::Get { .. }) => {
                match connect(&cli, Api::Status)? {
                    (c, a, s) if s != server => Some((c, a)),
                    _ => Some((channel.clone(), auth.clone())),
                }
            }
            _ => None,
        };
        match cli.command {
            Command::Edge(cmd) => {
                let c = dialtone_proto::edge::v1::edge_service_client::EdgeServiceClient::with_interceptor(
                    channel, auth,
                );
                return commands::edge::run(c, format, cmd).await;
            }
            Command::Phones(PhoneCmd::HowToRegister { id }) => {
                let c = dialtone_proto::provisioning::v1::provisioning_service_client::ProvisioningServiceClient::with_interceptor(channel, auth);
                return commands::provisioning::how_to_register(c, format, id).await;
            }
            Command::Provisioning(cmd) => {
                let c = dialtone_proto::provisioning::v1::provisioning_service_client::ProvisioningServiceClient::with_interceptor(channel, auth);
                return commands::provisioning::run(c, format, cmd).await;
            }
            Command::Status { cmd, filters } => {
                let c = dialtone_proto::status::v1::status_service_client::StatusServiceClient::with_interceptor(channel, auth)
                    .max_decoding_message_size(64 << 20);
                return commands::status::run(c, format, cmd, filters).await;
            }
            _ => {}
        }
        let mut client = ConfigServiceClient::with_interceptor(channel, auth)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(16 << 20);
        if let Some((channel, auth)) = status_channel {
            let mut status = dialtone_proto::status::v1::status_service_client::StatusServiceClient::with_interceptor(channel, auth)
                .max_decoding_message_size(64 << 20);
            return match cli.command {
                Command::Phones(PhoneCmd::List(a)) => {
                    commands::phone_list::list(&mut client, &mut status, format, a).await
                }
                Command::Phones(PhoneCmd::Get { id }) => {
                    commands::phone_list::get(&mut client, &mut status, format, id).await
                }
                _ => unreachable!("a status channel is made for these only"),
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
