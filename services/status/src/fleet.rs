//! The status role's view of the fleet: the configuration it needs (sites, edge groups,
//! the secondary-registration setting of each profile, phones), every edge's bindings and
//! the provisioning records, kept from one ordered stream of store changes. Each change
//! re-reduces the phones it touches; a phone whose status changed gets the revision of the
//! change, fresh since-times and a [`StatusChange`]. State only: no IO, no clock (the
//! caller passes the time).
//!
//! A binding counts only while its edge has a membership record (`members/edge/{node}`):
//! when an edge dies, the record goes with its lease, and its phones read DEGRADED or
//! OFFLINE at once, not after etcd has deleted every binding on its leases, which takes
//! seconds at hundreds of thousands (binding leases outlive the node's lease for that:
//! `dialtone_store::lifecycle`). The config role's REST view follows the same rule.

mod absorb;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use dialtone_domain::keys;
use dialtone_proto::{
    config::v1::EdgeGroup,
    edge::v1::{MediaHealth, TrunkHealth},
    status::v1::{MediaServerStatus, OperationalStatus, PhoneStatus, StatusChange, TrunkStatus},
};

pub use crate::{
    entry::Counts,
    reduce::{Form, Handed},
};
use crate::{
    entry::{Members, PhoneEntry},
    intern::Interner,
    placed::Placed,
    reduce::{self, Context},
    republish,
};

/// Every prefix the view is built from.
pub const PREFIXES: [&str; 9] = [
    keys::EDGE_MEMBERS,
    keys::SITES,
    keys::EDGE_GROUPS,
    keys::BASE_SETTINGS,
    keys::PHONES,
    keys::BINDINGS,
    keys::PROVISION,
    keys::TRUNK_HEALTH,
    keys::MEDIA_HEALTH,
];

/// The fleet as the status role sees it.
#[derive(Debug)]
pub struct Fleet {
    realm: String,
    sites: HashMap<String, String>,
    groups: HashMap<String, EdgeGroup>,
    /// Profile id → its (template-merged) secondary registration setting, and whether its
    /// phones fail over instead, whatever their overrides say (AudioCodes).
    bases: HashMap<String, (Option<bool>, bool)>,
    /// Boxed: a B-tree node has room for eleven entries, most of it empty. The ids are
    /// shared with the hub's history ([`Fleet::shared_id`]).
    phones: BTreeMap<Arc<str>, Box<PhoneEntry>>,
    counts: BTreeMap<String, Counts>,
    names: Interner,
    revision: i64,
    /// `updated_at_ms` of the bindings written since [`Fleet::take_binding_writes`] (the
    /// watch lag is measured from them without decoding the bindings twice).
    binding_writes: Vec<i64>,
    /// Each edge's trunk keep-alive findings, by node id.
    trunk_health: BTreeMap<String, TrunkHealth>,
    /// Each edge's media server pings, by node id.
    media_health: BTreeMap<String, MediaHealth>,
    /// The edges with a membership record: only their bindings count. A few, so a list;
    /// the ids are the interner's, like the bindings' ([`Members::contains`]).
    members: Members,
    /// The latest revision at which a phone's status was removed (or the inputs were
    /// replaced, which may have removed phones unseen): a watcher resuming from before it
    /// is sent the whole fleet, not only the phones changed since.
    last_removal: i64,
    /// The latest revision at which a phone's status left each site for another: a watcher
    /// of that site resuming from before it is sent the site's phones again, since neither
    /// the view nor the history knows the phone was there. One entry a site a phone ever
    /// left (a relisting finds moves as any change: its phones keep what was published).
    last_moves: HashMap<Arc<str>, i64>,
    /// Moves whenever a site, edge group or profile changes or the inputs are replaced:
    /// a phone's cached placement ([`Placed`]) holds only within the epoch it was found in.
    epoch: u32,
}

/// The phones a part of a batch touched, to re-reduce ([`Fleet::republish_all`]).
pub type Touches = Vec<Arc<str>>;

impl Fleet {
    /// An empty view; `realm` makes the lines' AORs.
    pub fn new(realm: &str) -> Self {
        Self {
            realm: realm.to_owned(),
            sites: HashMap::new(),
            groups: HashMap::new(),
            bases: HashMap::new(),
            phones: BTreeMap::new(),
            counts: BTreeMap::new(),
            names: Interner::default(),
            revision: 0,
            binding_writes: Vec::new(),
            trunk_health: BTreeMap::new(),
            media_health: BTreeMap::new(),
            members: Members::default(),
            last_removal: 0,
            last_moves: HashMap::new(),
            epoch: 1,
        }
    }

    /// Every trunk some edge probes, as the edges find it.
    pub fn trunk_statuses(&self) -> Vec<TrunkStatus> {
        crate::trunks::statuses(&self.trunk_health)
    }

    /// Every media server some edge pings, as the edges find it.
    pub fn media_server_statuses(&self) -> Vec<MediaServerStatus> {
        crate::media::statuses(&self.media_health)
    }

    /// The store revision the view reflects.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Phones in the configuration.
    pub fn len(&self) -> usize {
        self.counts
            .values()
            .map(|c| c.iter().sum::<u32>() as usize)
            .sum()
    }

    /// Whether no phone is configured.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Phones per site by status: [operational, degraded, offline, not applicable, other].
    pub fn counts(&self) -> &BTreeMap<String, Counts> {
        &self.counts
    }

    /// Forgets every phone's cached placement: what placement reads has changed.
    fn next_epoch(&mut self) {
        self.epoch = self.epoch.checked_add(1).unwrap_or_else(|| {
            // After four billion changes the epochs start again: none cached may match.
            for e in self.phones.values_mut() {
                e.placed = Placed::default();
            }
            1
        });
    }

    /// Raises the view's revision to `revision` (a batch's last part is applied).
    pub fn advance(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    /// Re-reduces phones `ids` (sorted, no repeats: [`Fleet::absorb_part`]'s), handing each
    /// whose status changed to `sink` stamped with `revision`, in id order and in the form
    /// asked for. Many phones are re-reduced on several threads
    /// ([`crate::republish`]).
    pub(crate) fn republish_all(
        &mut self,
        ids: &[Arc<str>],
        revision: i64,
        now_ms: i64,
        form: Form,
        sink: &mut dyn FnMut(&Arc<str>, Handed),
    ) {
        let Fleet {
            realm,
            sites,
            groups,
            bases,
            phones,
            counts,
            names,
            members,
            epoch,
            ..
        } = self;
        let context = Context {
            realm,
            sites,
            groups,
            bases,
            members,
            names,
            epoch: *epoch,
        };
        let rereduced = republish::rereduce(&context, phones, ids, revision, now_ms, form);
        let departures = republish::finish(phones, counts, names, ids, rereduced, sink);
        if departures.removed {
            self.last_removal = self.last_removal.max(revision);
        }
        for site in departures.left {
            let last = self.last_moves.entry(site).or_default();
            *last = (*last).max(revision);
        }
    }

    /// Re-reduces phones `ids` ([`Fleet::republish_all`]); returns their changes.
    fn changes_of(&mut self, ids: &[Arc<str>], revision: i64, now_ms: i64) -> Vec<StatusChange> {
        let mut out = Vec::new();
        self.republish_all(ids, revision, now_ms, Form::Change, &mut |_, h| {
            if let Handed::Change(c) = h {
                out.push(*c);
            }
        });
        out
    }

    /// When the edges wrote the bindings applied since the last call (edge clock, Unix ms).
    pub fn take_binding_writes(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.binding_writes)
    }

    /// Takes listed keys in without re-reducing: a listing is settled once complete, so a
    /// phone listed before its bindings does not flap through OFFLINE.
    pub fn load<'k>(&mut self, kvs: impl IntoIterator<Item = (&'k str, &'k [u8])>) {
        for (key, value) in kvs {
            self.absorb(key, Some(value));
        }
    }

    /// Re-reduces every phone after a complete listing read at `revision`.
    pub fn settle(&mut self, revision: i64, now_ms: i64) -> Vec<StatusChange> {
        self.advance(revision);
        let ids: Vec<Arc<str>> = self.phones.keys().cloned().collect();
        self.changes_of(&ids, self.revision, now_ms)
    }

    /// Replaces every input with those of `fresh` (a complete listing read at `revision`)
    /// while keeping what was published, so only real differences are reported.
    pub fn replace_inputs(
        &mut self,
        fresh: Fleet,
        revision: i64,
        now_ms: i64,
    ) -> Vec<StatusChange> {
        self.sites = fresh.sites;
        self.groups = fresh.groups;
        self.bases = fresh.bases;
        self.trunk_health = fresh.trunk_health;
        self.media_health = fresh.media_health;
        self.members = fresh.members;
        self.next_epoch();
        self.last_removal = self.last_removal.max(revision);
        // The fresh listing's names; what was published keeps its own until republished.
        self.names = fresh.names;
        for e in self.phones.values_mut() {
            e.config = None;
            e.bindings = Box::default();
            e.provision = None;
        }
        for (id, e) in fresh.phones {
            let mine = self.phones.entry(id).or_default();
            mine.config = e.config;
            mine.bindings = e.bindings;
            mine.provision = e.provision;
        }
        self.settle(revision, now_ms)
    }

    /// The view's copy of phone id `id` (a new one for a phone it no longer holds).
    pub fn shared_id(&self, id: &str) -> Arc<str> {
        self.phones
            .get_key_value(id)
            .map_or_else(|| Arc::from(id), |(k, _)| k.clone())
    }

    /// The status of a configured phone as last published (with its since-times).
    pub fn get(&self, id: &str) -> Option<PhoneStatus> {
        let published = self.phones.get(id)?.published.as_ref()?;
        let mut st = self.compute(id)?;
        st.status_since_ms = published.since_ms;
        for e in &mut st.edges {
            e.since_ms = published
                .edges
                .iter()
                .find(|(n, ..)| **n == *e.node_id)
                .map_or(0, |(_, _, s)| *s);
        }
        st.revision = published.revision;
        reduce::fill_binding_times(&mut st, &self.phones.get(id)?.bindings, &self.members);
        Some(st)
    }

    /// Ids of configured phones after `after` (exclusive) in id order.
    pub fn ids_after<'a>(&'a self, after: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = if after.is_empty() {
            Unbounded
        } else {
            Excluded(after)
        };
        self.phones
            .range::<str, _>((start, Unbounded))
            .filter(|(_, e)| e.published.is_some())
            .map(|(id, _)| &**id)
    }

    /// The latest revision at which a phone's status was removed, or the inputs were
    /// replaced by a listing (which may remove phones unseen).
    pub fn last_removal(&self) -> i64 {
        self.last_removal
    }

    /// The latest revision at which a phone's status left `site` for another (0: none).
    pub fn last_move_from(&self, site: &str) -> i64 {
        self.last_moves.get(site).copied().unwrap_or(0)
    }

    /// The site, status and revision last published for a phone (cheap, for filters).
    pub fn published(&self, id: &str) -> Option<(&str, OperationalStatus, i64)> {
        let p = self.phones.get(id)?.published.as_ref()?;
        Some((&*p.site_id, p.status, p.revision))
    }

    /// A configured phone's name and base settings profile (cheap, for filters).
    pub fn identity(&self, id: &str) -> Option<(&str, &str)> {
        let c = self.phones.get(id)?.config.as_ref()?;
        Some((&*c.name, &*c.base_id))
    }

    /// The phone's status without since-times and revision; none when it is not configured.
    fn compute(&self, id: &str) -> Option<PhoneStatus> {
        let entry = self.phones.get(id)?;
        self.context().compute(id, entry, &mut entry.placed.clone())
    }

    /// What a phone's status is reduced against besides its own entry.
    fn context(&self) -> Context<'_> {
        Context {
            realm: &self.realm,
            sites: &self.sites,
            groups: &self.groups,
            bases: &self.bases,
            members: &self.members,
            names: &self.names,
            epoch: self.epoch,
        }
    }
}

/// The prefixes whose keys re-reduce many phones when they change: an edge's membership
/// record (every phone bound to it), a site, an edge group, a profile (every phone).
/// [`Fleet::absorb`] answers `Touched::Edge` or `Touched::Everyone` for these and only
/// these (`fleet_tests` holds it to that).
const WIDE: [&str; 4] = [
    keys::EDGE_MEMBERS,
    keys::SITES,
    keys::EDGE_GROUPS,
    keys::BASE_SETTINGS,
];

/// Whether a change of `key` may re-reduce more than one phone (the hub then applies it
/// off the async workers).
pub fn touches_many_phones(key: &str) -> bool {
    WIDE.iter().any(|p| key.starts_with(p))
}

/// The phone a key is about (its own key when it is about no phone): a batch is cut into
/// parts only where this changes, so no phone is seen half-changed.
pub fn phone_of(key: &str) -> &str {
    if let Some((id, ..)) = keys::parse_binding(key) {
        return id;
    }
    key.strip_prefix(keys::PHONES)
        .or_else(|| key.strip_prefix(keys::PROVISION))
        .unwrap_or(key)
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
