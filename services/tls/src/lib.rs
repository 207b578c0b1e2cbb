//! TLS material for Dialtone's listeners (SIP over TLS and WSS at the edge, HTTPS at the
//! provisioning server): a PEM certificate chain and key from files, or, in the all-in-one
//! dev mode, a self-signed pair generated once into the data dir. Every server
//! configuration serves its pair through [`reload::CertFiles`], so a renewed certificate is
//! served without a restart once [`reload::reload_changed`] sees its files change.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::pki_types::{CertificateDer, pem::PemObject};
use tokio_rustls::TlsAcceptor;
use tracing::info;

mod der;
mod names;
pub mod reload;
mod validity;
pub use names::certificate_names;
pub use validity::not_after;

/// Why TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("reading {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    /// rustls refused the pair.
    #[error("certificate and key do not match: {0}")]
    Mismatch(String),
    /// The session ticket key could not be made (the system's random source failed).
    #[error("making a session ticket key: {0}")]
    Tickets(String),
    /// The dev pair could not be generated or written.
    #[error("generating a dev certificate in {path}: {reason}")]
    Generate {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// A server configuration from PEM files, with `alpn` protocols (may be empty).
pub fn server_config(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    build_server_config(cert, key, alpn, None)
}

/// How a server treats client certificates from a CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientCerts {
    /// Asked for, verified when presented, not required.
    Optional,
    /// Required: a client without one fails the handshake (mutual TLS).
    Required,
}

/// Like [`server_config`], and asks each client for a certificate issued by one of the CA
/// certificates in `client_ca` (PEM). A client that presents one must present a valid one
/// (else the handshake fails); a client without one still connects, so other
/// authentication can apply to it.
pub fn server_config_with_client_ca(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
    client_ca: &Path,
) -> Result<rustls::ServerConfig, TlsError> {
    build_server_config(cert, key, alpn, Some((client_ca, ClientCerts::Optional)))
}

/// Like [`server_config_with_client_ca`], but a client without a certificate from
/// `client_ca` fails the handshake (mutual TLS).
pub fn server_config_requiring_client_ca(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
    client_ca: &Path,
) -> Result<rustls::ServerConfig, TlsError> {
    build_server_config(cert, key, alpn, Some((client_ca, ClientCerts::Required)))
}

fn build_server_config(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
    client_ca: Option<(&Path, ClientCerts)>,
) -> Result<rustls::ServerConfig, TlsError> {
    let files = reload::CertFiles::load(cert, key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some((ca, mode)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| read_err(ca, e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = match mode {
                ClientCerts::Optional => verifier.allow_unauthenticated(),
                ClientCerts::Required => verifier,
            }
            .build()
            .map_err(|e| read_err(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(files);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// When the first certificate of a PEM file (the server's own, first in its chain)
/// expires, Unix seconds.
pub fn certificate_expiry(cert: &Path) -> Result<i64, TlsError> {
    let certs = read_certs(cert)?;
    let first = certs
        .first()
        .ok_or_else(|| TlsError::NoCertificate(cert.to_owned()))?;
    not_after(first).ok_or_else(|| read_err(cert, "its validity cannot be read"))
}

/// A client configuration that trusts the certificates of a PEM bundle (`roots`: a CA
/// file, or the system's bundle); certificates of the bundle rustls cannot use are
/// skipped, but at least one must be usable.
pub fn client_config(roots: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _skipped) = store.add_parsable_certificates(read_certs(roots)?);
    if added == 0 {
        return Err(TlsError::NoCertificate(roots.to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth())
}

/// Every certificate of a PEM file (at least one).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| read_err(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// `config` resuming sessions from stateless tickets: each full handshake gives the client
/// one ticket, sealed under a key of this process's own (random, rotated by rustls every 6
/// hours, the previous one still accepted), and the server keeps nothing per session. A
/// client that comes back with its ticket (a phone whose connection dropped) skips the
/// certificate and its signature. Under TLS 1.3 the key exchange still runs, so a resumed
/// session keeps forward secrecy; a TLS 1.2 resumption reuses the sealed master secret,
/// so whoever holds the process's ticket key can read the sessions resumed under it (as
/// with any TLS 1.2 server issuing tickets). Another process cannot open the tickets (the
/// client then makes a full handshake). Not for a configuration whose client certificates
/// identify the client: a resumed session takes the chain from the ticket unchecked.
pub fn with_session_tickets(
    mut config: rustls::ServerConfig,
) -> Result<rustls::ServerConfig, TlsError> {
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Tickets(e.to_string()))?;
    config.send_tls13_tickets = 1;
    // Tickets replace the stateful cache: no session is held on the server.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(config)
}

/// `config` resuming no session: no tickets (stateful or not) and no session cache, so
/// every connection makes a full handshake and its client certificate is verified each
/// time (a resumed session would take the chain from its ticket or cache unchecked).
pub fn without_resumption(mut config: rustls::ServerConfig) -> rustls::ServerConfig {
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config
}

/// An acceptor from PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(Arc::new(server_config(cert, key, &[])?)))
}

/// An acceptor that requires every client to present a certificate issued by
/// `client_ca` (mutual TLS): a client without one fails the handshake.
pub fn acceptor_requiring_client_ca(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(Arc::new(
        server_config_requiring_client_ca(cert, key, &[], client_ca)?,
    )))
}

/// Writes a self-signed certificate for localhost and 127.0.0.1 into `dir` as
/// `{name}-cert.pem` and `{name}-key.pem` unless they are there; returns their paths.
/// Dev mode only: clients must be told to trust it.
pub fn dev_pair(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join(format!("{name}-cert.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let fail = |e: &dyn std::fmt::Display| TlsError::Generate {
        path: dir.to_owned(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| fail(&e))?;
    std::fs::write(&cert, pair.cert.pem()).map_err(|e| fail(&e))?;
    write_private(&key, pair.signing_key.serialize_pem().as_bytes()).map_err(|e| fail(&e))?;
    info!(cert = %cert.display(), "generated a self-signed tls certificate for dev mode");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_pair_is_generated_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = dev_pair(dir.path(), "x").unwrap();
        let before = std::fs::read(&c).unwrap();
        assert_eq!(dev_pair(dir.path(), "x").unwrap(), (c.clone(), k.clone()));
        assert_eq!(std::fs::read(&c).unwrap(), before);
        let cfg = server_config(&c, &k, &[b"http/1.1"]).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // Bad files are named.
        let e = acceptor(&dir.path().join("none.pem"), &k).err().unwrap();
        assert!(e.to_string().contains("none.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            acceptor(&empty, &k),
            Err(TlsError::NoCertificate(_))
        ));
        let (c2, _) = dev_pair(dir.path(), "y").unwrap();
        assert!(matches!(acceptor(&c2, &k), Err(TlsError::Mismatch(_))));
    }
}
