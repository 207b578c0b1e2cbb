//! The data dir: created private (0700: it holds the store, keys and the admin token) and
//! held under an exclusive `flock` for as long as the process runs, so a second
//! `dialtone serve` on the same dir stops with a message instead of writing the same store
//! log (two writers would interleave frames and lose acknowledged commits).

use std::{
    fs::File,
    os::{fd::AsRawFd, unix::fs::PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

/// The lock file inside the data dir.
const LOCK_FILE: &str = "lock";

/// The data dir, held: dropping it releases the lock.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates `path` (0700) if missing, tightens an existing one this user owns to 0700,
    /// and takes its lock; fails when another process holds it. A dir owned by someone
    /// else (a Kubernetes emptyDir is root's, shared through the pod's group) is used as it
    /// is: only its owner may change its mode.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        if !path.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .with_context(|| format!("creating data dir {}", path.display()))?;
        }
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading data dir {}", path.display()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() == me && meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making data dir {} private (0700)", path.display()))?;
        }
        let lock_path = path.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                bail!(
                    "data dir {} is in use by another dialtone serve (give each process its own --data-dir)",
                    path.display()
                );
            }
            return Err(e).with_context(|| format!("locking {}", lock_path.display()));
        }
        Ok(DataDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let held = DataDir::open(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // An existing dir of ours with a looser mode is tightened.
        let loose = tmp.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _l = DataDir::open(&loose).unwrap();
        let mode = std::fs::metadata(&loose).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let second = DataDir::open(&dir).unwrap_err().to_string();
        assert!(
            second.contains("in use by another dialtone serve"),
            "{second}"
        );
        drop(held);
        DataDir::open(&dir).unwrap();
    }
}
