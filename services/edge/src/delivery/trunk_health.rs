//! Whether each carrier trunk target answers: the OPTIONS keep-alives
//! (the edge's `keepalive.rs`, a floor above) report here, and a call out skips targets that are DOWN. A target
//! is UP until it misses [`MISSES_DOWN`] keep-alives in a row, and UP again at its next
//! answer (any status: a carrier answering 404 or 405 to OPTIONS is alive). A target never
//! probed yet counts as UP, so calls go out before the first keep-alive.

use std::{collections::HashMap, fmt::Write, net::SocketAddr, sync::Arc};

use parking_lot::Mutex;

/// Keep-alives missed in a row that make a target DOWN.
pub const MISSES_DOWN: u8 = 2;

/// One target's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetState {
    /// Keep-alives missed in a row.
    pub misses: u8,
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
        }
    }
}

type Key = (Arc<str>, SocketAddr);

/// Every probed target's state.
#[derive(Default)]
pub struct TrunkHealth {
    states: Mutex<HashMap<Key, TargetState>>,
}

impl TrunkHealth {
    /// Whether `addr` of `trunk` takes calls.
    pub fn is_up(&self, trunk: &Arc<str>, addr: SocketAddr) -> bool {
        self.states
            .lock()
            .get(&(trunk.clone(), addr))
            .is_none_or(TargetState::up)
    }

    /// A keep-alive to `addr` of `trunk` was `answered` or not; returns whether that
    /// changed the target between UP and DOWN.
    pub fn observe(&self, trunk: &Arc<str>, addr: SocketAddr, answered: bool) -> bool {
        let mut states = self.states.lock();
        let state = states.entry((trunk.clone(), addr)).or_default();
        let was = state.up();
        *state = state.after(answered);
        was != state.up()
    }

    /// Forgets targets no longer configured.
    pub fn retain(&self, keep: impl Fn(&Arc<str>, SocketAddr) -> bool) {
        self.states.lock().retain(|(t, a), _| keep(t, *a));
    }

    /// Prometheus text: `dialtone_trunk_target_up{trunk,target}`.
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
        assert!(!h.observe(&t, a, false));
        assert!(h.observe(&t, a, false), "down now");
        assert!(!h.is_up(&t, a));
        let mut text = String::new();
        h.render("edge-a", &mut text);
        assert!(text.contains(
            "dialtone_trunk_target_up{node=\"edge-a\",trunk=\"carrier\",target=\"192.0.2.1:5060\"} 0"
        ));
        assert!(h.observe(&t, a, true), "up again");
        h.retain(|_, _| false);
        assert!(h.is_up(&t, a));
    }
}
