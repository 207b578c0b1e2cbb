//! How each change of a store key moves the view ([`super::Fleet`]): which phones it
//! touches, to be re-reduced by the caller (a binding its phone, an edge's membership
//! record every phone bound to that edge, a site, group or profile every phone).

use std::sync::Arc;

use dialtone_domain::{keys, settings};
use dialtone_proto::{
    config::v1::{BaseSettings, EdgeGroup, MetaBase, Phone, Site},
    edge::v1::{Binding, MediaHealth, TrunkHealth},
    provisioning::v1::ProvisionState,
    status::v1::{ProvisioningStatus, StatusChange},
};
use prost::Message;
use tracing::warn;

use super::{Fleet, Touches};
use crate::{
    entry::{BindingFacts, ContactFacts, PhoneEntry, PhoneFacts},
    intern::Interner,
    placed::Placed,
    republish,
};

/// What a key change touches.
pub(super) enum Touched<'k> {
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

impl Fleet {
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
    pub(super) fn absorb<'k>(&mut self, key: &'k str, value: Option<&[u8]>) -> Touched<'k> {
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
            // One lookup for a phone the view holds when the change touches no status (a
            // dead edge's bindings, deleted after its membership record); the view's copy of
            // its id is looked up only for one that does.
            let empty = match self.phones.get_mut(phone) {
                Some(entry) => {
                    set_binding(&mut entry.bindings, line, node, fresh);
                    entry.is_empty()
                }
                // Deleting what the view never had, or writing what does not decode,
                // changes nothing.
                None if fresh.is_none() => return Touched::Nothing,
                None => {
                    set_binding(&mut self.entry(phone).1.bindings, line, node, fresh);
                    false
                }
            };
            // A binding on an edge without its membership record counts nowhere in a
            // status: its change changes none. A dead edge's bindings are deleted seconds
            // after its record, hundreds of thousands at once, each re-reduced for nothing
            // before. An entry left with nothing (no configuration, provisioning or
            // binding) is still re-reduced, so the view drops it.
            if !counted && !empty {
                return Touched::Uncounted(phone, node);
            }
            let (id, _) = self.phones.get_key_value(phone).expect("set above");
            return Touched::Phone(id.clone());
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
}

/// Sets the binding of `line` on `node` among a phone's `bindings` (sorted by line, then
/// edge) to `fresh`, none deleting it. In place where it can be: an edge refreshes every
/// binding it holds, and a dead edge's are deleted hundreds of thousands at once.
fn set_binding(
    bindings: &mut Box<[BindingFacts]>,
    line: u32,
    node: &str,
    fresh: Option<BindingFacts>,
) {
    let at = bindings.binary_search_by(|b| (b.line, &*b.node_id).cmp(&(line, node)));
    match (at, fresh) {
        (Ok(i), Some(fresh)) => bindings[i] = fresh,
        (Err(_), None) => {}
        (Ok(i), None) => {
            let mut v = std::mem::take(bindings).into_vec();
            v.remove(i);
            *bindings = v.into_boxed_slice();
        }
        (Err(i), Some(fresh)) => {
            let mut v = std::mem::take(bindings).into_vec();
            // Room for one more, not the four a push would make: the list is kept at its
            // exact length (`entry.rs`).
            v.reserve_exact(1);
            v.insert(i, fresh);
            *bindings = v.into_boxed_slice();
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

#[cfg(test)]
#[path = "absorb_tests.rs"]
mod tests;
