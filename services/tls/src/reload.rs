//! Server certificates that follow their files. Every server configuration this crate
//! builds takes its certificate from a [`CertFiles`] (a rustls certificate resolver), one
//! per pair of files in the process; [`reload_changed`], called every few seconds by the
//! binary, reads a pair again when either file changed (cert-manager renewing a Secret,
//! an operator replacing a file) and swaps it in for the next handshakes. Connections open
//! keep the certificate they shook hands with.
//!
//! A pair that does not load (a half-written file, a key that does not match) leaves the
//! one in use serving, is reported once per change of the files, and is tried again at
//! the next change.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::SystemTime,
};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use rustls::{
    pki_types::{PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use crate::{TlsError, read_certs, read_err, validity::not_after};

/// What identifies a version of a file: a replaced or rewritten file differs in one of
/// these (a Kubernetes Secret volume swaps a symlink to new files, which `metadata`
/// follows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// The pair in use, and the files' versions it came from.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The first certificate's notAfter, Unix seconds.
    expiry: Option<i64>,
    stamps: (Option<Stamp>, Option<Stamp>),
}

/// A certificate chain and key from two PEM files, served by the rustls configurations
/// built from them and read again by [`reload_changed`].
#[derive(Debug)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    loaded: RwLock<Loaded>,
    /// The files' versions that last failed to load (reported once).
    failed: Mutex<Option<(Option<Stamp>, Option<Stamp>)>>,
}

/// Every pair loaded in this process, to reload (weak: a listener gone lets its go).
static LOADED: Mutex<Vec<Weak<CertFiles>>> = Mutex::new(Vec::new());

/// Reloads so far: (succeeded, failed).
static RELOADS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

impl CertFiles {
    /// The pair of these files: the one already loaded in this process, or read now.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let mut all = LOADED.lock();
        all.retain(|w| w.strong_count() > 0);
        if let Some(same) = all
            .iter()
            .filter_map(Weak::upgrade)
            .find(|f| f.cert == cert && f.key == key)
        {
            return Ok(same);
        }
        let files = Arc::new(CertFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: RwLock::new(read_pair(cert, key)?),
            failed: Mutex::new(None),
        });
        all.push(Arc::downgrade(&files));
        Ok(files)
    }

    /// Reads the files again if either changed since the pair in use was read. `Ok(true)`:
    /// a new pair serves from the next handshake; `Err`: the files changed but do not
    /// load (reported once per change; the old pair keeps serving).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = (stamp(&self.cert), stamp(&self.key));
        if self.read().stamps == now {
            return Ok(false);
        }
        match read_pair(&self.cert, &self.key) {
            Ok(pair) => {
                *self.loaded.write() = pair;
                RELOADS[0].fetch_add(1, Relaxed);
                Ok(true)
            }
            Err(e) => {
                let mut failed = self.failed.lock();
                if *failed == Some(now) {
                    return Ok(false);
                }
                *failed = Some(now);
                RELOADS[1].fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    /// When the certificate served now expires (notAfter), Unix seconds.
    pub fn expiry(&self) -> Option<i64> {
        self.read().expiry
    }

    fn read(&self) -> RwLockReadGuard<'_, Loaded> {
        self.loaded.read()
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.read().key.clone())
    }
}

/// Reads and checks a pair (the key must be the certificate's).
fn read_pair(cert: &Path, key: &Path) -> Result<Loaded, TlsError> {
    // Stamped before reading: a change while reading is seen at the next look.
    let stamps = (stamp(cert), stamp(key));
    let certs = read_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(key, e))?;
    let expiry = certs.first().and_then(|c| not_after(c));
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(certs, key_der, &provider)
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    Ok(Loaded {
        key: Arc::new(certified),
        expiry,
        stamps,
    })
}

/// One pair's reload: its certificate file and what happened.
pub struct Reloaded {
    pub cert: PathBuf,
    pub result: Result<Option<i64>, TlsError>,
}

/// Reloads every pair of the process whose files changed; returns those that did (with
/// the new certificate's expiry) or failed.
pub fn reload_changed() -> Vec<Reloaded> {
    let live: Vec<Arc<CertFiles>> = {
        let all = LOADED.lock();
        all.iter().filter_map(Weak::upgrade).collect()
    };
    live.into_iter()
        .filter_map(|f| match f.reload_if_changed() {
            Ok(false) => None,
            Ok(true) => Some(Reloaded {
                cert: f.cert.clone(),
                result: Ok(f.expiry()),
            }),
            Err(e) => Some(Reloaded {
                cert: f.cert.clone(),
                result: Err(e),
            }),
        })
        .collect()
}

/// When the certificate of `cert` that this process serves expires (none when no
/// listener serves that file).
pub fn served_expiry(cert: &Path) -> Option<i64> {
    let all = LOADED.lock();
    all.iter()
        .filter_map(Weak::upgrade)
        .find(|f| f.cert == cert)
        .and_then(|f| f.expiry())
}

/// Reloads so far in this process: (succeeded, failed).
pub fn reloads() -> (u64, u64) {
    (RELOADS[0].load(Relaxed), RELOADS[1].load(Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        crate::dev_pair(dir, name).unwrap()
    }

    #[test]
    fn a_changed_pair_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let files = CertFiles::load(&cert, &key).unwrap();
        // One pair per files in the process.
        assert!(Arc::ptr_eq(&files, &CertFiles::load(&cert, &key).unwrap()));
        let first = files.read().key.clone();
        assert!(!files.reload_if_changed().unwrap(), "nothing changed");

        // Replaced as a Secret volume does: new files renamed over the old ones.
        let (c2, k2) = pair(dir.path(), "b");
        let swap = |from: &Path, to: &Path| {
            let tmp = to.with_extension("new");
            std::fs::copy(from, &tmp).unwrap();
            std::fs::rename(&tmp, to).unwrap();
        };
        swap(&c2, &cert);
        // The certificate is new, the key still the old one: refused, once, and the
        // first pair keeps serving.
        assert!(matches!(
            files.reload_if_changed(),
            Err(TlsError::Mismatch(_))
        ));
        assert!(!files.reload_if_changed().unwrap(), "reported once");
        assert!(Arc::ptr_eq(&first, &files.read().key));
        swap(&k2, &key);
        assert!(files.reload_if_changed().unwrap());
        let now = files.read().key.clone();
        assert!(!Arc::ptr_eq(&first, &now));
        assert_eq!(
            now.cert[0].as_ref(),
            std::fs::read(&c2)
                .map(|pem| {
                    rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
                        .next()
                        .unwrap()
                        .unwrap()
                        .as_ref()
                        .to_vec()
                })
                .unwrap()
        );
        assert_eq!(served_expiry(&cert), files.expiry());
        assert!(files.expiry().is_some());
    }
}
