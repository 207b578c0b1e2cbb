//! TLS material for the TLS and WSS listeners (the shared `dialtone-tls` helpers, with the
//! edge's error type).

use std::path::{Path, PathBuf};

use tokio_rustls::TlsAcceptor;

use crate::error::EdgeError;

/// An acceptor from PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, EdgeError> {
    dialtone_tls::acceptor(cert, key).map_err(|e| EdgeError::Tls(e.to_string()))
}

/// The dev mode's self-signed pair in `dir` (generated once).
pub fn dev_pair(dir: &Path) -> Result<(PathBuf, PathBuf), EdgeError> {
    dialtone_tls::dev_pair(dir, "edge").map_err(|e| EdgeError::Tls(e.to_string()))
}
