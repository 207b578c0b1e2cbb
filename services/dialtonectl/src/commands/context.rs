//! `dialtonectl context …`: named contexts in the contexts file (`crate::context`). These
//! commands read and write the file only; they never connect.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::{
    context::{self, Context, ContextFile, Given},
    output::{Format, json, table},
    refuse::refuse,
};

#[derive(Subcommand, Debug)]
pub enum ContextCmd {
    /// Every context, the current one marked `*`.
    List,
    /// Use NAME from now on (writes `current-context`).
    Use { name: String },
    /// The current context (or NAME): its endpoints and files.
    Show { name: Option<String> },
    /// Create NAME or change what is given of it: `--server` (the config API), the other
    /// APIs' endpoints, `--token-file`, `--ca`, `--cert`, `--key`, `--tls-name`. The first
    /// context becomes the current one.
    Set(SetArgs),
    /// Remove NAME.
    Delete { name: String },
}

#[derive(Args, Debug)]
pub struct SetArgs {
    name: String,
    /// A status node's gRPC address (default: the config API's).
    #[arg(long, value_name = "URL")]
    status_server: Option<String>,
    /// A provisioning node's gRPC address (default: the config API's).
    #[arg(long, value_name = "URL")]
    provisioning_server: Option<String>,
    /// The edge node `dialtonectl edge` asks (default: the config API's).
    #[arg(long, value_name = "URL")]
    edge_server: Option<String>,
}

/// The contexts file: `--contexts-file`, else `$XDG_CONFIG_HOME/dialtone/config.toml`
/// (`~/.config/dialtone/config.toml`).
pub fn default_path() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("dialtone/config.toml")
}

/// Reads the file; `None` when there is none.
pub fn load(path: &Path) -> anyhow::Result<Option<ContextFile>> {
    match std::fs::read_to_string(path) {
        Ok(text) => context::parse(&text)
            .map(Some)
            .with_context(|| format!("invalid contexts file {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the file whole (a new file, synced, renamed), readable by its owner only.
fn save(path: &Path, file: &ContextFile) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("toml.new");
    let text = toml::to_string(file).context("encoding the contexts")?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    current: bool,
    #[serde(flatten)]
    context: &'a Context,
}

/// Runs `cmd` on the file at `path`; `set` saves the connection flags given (`saved`).
pub fn run(path: &Path, out: Format, cmd: ContextCmd, saved: Given) -> anyhow::Result<()> {
    let mut file = load(path)?.unwrap_or_default();
    match cmd {
        ContextCmd::List => {
            let current = file.current_context.as_deref();
            let listed: Vec<Listed> = file
                .contexts
                .iter()
                .map(|(name, context)| Listed {
                    name,
                    current: Some(name.as_str()) == current,
                    context,
                })
                .collect();
            if out == Format::Json {
                return json(&listed);
            }
            table(
                &["current", "name", "config", "status", "token file"],
                listed
                    .iter()
                    .map(|l| {
                        let c = l.context;
                        vec![
                            if l.current { "*" } else { "" }.into(),
                            l.name.into(),
                            c.config.clone().unwrap_or_default(),
                            c.endpoint(context::Api::Status)
                                .unwrap_or_default()
                                .to_owned(),
                            c.token_file
                                .as_ref()
                                .map(|p| p.display().to_string())
                                .unwrap_or_default(),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
        ContextCmd::Show { name } => {
            let name = match name.or(file.current_context.clone()) {
                Some(n) => n,
                None => refuse!("no current context: name one, or `dialtonectl context use NAME`"),
            };
            let Some(c) = file.contexts.get(&name) else {
                refuse!(
                    "invalid context '{name}': {} has no such context",
                    path.display()
                );
            };
            let listed = Listed {
                name: &name,
                current: file.current_context.as_deref() == Some(&name),
                context: c,
            };
            if out == Format::Json {
                return json(&listed);
            }
            let api = |a| c.endpoint(a).unwrap_or_default().to_owned();
            let file_of = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            };
            table(
                &["field", "value"],
                vec![
                    vec!["name".into(), name.clone()],
                    vec!["config".into(), api(context::Api::Config)],
                    vec!["status".into(), api(context::Api::Status)],
                    vec!["provisioning".into(), api(context::Api::Provisioning)],
                    vec!["edge".into(), api(context::Api::Edge)],
                    vec!["token file".into(), file_of(&c.token_file)],
                    vec!["ca".into(), file_of(&c.ca)],
                    vec!["cert".into(), file_of(&c.cert)],
                    vec!["key".into(), file_of(&c.key)],
                    vec!["tls name".into(), c.tls_name.clone().unwrap_or_default()],
                ],
            );
            Ok(())
        }
        ContextCmd::Use { name } => {
            if !file.contexts.contains_key(&name) {
                refuse!(
                    "invalid context '{name}': {} has no such context",
                    path.display()
                );
            }
            file.current_context = Some(name.clone());
            save(path, &file)?;
            eprintln!("using context '{name}'");
            Ok(())
        }
        ContextCmd::Delete { name } => {
            if file.contexts.remove(&name).is_none() {
                refuse!(
                    "invalid context '{name}': {} has no such context",
                    path.display()
                );
            }
            if file.current_context.as_deref() == Some(name.as_str()) {
                file.current_context = None;
            }
            save(path, &file)
        }
        ContextCmd::Set(a) => {
            if saved.token.is_some() {
                refuse!(
                    "a context keeps the token in a file: give '--token-file' instead of '--token'"
                );
            }
            let absolute = |p: Option<PathBuf>| -> anyhow::Result<Option<PathBuf>> {
                // Paths given on the command line are the caller's; kept absolute so the
                // context works from any folder.
                p.map(std::path::absolute)
                    .transpose()
                    .context("resolving a path")
            };
            let update = Context {
                config: saved.server,
                status: a.status_server,
                provisioning: a.provisioning_server,
                edge: a.edge_server,
                token_file: absolute(saved.token_file)?,
                ca: absolute(saved.ca)?,
                cert: absolute(saved.cert)?,
                key: absolute(saved.key)?,
                tls_name: saved.tls_name,
            };
            context::set(&mut file, &a.name, update)?;
            save(path, &file)?;
            eprintln!("context '{}' saved in {}", a.name, path.display());
            Ok(())
        }
    }
}
