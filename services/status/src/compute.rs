//! One phone's status from its entry, written into a `PhoneStatus` that is reused from
//! phone to phone: its strings and lists keep their room, so a re-reduction allocates
//! (nearly) nothing for the status it builds. An edge's departure re-reduces hundreds of
//! thousands of phones at once, and building each status afresh (some twenty strings
//! and lists, freed right after it was encoded) was half of a re-reduction's time.

use std::fmt::Write as _;

use dialtone_domain::{
    placement,
    status_model::{self as model, Expected},
};
use dialtone_proto::{config::v1::PhoneKind, status::v1::PhoneStatus};

use crate::{
    entry::{BindingFacts, PhoneEntry},
    placed::Placed,
    reduce::Context,
};

impl Context<'_> {
    /// Phone `id`'s status from its `entry`, without since-times and revision; none when
    /// it is not configured. Its placement is taken from `cache` when that is current,
    /// else found and left there.
    pub(crate) fn compute(
        &self,
        id: &str,
        entry: &PhoneEntry,
        cache: &mut Placed,
    ) -> Option<PhoneStatus> {
        let mut st = PhoneStatus::default();
        self.compute_into(id, entry, cache, &mut st).then_some(st)
    }

    /// [`Context::compute`] into `st`, whatever it held (every field is written); false,
    /// and `st` left as it was, when the phone is not configured.
    pub(crate) fn compute_into(
        &self,
        id: &str,
        entry: &PhoneEntry,
        cache: &mut Placed,
        st: &mut PhoneStatus,
    ) -> bool {
        let Some(c) = entry.config.as_ref() else {
            return false;
        };
        let remote = c.kind == PhoneKind::Remote as i32;
        let (base_dual, fails_over) = self.bases.get(&*c.base_id).copied().unwrap_or_default();
        let dual = !fails_over && c.secondary_override.or(base_dual).unwrap_or(true);
        st.placement_problem.clear();
        let problem = &mut st.placement_problem;
        let placed = match self.sites.get(&*c.site_id) {
            _ if remote => None,
            None => {
                let _ = write!(problem, "site {} does not exist", c.site_id);
                None
            }
            Some(group_id) => match self.groups.get(group_id) {
                None => {
                    let _ = write!(problem, "edge group {group_id} does not exist");
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
                        let _ = write!(problem, "edge group {group_id} has no edges");
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

        set(&mut st.phone_id, id);
        set(&mut st.name, &c.name);
        set(&mut st.site_id, &c.site_id);
        st.kind = c.kind;
        st.status = reduced.status as i32;
        st.status_since_ms = 0;
        resize(&mut st.edges, reduced.edges.len());
        for (e, r) in st.edges.iter_mut().zip(&reduced.edges) {
            set(&mut e.node_id, r.node_id);
            e.role = r.role as i32;
            e.lines_registered = r.lines_registered;
            e.registered = expected.lines > 0 && r.lines_registered >= expected.lines;
            e.since_ms = 0;
            e.binding_updated_at_ms = 0;
        }
        resize(&mut st.lines, c.sip_users.len());
        for (i, (line, user)) in st.lines.iter_mut().zip(&c.sip_users).enumerate() {
            let mut n = 0;
            for b in live.iter().filter(|b| b.line == i as u32) {
                for contact in &b.contacts {
                    let to = slot(&mut line.contacts, &mut n);
                    set(&mut to.node_id, &b.node_id);
                    set(&mut to.uri, &contact.uri);
                    to.transport = contact.transport;
                    set(&mut to.source, &contact.source);
                }
            }
            line.contacts.truncate(n);
            line.line_index = i as u32;
            set(&mut line.sip_user, user);
            line.aor.clear();
            for part in ["sip:", user, "@", self.realm] {
                line.aor.push_str(part);
            }
            line.reachable = n > 0;
        }
        let user_agent = live.iter().max_by_key(|b| b.updated_at_ms);
        set(&mut st.user_agent, user_agent.map_or("", |b| &b.user_agent));
        st.disabled = c.disabled;
        if st.provisioning.as_ref() != entry.provision.as_deref() {
            st.provisioning = entry.provision.as_deref().cloned();
        }
        st.revision = 0;
        set(&mut st.base_settings_id, &c.base_id);
        true
    }
}

/// Makes `s` hold `value`, in the room it has.
fn set(s: &mut String, value: &str) {
    s.clear();
    s.push_str(value);
}

/// Makes `v` hold `n` items, those it holds kept as they are (to be overwritten).
fn resize<T: Default>(v: &mut Vec<T>, n: usize) {
    v.truncate(n);
    v.resize_with(n, T::default);
}

/// The `n`th item of `v` (a new one past its end), to be overwritten; counts it in `n`.
fn slot<'v, T: Default>(v: &'v mut Vec<T>, n: &mut usize) -> &'v mut T {
    if *n == v.len() {
        v.push(T::default());
    }
    *n += 1;
    &mut v[*n - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_list_keeps_its_items_and_room() {
        // (held, asked for) -> length after
        let cases = [(0, 3), (3, 3), (5, 2), (2, 0)];
        for (held, n) in cases {
            let mut v: Vec<String> = (0..held).map(|i| format!("item {i}")).collect();
            resize(&mut v, n);
            assert_eq!(v.len(), n, "{held} -> {n}");
            for (i, s) in v.iter().enumerate().take(held.min(n)) {
                assert_eq!(*s, format!("item {i}"), "kept");
            }
        }
        let mut v = vec![String::from("a")];
        let mut n = 0;
        slot(&mut v, &mut n).push('b');
        slot(&mut v, &mut n).push('c');
        assert_eq!((v, n), (vec![String::from("ab"), String::from("c")], 2));
        let mut s = String::with_capacity(64);
        set(&mut s, "edge-1");
        assert_eq!((s.as_str(), s.capacity() >= 64), ("edge-1", true));
    }
}
