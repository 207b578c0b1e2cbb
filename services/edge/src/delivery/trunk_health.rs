//! Whether each carrier trunk target answers, and where this edge's registrations at
//! carriers stand: the OPTIONS keep-alives (the edge's `keepalive.rs`, a floor above) and
//! the registration task (`carrier_registration.rs`) report here, and a call out skips
//! targets that are DOWN. A target is UP until it misses [`MISSES_DOWN`] keep-alives in a
//! row, and UP again at its next answer (any status: a carrier answering 404 or 405 to
//! OPTIONS is alive). A target never probed yet counts as UP, so calls go out before the
//! first keep-alive.

use std::{collections::HashMap, fmt::Write, net::SocketAddr, sync::Arc};

use dialtone_proto::edge::v1::{
    TrunkHealth as TrunkHealthRecord, TrunkRegistrationHealth, TrunkTargetHealth,
};
use parking_lot::Mutex;

/// Keep-alives missed in a row that make a target DOWN.
pub const MISSES_DOWN: u8 = 2;

/// One target's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetState {
    /// Keep-alives missed in a row.
    pub misses: u8,
    /// When it last turned UP or DOWN (Unix ms; 0: not yet).
    pub changed_at_ms: i64,
}

impl TargetState {
    pub fn up(&self) -> bool {
        self.misses < MISSES_DOWN
    }

    /// The state after a keep-alive that was `answered` or not. Pure.
    pub fn after(self, answered: bool) -> TargetState {
        TargetState {
            misses: if answered {
                0
            } else {
                self.misses.saturating_add(1)
            },
            ..self
        }
    }
}

type Key = (Arc<str>, SocketAddr);

/// Every probed target's state.
#[derive(Default)]
pub struct TrunkHealth {
    states: Mutex<HashMap<Key, TargetState>>,
    /// This edge's registration of each trunk that registers, by trunk id.
    registrations: Mutex<std::collections::BTreeMap<Arc<str>, TrunkRegistrationHealth>>,
}

impl TrunkHealth {
    /// Whether `addr` of `trunk` takes calls.
    pub fn is_up(&self, trunk: &Arc<str>, addr: SocketAddr) -> bool {
        self.states
            .lock()
            .get(&(trunk.clone(), addr))
            .is_none_or(TargetState::up)
    }

    /// A keep-alive to `addr` of `trunk` was `answered` or not at `now_ms`; returns
    /// whether that changed the target between UP and DOWN.
    pub fn observe(&self, trunk: &Arc<str>, addr: SocketAddr, answered: bool, now_ms: i64) -> bool {
        let mut states = self.states.lock();
        let state = states.entry((trunk.clone(), addr)).or_default();
        let was = state.up();
        *state = state.after(answered);
        let changed = was != state.up();
        if changed {
            state.changed_at_ms = now_ms;
        }
        changed
    }

    /// What this edge finds, as it publishes it (`trunk-health/{node}`): every probed
    /// target, by trunk then address.
    pub fn snapshot(&self) -> TrunkHealthRecord {
        let mut targets: Vec<TrunkTargetHealth> = self
            .states
            .lock()
            .iter()
            .map(|((trunk, addr), s)| TrunkTargetHealth {
                trunk_id: trunk.to_string(),
                address: addr.to_string(),
                up: s.up(),
                changed_at_ms: s.changed_at_ms,
            })
            .collect();
        targets.sort_by(|a, b| (&a.trunk_id, &a.address).cmp(&(&b.trunk_id, &b.address)));
        let registrations = self.registrations.lock().values().cloned().collect();
        TrunkHealthRecord {
            targets,
            registrations,
        }
    }

    /// Forgets targets no longer configured.
    pub fn retain(&self, keep: impl Fn(&Arc<str>, SocketAddr) -> bool) {
        self.states.lock().retain(|(t, a), _| keep(t, *a));
    }

    /// The registrar of `trunk` answered `status` at `now_ms` (408: nothing came); the
    /// registration holds until `expires_at_ms` (0: it does not hold).
    pub fn registered(&self, trunk: &Arc<str>, status: u16, expires_at_ms: i64, now_ms: i64) {
        let mut regs = self.registrations.lock();
        let r = regs
            .entry(trunk.clone())
            .or_insert_with(|| TrunkRegistrationHealth {
                trunk_id: trunk.to_string(),
                ..Default::default()
            });
        r.registered = expires_at_ms > now_ms;
        r.expires_at_ms = expires_at_ms;
        r.last_status = u32::from(status);
        r.changed_at_ms = now_ms;
    }

    /// Forgets registrations of trunks no longer registering.
    pub fn retain_registrations(&self, keep: impl Fn(&Arc<str>) -> bool) {
        self.registrations.lock().retain(|t, _| keep(t));
    }

    /// Prometheus text: `dialtone_trunk_target_up{trunk,target}` and
    /// `dialtone_trunk_registered{trunk}`.
    pub fn render(&self, node: &str, out: &mut String) {
        out.push_str("# HELP dialtone_trunk_target_up Whether a carrier trunk target answers its OPTIONS keep-alives (1: UP, 0: DOWN after two missed in a row).\n# TYPE dialtone_trunk_target_up gauge\n");
        let mut rows: Vec<(Key, TargetState)> = self
            .states
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        rows.sort_by(|a, b| (&a.0.0, a.0.1).cmp(&(&b.0.0, b.0.1)));
        for ((trunk, addr), s) in rows {
            let _ = writeln!(
                out,
                "dialtone_trunk_target_up{{node=\"{node}\",trunk=\"{trunk}\",target=\"{addr}\"}} {}",
                u8::from(s.up())
            );
        }
        out.push_str("# HELP dialtone_trunk_registered Whether the carrier's registrar holds this edge's registration of a trunk (1) or not (0).\n# TYPE dialtone_trunk_registered gauge\n");
        for (trunk, r) in self.registrations.lock().iter() {
            let _ = writeln!(
                out,
                "dialtone_trunk_registered{{node=\"{node}\",trunk=\"{trunk}\"}} {}",
                u8::from(r.registered)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_missed_keep_alives_make_a_target_down_and_one_answer_up() {
        // (answers in order, UP after each)
        let cases: [(&[bool], &[bool]); 4] = [
            (&[true, true], &[true, true]),
            (&[false, false, false], &[true, false, false]),
            (&[false, true, false], &[true, true, true]),
            (&[false, false, true], &[true, false, true]),
        ];
        for (answers, want) in cases {
            let mut s = TargetState::default();
            let got: Vec<bool> = answers
                .iter()
                .map(|&a| {
                    s = s.after(a);
                    s.up()
                })
                .collect();
            assert_eq!(got, want, "{answers:?}");
        }
    }

    #[test]
    fn unprobed_targets_are_up_and_changes_are_reported() {
        let h = TrunkHealth::default();
        let (t, a): (Arc<str>, SocketAddr) = ("carrier".into(), "192.0.2.1:5060".parse().unwrap());
        assert!(h.is_up(&t, a));
        assert!(!h.observe(&t, a, false, 1));
        assert!(h.observe(&t, a, false, 2), "down now");
        let snap = h.snapshot();
        assert_eq!(snap.targets.len(), 1);
        assert!(!snap.targets[0].up);
        assert_eq!(snap.targets[0].changed_at_ms, 2);
        assert!(!h.is_up(&t, a));
        let mut text = String::new();
        h.render("edge-a", &mut text);
        assert!(text.contains(
            "dialtone_trunk_target_up{node=\"edge-a\",trunk=\"carrier\",target=\"192.0.2.1:5060\"} 0"
        ));
        assert!(h.observe(&t, a, true, 3), "up again");
        h.retain(|_, _| false);
        assert!(h.is_up(&t, a));
    }
}
