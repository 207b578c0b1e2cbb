//! The rendered files of the phones that fetch, by hardware id: loaded from the store on a
//! phone's first fetch, rendered once, kept until a watch of `config/` says an input changed.
//! A phone's change drops that phone; a profile, site or edge group change drops every
//! entry (the next fetch renders again). The fleet's size costs nothing here until its
//! phones fetch, and the cache is bounded. The edges' `media-health/` records are
//! followed too, by a watch of their own: when a media server turns UP or DOWN, or an
//! edge's measure of it moves to another latency bucket, the WebRTC phones' entries are
//! dropped (their ICE servers depend on both); a change of its active calls alone, which
//! happens with every call, drops nothing.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use dialtone_domain::{
    credentials::{self, CredentialKey},
    keys,
};
use dialtone_proto::{
    config::v1::{BaseSettings, EdgeGroup, MediaServer, Phone, Site, StoredCredentials},
    edge::v1::MediaHealth,
};
use dialtone_sip::digest::{Algorithm, NonceCounts};
use dialtone_store::{Follow, Follower, Store, WatchBatch, WatchEvent};
use parking_lot::{Mutex, RwLock};
use prost::Message;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::{
    document::{self, Document, EdgeAddress},
    error::ProvisioningError,
    render::{self, Rendered},
};

/// Most phones kept rendered; past it, an arbitrary entry makes room.
pub const MAX_ENTRIES: usize = 50_000;

/// One phone as the HTTPS server needs it.
#[derive(Debug)]
pub struct Entry {
    /// Phone id.
    pub phone_id: String,
    /// Hardware id (the digest user name).
    pub hardware_id: String,
    /// HA1 hashes of the device credential.
    pub device: StoredCredentials,
    /// Its files.
    pub rendered: Rendered,
    /// Primary edge.
    pub primary: Option<EdgeAddress>,
    /// Secondary edge.
    pub secondary: Option<EdgeAddress>,
    /// What could not be rendered as asked.
    pub problems: Vec<String>,
    /// Its profile applies changes without a reboot (so a change resyncs it).
    pub dynamic_reload: bool,
    /// Its profile turns mutual TLS on: it is served only over a connection whose client
    /// certificate names it, never on its digest credential alone.
    pub mutual_auth: bool,
    /// Nonce counts seen from this device (replay protection).
    pub nonces: Mutex<NonceCounts>,
    /// Its file lists TURN servers: each fetch carries a fresh credential (`crate::ice`).
    pub has_turn: bool,
    /// A WebRTC phone: its file's ICE servers follow the media servers' health.
    pub uses_ice: bool,
}

impl Entry {
    /// The device credential's HA1 for `alg`.
    pub fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.device.ha1_md5,
            Algorithm::Sha256 => &self.device.ha1_sha256,
        }
    }
}

#[derive(Default)]
struct Inner {
    by_hw: HashMap<String, Arc<Entry>>,
    hw_by_phone: HashMap<String, String>,
}

/// The cache and its loader.
pub struct Catalog {
    store: Store,
    realm: String,
    key: CredentialKey,
    inner: RwLock<Inner>,
    /// Bumped by every invalidation, so a load that raced one is not cached.
    epoch: AtomicU64,
    /// Where every changed `config/` key is also sent (dynamic reload).
    changes: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// What a document depends on of each edge's `media-health/` record, by node.
    media_facts: Mutex<HashMap<String, Vec<MediaFact>>>,
}

/// What a document depends on of one media server as one edge finds it: its id, whether
/// it is up and its latency bucket (not its active calls).
type MediaFact = (String, bool, u32);

fn media_facts(h: &MediaHealth) -> Vec<MediaFact> {
    let mut v: Vec<MediaFact> = h
        .servers
        .iter()
        .map(|s| (s.media_server_id.clone(), s.up, s.rtt_ms))
        .collect();
    v.sort();
    v
}

/// Reads and decodes one object (None: absent).
pub(crate) async fn load<M: Message + Default>(
    store: &Store,
    key: &str,
) -> Result<Option<M>, ProvisioningError> {
    match store.get(key).await? {
        None => Ok(None),
        Some(kv) => M::decode(kv.value.as_slice())
            .map(Some)
            .map_err(|_| ProvisioningError::Undecodable(key.to_owned())),
    }
}

impl Catalog {
    /// An empty catalog over `store`; every changed `config/` key it sees also goes to
    /// `changes`.
    pub fn new(
        store: Store,
        realm: &str,
        key: CredentialKey,
        changes: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Self {
        Self {
            store,
            realm: realm.to_owned(),
            key,
            inner: RwLock::new(Inner::default()),
            epoch: AtomicU64::new(0),
            changes,
            media_facts: Mutex::default(),
        }
    }

    /// The phone that authenticates as `hw`: cached, or loaded and rendered. None for an
    /// unknown hardware id, a disabled phone or one without a device credential.
    pub async fn lookup(&self, hw: &str) -> Result<Option<Arc<Entry>>, ProvisioningError> {
        if let Some(e) = self.inner.read().by_hw.get(hw) {
            return Ok(Some(e.clone()));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let Some(idx) = self.store.get(&keys::hardware(hw)).await? else {
            return Ok(None);
        };
        let phone_id = String::from_utf8_lossy(&idx.value).into_owned();
        let Some(entry) = self.load_phone(&phone_id).await? else {
            return Ok(None);
        };
        let entry = Arc::new(entry);
        let mut inner = self.inner.write();
        if self.epoch.load(Ordering::Acquire) == epoch && entry.hardware_id == hw {
            if inner.by_hw.len() >= MAX_ENTRIES
                && let Some(k) = inner.by_hw.keys().next().cloned()
                && let Some(old) = inner.by_hw.remove(&k)
            {
                inner.hw_by_phone.remove(&old.phone_id);
            }
            inner.by_hw.insert(hw.to_owned(), entry.clone());
            inner
                .hw_by_phone
                .insert(entry.phone_id.clone(), hw.to_owned());
        }
        Ok((entry.hardware_id == hw).then_some(entry))
    }

    /// Loads one phone by id and builds its document (None: no such phone or site).
    pub async fn load_document(
        &self,
        phone_id: &str,
    ) -> Result<Option<(Phone, Document)>, ProvisioningError> {
        let Some(phone) = load::<Phone>(&self.store, &keys::phone(phone_id)).await? else {
            return Ok(None);
        };
        let base = if phone.base_settings_id.is_empty() {
            None
        } else {
            load::<BaseSettings>(&self.store, &keys::base_settings(&phone.base_settings_id)).await?
        };
        let Some(site) = load::<Site>(&self.store, &keys::site(&phone.site_id)).await? else {
            return Ok(None);
        };
        let group = load::<EdgeGroup>(&self.store, &keys::edge_group(&site.edge_group_id)).await?;
        let meta = dialtone_domain::settings::meta_of(base.as_ref());
        let ice = document::uses_ice(meta) && !site.media_regions.is_empty();
        let media_servers = if ice {
            self.media_servers().await?
        } else {
            Vec::new()
        };
        // Every ICE phone's servers leave out those no edge finds up.
        let media_health = if ice {
            self.media_health().await?
        } else {
            Vec::new()
        };
        let doc = document::build(&document::Inputs {
            phone: &phone,
            base: base.as_ref(),
            site: &site,
            group: group.as_ref(),
            key: &self.key,
            realm: &self.realm,
            media_servers: &media_servers,
            media_health: &media_health,
        });
        Ok(Some((phone, doc)))
    }

    /// What each edge measures of the media servers, by node id (one read; a node per
    /// edge).
    async fn media_health(&self) -> Result<Vec<(String, MediaHealth)>, ProvisioningError> {
        let page = self.store.range(keys::MEDIA_HEALTH, None, 1000).await?;
        // An edge's undecodable record (a newer edge's?) counts as no finding, as the
        // watch takes it: it must not fail every WebRTC phone's file.
        Ok(page
            .kvs
            .iter()
            .filter_map(|kv| {
                let node = kv.key.strip_prefix(keys::MEDIA_HEALTH).unwrap_or(&kv.key);
                let h = MediaHealth::decode(kv.value.as_slice())
                    .inspect_err(|_| warn!(key = %kv.key, "undecodable media health record"))
                    .ok()?;
                Some((node.to_owned(), h))
            })
            .collect())
    }

    /// Every media server (a few dozen at most: one read).
    async fn media_servers(&self) -> Result<Vec<MediaServer>, ProvisioningError> {
        let page = self.store.range(keys::MEDIA_SERVERS, None, 1000).await?;
        page.kvs
            .iter()
            .map(|kv| {
                MediaServer::decode(kv.value.as_slice())
                    .map_err(|_| ProvisioningError::Undecodable(kv.key.clone()))
            })
            .collect()
    }

    /// Loads and renders one phone by id (None: absent, disabled or without credential).
    pub async fn load_phone(&self, phone_id: &str) -> Result<Option<Entry>, ProvisioningError> {
        let Some((phone, doc)) = self.load_document(phone_id).await? else {
            return Ok(None);
        };
        if phone.disabled || phone.device_credential_generation == 0 || phone.hardware_id.is_empty()
        {
            return Ok(None);
        }
        let password = self
            .key
            .device_password(&phone.id, phone.device_credential_generation);
        let device = credentials::ha1(&phone.hardware_id, &self.realm, &password);
        let has_turn = doc.has_turn();
        let uses_ice = document::uses_ice(doc.meta);
        Ok(Some(Entry {
            phone_id: phone.id.clone(),
            hardware_id: phone.hardware_id.clone(),
            device,
            rendered: render::render(&doc),
            primary: doc.primary,
            secondary: doc.secondary,
            problems: doc.problems,
            dynamic_reload: doc.settings.dynamic_reload.unwrap_or(false),
            mutual_auth: doc.settings.mutual_auth.unwrap_or(false),
            nonces: Mutex::new(NonceCounts::default()),
            has_turn,
            uses_ice,
        }))
    }

    /// Forgets one phone.
    pub fn invalidate_phone(&self, phone_id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut inner = self.inner.write();
        if let Some(hw) = inner.hw_by_phone.remove(phone_id) {
            inner.by_hw.remove(&hw);
        }
    }

    /// Forgets the WebRTC phones (their ICE servers follow the media servers' health).
    fn invalidate_ice(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut inner = self.inner.write();
        let Inner { by_hw, hw_by_phone } = &mut *inner;
        by_hw.retain(|_, e| {
            if e.uses_ice {
                hw_by_phone.remove(&e.phone_id);
            }
            !e.uses_ice
        });
    }

    /// Forgets every phone.
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        *self.inner.write() = Inner::default();
    }

    /// Phones rendered now.
    pub fn len(&self) -> usize {
        self.inner.read().by_hw.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An edge's `media-health/` record changed (`None`: deleted with its lease): drops
    /// the WebRTC phones' entries when what their documents depend on of it changed. A
    /// record gone (or empty) always counts: one seen before the watch started is not in
    /// `media_facts`, yet documents rendered meanwhile reflect it.
    fn media_health_changed(&self, node: &str, health: Option<&MediaHealth>) {
        let facts = health.map(media_facts).filter(|f| !f.is_empty());
        let mut known = self.media_facts.lock();
        let changed = match facts {
            Some(f) => known.insert(node.to_owned(), f.clone()) != Some(f),
            None => {
                known.remove(node);
                true
            }
        };
        drop(known);
        if changed {
            self.invalidate_ice();
        }
    }

    fn apply(&self, key: &str) {
        if let Some(tx) = &self.changes {
            let _ = tx.send(key.to_owned());
        }
        match key.strip_prefix(keys::PHONES) {
            Some(id) => self.invalidate_phone(id),
            // Profiles, sites and edge groups reach many phones: start again.
            None => self.invalidate_all(),
        }
    }

    /// Follows `config/` and, apart (one watch each: together they would share the
    /// store's whole key space), `media-health/`, from the current revision, dropping what
    /// a change touches.
    pub fn spawn_watches(self: Arc<Self>) -> Vec<JoinHandle<()>> {
        let store = self.store.clone();
        vec![
            Follow::from_now("provisioning catalog", &[keys::CONFIG]).spawn(
                store.clone(),
                CatalogFollower(self.clone()),
                Arc::default(),
            ),
            Follow::from_now("provisioning media health", &[keys::MEDIA_HEALTH]).spawn(
                store,
                MediaHealthFollower(self),
                Arc::default(),
            ),
        ]
    }
}

/// Drops what each change of the configuration touches.
struct CatalogFollower(Arc<Catalog>);

impl Follower for CatalogFollower {
    /// Anything cached so far may predate the revision followed from: start clean.
    fn reset(&mut self) {
        self.0.invalidate_all();
    }

    fn changed(&mut self, batch: WatchBatch) {
        for ev in &batch.events {
            self.0.apply(ev.key());
        }
    }
}

/// Drops the WebRTC phones' entries when a media server turns UP or DOWN or an edge's
/// latency bucket of it moves.
struct MediaHealthFollower(Arc<Catalog>);

impl Follower for MediaHealthFollower {
    fn reset(&mut self) {
        self.0.media_facts.lock().clear();
        self.0.invalidate_ice();
    }

    fn changed(&mut self, batch: WatchBatch) {
        for ev in &batch.events {
            let node = ev
                .key()
                .strip_prefix(keys::MEDIA_HEALTH)
                .unwrap_or(ev.key());
            match ev {
                WatchEvent::Put(kv) => {
                    // An undecodable record: as if the edge found nothing.
                    let h = MediaHealth::decode(kv.value.as_slice()).ok();
                    self.0.media_health_changed(node, h.as_ref());
                }
                WatchEvent::Delete { .. } => self.0.media_health_changed(node, None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use dialtone_proto::edge::v1::MediaServerHealth;
    use dialtone_store::EmbeddedStore;

    use super::*;

    fn health(servers: &[(&str, bool, u32, u32)]) -> MediaHealth {
        MediaHealth {
            servers: servers
                .iter()
                .map(|(id, up, rtt_ms, active_calls)| MediaServerHealth {
                    media_server_id: (*id).into(),
                    up: *up,
                    rtt_ms: *rtt_ms,
                    active_calls: *active_calls,
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn media_health_drops_the_cache_only_when_up_or_latency_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Embedded(EmbeddedStore::open(dir.path()).unwrap());
        let c = Catalog::new(store, "dialtone", CredentialKey::new([1; 32]), None);
        let epoch = || c.epoch.load(Ordering::Acquire);
        // (edge, its record, whether the cache is dropped)
        let cases = [
            ("e1", Some(health(&[("a", true, 4, 0)])), true),
            // More calls up: documents do not change.
            ("e1", Some(health(&[("a", true, 4, 7)])), false),
            ("e1", Some(health(&[("a", true, 8, 7)])), true),
            ("e2", Some(health(&[("a", true, 8, 0)])), true),
            ("e1", Some(health(&[("a", false, 8, 0)])), true),
            // Deleted with its edge's lease: always counts (a record from before the watch
            // started is not known, yet documents reflect it).
            ("e1", None, true),
            ("e4", None, true),
            // An edge that knows no media server is like one whose record went.
            ("e3", Some(health(&[])), true),
        ];
        for (node, record, dropped) in cases {
            let before = epoch();
            c.media_health_changed(node, record.as_ref());
            assert_eq!(epoch() != before, dropped, "{node} {record:?}");
        }
    }
}
