//! `dialtonectl backup create|restore`: the configuration to a file and back. The file is
//! the server's `BackupChunk`s, each length-delimited, in order (mode 0600: it holds every
//! phone's password hashes; written whole or not at all).

use std::{
    io::{Read, Write},
    path::PathBuf,
};

use anyhow::{Context, bail};
use clap::Subcommand;
use dialtone_proto::config::v1 as pb;
use prost::Message;

use crate::{
    Client,
    output::{Format, json, table},
};

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Writes a consistent copy of the whole configuration (sites, edge groups, profiles,
    /// phones, users, trunks, peers, media servers, their indexes and the phones'
    /// provisioning state; not live registrations) to FILE. Keep the credentials key, nonce
    /// key and API tokens with it: they are not in the store.
    Create {
        /// The file to write (replaced if it exists).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Writes a backup's entries into the store. Only adds: what the store already holds
    /// unchanged is left, and if it holds any entry with another value nothing is written.
    Restore {
        /// The backup file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Only say what would be written.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(c: &mut Client, out: Format, cmd: BackupCmd) -> anyhow::Result<()> {
    match cmd {
        BackupCmd::Create { file } => create(c, out, file).await,
        BackupCmd::Restore { file, dry_run } => restore(c, out, file, dry_run).await,
    }
}

async fn create(c: &mut Client, out: Format, file: PathBuf) -> anyhow::Result<()> {
    let mut stream = c
        .create_backup(pb::CreateBackupRequest {})
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    let (mut entries, mut revision, mut chunks) = (0, 0, 0);
    while let Some(chunk) = stream.message().await? {
        entries += chunk.entries.len();
        revision = chunk.revision;
        chunks += 1;
        chunk.encode_length_delimited(&mut bytes)?;
    }
    if chunks == 0 {
        bail!("the server sent no backup");
    }
    write_private(&file, &bytes)?;
    let summary = serde_json::json!({
        "file": file.display().to_string(),
        "entries": entries,
        "revision": revision,
        "bytes": bytes.len(),
    });
    match out {
        Format::Json => json(&summary),
        Format::Table => {
            println!(
                "backup of {entries} entries at revision {revision} written to {} ({} bytes)",
                file.display(),
                bytes.len()
            );
            Ok(())
        }
    }
}

async fn restore(c: &mut Client, out: Format, file: PathBuf, dry_run: bool) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    std::fs::File::open(&file)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", file.display()))?;
    let mut rest = bytes.as_slice();
    let mut requests = Vec::new();
    while !rest.is_empty() {
        let chunk = pb::BackupChunk::decode_length_delimited(&mut rest)
            .with_context(|| format!("{} is not a Dialtone backup", file.display()))?;
        requests.push(pb::RestoreBackupRequest {
            dry_run,
            chunk: Some(chunk),
        });
    }
    let r = c
        .restore_backup(tokio_stream::iter(requests))
        .await?
        .into_inner();
    match out {
        Format::Json => json(&r),
        Format::Table => {
            let mut kinds: Vec<_> = r.entries_by_kind.iter().collect();
            kinds.sort();
            table(
                &["kind", "entries"],
                kinds
                    .into_iter()
                    .map(|(k, n)| vec![k.clone(), n.to_string()])
                    .collect(),
            );
            let verb = if r.dry_run { "would write" } else { "wrote" };
            println!(
                "{verb} {} entries; {} already there unchanged (backup of revision {})",
                r.written, r.unchanged, r.backup_revision
            );
            Ok(())
        }
    }
}

/// Writes `bytes` to `file` whole or not at all: into a new file beside it (mode 0600 from
/// the start: it holds password hashes), synced, then renamed over `file`. A full disk
/// leaves no partial backup under the name.
fn write_private(file: &PathBuf, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = file
        .file_name()
        .with_context(|| format!("'{}' names no file", file.display()))?;
    let tmp = file.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", file.display()));
    }
    Ok(())
}
