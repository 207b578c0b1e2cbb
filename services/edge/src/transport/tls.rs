//! TLS material for the TLS and WSS listeners (the shared `dialtone-tls` helpers, with the
//! edge's error type).

use std::path::{Path, PathBuf};

use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::EdgeError;

/// An acceptor from PEM files; with `client_ca`, clients may present a certificate it
/// issued, whose names then identify a trusted peer (see [`crate::dispatch::boundary`]).
/// Without `client_ca`, phones resume their sessions from stateless tickets
/// ([`dialtone_tls::with_session_tickets`]): a phone reconnecting after its connection
/// dropped costs the edge no signature, and the edge keeps nothing per session.
pub fn acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<TlsAcceptor, EdgeError> {
    let config = match client_ca {
        None => {
            dialtone_tls::server_config(cert, key, &[]).and_then(dialtone_tls::with_session_tickets)
        }
        // No resumption where a client certificate is an identity: a resumed session
        // takes its client's chain from the ticket or cache without checking it again,
        // and each resumption would renew it, so a trusted peer's certificate could
        // outlive its expiry. Every connection verifies it afresh instead.
        Some(ca) => dialtone_tls::server_config_with_client_ca(cert, key, &[], ca)
            .map(dialtone_tls::without_resumption),
    }
    .map_err(|e| EdgeError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// The dev mode's self-signed pair in `dir` (generated once).
pub fn dev_pair(dir: &Path) -> Result<(PathBuf, PathBuf), EdgeError> {
    dialtone_tls::dev_pair(dir, "edge").map_err(|e| EdgeError::Tls(e.to_string()))
}

/// The system's CA bundle on Debian, the default roots for TLS trunks.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// TLS towards carriers' trunk targets, trusting `roots` (a PEM bundle: given, it must
/// load; not given, the system's bundle when there is one, else none and TLS targets
/// cannot be reached).
pub fn trunk_connector(roots: Option<&Path>) -> Result<Option<TlsConnector>, EdgeError> {
    let path = match roots {
        Some(p) => p,
        None if Path::new(SYSTEM_ROOTS).exists() => Path::new(SYSTEM_ROOTS),
        None => return Ok(None),
    };
    let config = dialtone_tls::client_config(path).map_err(|e| EdgeError::Tls(e.to_string()))?;
    Ok(Some(TlsConnector::from(std::sync::Arc::new(config))))
}
