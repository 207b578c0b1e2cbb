//! Feeds the credentials cache from the store: what each key of `config/sites/`,
//! `config/edge-groups/`, `config/base-settings/`, `config/peers/`, `config/users/`,
//! `config/trunks/`, `config/media-servers/` and `config/phones/`
//! means to the cache. The store's follower lists them, then watches; a change reaches the
//! REGISTER path as soon as the watch delivers it (well within a second); a deleted phone
//! or a removed line loses its bindings here. After compaction the follower lists again.

use std::sync::Arc;

use dialtone_domain::keys;
use dialtone_proto::config::v1::{
    BaseSettings, EdgeGroup, MediaServer, Peer, Phone, Site, Trunk, User,
};
use dialtone_store::{Follower, KeyValue, WatchBatch, WatchEvent};
use parking_lot::RwLock;
use prost::Message as _;
use tracing::warn;

use crate::credentials::{Change, CredentialCache};

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
    } else if key.starts_with(keys::USERS) {
        match User::decode(value) {
            Ok(u) => c.put_user(&u),
            Err(e) => warn!(key, error = %e, "undecodable user in the store"),
        }
    } else if key.starts_with(keys::TRUNKS) {
        match Trunk::decode(value) {
            Ok(t) => c.put_trunk(&t),
            Err(e) => warn!(key, error = %e, "undecodable trunk in the store"),
        }
    } else if key.starts_with(keys::MEDIA_SERVERS) {
        match MediaServer::decode(value) {
            Ok(m) => c.put_media_server(&m),
            Err(e) => warn!(key, error = %e, "undecodable media server in the store"),
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
    } else if let Some(id) = key.strip_prefix(keys::USERS) {
        c.remove_user(id);
    } else if let Some(id) = key.strip_prefix(keys::TRUNKS) {
        c.remove_trunk(id);
    } else if let Some(id) = key.strip_prefix(keys::MEDIA_SERVERS) {
        c.remove_media_server(id);
    }
    None
}

/// Told when a phone's bindings must go: the phone was removed (None) or some of its
/// lines were (their indexes). The registrar forgets them; the cache does not know it.
pub type Gone = Box<dyn Fn(&str, Option<Vec<u32>>) + Send + Sync>;

/// Makes a phone's bindings follow a change of its configuration.
fn follow(gone: &Gone, id: &str, change: Change) {
    match change {
        Change { removed: true, .. } => gone(id, None),
        Change { lines_gone, .. } if !lines_gone.is_empty() => gone(id, Some(lines_gone)),
        _ => {}
    }
}

/// Every prefix the cache is made of.
pub const PREFIXES: [&str; 8] = [
    keys::SITES,
    keys::EDGE_GROUPS,
    keys::BASE_SETTINGS,
    keys::PEERS,
    keys::USERS,
    keys::TRUNKS,
    keys::MEDIA_SERVERS,
    keys::PHONES,
];

/// Feeds the cache from the store's follower (`dialtone_store::Follow`).
pub struct CredentialsFollower {
    cache: Arc<RwLock<CredentialCache>>,
    gone: Gone,
    /// The cache being listed, swapped in whole when the listing is complete, so the
    /// REGISTER path never sees half a listing.
    fresh: Option<CredentialCache>,
}

impl CredentialsFollower {
    pub fn new(cache: Arc<RwLock<CredentialCache>>, gone: Gone) -> Self {
        CredentialsFollower {
            cache,
            gone,
            fresh: None,
        }
    }
}

impl Follower for CredentialsFollower {
    fn reset(&mut self) {
        let limits = self.cache.read().limits();
        self.fresh = Some(CredentialCache::new(limits));
    }

    fn listed(&mut self, page: Vec<KeyValue>) {
        if let Some(fresh) = &mut self.fresh {
            for kv in &page {
                apply_put(fresh, &kv.key, &kv.value);
            }
        }
    }

    /// Phones that vanished and lines that were renamed or removed while the cache was not
    /// following lose their bindings.
    fn caught_up(&mut self, _revision: i64) {
        let Some(fresh) = self.fresh.take() else {
            return;
        };
        let changes = self.cache.read().changes_to(&fresh);
        *self.cache.write() = fresh;
        for (id, change) in changes {
            follow(&self.gone, &id, change);
        }
    }

    fn changed(&mut self, batch: WatchBatch) {
        let mut changes = Vec::new();
        {
            let mut c = self.cache.write();
            for ev in &batch.events {
                let ch = match ev {
                    WatchEvent::Put(kv) => apply_put(&mut c, &kv.key, &kv.value),
                    WatchEvent::Delete { key, .. } => apply_delete(&mut c, key),
                };
                changes.extend(ch);
            }
        }
        for (id, ch) in changes {
            follow(&self.gone, &id, ch);
        }
    }
}
