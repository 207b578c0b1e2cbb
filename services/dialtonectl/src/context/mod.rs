//! Named contexts: where each API of one Dialtone cluster answers and how to reach it,
//! saved in `~/.config/dialtone/config.toml` so a command needs no connection flags.
//!
//! ```toml
//! current-context = "prod"
//!
//! [contexts.prod]
//! config = "https://config.example.net:7700"        # the config API (any config node)
//! status = "https://status.example.net:7700"        # default: `config`
//! provisioning = "https://prov.example.net:7700"    # default: `config`
//! edge = "https://edge-1.example.net:7700"          # default: `config`
//! token-file = "prod-token"                         # relative to this file's folder
//! ca = "prod-ca.pem"
//! ```
//!
//! This module is pure: the file's shape, and which endpoint, token and TLS files a
//! command uses given its flags and the file. Reading the files is `main`'s.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::refuse::BadInput;

/// The file: contexts by name, and the one used when `--context` is not given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ContextFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// One cluster's endpoints and credentials. Paths may be relative to the file's folder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Context {
    /// The config API (any config node), e.g. `https://config.example.net:7700`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// A status node's gRPC address (default: `config`, as in an all-in-one node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// A provisioning node's gRPC address (default: `config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<String>,
    /// The edge node `dialtonectl edge` asks (default: `config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
    /// A file holding the API token (the token itself is never kept in this file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The CA that issued the servers' certificates (for `https://` endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// A client certificate, for servers that ask for one (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The key of `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The name to verify servers' certificates against (default: each endpoint's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_name: Option<String>,
}

/// Which API a command talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Config,
    Status,
    Provisioning,
    Edge,
}

impl Context {
    /// The endpoint of `api`: its own, else the config API's (one node with every role).
    pub fn endpoint(&self, api: Api) -> Option<&str> {
        let own = match api {
            Api::Config => None,
            Api::Status => self.status.as_deref(),
            Api::Provisioning => self.provisioning.as_deref(),
            Api::Edge => self.edge.as_deref(),
        };
        own.or(self.config.as_deref())
    }
}

/// How to connect, from the command line (flags or their `DIALTONE_…` environment).
#[derive(Clone, Debug, Default)]
pub struct Given {
    pub context: Option<String>,
    pub server: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub tls_name: Option<String>,
}

/// Where the token comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    Inline(String),
    File(PathBuf),
}

/// What a command connects with. `None` server or token: the local `dialtone serve`'s
/// data dir (its `endpoint` and `admin-token` files).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// The context used, if any (named in errors).
    pub context: Option<String>,
    pub server: Option<String>,
    pub token: Option<Token>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub tls_name: Option<String>,
}

/// The context a command uses: `--context`, else the file's current one, else none.
pub fn selected<'a>(
    given: &Given,
    file: Option<&'a ContextFile>,
) -> Result<Option<(&'a str, &'a Context)>, BadInput> {
    let name = match (
        &given.context,
        file.and_then(|f| f.current_context.as_ref()),
    ) {
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => return Ok(None),
    };
    let Some(file) = file else {
        return Err(BadInput::new(format!(
            "invalid --context '{name}': there is no contexts file (create one with \
             `dialtonectl context set {name} --server URL …`)"
        )));
    };
    match file.contexts.get_key_value(name) {
        Some((n, c)) => Ok(Some((n.as_str(), c))),
        None => Err(BadInput::new(format!(
            "invalid context '{name}': the contexts file has {}",
            known(file)
        ))),
    }
}

fn known(file: &ContextFile) -> String {
    if file.contexts.is_empty() {
        return "none".into();
    }
    let names: Vec<&str> = file.contexts.keys().map(String::as_str).collect();
    names.join(", ")
}

/// What `api` is reached with: each flag given wins over the context's value; a relative
/// path in the context is taken from `base` (the contexts file's folder). A `--server`
/// given without `--context` uses no context at all: the context's token and TLS files
/// belong to its own servers, and are not sent to another.
pub fn resolve(
    given: &Given,
    file: Option<&ContextFile>,
    base: &Path,
    api: Api,
) -> Result<Target, BadInput> {
    let ctx = match (&given.server, &given.context) {
        (Some(_), None) => None,
        _ => selected(given, file)?,
    };
    let (name, c) = match ctx {
        Some((n, c)) => (Some(n.to_owned()), Some(c)),
        None => (None, None),
    };
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
    let from = |flag: &Option<PathBuf>, ctx: Option<&Option<PathBuf>>| {
        flag.clone().or_else(|| ctx.and_then(path))
    };
    let token = match (&given.token, &given.token_file) {
        (Some(_), Some(_)) => {
            return Err(BadInput::new(
                "'--token' and '--token-file' exclude each other",
            ));
        }
        (Some(t), None) => Some(Token::Inline(t.clone())),
        (None, Some(f)) => Some(Token::File(f.clone())),
        (None, None) => c.and_then(|c| path(&c.token_file)).map(Token::File),
    };
    Ok(Target {
        server: given
            .server
            .clone()
            .or_else(|| c.and_then(|c| c.endpoint(api)).map(str::to_owned)),
        token,
        ca: from(&given.ca, c.map(|c| &c.ca)),
        cert: from(&given.cert, c.map(|c| &c.cert)),
        key: from(&given.key, c.map(|c| &c.key)),
        tls_name: given
            .tls_name
            .clone()
            .or_else(|| c.and_then(|c| c.tls_name.clone())),
        context: name,
    })
}

/// `context set NAME`: the context with every value given replaced (the token is kept only
/// as a file).
pub fn set(file: &mut ContextFile, name: &str, update: Context) -> Result<(), BadInput> {
    if name.is_empty() || name.chars().any(|c| c.is_control()) {
        return Err(BadInput::new(format!("invalid context name '{name}'")));
    }
    let c = file.contexts.entry(name.to_owned()).or_default();
    let keep = |new: Option<String>, old: &mut Option<String>| {
        if new.is_some() {
            *old = new;
        }
    };
    let keep_path = |new: Option<PathBuf>, old: &mut Option<PathBuf>| {
        if new.is_some() {
            *old = new;
        }
    };
    keep(update.config, &mut c.config);
    keep(update.status, &mut c.status);
    keep(update.provisioning, &mut c.provisioning);
    keep(update.edge, &mut c.edge);
    keep(update.tls_name, &mut c.tls_name);
    keep_path(update.token_file, &mut c.token_file);
    keep_path(update.ca, &mut c.ca);
    keep_path(update.cert, &mut c.cert);
    keep_path(update.key, &mut c.key);
    if file.current_context.is_none() {
        file.current_context = Some(name.to_owned());
    }
    Ok(())
}

/// Parses the file; the error names the file's problem (an unknown key, a wrong type).
pub fn parse(text: &str) -> Result<ContextFile, toml::de::Error> {
    toml::from_str(text)
}

#[cfg(test)]
mod tests;
