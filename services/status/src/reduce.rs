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
                .then(|| fingerprint(st, buf));
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

/// The published edges of `now` (in its order), built in `old`'s allocation: an edge's
/// departure leaves each of its phones one edge fewer, and its hundreds of thousands of
/// phones re-reduced at once spent a tenth of their time giving back their lists' memory
/// and asking for it again (given back on a thread other than the one that asked for it,
/// mimalloc's slowest path). Shrunk to its length, the list keeps its block when it is at
/// least half of it (mimalloc's `realloc`), so a phone left with one edge of two keeps the
/// second's 32 bytes until it has two again. Names are moved over from `old` (no
/// reference count is touched for an edge that stays); `name` gives one for an edge
/// `old` did not have.
fn reuse_edges(
    mut old: Vec<(Arc<str>, u32, i64)>,
    now: &[EdgeStatus],
    mut name: impl FnMut(&str) -> Arc<str>,
) -> Box<[(Arc<str>, u32, i64)]> {
    old.reserve_exact(now.len().saturating_sub(old.len()));
    for (i, e) in now.iter().enumerate() {
        // Edges before `i` are placed; the rest of `old` is what is left to match.
        match old[i..].iter().position(|(n, ..)| **n == *e.node_id) {
            Some(j) => old.swap(i, i + j),
            None => {
                old.push((name(&e.node_id), 0, 0));
                let last = old.len() - 1;
                old.swap(i, last);
            }
        }
        (old[i].1, old[i].2) = (e.lines_registered, e.since_ms);
    }
    old.truncate(now.len());
    old.into_boxed_slice()
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

/// A hash of everything a status says except its since-times and revision: of its
/// encoding, into `buf` (the thread's, kept for the next phone: an edge's departure
/// fingerprints hundreds of thousands of phones at once).
fn fingerprint(st: &PhoneStatus, buf: &mut Vec<u8>) -> u64 {
    use std::hash::BuildHasher;
    buf.clear();
    st.encode(buf).expect("a Vec grows");
    foldhash::quality::FixedState::with_seed(0).hash_one(&buf[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_edges_are_rebuilt_in_the_new_order_keeping_the_names_they_had() {
        let edge = |id: &str, lines: u32, since: i64| EdgeStatus {
            node_id: id.into(),
            lines_registered: lines,
            since_ms: since,
            ..Default::default()
        };
        // (edge, lines registered there, since when)
        type Edges = &'static [(&'static str, u32, i64)];
        // (edges published before, edges now, names given out for edges new to the list)
        let cases: [(&[&str], Edges, &[&str]); 7] = [
            (&["a", "b"], &[("b", 1, 20)], &[]),
            (&["a", "b"], &[("b", 2, 20), ("a", 1, 10)], &[]),
            (&["a"], &[("a", 1, 10), ("b", 1, 30)], &["b"]),
            (&["a", "b", "c"], &[("c", 1, 5)], &[]),
            (&["a", "b"], &[("c", 1, 5), ("b", 1, 6)], &["c"]),
            (&[], &[("a", 1, 1)], &["a"]),
            (&["a", "b"], &[], &[]),
        ];
        for (before, now, fresh) in cases {
            let old: Vec<(Arc<str>, u32, i64)> =
                before.iter().map(|n| (Arc::from(*n), 9, 99)).collect();
            let names = old.clone();
            let now_edges: Vec<EdgeStatus> = now.iter().map(|(n, l, s)| edge(n, *l, *s)).collect();
            let mut given = Vec::new();
            let got = reuse_edges(old, &now_edges, |id| {
                given.push(id.to_owned());
                Arc::from(id)
            });
            let plain: Vec<(&str, u32, i64)> = got.iter().map(|(n, l, s)| (&**n, *l, *s)).collect();
            assert_eq!(plain, now, "{before:?} -> {now:?}");
            assert_eq!(given, fresh, "{before:?} -> {now:?}: names asked for");
            for (n, ..) in got.iter() {
                if let Some((kept, ..)) = names.iter().find(|(k, ..)| **k == **n) {
                    assert!(Arc::ptr_eq(kept, n), "{n} kept its name");
                }
            }
        }
    }
}
