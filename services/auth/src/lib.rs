//! API tokens and the permissions every gRPC call checks.
//!
//! Tokens live in a TOML file (a Kubernetes secret in production):
//!
//! ```toml
//! [[token]]
//! name = "provisioning-bot"
//! sha256 = "9f86d0…"          # SHA-256 of the token, hex (or `token = "…"` in clear)
//! permissions = ["telephony:sitesmanagedphones:view", "telephony:sitesmanagedphones:edit"]
//! ```
//!
//! Clients send `authorization: Bearer TOKEN`. `telephony:plugin:all` grants everything.

pub mod bans;

use std::{collections::HashMap, fmt, path::Path, str::FromStr};

use rand::Rng;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// `telephony:plugin:all`: every permission.
    All,
    /// `telephony:sitesmanagedphones:view`.
    View,
    /// `telephony:sitesmanagedphones:add`.
    Add,
    /// `telephony:sitesmanagedphones:edit`.
    Edit,
    /// `telephony:sitesmanagedphones:delete`.
    Delete,
}

impl Permission {
    /// Every permission name, as written in token files.
    pub const NAMES: [&'static str; 5] = [
        "telephony:plugin:all",
        "telephony:sitesmanagedphones:view",
        "telephony:sitesmanagedphones:add",
        "telephony:sitesmanagedphones:edit",
        "telephony:sitesmanagedphones:delete",
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::NAMES[self.index()])
    }
}

impl FromStr for Permission {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ALL: [Permission; 5] = [
            Permission::All,
            Permission::View,
            Permission::Add,
            Permission::Edit,
            Permission::Delete,
        ];
        ALL.into_iter()
            .find(|p| p.to_string() == s)
            .ok_or_else(|| AuthError::UnknownPermission(s.to_owned()))
    }
}

/// Why a token file or a call was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token, or one nobody issued.
    #[error("missing or unknown API token")]
    Unauthenticated,
    /// A known token without the permission the call needs.
    #[error("token '{token}' lacks permission {needed}")]
    PermissionDenied {
        /// The token's name.
        token: String,
        /// What the call needs.
        needed: Permission,
    },
    /// The token file names a permission that does not exist.
    #[error("unknown permission '{0}' (known: {known})", known = Permission::NAMES.join(", "))]
    UnknownPermission(String),
    /// The token file could not be read.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The token file is not valid TOML of the documented shape.
    #[error("token file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl AuthError {
    /// The gRPC code of this error, the one rule every role maps it through.
    pub fn code(&self) -> tonic::Code {
        match self {
            AuthError::Unauthenticated => tonic::Code::Unauthenticated,
            AuthError::PermissionDenied { .. } => tonic::Code::PermissionDenied,
            _ => tonic::Code::Internal,
        }
    }
}

/// The token of an `Authorization` value: `Bearer TOKEN`, the scheme in any case (RFC 9110
/// §11.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// The HTTP status of a gRPC code, as Google's APIs map them (`google.rpc.Code`): the one
/// rule by which every error a role maps to a gRPC code (its crate's `code()`) reaches a
/// REST client too.
pub fn http_status(code: tonic::Code) -> u16 {
    use tonic::Code::*;
    match code {
        Ok => 200,
        InvalidArgument | OutOfRange | FailedPrecondition => 400,
        Unauthenticated => 401,
        PermissionDenied => 403,
        NotFound => 404,
        AlreadyExists | Aborted => 409,
        ResourceExhausted => 429,
        Cancelled => 499,
        Unimplemented => 501,
        Unavailable => 503,
        DeadlineExceeded => 504,
        Unknown | Internal | DataLoss => 500,
    }
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    permissions: Vec<String>,
}

/// An issued token, as known to the server.
#[derive(Clone, Debug)]
struct Grant {
    name: String,
    permissions: Vec<Permission>,
}

/// The set of valid tokens, keyed by the SHA-256 of the token. Replaceable while in use
/// ([`Tokens::replace`], when the token file changes): every check reads the current set,
/// and [`Tokens::changes`] tells long-lived calls (watches) to check their token again.
#[derive(Debug)]
pub struct Tokens {
    by_hash: parking_lot::RwLock<HashMap<[u8; 32], Grant>>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens {
            by_hash: parking_lot::RwLock::new(HashMap::new()),
            generation: tokio::sync::watch::channel(0).0,
        }
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Reads a token file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            AuthError::Parse { message, .. } => AuthError::Parse { path: p, message },
            other => other,
        })
    }

    /// Parses a token file's text.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let file: TokenFile = toml::from_str(text).map_err(|e| AuthError::Parse {
            path: String::new(),
            message: e.message().to_owned(),
        })?;
        let mut tokens = Tokens::default();
        for entry in file.token {
            let digest = match (&entry.token, &entry.sha256) {
                (Some(t), None) => hash(t),
                (None, Some(h)) => {
                    let bytes = hex::decode(h.trim())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok());
                    bytes.ok_or_else(|| AuthError::Parse {
                        path: String::new(),
                        message: format!("token '{}': sha256 must be 64 hex digits", entry.name),
                    })?
                }
                _ => {
                    return Err(AuthError::Parse {
                        path: String::new(),
                        message: format!(
                            "token '{}': give exactly one of `token` or `sha256`",
                            entry.name
                        ),
                    });
                }
            };
            let permissions = entry
                .permissions
                .iter()
                .map(|p| p.parse())
                .collect::<Result<Vec<_>, _>>()?;
            tokens.by_hash.get_mut().insert(
                digest,
                Grant {
                    name: entry.name,
                    permissions,
                },
            );
        }
        Ok(tokens)
    }

    /// Adds one token (used for the generated admin token).
    pub fn insert(&mut self, name: &str, token: &str, permissions: &[Permission]) {
        self.by_hash.get_mut().insert(
            hash(token),
            Grant {
                name: name.to_owned(),
                permissions: permissions.to_vec(),
            },
        );
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.by_hash.read().len()
    }

    /// Whether there are no tokens (every call is then refused).
    pub fn is_empty(&self) -> bool {
        self.by_hash.read().is_empty()
    }

    /// Takes `fresh`'s tokens in place of these (a token file read again): calls from now
    /// on are checked against them, and watchers of [`Tokens::changes`] are told.
    pub fn replace(&self, fresh: Tokens) {
        *self.by_hash.write() = fresh.by_hash.into_inner();
        self.generation.send_modify(|g| *g += 1);
    }

    /// Bumped at every [`Tokens::replace`].
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Whether `authorization` (a header value, `Bearer TOKEN`) names a known token, for
    /// the check made before a request's body is read.
    pub fn knows(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(bearer_token)
            .is_some_and(|t| self.by_hash.read().contains_key(&hash(t.trim())))
    }

    /// The name of the token `authorization` (`Bearer TOKEN`) carries, when it is known.
    pub fn name_of(&self, authorization: Option<&str>) -> Option<String> {
        let token = authorization.and_then(bearer_token)?;
        self.by_hash
            .read()
            .get(&hash(token.trim()))
            .map(|g| g.name.clone())
    }

    /// Whether `token` (as sent, without `Bearer `) still grants `needed`.
    pub fn allows(&self, token: &str, needed: Permission) -> bool {
        self.by_hash
            .read()
            .get(&hash(token.trim()))
            .is_some_and(|g| g.grants(needed))
    }

    /// Checks a request's bearer token for `needed`; returns the token's name.
    pub fn authorize<T>(
        &self,
        request: &tonic::Request<T>,
        needed: Permission,
    ) -> Result<String, AuthError> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.authorize_header(header, needed)
    }

    /// Checks an `Authorization` header value (`Bearer TOKEN`) for `needed`, as
    /// [`Tokens::authorize`] does for gRPC (the REST API's one check); returns the token's
    /// name.
    pub fn authorize_header(
        &self,
        header: Option<&str>,
        needed: Permission,
    ) -> Result<String, AuthError> {
        let token = header
            .and_then(bearer_token)
            .ok_or(AuthError::Unauthenticated)?;
        let by_hash = self.by_hash.read();
        let grant = by_hash
            .get(&hash(token.trim()))
            .ok_or(AuthError::Unauthenticated)?;
        if grant.grants(needed) {
            Ok(grant.name.clone())
        } else {
            Err(AuthError::PermissionDenied {
                token: grant.name.clone(),
                needed,
            })
        }
    }
}

impl Grant {
    fn grants(&self, needed: Permission) -> bool {
        self.permissions
            .iter()
            .any(|p| *p == Permission::All || *p == needed)
    }
}

/// The bearer token of a request, as sent.
pub fn bearer<T>(request: &tonic::Request<T>) -> Option<String> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
}

/// A new random token: `dt_` and 40 characters of [A-Za-z0-9] (about 238 bits).
pub fn generate_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let body: String = (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("dt_{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>) -> tonic::Request<()> {
        let mut r = tonic::Request::new(());
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    }

    #[test]
    fn permissions_are_checked_per_call() {
        let tokens = Tokens::parse(&format!(
            r#"
            [[token]]
            name = "admin"
            token = "root"
            permissions = ["telephony:plugin:all"]
            [[token]]
            name = "viewer"
            sha256 = "{}"
            permissions = ["telephony:sitesmanagedphones:view"]
            "#,
            hex::encode(hash("eyes"))
        ))
        .unwrap();
        // (header, needed, expected)
        let cases: &[(Option<&str>, Permission, Result<&str, &str>)] = &[
            (None, Permission::View, Err("unauthenticated")),
            (Some("Basic root"), Permission::View, Err("unauthenticated")),
            (
                Some("Bearer nope"),
                Permission::View,
                Err("unauthenticated"),
            ),
            (Some("Bearer root"), Permission::Delete, Ok("admin")),
            (Some("Bearer eyes"), Permission::View, Ok("viewer")),
            (Some("Bearer eyes"), Permission::Edit, Err("denied")),
            (Some("Bearer eyes"), Permission::All, Err("denied")),
        ];
        for (header, needed, want) in cases {
            let got = tokens.authorize(&request(*header), *needed);
            match (got, want) {
                (Ok(name), Ok(w)) => assert_eq!(name, *w),
                (Err(AuthError::Unauthenticated), Err("unauthenticated")) => {}
                (Err(AuthError::PermissionDenied { .. }), Err("denied")) => {}
                (g, w) => panic!("{header:?} {needed}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn a_replaced_token_set_takes_effect_at_once() {
        let tokens = Tokens::parse(
            "[[token]]\nname='old'\ntoken='dt_old'\npermissions=['telephony:plugin:all']",
        )
        .unwrap();
        let changes = tokens.changes();
        assert!(tokens.knows(Some("Bearer dt_old")) && tokens.allows("dt_old", Permission::Edit));
        assert!(!tokens.knows(Some("Bearer dt_new")) && !tokens.knows(None));
        assert!(!tokens.knows(Some("dt_old")), "only as a bearer token");
        tokens.replace(
            Tokens::parse("[[token]]\nname='new'\ntoken='dt_new'\npermissions=['telephony:sitesmanagedphones:view']").unwrap(),
        );
        assert!(changes.has_changed().unwrap());
        assert!(!tokens.knows(Some("Bearer dt_old")) && !tokens.allows("dt_old", Permission::View));
        assert!(
            tokens.allows("dt_new", Permission::View) && !tokens.allows("dt_new", Permission::Edit)
        );
    }

    #[test]
    fn bad_token_files_are_refused_with_a_reason() {
        let cases = [
            ("[[token]]\nname='a'\npermissions=[]", "exactly one"),
            (
                "[[token]]\nname='a'\ntoken='x'\nsha256='00'\npermissions=[]",
                "exactly one",
            ),
            ("[[token]]\nname='a'\nsha256='zz'\npermissions=[]", "64 hex"),
            (
                "[[token]]\nname='a'\ntoken='x'\npermissions=['telephony:root']",
                "unknown permission",
            ),
            (
                "[[token]]\nname='a'\ntoken='x'\npermissions=[]\nextra=1",
                "unknown field",
            ),
        ];
        for (text, want) in cases {
            let err = Tokens::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn generated_tokens_are_long_and_distinct() {
        let a = generate_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, generate_token());
    }
}
