//! Typed reads and the transaction helpers every object kind shares.

use dialtone_store::{Compare, KeyValue, Op, Store};
use prost::Message;

use crate::{
    error::{ConfigError, Result},
    field_mask::{self, MaskError, Stored, Unknown, fields_of},
};

/// A reverse index whose entries keep an object from being deleted.
pub(crate) struct Users {
    pub(crate) prefix: String,
    /// What its entries are ("phones", "sites").
    pub(crate) what: &'static str,
}

/// Decodes a stored message.
pub fn decode<M: Message + Default>(kv: &KeyValue, kind: &'static str) -> Result<M> {
    M::decode(kv.value.as_slice()).map_err(|source| ConfigError::Decode {
        key: kv.key.clone(),
        kind,
        source,
    })
}

/// Reads and decodes one object with its version.
pub async fn load<M: Message + Default>(
    store: &Store,
    key: &str,
    kind: &'static str,
) -> Result<Option<(M, i64)>> {
    match store.get(key).await? {
        Some(kv) => Ok(Some((decode(&kv, kind)?, kv.mod_revision))),
        None => Ok(None),
    }
}

/// Reads an object that must exist.
pub async fn must_load<M: Message + Default>(
    store: &Store,
    key: &str,
    kind: &'static str,
    id: &str,
) -> Result<(M, i64)> {
    load(store, key, kind)
        .await?
        .ok_or_else(|| ConfigError::NotFound {
            kind,
            id: id.to_owned(),
        })
}

/// Reads an object that must exist for a write guarded at `version`; returns it with the
/// version to guard on: `version` when given, else the one just read (so what the write
/// derives from the object, such as index keys to delete, belongs to that version).
pub async fn must_load_at<M: Message + Default>(
    store: &Store,
    key: &str,
    kind: &'static str,
    id: &str,
    version: i64,
) -> Result<(M, i64)> {
    let (m, current) = must_load(store, key, kind, id).await?;
    Ok((m, if version > 0 { version } else { current }))
}

/// [`must_load`], with the stored fields this binary does not know (a newer release's), for
/// [`put_keeping`] to write back.
pub async fn must_load_keeping<M: Stored>(
    store: &Store,
    key: &str,
    kind: &'static str,
    id: &str,
) -> Result<(M, i64, Unknown)> {
    let kv = store.get(key).await?.ok_or_else(|| ConfigError::NotFound {
        kind,
        id: id.to_owned(),
    })?;
    let m = decode(&kv, kind)?;
    let unknown = Unknown::of(&kv.value, fields_of::<M>());
    Ok((m, kv.mod_revision, unknown))
}

/// [`must_load_at`], with the stored fields this binary does not know (see
/// [`must_load_keeping`]).
pub async fn must_load_at_keeping<M: Stored>(
    store: &Store,
    key: &str,
    kind: &'static str,
    id: &str,
    version: i64,
) -> Result<(M, i64, Unknown)> {
    let (m, current, unknown) = must_load_keeping(store, key, kind, id).await?;
    Ok((m, if version > 0 { version } else { current }, unknown))
}

/// [`put`], followed by the fields of the stored object this binary does not know.
pub fn put_keeping<M: Message>(key: String, msg: &M, unknown: &Unknown) -> Op {
    Op::Put {
        key,
        value: unknown.appended_to(msg.encode_to_vec()),
        lease: None,
    }
}

/// The stored fields of `M` at `key` this binary does not know (none when it is gone), for a
/// write guarded at the version they were read at.
pub async fn unknown_at<M: Stored>(store: &Store, key: &str) -> Result<Unknown> {
    Ok(match store.get(key).await? {
        Some(kv) => Unknown::of(&kv.value, fields_of::<M>()),
        None => Unknown::default(),
    })
}

/// What an update with `mask` writes: the stored object with the fields the mask names
/// taken from `update` (see [`crate::field_mask`]); `id` always comes from the update, and
/// its `version` too, or when it gives none (0), the version just read: the write that
/// follows is then guarded by it, so a change made in between (to any field) fails the
/// write instead of being overwritten with what was read.
pub async fn masked<M: Stored>(store: &Store, update: M, mask: &[String]) -> Result<M> {
    let kind = M::KIND;
    let key = M::key(update.id());
    let kv = store
        .get(&key)
        .await?
        .ok_or_else(|| ConfigError::NotFound {
            kind,
            id: update.id().to_owned(),
        })?;
    let bytes = update.encode_to_vec();
    let refused = |e: MaskError| match e {
        MaskError::UnknownField(f) => ConfigError::invalid(
            "update_mask",
            format!("'{f}' is not a field of {kind} (in this release)"),
        ),
        MaskError::Nested(f) => ConfigError::invalid(
            "update_mask",
            format!("'{f}': only whole top-level fields can be named"),
        ),
        // The stored value decoded just below: only a wire form prost reads and this
        // reader does not (groups) gets here.
        MaskError::Malformed => ConfigError::invalid(
            "update_mask",
            format!("the stored {kind} cannot be merged field by field"),
        ),
    };
    // A stored value that does not decode is the server's fault, said as such.
    let _: M = decode(&kv, kind)?;
    let set = field_mask::present(&bytes).map_err(refused)?;
    let replaced =
        field_mask::replaced(fields_of::<M>(), mask, &set, &["id", "version"]).map_err(refused)?;
    let mut merged = field_mask::merge(&kv.value, &bytes, &replaced).map_err(refused)?;
    let version = fields_of::<M>().iter().find(|(n, _)| n == "version");
    if let (Some((_, number)), false) = (version, set.contains(&version.map_or(0, |v| v.1))) {
        field_mask::push_varint_field(&mut merged, *number, kv.mod_revision as u64);
    }
    decode(
        &KeyValue {
            value: merged,
            ..kv
        },
        kind,
    )
}

/// The compare guarding a write to an existing object at `version` (0: any version).
pub fn version_guard(key: &str, version: i64) -> Compare {
    if version > 0 {
        Compare::ModRevision {
            key: key.to_owned(),
            revision: version,
        }
    } else {
        Compare::Exists(key.to_owned())
    }
}

/// After a failed guarded write: NotFound if the object is gone, Aborted if its version moved.
/// Returns Ok(()) when neither explains the failure (another compare did).
pub async fn explain_guard(
    store: &Store,
    key: &str,
    version: i64,
    kind: &'static str,
    id: &str,
) -> Result<()> {
    match store.get(key).await? {
        None => Err(ConfigError::NotFound {
            kind,
            id: id.to_owned(),
        }),
        Some(kv) if version > 0 && kv.mod_revision != version => Err(ConfigError::Aborted {
            kind,
            id: id.to_owned(),
            expected: version,
            current: kv.mod_revision,
        }),
        Some(_) => Ok(()),
    }
}

/// The compare and delete that release index entry `key` when `owner` holds it (an entry
/// someone else holds stays, and the compare fails the write if it changes meanwhile).
pub async fn release_owned(
    store: &Store,
    key: String,
    owner: &str,
) -> Result<Option<(Compare, Op)>> {
    Ok(match store.get(&key).await? {
        Some(kv) if kv.value == owner.as_bytes() => Some((
            Compare::ModRevision {
                key: key.clone(),
                revision: kv.mod_revision,
            },
            Op::Delete(key),
        )),
        _ => None,
    })
}

/// A put of an encoded message.
pub fn put<M: Message>(key: String, msg: &M) -> Op {
    Op::Put {
        key,
        value: msg.encode_to_vec(),
        lease: None,
    }
}

/// A put of an index entry.
pub fn put_index(key: String, value: &str) -> Op {
    Op::Put {
        key,
        value: value.as_bytes().to_vec(),
        lease: None,
    }
}

/// Clamps a requested page size: 0 means 100, at most 1000.
pub fn page_size(requested: i32) -> Result<usize> {
    match requested {
        0 => Ok(100),
        1..=1000 => Ok(requested as usize),
        _ => Err(ConfigError::invalid(
            "page_size",
            format!("must be 0-1000 (got {requested})"),
        )),
    }
}

/// One page of a whole collection in key order; the page token is the last id.
pub async fn list_page<M: Message + Default>(
    store: &Store,
    prefix: &str,
    kind: &'static str,
    page_size: i32,
    page_token: &str,
    set_version: impl Fn(&mut M, i64),
) -> Result<(Vec<M>, String)> {
    let limit = self::page_size(page_size)?;
    let after = (!page_token.is_empty()).then(|| format!("{prefix}{page_token}"));
    let page = store.range(prefix, after.as_deref(), limit).await?;
    let mut out = Vec::with_capacity(page.kvs.len());
    for kv in &page.kvs {
        let mut m: M = decode(kv, kind)?;
        set_version(&mut m, kv.mod_revision);
        out.push(m);
    }
    let next = match (page.more, page.kvs.last()) {
        (true, Some(last)) => last.key[prefix.len()..].to_owned(),
        _ => String::new(),
    };
    Ok((out, next))
}

/// Now, in Unix milliseconds (object timestamps).
pub fn now_ms() -> i64 {
    dialtone_common::clock::unix_ms_i64()
}
