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

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use dialtone_domain::{keys, settings};
use dialtone_proto::{
    config::v1::{BaseSettings, EdgeGroup, MetaBase, Phone, Site},
    edge::v1::{Binding, MediaHealth, TrunkHealth},
    provisioning::v1::ProvisionState,
    status::v1::{
        MediaServerStatus, OperationalStatus, PhoneStatus, ProvisioningStatus, StatusChange,
        TrunkStatus,
    },
};
use prost::Message;
use tracing::warn;

pub use crate::{
    entry::Counts,
    reduce::{Form, Handed},
};
use crate::{
    entry::{BindingFacts, ContactFacts, Members, PhoneEntry, PhoneFacts},
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

/// What a key change touches.
enum Touched<'k> {
    Nothing,
    /// The view's own copy of the phone's id.
    Phone(Arc<str>),
    /// A binding of phone `.0` on edge `.1`, which has no membership record now: it
    /// changes nothing, unless that record came or went in the same part (the phones bound
    /// to such an edge are found at the part's end, when the binding may be gone already).
    /// Ids, not the view's copy: holding hundreds of thousands of those to drop later
    /// would touch each one's memory twice.
    Uncounted(&'k str, &'k str),
    /// Every phone with a binding on this edge (its membership record came or went).
    Edge(Arc<str>),
    Everyone,
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

    /// The entry of phone `id` (made empty when the view has none) and the view's copy of
    /// its id. Looked up before inserting: a batch of a million changes to phones the view
    /// holds allocates no key.
    fn entry(&mut self, id: &str) -> (Arc<str>, &mut PhoneEntry) {
        if !self.phones.contains_key(id) {
            self.phones.insert(id.into(), Box::default());
        }
        use std::ops::Bound::Included;
        let (key, entry) = self
            .phones
            .range_mut::<str, _>((Included(id), Included(id)))
            .next()
            .expect("inserted above");
        (key.clone(), entry)
    }

    /// Applies one change of a key (`value` none: deleted) without re-reducing; returns
    /// whether everything must be re-reduced, else the phone touched. A change that
    /// touches every phone may move any phone's placement, so none cached holds after it.
    fn absorb<'k>(&mut self, key: &'k str, value: Option<&[u8]>) -> Touched<'k> {
        let touched = self.absorb_key(key, value);
        if matches!(touched, Touched::Everyone) {
            self.next_epoch();
        }
        touched
    }

    /// Applies one change of a key (`value` none: deleted) without re-reducing; returns
    /// whether everything must be re-reduced, else the phone touched.
    fn absorb_key<'k>(&mut self, key: &'k str, value: Option<&[u8]>) -> Touched<'k> {
        fn decode<M: Message + Default>(key: &str, v: &[u8]) -> Option<M> {
            M::decode(v)
                .inspect_err(|e| warn!(key, error = %e, "undecodable value in the store"))
                .ok()
        }
        if let Some(node) = key.strip_prefix(keys::TRUNK_HEALTH) {
            match value.and_then(|v| decode::<TrunkHealth>(key, v)) {
                Some(h) => self.trunk_health.insert(node.to_owned(), h),
                None => self.trunk_health.remove(node),
            };
            return Touched::Nothing;
        }
        if let Some(node) = key.strip_prefix(keys::MEDIA_HEALTH) {
            match value.and_then(|v| decode::<MediaHealth>(key, v)) {
                Some(h) => self.media_health.insert(node.to_owned(), h),
                None => self.media_health.remove(node),
            };
            return Touched::Nothing;
        }
        if let Some(node) = key.strip_prefix(keys::EDGE_MEMBERS) {
            let node = self.names.get(node);
            let changed = match value {
                Some(_) => self.members.insert(node.clone()),
                None => self.members.remove(&node),
            };
            return if changed {
                Touched::Edge(node)
            } else {
                Touched::Nothing
            };
        }
        if let Some(id) = key.strip_prefix(keys::PHONES) {
            let names = &mut self.names;
            let facts = value
                .and_then(|v| decode::<Phone>(key, v))
                .map(|p| PhoneFacts {
                    secondary_override: p.overrides.as_ref().and_then(|o| o.secondary_registration),
                    name: p.name.into(),
                    site_id: names.get(&p.site_id),
                    base_id: names.get(&p.base_settings_id),
                    kind: p.kind,
                    disabled: p.disabled,
                    sip_users: p.lines.into_iter().map(|l| l.sip_user.into()).collect(),
                });
            let (id, entry) = self.entry(id);
            entry.config = facts;
            entry.placed = Placed::default();
            return Touched::Phone(id);
        }
        if key.starts_with(keys::BINDINGS) {
            let Some((phone, line, node)) = keys::parse_binding(key) else {
                return Touched::Nothing;
            };
            let counted = self.members.contains_name(node);
            let fresh = value.and_then(|v| decode::<Binding>(key, v)).map(|b| {
                if b.updated_at_ms > 0 {
                    self.binding_writes.push(b.updated_at_ms);
                }
                binding_facts(&mut self.names, line, node, b)
            });
            let (id, entry) = self.entry(phone);
            let mut bindings: Vec<BindingFacts> = std::mem::take(&mut entry.bindings)
                .into_vec()
                .into_iter()
                .filter(|b| !(b.line == line && *b.node_id == *node))
                .chain(fresh)
                .collect();
            bindings.sort_by(|a, b| (a.line, &a.node_id).cmp(&(b.line, &b.node_id)));
            entry.bindings = bindings.into_boxed_slice();
            // A binding on an edge without its membership record counts nowhere in a
            // status: its change changes none. A dead edge's bindings are deleted seconds
            // after its record, hundreds of thousands at once, each re-reduced for nothing
            // before. An entry left with nothing (no configuration, provisioning or
            // binding) is still re-reduced, so the view drops it.
            if !counted && !entry.is_empty() {
                return Touched::Uncounted(phone, node);
            }
            return Touched::Phone(id);
        }
        if let Some(id) = key.strip_prefix(keys::PROVISION) {
            let p = value
                .and_then(|v| decode::<ProvisionState>(key, v))
                .map(|s| ProvisioningStatus {
                    drift: !s.desired_version.is_empty() && s.desired_version != s.applied_version,
                    applied_version: s.applied_version,
                    desired_version: s.desired_version,
                    last_fetch_ms: s.last_fetch_ms,
                    last_error: s.last_error,
                    last_error_ms: s.last_error_ms,
                })
                .map(Box::new);
            let (id, entry) = self.entry(id);
            entry.provision = p;
            return Touched::Phone(id);
        }
        if let Some(id) = key.strip_prefix(keys::SITES) {
            match value.and_then(|v| decode::<Site>(key, v)) {
                Some(s) => self.sites.insert(id.to_owned(), s.edge_group_id),
                None => self.sites.remove(id),
            };
            return Touched::Everyone;
        }
        if let Some(id) = key.strip_prefix(keys::EDGE_GROUPS) {
            match value.and_then(|v| decode::<EdgeGroup>(key, v)) {
                Some(g) => self.groups.insert(id.to_owned(), g),
                None => self.groups.remove(id),
            };
            return Touched::Everyone;
        }
        if let Some(id) = key.strip_prefix(keys::BASE_SETTINGS) {
            match value.and_then(|v| decode::<BaseSettings>(key, v)) {
                Some(b) => {
                    let meta = MetaBase::try_from(b.meta_base).unwrap_or(MetaBase::GenericSip);
                    let profile = b.settings.unwrap_or_default();
                    let s = settings::effective(meta, &profile, None);
                    let fails_over = meta == MetaBase::Audiocodes;
                    self.bases
                        .insert(id.to_owned(), (s.secondary_registration, fails_over))
                }
                None => self.bases.remove(id),
            };
            return Touched::Everyone;
        }
        Touched::Nothing
    }

    /// Applies a batch of changes that brings the view to `revision`; returns the phones
    /// whose status changed, in id order.
    pub fn apply<'k>(
        &mut self,
        changes: impl IntoIterator<Item = (&'k str, Option<&'k [u8]>)>,
        revision: i64,
        now_ms: i64,
    ) -> Vec<StatusChange> {
        let touched = self.absorb_part(changes);
        let out = self.changes_of(&touched, revision, now_ms);
        self.advance(revision);
        out
    }

    /// Takes part of a batch in without re-reducing; returns the phones it touched, sorted,
    /// for [`Fleet::republish_all`]: an edge that departs touches every phone bound to it,
    /// a site, group or profile change every phone, so the caller may re-reduce them in
    /// parts.
    pub fn absorb_part<'k>(
        &mut self,
        changes: impl IntoIterator<Item = (&'k str, Option<&'k [u8]>)>,
    ) -> Touches {
        let mut touched: Vec<Arc<str>> = Vec::new();
        let mut edges: Vec<Arc<str>> = Vec::new();
        let mut uncounted: Vec<(&str, &str)> = Vec::new();
        let mut everyone = false;
        for (key, value) in changes {
            match self.absorb(key, value) {
                Touched::Nothing => {}
                Touched::Phone(id) => touched.push(id),
                Touched::Uncounted(id, node) => uncounted.push((id, node)),
                Touched::Edge(node) => edges.push(node),
                Touched::Everyone => everyone = true,
            }
        }
        if everyone {
            return self.phones.keys().cloned().collect();
        }
        // A binding on an edge whose record went in this part: gone before `bound_to`
        // looks, its phone is re-reduced all the same.
        for (phone, _) in uncounted
            .into_iter()
            .filter(|(_, node)| edges.iter().any(|e| **e == **node))
        {
            if let Some((id, _)) = self.phones.get_key_value(phone) {
                touched.push(id.clone());
            }
        }
        if !edges.is_empty() {
            let bound = republish::bound_to(&self.phones, &edges);
            if touched.is_empty() {
                // In id order, each once, already: sorting 666,000 ids again would read
                // each id's bytes, a cache miss apiece.
                debug_assert!(bound.is_sorted(), "bound_to walks the view in order");
                return bound;
            }
            touched.extend(bound);
        }
        touched.sort_unstable();
        touched.dedup();
        touched
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

fn binding_facts(names: &mut Interner, line: u32, node: &str, b: Binding) -> BindingFacts {
    let user_agent = names.get(b.contacts.first().map_or("", |c| &c.user_agent));
    let mut contacts: Vec<ContactFacts> = b
        .contacts
        .into_iter()
        .map(|c| ContactFacts {
            uri: c.uri.into(),
            source: c.source.into(),
            transport: c.transport,
        })
        .collect();
    contacts.sort_by(|a, b| a.uri.cmp(&b.uri));
    BindingFacts {
        line,
        node_id: names.get(node),
        contacts: contacts.into_boxed_slice(),
        user_agent,
        updated_at_ms: b.updated_at_ms,
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
