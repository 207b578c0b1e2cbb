//! Backup and restore of the configuration: a consistent copy of what the store holds under
//! the configuration's prefixes (one revision), and its entries written back. Only the
//! configuration: bindings, members and actions are live state the nodes write again.
//! Restore only adds: what the store holds with the same value stays, and an entry the
//! store holds with another value refuses the whole restore before anything is written, so
//! a backup never overwrites a newer change. [`chunk`] and [`plan`] are pure; the rest
//! reads and writes the store.

use std::collections::{BTreeMap, HashMap};

use dialtone_proto::config::v1::{BackupChunk, BackupEntry, RestoreBackupResponse};
use dialtone_store::{Compare, MAX_TXN_OPS, Op};
use tokio::sync::Semaphore;

use crate::{
    ConfigCore,
    error::{ConfigError, Result},
};

/// What a backup holds: the configuration, its indexes, the one-time upgrade marks and the
/// phones' provisioning state (the desired versions an admin set).
pub const PREFIXES: [&str; 4] = ["config/", "index/", "upgrades/", "provision/"];

/// At most this many entries, or about this many bytes, per chunk (a gRPC message stays far
/// below its 4 MB limit).
const CHUNK_ENTRIES: usize = 1000;
const CHUNK_BYTES: usize = 1 << 20;

/// The largest backup a restore takes, in bytes of keys and values (it is held in memory,
/// a few times over while it is checked).
pub const MAX_RESTORE_BYTES: usize = 256 << 20;

/// Most bytes of values one restore transaction writes (etcd refuses requests over 1.5 MiB
/// by default).
const WRITE_BYTES: usize = 1 << 20;

/// One backup or restore at a time on a node: each holds the configuration in memory.
static ONE_AT_A_TIME: Semaphore = Semaphore::const_new(1);

/// Takes this node's one backup-or-restore slot, or refuses at once (before a restore's
/// upload is read, so waiting restores hold no memory). Held until dropped.
pub fn begin() -> Result<tokio::sync::SemaphorePermit<'static>> {
    ONE_AT_A_TIME
        .try_acquire()
        .map_err(|_| ConfigError::Contended {
            kind: "backup",
            id: "this node".into(),
        })
}

/// The kind an entry is counted under: `sites`, `phones`, ... for `config/{kind}/...`, else
/// the key's first segment.
pub fn kind_of(key: &str) -> &str {
    let mut parts = key.split('/');
    match (parts.next(), parts.next()) {
        (Some("config"), Some(kind)) if !kind.is_empty() => kind,
        (Some(first), _) => first,
        (None, _) => "",
    }
}

/// The entries in chunks, each carrying the header.
pub fn chunk(
    revision: i64,
    created_at_ms: i64,
    version: &str,
    entries: Vec<BackupEntry>,
) -> Vec<BackupChunk> {
    let header = || BackupChunk {
        revision,
        created_at_ms,
        version: version.to_owned(),
        entries: Vec::new(),
    };
    let mut out = vec![header()];
    let mut bytes = 0;
    for e in entries {
        let size = e.key.len() + e.value.len();
        let last = out.last_mut().expect("one chunk at least");
        if !last.entries.is_empty()
            && (last.entries.len() == CHUNK_ENTRIES || bytes + size > CHUNK_BYTES)
        {
            out.push(header());
            bytes = 0;
        }
        bytes += size;
        out.last_mut().expect("pushed").entries.push(e);
    }
    out
}

/// What restoring `backup` over the store's current values of its keys (`existing`) does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Keys to create, in key order.
    pub write: Vec<String>,
    /// Keys the store holds with the same value.
    pub unchanged: u32,
    /// Entries by kind.
    pub by_kind: BTreeMap<String, u32>,
}

/// Plans a restore; refuses when the store holds any of the keys with another value.
pub fn plan(
    backup: &BTreeMap<String, Vec<u8>>,
    existing: &HashMap<String, Vec<u8>>,
) -> Result<Plan> {
    let mut p = Plan::default();
    let mut differ = Vec::new();
    for (key, value) in backup {
        *p.by_kind.entry(kind_of(key).to_owned()).or_default() += 1;
        match existing.get(key) {
            None => p.write.push(key.clone()),
            Some(v) if v == value => p.unchanged += 1,
            Some(_) => differ.push(key.as_str()),
        }
    }
    if !differ.is_empty() {
        let first: Vec<&str> = differ.iter().take(3).copied().collect();
        return Err(ConfigError::Unusable {
            field: "backup".into(),
            reason: format!(
                "{} entries differ from what the store holds (first: {}); a restore never \
                 overwrites: restore into an empty store, or delete those objects first",
                differ.len(),
                first.join(", ")
            ),
        });
    }
    Ok(p)
}

/// Checks a backup's chunks and gathers its entries: one revision throughout, keys only
/// under [`PREFIXES`], each once, at most [`MAX_RESTORE_BYTES`].
pub fn gather(
    chunks: impl IntoIterator<Item = BackupChunk>,
) -> Result<(i64, BTreeMap<String, Vec<u8>>)> {
    let mut revision = None;
    let mut entries = BTreeMap::new();
    let mut bytes = 0;
    for c in chunks {
        if *revision.get_or_insert(c.revision) != c.revision {
            return Err(ConfigError::invalid(
                "chunk.revision",
                "chunks of different backups",
            ));
        }
        for e in c.entries {
            if !PREFIXES.iter().any(|p| e.key.starts_with(p)) {
                return Err(ConfigError::invalid(
                    "chunk.entries",
                    format!(
                        "'{}' is not configuration (a backup holds only {})",
                        e.key,
                        PREFIXES.join(", ")
                    ),
                ));
            }
            bytes += e.key.len() + e.value.len();
            if bytes > MAX_RESTORE_BYTES {
                return Err(ConfigError::invalid(
                    "chunk",
                    format!("the backup exceeds {MAX_RESTORE_BYTES} bytes"),
                ));
            }
            if entries.insert(e.key.clone(), e.value).is_some() {
                return Err(ConfigError::invalid(
                    "chunk.entries",
                    format!("'{}' appears twice", e.key),
                ));
            }
        }
    }
    let revision = revision.ok_or_else(|| ConfigError::invalid("chunk", "the backup is empty"))?;
    Ok((revision, entries))
}

impl ConfigCore {
    /// A consistent copy of the configuration, in chunks. The caller holds [`begin`]'s slot.
    pub async fn create_backup(&self) -> Result<Vec<BackupChunk>> {
        // etcd may compact the revision being read between two pages: once more from a new
        // one (the next compaction is a configured interval away).
        let (revision, kvs) = match self.store.snapshot(&PREFIXES).await {
            Ok(s) => s,
            Err(_) => self.store.snapshot(&PREFIXES).await?,
        };
        let entries = kvs
            .into_iter()
            .map(|kv| BackupEntry {
                key: kv.key,
                value: kv.value,
            })
            .collect();
        Ok(chunk(
            revision,
            dialtone_common::clock::unix_ms_i64(),
            env!("CARGO_PKG_VERSION"),
            entries,
        ))
    }

    /// Writes a backup's entries (or plans it only); see the module docs. The caller holds
    /// [`begin`]'s slot. The indexes are written first, each batch only where its keys are
    /// still absent: a restore that stops part way (a racing write, the store away) leaves
    /// no object without its uniqueness entries, and running it again writes the rest.
    pub async fn restore_backup(
        &self,
        chunks: Vec<BackupChunk>,
        dry_run: bool,
    ) -> Result<RestoreBackupResponse> {
        let (revision, backup) = gather(chunks)?;
        let keys: Vec<String> = backup.keys().cloned().collect();
        let mut existing = HashMap::new();
        for part in keys.chunks(MAX_TXN_OPS) {
            for kv in self.store.get_many(part).await?.into_iter().flatten() {
                existing.insert(kv.key, kv.value);
            }
        }
        let mut plan = plan(&backup, &existing)?;
        plan.write.sort_by_key(|k| !k.starts_with("index/"));
        if !dry_run {
            // Each key is created only if still absent: a write racing the restore makes
            // its batch fail instead of being overwritten.
            for part in batches(&plan.write, |k| k.len() + backup[k].len()) {
                let compares = part.iter().map(|k| Compare::Absent(k.clone())).collect();
                let ops = part
                    .iter()
                    .map(|k| Op::Put {
                        key: k.clone(),
                        value: backup[k].clone(),
                        lease: None,
                    })
                    .collect();
                if !self.store.txn(compares, ops).await?.succeeded {
                    return Err(ConfigError::Unusable {
                        field: "backup".into(),
                        reason: format!(
                            "the store changed during the restore (at '{}'): run it again",
                            part[0]
                        ),
                    });
                }
            }
        }
        Ok(RestoreBackupResponse {
            dry_run,
            entries_by_kind: plan.by_kind.into_iter().collect(),
            written: plan.write.len() as u32,
            unchanged: plan.unchanged,
            backup_revision: revision,
        })
    }
}

/// `keys` in batches of at most half the store's op limit (each key is also a compare)
/// and about [`WRITE_BYTES`] (a single larger entry goes alone).
fn batches(keys: &[String], size: impl Fn(&String) -> usize) -> Vec<&[String]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, k) in keys.iter().enumerate() {
        let n = size(k);
        if i > start && (i - start == MAX_TXN_OPS / 2 || bytes + n > WRITE_BYTES) {
            out.push(&keys[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < keys.len() {
        out.push(&keys[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> BackupEntry {
        BackupEntry {
            key: key.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn writes_go_in_bounded_batches() {
        let keys: Vec<String> = (0..150).map(|i| format!("config/phones/{i:03}")).collect();
        let sizes = |b: Vec<&[String]>| b.iter().map(|p| p.len()).collect::<Vec<_>>();
        assert_eq!(sizes(batches(&keys, |_| 100)), [64, 64, 22]);
        // 400 KiB each: two fit under 1 MiB.
        assert_eq!(sizes(batches(&keys[..5], |_| 400 << 10)), [2, 2, 1]);
        // One larger than the bound goes alone.
        assert_eq!(sizes(batches(&keys[..2], |_| 2 << 20)), [1, 1]);
        assert!(batches(&[], |_| 1).is_empty());
    }

    #[test]
    fn kinds_are_the_configuration_folders() {
        for (key, kind) in [
            ("config/phones/p1", "phones"),
            ("config/edge-groups/g", "edge-groups"),
            ("index/sip-user/u", "index"),
            ("provision/p1", "provision"),
            ("upgrades/phone-names-indexed", "upgrades"),
        ] {
            assert_eq!(kind_of(key), kind, "{key}");
        }
    }

    #[test]
    fn chunks_carry_the_header_and_bounded_entries() {
        let entries: Vec<BackupEntry> = (0..2500)
            .map(|i| entry(&format!("config/phones/{i:05}"), "x"))
            .collect();
        let chunks = chunk(42, 7, "0.1.0", entries);
        assert_eq!(
            chunks.iter().map(|c| c.entries.len()).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        assert!(
            chunks
                .iter()
                .all(|c| c.revision == 42 && c.created_at_ms == 7)
        );
        // A big value closes a chunk early; an empty backup is one header chunk.
        let big = vec![
            entry("config/a", &"x".repeat(CHUNK_BYTES)),
            entry("config/b", "y"),
        ];
        assert_eq!(chunk(1, 1, "v", big).len(), 2);
        assert_eq!(chunk(1, 1, "v", Vec::new()).len(), 1);
        // Gathered back: the same entries.
        let (rev, back) = gather(chunks).unwrap();
        assert_eq!((rev, back.len()), (42, 2500));
    }

    /// (what, backup, store, keys written, unchanged, or the refusal)
    #[test]
    fn a_restore_only_adds() {
        type Case = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            Vec<(&'static str, &'static str)>,
            std::result::Result<(Vec<&'static str>, u32), &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "into an empty store: everything",
                vec![("config/sites/hq", "s"), ("index/site-code/1", "hq")],
                vec![],
                Ok((vec!["config/sites/hq", "index/site-code/1"], 0)),
            ),
            (
                "again: nothing to write",
                vec![("config/sites/hq", "s")],
                vec![("config/sites/hq", "s")],
                Ok((vec![], 1)),
            ),
            (
                "the store moved on: refused, naming the key",
                vec![("config/sites/hq", "old"), ("config/sites/b", "b")],
                vec![("config/sites/hq", "new")],
                Err("1 entries differ from what the store holds (first: config/sites/hq)"),
            ),
        ];
        for (what, backup, store, want) in cases {
            let backup: BTreeMap<String, Vec<u8>> = backup
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
                .collect();
            let store: HashMap<String, Vec<u8>> = store
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
                .collect();
            match (plan(&backup, &store), want) {
                (Ok(p), Ok((write, unchanged))) => {
                    assert_eq!(p.write, write, "{what}");
                    assert_eq!(p.unchanged, unchanged, "{what}");
                }
                (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{what}: {e}"),
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_backup_that_is_not_one_is_refused() {
        let chunk_of = |revision: i64, entries: Vec<BackupEntry>| BackupChunk {
            revision,
            entries,
            ..Default::default()
        };
        let cases: Vec<(&str, Vec<BackupChunk>, &str)> = vec![
            ("nothing", vec![], "the backup is empty"),
            (
                "live state",
                vec![chunk_of(1, vec![entry("bindings/p/0/e", "x")])],
                "is not configuration",
            ),
            (
                "two backups mixed",
                vec![chunk_of(1, vec![]), chunk_of(2, vec![])],
                "chunks of different backups",
            ),
            (
                "a key twice",
                vec![chunk_of(
                    1,
                    vec![entry("config/a", "1"), entry("config/a", "2")],
                )],
                "appears twice",
            ),
        ];
        for (what, chunks, msg) in cases {
            let e = gather(chunks).unwrap_err();
            assert!(e.to_string().contains(msg), "{what}: {e}");
        }
    }
}
