//! Feeds the credentials cache from the store: a full listing of `config/sites/`,
//! `config/edge-groups/`, `config/base-settings/`, `config/peers/` and `config/phones/`,
//! then a watch of
//! `config/` from the revision after it. A change
//! reaches the REGISTER path as soon as the watch delivers it (well within a second); a
//! deleted phone or a removed line loses its bindings here. After compaction it re-lists.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use dialtone_config::keys;
use dialtone_proto::config::v1::{BaseSettings, EdgeGroup, Peer, Phone, Site};
use dialtone_store::{Store, StoreError, WatchEvent};
use parking_lot::RwLock;
use prost::Message as _;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{
    credentials::{Change, CredentialCache},
    directory::Directory,
    phone::Forget,
};

const PAGE: usize = 1000;

/// Lists every prefix the cache is made of into it; returns the revision to watch from.
pub async fn load(store: &Store, cache: &RwLock<CredentialCache>) -> Result<i64, StoreError> {
    let mut revision = i64::MAX;
    for prefix in [
        keys::SITES,
        keys::EDGE_GROUPS,
        keys::BASE_SETTINGS,
        keys::PEERS,
        keys::PHONES,
    ] {
        let r = store
            .list_pages(prefix, PAGE, |kvs| {
                let mut c = cache.write();
                for kv in &kvs {
                    apply_put(&mut c, &kv.key, &kv.value);
                }
            })
            .await?;
        revision = revision.min(r);
    }
    Ok(revision)
}

fn apply_put(c: &mut CredentialCache, key: &str, value: &[u8]) -> Option<(String, Change)> {
    if let Some(id) = key.strip_prefix(keys::PHONES) {
        match Phone::decode(value) {
            Ok(p) => return Some((id.to_owned(), c.put_phone(&p))),
            Err(e) => warn!(key, error = %e, "undecodable phone in the store"),
        }
    } else if key.starts_with(keys::BASE_SETTINGS) {
        match BaseSettings::decode(value) {
            Ok(b) => c.put_base(&b),
            Err(e) => warn!(key, error = %e, "undecodable base settings in the store"),
        }
    } else if key.starts_with(keys::SITES) {
        match Site::decode(value) {
            Ok(s) => c.put_site(&s),
            Err(e) => warn!(key, error = %e, "undecodable site in the store"),
        }
    } else if key.starts_with(keys::EDGE_GROUPS) {
        match EdgeGroup::decode(value) {
            Ok(g) => c.put_group(&g),
            Err(e) => warn!(key, error = %e, "undecodable edge group in the store"),
        }
    } else if key.starts_with(keys::PEERS) {
        match Peer::decode(value) {
            Ok(p) => c.put_peer(&p),
            Err(e) => warn!(key, error = %e, "undecodable peer in the store"),
        }
    }
    None
}

fn apply_delete(c: &mut CredentialCache, key: &str) -> Option<(String, Change)> {
    if let Some(id) = key.strip_prefix(keys::PHONES) {
        return Some((id.to_owned(), c.remove_phone(id)));
    }
    if let Some(id) = key.strip_prefix(keys::BASE_SETTINGS) {
        c.remove_base(id);
    } else if let Some(id) = key.strip_prefix(keys::SITES) {
        c.remove_site(id);
    } else if let Some(id) = key.strip_prefix(keys::EDGE_GROUPS) {
        c.remove_group(id);
    } else if let Some(id) = key.strip_prefix(keys::PEERS) {
        c.remove_peer(id);
    }
    None
}

/// Makes a phone's bindings follow a change of its configuration.
fn follow(directory: &Directory, id: &str, change: Change) {
    let lines = match change {
        Change { removed: true, .. } => None,
        Change { lines_gone, .. } if !lines_gone.is_empty() => Some(lines_gone),
        _ => return,
    };
    directory.tell(
        id,
        Forget {
            lines,
            source: None,
        },
    );
}

/// Watches the configuration from `revision` on; `ready` is false while it re-lists.
pub fn spawn(
    store: Store,
    cache: Arc<RwLock<CredentialCache>>,
    directory: Arc<Directory>,
    mut revision: i64,
    ready: Arc<AtomicBool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut watch = match store.watch("config/", revision + 1).await {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "credentials watch could not open; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                match watch.next().await {
                    Ok(Some(batch)) => {
                        let mut changes = Vec::new();
                        {
                            let mut c = cache.write();
                            for ev in &batch.events {
                                let ch = match ev {
                                    WatchEvent::Put(kv) => apply_put(&mut c, &kv.key, &kv.value),
                                    WatchEvent::Delete { key, .. } => apply_delete(&mut c, key),
                                };
                                changes.extend(ch);
                            }
                        }
                        for (id, ch) in changes {
                            follow(&directory, &id, ch);
                        }
                        revision = batch.revision;
                    }
                    Ok(None) => break,
                    Err(StoreError::Compacted { .. }) => {
                        info!("credentials watch compacted: re-listing");
                        ready.store(false, Ordering::Release);
                        match relist(&store, &cache, &directory).await {
                            Ok(r) => {
                                revision = r;
                                ready.store(true, Ordering::Release);
                            }
                            Err(e) => {
                                warn!(error = %e, "re-listing credentials failed; retrying");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                        break;
                    }
                    Err(e) => {
                        warn!(error = %e, "credentials watch failed; resuming");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
        }
    })
}

/// Rebuilds the cache from a full listing; phones that vanished and lines that were
/// renamed or removed meanwhile lose their bindings.
async fn relist(
    store: &Store,
    cache: &Arc<RwLock<CredentialCache>>,
    directory: &Directory,
) -> Result<i64, StoreError> {
    let limits = cache.read().limits();
    let fresh = RwLock::new(CredentialCache::new(limits));
    let revision = load(store, &fresh).await?;
    let fresh = fresh.into_inner();
    let changes = cache.read().changes_to(&fresh);
    *cache.write() = fresh;
    for (id, change) in changes {
        follow(directory, &id, change);
    }
    Ok(revision)
}
