//! 32-byte secrets kept in files as 64 hex digits: read from the file a flag names, or, in
//! the embedded dev mode, generated once into the data dir (mode 0600).

use std::path::Path;

use anyhow::{Context, bail};

/// Reads a key file; errors name `flag` and say what the file must hold.
pub fn read(path: &Path, flag: &str) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("invalid value '{}' for '{flag}'", path.display()))?;
    let bytes = hex::decode(text.trim()).ok().filter(|b| b.len() == 32);
    let Some(bytes) = bytes else {
        bail!(
            "invalid value '{}' for '{flag}': must hold 64 hex digits (e.g. `openssl rand -hex 32`)",
            path.display()
        );
    };
    let mut k = [0u8; 32];
    k.copy_from_slice(&bytes);
    Ok(k)
}

/// Reads the key at `path`, generating it first when the file does not exist yet.
pub fn read_or_generate(path: &Path, flag: &str) -> anyhow::Result<[u8; 32]> {
    if !path.exists() {
        use std::{io::Write, os::unix::fs::OpenOptionsExt};
        let key: [u8; 32] = rand::random();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("writing {}", path.display()))?;
        writeln!(f, "{}", hex::encode(key))?;
    }
    read(path, flag)
}

/// The key `file` names, or in dev mode the one generated into `data/dev_name`.
pub fn load(
    file: Option<&Path>,
    flag: &str,
    data: &Path,
    dev_name: &str,
    dev: bool,
) -> anyhow::Result<[u8; 32]> {
    match (file, dev) {
        (Some(f), _) => read(f, flag),
        (None, true) => read_or_generate(&data.join(dev_name), flag),
        (None, false) => bail!("'{flag}' is required with '--etcd' (every node must share it)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_read_and_bad_files_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = load(None, "--x-file", dir.path(), "x", true).unwrap();
        assert_eq!(a, load(None, "--x-file", dir.path(), "x", true).unwrap());
        let f = dir.path().join("x");
        assert_eq!(read(&f, "--x-file").unwrap(), a);
        std::fs::write(&f, "abcd\n").unwrap();
        let e = read(&f, "--x-file").unwrap_err().to_string();
        assert!(
            e.contains("'--x-file'") && e.contains("64 hex digits"),
            "{e}"
        );
        let e = load(None, "--x-file", dir.path(), "y", false).unwrap_err();
        assert!(e.to_string().contains("'--x-file' is required"), "{e}");
    }
}
