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
/// path in the context is taken from `base` (the contexts file's folder).
pub fn resolve(
    given: &Given,
    file: Option<&ContextFile>,
    base: &Path,
    api: Api,
) -> Result<Target, BadInput> {
    let ctx = selected(given, file)?;
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
mod tests {
    use super::*;

    fn file() -> ContextFile {
        parse(
            r#"
current-context = "prod"
[contexts.prod]
config = "https://config:7700"
status = "https://status:7700"
token-file = "prod-token"
ca = "/etc/dialtone/ca.pem"
[contexts.lab]
config = "http://127.0.0.1:7700"
"#,
        )
        .unwrap()
    }

    fn given() -> Given {
        Given::default()
    }

    #[test]
    fn endpoints_tokens_and_files_resolve() {
        let f = file();
        let base = Path::new("/home/a/.config/dialtone");
        struct Case {
            what: &'static str,
            given: Given,
            api: Api,
            server: Option<&'static str>,
            token: Option<Token>,
            ca: Option<&'static str>,
        }
        let cases = [
            Case {
                what: "the current context's config API",
                given: given(),
                api: Api::Config,
                server: Some("https://config:7700"),
                token: Some(Token::File(base.join("prod-token"))),
                ca: Some("/etc/dialtone/ca.pem"),
            },
            Case {
                what: "its own status endpoint",
                given: given(),
                api: Api::Status,
                server: Some("https://status:7700"),
                token: Some(Token::File(base.join("prod-token"))),
                ca: Some("/etc/dialtone/ca.pem"),
            },
            Case {
                what: "no edge endpoint: the config one",
                given: given(),
                api: Api::Edge,
                server: Some("https://config:7700"),
                token: Some(Token::File(base.join("prod-token"))),
                ca: Some("/etc/dialtone/ca.pem"),
            },
            Case {
                what: "--context picks another",
                given: Given {
                    context: Some("lab".into()),
                    ..given()
                },
                api: Api::Status,
                server: Some("http://127.0.0.1:7700"),
                token: None,
                ca: None,
            },
            Case {
                what: "flags win over the context",
                given: Given {
                    server: Some("https://other:1".into()),
                    token: Some("t0k".into()),
                    ca: Some("ca2.pem".into()),
                    ..given()
                },
                api: Api::Status,
                server: Some("https://other:1"),
                token: Some(Token::Inline("t0k".into())),
                ca: Some("ca2.pem"),
            },
        ];
        for c in cases {
            let t = resolve(&c.given, Some(&f), base, c.api).unwrap();
            assert_eq!(t.server.as_deref(), c.server, "{}", c.what);
            assert_eq!(t.token, c.token, "{}", c.what);
            assert_eq!(t.ca.as_deref(), c.ca.map(Path::new), "{}", c.what);
        }
    }

    #[test]
    fn no_file_and_no_context_is_the_local_server() {
        let t = resolve(&given(), None, Path::new("/x"), Api::Config).unwrap();
        assert_eq!(t, Target::default());
        let f = ContextFile::default();
        let t = resolve(&given(), Some(&f), Path::new("/x"), Api::Config).unwrap();
        assert_eq!(t, Target::default());
    }

    #[test]
    fn refusals_name_the_value() {
        let f = file();
        let cases: [(Given, Option<&ContextFile>, &str); 3] = [
            (
                Given {
                    context: Some("nope".into()),
                    ..given()
                },
                Some(&f),
                "invalid context 'nope': the contexts file has lab, prod",
            ),
            (
                Given {
                    context: Some("prod".into()),
                    ..given()
                },
                None,
                "invalid --context 'prod': there is no contexts file",
            ),
            (
                Given {
                    token: Some("a".into()),
                    token_file: Some("b".into()),
                    ..given()
                },
                None,
                "'--token' and '--token-file' exclude each other",
            ),
        ];
        for (g, file, want) in cases {
            let e = resolve(&g, file, Path::new("/"), Api::Config).unwrap_err();
            assert!(e.to_string().starts_with(want), "{e} / {want}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse("[contexts.a]\ntoken = \"secret\"\n").unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
    }

    #[test]
    fn set_updates_what_is_given_and_round_trips() {
        let mut f = ContextFile::default();
        set(
            &mut f,
            "prod",
            Context {
                config: Some("https://c:7700".into()),
                ca: Some("ca.pem".into()),
                ..Context::default()
            },
        )
        .unwrap();
        set(
            &mut f,
            "prod",
            Context {
                status: Some("https://s:7700".into()),
                ..Context::default()
            },
        )
        .unwrap();
        let c = &f.contexts["prod"];
        assert_eq!(c.config.as_deref(), Some("https://c:7700"));
        assert_eq!(c.status.as_deref(), Some("https://s:7700"));
        assert_eq!(c.ca.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(f.current_context.as_deref(), Some("prod"));
        let text = toml::to_string(&f).unwrap();
        assert_eq!(parse(&text).unwrap(), f);
        assert!(set(&mut f, "", Context::default()).is_err());
    }
}
