//! TLS material for the TLS and WSS listeners: a PEM certificate chain and key from files,
//! or, in the all-in-one dev mode, a self-signed pair generated once into the data dir.

use std::{path::Path, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::TlsAcceptor;
use tracing::info;

use crate::error::EdgeError;

/// An acceptor from PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, EdgeError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| EdgeError::Tls(format!("reading certificates {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(EdgeError::Tls(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| EdgeError::Tls(format!("reading key {}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| EdgeError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| EdgeError::Tls(format!("certificate and key do not match: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Writes a self-signed certificate for localhost and 127.0.0.1 into `dir` unless one is
/// there; returns (cert, key) paths. Dev mode only: phones must be told to trust it.
pub fn dev_pair(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf), EdgeError> {
    let cert = dir.join("edge-cert.pem");
    let key = dir.join("edge-key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).map_err(|e| EdgeError::Tls(e.to_string()))?;
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| EdgeError::Tls(e.to_string()))?;
    std::fs::write(&cert, pair.cert.pem()).map_err(|e| EdgeError::Tls(e.to_string()))?;
    write_private(&key, pair.signing_key.serialize_pem().as_bytes())
        .map_err(|e| EdgeError::Tls(e.to_string()))?;
    info!(cert = %cert.display(), "generated a self-signed sip tls certificate for dev mode");
    Ok((cert, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
