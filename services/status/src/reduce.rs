//! What re-reducing a phone changes (`Context::rereduce`): its published status, its
//! per-site counts and its change, and what the view must finish; the status itself is
//! built by `compute.rs`. Reads only the phone's own entry and what every phone is reduced
//! against, so `republish.rs` re-reduces many phones at once on several threads.

use std::{cell::RefCell, collections::HashMap, sync::Arc};

use dialtone_proto::{
    config::v1::EdgeGroup,
    status::v1::{EdgeStatus, OperationalStatus, PhoneStatus, StatusChange},
};
use prost::Message as _;

use crate::{
    entry::{BindingFacts, Members, PhoneEntry, Published},
    intern::Interner,
    wire::ChangeParts,
};

/// How a caller wants each changed phone handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The change itself.
    Change,
    /// The change protobuf-encoded (what the hub's live watchers are sent), made on the
    /// thread that re-reduced the phone.
    Encoded,
    /// Only that the phone changed (nobody to send it to).
    Bare,
}

/// A changed phone, in the [`Form`] asked for.
#[derive(Debug)]
pub enum Handed {
    /// [`Form::Change`] (boxed: the other forms are a few bytes).
    Change(Box<StatusChange>),
    /// [`Form::Encoded`].
    Encoded(Arc<[u8]>),
    /// [`Form::Bare`].
    Bare,
}

impl Handed {
    /// `change` in the form asked for.
    pub(crate) fn of(change: StatusChange, form: Form) -> Self {
        match form {
            Form::Change => Self::Change(Box::new(change)),
            Form::Encoded => Self::Encoded(change.encode_to_vec().into()),
            Form::Bare => Self::Bare,
        }
    }

    /// The change `parts` stand for, in the form asked for; `buf` is the caller's to keep
    /// for the next change.
    pub(crate) fn of_parts(parts: ChangeParts<'_>, form: Form, buf: &mut Vec<u8>) -> Self {
        match form {
            Form::Change => Self::Change(Box::new(parts.to_change())),
            Form::Encoded => Self::Encoded(parts.encode(buf)),
            Form::Bare => Self::Bare,
        }
    }

    /// The change's encoding (made now for [`Handed::Change`]); none for [`Handed::Bare`].
    pub(crate) fn into_encoded(self) -> Option<Arc<[u8]>> {
        match self {
            Self::Change(c) => Some(c.encode_to_vec().into()),
            Self::Encoded(bytes) => Some(bytes),
            Self::Bare => None,
        }
    }
}

/// What re-reducing one phone changed that the view finishes alone: its names, dropping
/// an entry left empty, handing the change on. (Its per-site counts go to a [`Tally`].)
#[derive(Debug)]
pub(crate) struct Rereduced {
    /// Whether its published edges hold a name the view's interner did not have yet.
    pub(crate) needs_interning: bool,
    /// Whether its entry holds nothing any more.
    pub(crate) empty: bool,
    /// Whether its status was removed (a watcher resuming from before cannot read that
    /// from the view: it must be sent the whole fleet).
    pub(crate) removed: bool,
    /// The site its status moved from, when it moved to another (a watcher of that site
    /// resuming from before cannot read the move from the view or the history: it must
    /// be sent the site's phones again).
    pub(crate) left: Option<Arc<str>>,
    /// The change, when its status changed.
    pub(crate) handed: Option<Handed>,
}

/// Changes to the per-site counts by status, summed over many phones before the view
/// takes them in: phones re-reduced on several threads then share no counter, and a
/// site's name is cloned once a thread, not once a phone.
#[derive(Debug, Default)]
pub(crate) struct Tally(pub(crate) HashMap<Arc<str>, [i64; 5]>);

impl Tally {
    fn add(&mut self, site: &Arc<str>, status: OperationalStatus, by: i64) {
        let slot = slot(status);
        if let Some(c) = self.0.get_mut(&**site) {
            c[slot] += by;
        } else {
            let mut c = [0; 5];
            c[slot] = by;
            self.0.insert(site.clone(), c);
        }
    }

    /// Adds `other`'s changes to these.
    pub(crate) fn merge(&mut self, other: Tally) {
        for (site, by) in other.0 {
            let sum = self.0.entry(site).or_default();
            for (s, b) in sum.iter_mut().zip(by) {
                *s += b;
            }
        }
    }
}

/// The place of `status` in the per-site counts ([`crate::entry::Counts`]).
pub(crate) fn slot(status: OperationalStatus) -> usize {
    match status {
        OperationalStatus::Operational => 0,
        OperationalStatus::Degraded => 1,
        OperationalStatus::Offline => 2,
        OperationalStatus::NotApplicable => 3,
        OperationalStatus::Unspecified => 4,
    }
}

/// What a phone's status is reduced against besides its own entry: borrowed apart from
/// the phones, so one lookup of a phone serves both its reduction and its update.
pub(crate) struct Context<'a> {
    pub(crate) realm: &'a str,
    pub(crate) sites: &'a HashMap<String, String>,
    pub(crate) groups: &'a HashMap<String, EdgeGroup>,
    pub(crate) bases: &'a HashMap<String, (Option<bool>, bool)>,
    pub(crate) members: &'a Members,
    pub(crate) names: &'a Interner,
    /// The view's epoch: a phone's [`Placed`] from another is stale.
    pub(crate) epoch: u32,
}

impl Context<'_> {
    /// Re-reduces phone `id` in place: when its status differs from the one published, it
    /// is published (with since-times kept where nothing moved), counted in `tally` and
    /// handed over as `form`, stamped with `revision`. The names the new publication holds
    /// are moved from the old one where they can be: a name's reference count is shared
    /// by every phone, and threads re-reducing phones at once would contend for it.
    pub(crate) fn rereduce(
        &self,
        id: &str,
        entry: &mut PhoneEntry,
        revision: i64,
        now_ms: i64,
        form: Form,
        tally: &mut Tally,
    ) -> Rereduced {
        // The status is built into this thread's scratch status and encoded from there:
        // its strings and lists keep their room from phone to phone (`compute.rs`).
        // Nothing in the closure calls back into the pool or the sink, which could borrow
        // the scratch again.
        thread_local!(static SCRATCH: RefCell<(PhoneStatus, Vec<u8>)> = RefCell::default());
        SCRATCH.with_borrow_mut(|(st, buf)| {
            let mut out = Rereduced {
                needs_interning: false,
                empty: false,
                removed: false,
                left: None,
                handed: None,
            };
            let mut cache = entry.placed;
            let fresh = self
                .compute_into(id, entry, &mut cache, st)
                .then(|| fingerprint(st));
            entry.placed = cache;
            match (fresh, entry.published.take()) {
                (None, None) => {}
                (None, Some(old)) => {
                    tally.add(&old.site_id, old.status, -1);
                    out.removed = true;
                    let change = ChangeParts {
                        removed: true,
                        phone_id: id,
                        revision,
                        ..Default::default()
                    };
                    out.handed = Some(Handed::of_parts(change, form, buf));
                }
                (Some(fingerprint), Some(old)) if old.fingerprint == fingerprint => {
                    entry.published = Some(old);
                }
                (Some(fingerprint), old) => {
                    let p = self.publish(st, entry, old, revision, now_ms, tally);
                    out.needs_interning = p.needs_interning;
                    entry.published = Some(Published {
                        fingerprint,
                        ..p.published
                    });
                    let change = ChangeParts {
                        status: Some(st),
                        phone_id: id,
                        revision,
                        left_site: p.left.as_deref().unwrap_or_default(),
                        ..Default::default()
                    };
                    out.handed = Some(Handed::of_parts(change, form, buf));
                    out.left = p.left;
                }
            }
            out.empty = entry.is_empty();
            out
        })
    }

    /// Stamps `st`, the phone's fresh status, with its since-times (kept from `old` where
    /// nothing moved), `revision` and binding times, counts it in `tally`, and returns
    /// what the view keeps of it (its fingerprint left for the caller to set).
    fn publish(
        &self,
        st: &mut PhoneStatus,
        entry: &PhoneEntry,
        old: Option<Published>,
        revision: i64,
        now_ms: i64,
        tally: &mut Tally,
    ) -> Publication {
        let status = st.status();
        let mut needs_interning = false;
        let (old_site, old_edges) = match old {
            Some(o) => {
                tally.add(&o.site_id, o.status, -1);
                st.status_since_ms = if o.status == status {
                    o.since_ms
                } else {
                    now_ms
                };
                (Some(o.site_id), o.edges.into_vec())
            }
            None => {
                st.status_since_ms = now_ms;
                (None, Vec::new())
            }
        };
        for e in &mut st.edges {
            e.since_ms = old_edges
                .iter()
                .find(|(n, ..)| **n == *e.node_id)
                .filter(|(_, lines, _)| *lines == e.lines_registered)
                .map_or(now_ms, |(_, _, since)| *since);
        }
        st.revision = revision;
        fill_binding_times(st, &entry.bindings, self.members);
        let edges = reuse_edges(old_edges, &st.edges, |id| {
            self.names.find(id).unwrap_or_else(|| {
                needs_interning = true;
                Arc::from(id)
            })
        });
        // The site of a status is its configuration's, already the interner's. Cloned
        // only when it moved: threads re-reducing a site's phones at once would contend
        // for its name's reference count.
        let left = old_site.as_ref().filter(|s| ***s != *st.site_id).cloned();
        let site_id = match (old_site, &entry.config) {
            (Some(s), _) if *s == *st.site_id => s,
            (_, Some(c)) => c.site_id.clone(),
            (_, None) => Arc::from(st.site_id.as_str()),
        };
        tally.add(&site_id, status, 1);
        Publication {
            published: Published {
                fingerprint: 0,
                status,
                since_ms: st.status_since_ms,
                edges,
                site_id,
                revision,
            },
            needs_interning,
            left,
        }
    }
}

/// A phone's status as the view keeps it once published ([`Context::publish`]).
struct Publication {
    published: Published,
    /// Its edges hold a name the interner did not have.
    needs_interning: bool,
    /// The site it moved from, when it moved to another.
    left: Option<Arc<str>>,
}

/// The published edges of `now` (in its order), each with its name from `old` where `old`
/// has it (moved over: no reference count touched) and from `name` where not. When `now`
/// is as long as `old` and every name is in `old` (a dead edge stays in its phones' lists,
/// placed, with no line registered), the list is rebuilt in `old`'s own allocation: an
/// edge's death re-reduces hundreds of thousands of phones at once, and freeing each list
/// on a thread other than the one that allocated it, then allocating its successor, was
/// a tenth of that work. Any other list is built anew at its exact length, as before.
fn reuse_edges(
    mut old: Vec<(Arc<str>, u32, i64)>,
    now: &[EdgeStatus],
    mut name: impl FnMut(&str) -> Arc<str>,
) -> Box<[(Arc<str>, u32, i64)]> {
    if now.len() == old.len() {
        let mut in_place = true;
        for (i, e) in now.iter().enumerate() {
            // Edges before `i` are placed; the rest of `old` is what is left to match.
            let Some(j) = old[i..].iter().position(|(n, ..)| **n == *e.node_id) else {
                in_place = false;
                break;
            };
            old.swap(i, i + j);
            (old[i].1, old[i].2) = (e.lines_registered, e.since_ms);
        }
        if in_place {
            return old.into_boxed_slice();
        }
    }
    // Names are taken by value, so the order the loop above left `old` in does not matter.
    now.iter()
        .map(|e| {
            let node = match old.iter().position(|(n, ..)| **n == *e.node_id) {
                Some(i) => old.swap_remove(i).0,
                None => name(&e.node_id),
            };
            (node, e.lines_registered, e.since_ms)
        })
        .collect()
}

/// Each edge's latest binding write (kept out of the fingerprint: refreshes move it); none
/// for an edge without its membership record, whose bindings do not count.
pub(crate) fn fill_binding_times(
    st: &mut PhoneStatus,
    bindings: &[BindingFacts],
    members: &Members,
) {
    for e in &mut st.edges {
        e.binding_updated_at_ms = bindings
            .iter()
            .filter(|b| *b.node_id == *e.node_id && members.contains(&b.node_id))
            .map(|b| b.updated_at_ms)
            .max()
            .unwrap_or(0);
    }
}

/// A hash of everything a status says except its since-times and revision (which are
/// still zero when it is taken): a walk of its fields, not of its encoding, which an
/// edge's departure would make twice for each of hundreds of thousands of phones (once
/// here, once for the change handed on).
fn fingerprint(st: &PhoneStatus) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0).hash_one(st)
}

#[cfg(test)]
#[path = "reduce_tests.rs"]
mod tests;
