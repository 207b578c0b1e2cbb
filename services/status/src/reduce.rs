//! One phone's status from its entry in the view: what it is (`Context::compute`), and
//! what re-reducing it changes (`Context::rereduce`: its published status, and what the
//! view must finish). Reads only the phone's own entry and what every phone is reduced
//! against, so `republish.rs` re-reduces many phones at once on several threads.

use std::{collections::HashMap, sync::Arc};

use dialtone_domain::{
    placement,
    status_model::{self as model, Expected},
};
use dialtone_proto::{
    config::v1::{EdgeGroup, PhoneKind},
    status::v1::{
        EdgeStatus, LineContact, LineStatus, OperationalStatus, PhoneStatus, StatusChange,
    },
};
use prost::Message as _;

use crate::{
    entry::{BindingFacts, Members, PhoneEntry, Published},
    intern::Interner,
    placed::Placed,
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
        let mut cache = entry.placed;
        let fresh = self
            .compute(id, entry, &mut cache)
            .map(|st| (fingerprint(&st), st));
        entry.placed = cache;
        let mut out = Rereduced {
            needs_interning: false,
            empty: false,
            removed: false,
            left: None,
            handed: None,
        };
        match (fresh, entry.published.take()) {
            (None, None) => {}
            (None, Some(old)) => {
                tally.add(&old.site_id, old.status, -1);
                out.removed = true;
                let change = StatusChange {
                    removed: true,
                    phone_id: id.to_owned(),
                    revision,
                    ..Default::default()
                };
                out.handed = Some(Handed::of(change, form));
            }
            (Some((fingerprint, _)), Some(old)) if old.fingerprint == fingerprint => {
                entry.published = Some(old);
            }
            (Some((fingerprint, mut st)), old) => {
                let status = st.status();
                let (old_site, mut old_edges) = match old {
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
                fill_binding_times(&mut st, &entry.bindings, self.members);
                let edges = st
                    .edges
                    .iter()
                    .map(|e| {
                        let node = match old_edges.iter().position(|(n, ..)| **n == *e.node_id) {
                            Some(i) => old_edges.swap_remove(i).0,
                            None => self.names.find(&e.node_id).unwrap_or_else(|| {
                                out.needs_interning = true;
                                Arc::from(e.node_id.as_str())
                            }),
                        };
                        (node, e.lines_registered, e.since_ms)
                    })
                    .collect();
                // The site of a status is its configuration's, already the interner's.
                // Cloned only when it moved: threads re-reducing a site's phones at once
                // would contend for its name's reference count.
                out.left = old_site.as_ref().filter(|s| ***s != *st.site_id).cloned();
                let left_site = out.left.as_ref().map(|s| s.to_string());
                let site_id = match (old_site, &entry.config) {
                    (Some(s), _) if *s == *st.site_id => s,
                    (_, Some(c)) => c.site_id.clone(),
                    (_, None) => Arc::from(st.site_id.as_str()),
                };
                tally.add(&site_id, status, 1);
                entry.published = Some(Published {
                    fingerprint,
                    status,
                    since_ms: st.status_since_ms,
                    edges,
                    site_id,
                    revision,
                });
                let change = StatusChange {
                    phone_id: id.to_owned(),
                    revision,
                    status: Some(st),
                    left_site: left_site.unwrap_or_default(),
                    ..Default::default()
                };
                out.handed = Some(Handed::of(change, form));
            }
        }
        out.empty =
            entry.config.is_none() && entry.bindings.is_empty() && entry.provision.is_none();
        out
    }

    /// Phone `id`'s status from its `entry`, without since-times and revision; none when
    /// it is not configured. Its placement is taken from `cache` when that is current,
    /// else found and left there.
    pub(crate) fn compute(
        &self,
        id: &str,
        entry: &PhoneEntry,
        cache: &mut Placed,
    ) -> Option<PhoneStatus> {
        let c = entry.config.as_ref()?;
        let remote = c.kind == PhoneKind::Remote as i32;
        let (base_dual, fails_over) = self.bases.get(&*c.base_id).copied().unwrap_or_default();
        let dual = !fails_over && c.secondary_override.or(base_dual).unwrap_or(true);
        let mut placement_problem = String::new();
        let placed = match self.sites.get(&*c.site_id) {
            _ if remote => None,
            None => {
                placement_problem = format!("site {} does not exist", c.site_id);
                None
            }
            Some(group_id) => match self.groups.get(group_id) {
                None => {
                    placement_problem = format!("edge group {group_id} does not exist");
                    None
                }
                Some(g) => {
                    let p = cache.get(&g.edges, self.epoch).or_else(|| {
                        let p = placement::place(id, &g.edges, dual);
                        if let Some(fresh) = p.and_then(|p| Placed::of(p, &g.edges, self.epoch)) {
                            *cache = fresh;
                        }
                        p
                    });
                    if p.is_none() {
                        placement_problem = format!("edge group {group_id} has no edges");
                    }
                    p
                }
            },
        };
        let expected = Expected::placed(c.sip_users.len() as u32, placed, remote, c.disabled);
        // Each binding's edge looked up once (a phone has a few bindings).
        let live: Vec<&BindingFacts> = entry
            .bindings
            .iter()
            .filter(|b| self.members.contains(&b.node_id))
            .collect();
        let registered: Vec<(u32, &str)> = live
            .iter()
            .filter(|b| !b.contacts.is_empty())
            .map(|b| (b.line, &*b.node_id))
            .collect();
        let reduced = model::reduce(&expected, &registered);
        let lines = c
            .sip_users
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let contacts: Vec<LineContact> = live
                    .iter()
                    .filter(|b| b.line == i as u32)
                    .flat_map(|b| {
                        b.contacts.iter().map(|c| LineContact {
                            node_id: String::from(&*b.node_id),
                            uri: String::from(&*c.uri),
                            transport: c.transport,
                            source: String::from(&*c.source),
                        })
                    })
                    .collect();
                LineStatus {
                    line_index: i as u32,
                    sip_user: String::from(&**user),
                    aor: ["sip:", user, "@", self.realm].concat(),
                    reachable: !contacts.is_empty(),
                    contacts,
                }
            })
            .collect();
        let user_agent = live
            .iter()
            .max_by_key(|b| b.updated_at_ms)
            .map(|b| String::from(&*b.user_agent))
            .unwrap_or_default();
        Some(PhoneStatus {
            phone_id: id.to_owned(),
            name: String::from(&*c.name),
            site_id: String::from(&*c.site_id),
            kind: c.kind,
            status: reduced.status as i32,
            status_since_ms: 0,
            edges: reduced
                .edges
                .iter()
                .map(|e| EdgeStatus {
                    node_id: e.node_id.to_owned(),
                    role: e.role as i32,
                    lines_registered: e.lines_registered,
                    registered: expected.lines > 0 && e.lines_registered >= expected.lines,
                    since_ms: 0,
                    binding_updated_at_ms: 0,
                })
                .collect(),
            lines,
            user_agent,
            disabled: c.disabled,
            placement_problem,
            provisioning: entry.provision.as_deref().cloned(),
            revision: 0,
            base_settings_id: String::from(&*c.base_id),
        })
    }
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
/// encoding, into a buffer each thread keeps for the next (an edge's departure
/// fingerprints hundreds of thousands of phones at once).
fn fingerprint(st: &PhoneStatus) -> u64 {
    use std::{cell::RefCell, hash::BuildHasher};
    thread_local!(static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) });
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        st.encode(buf).expect("a Vec grows");
        foldhash::quality::FixedState::with_seed(0).hash_one(&buf[..])
    })
}
