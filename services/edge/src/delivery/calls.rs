//! The edge's light record of calls, for metrics only: which dialogs it proxied are up
//! (their INVITE got a 2xx and no BYE has passed yet), and how each INVITE ended. Routing
//! never reads it (the Record-Route token carries what routing needs), so a full record
//! costs a metric, never a call: past [`MAX_CALLS`] new calls go uncounted as active, and a
//! call whose BYE took another path is forgotten after [`MAX_CALL_AGE_MS`] (checked at
//! every scrape and whenever the record is full). A call is kept as a keyed 64-bit hash of
//! its Call-ID and a time: 16 bytes and a map slot, whatever Call-ID a caller writes.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write,
    hash::{BuildHasher, RandomState},
    sync::Arc,
};

use dialtone_metrics::Counters;
use parking_lot::Mutex;

/// Calls recorded at once.
pub const MAX_CALLS: usize = 100_000;

/// How long a call stays recorded without a BYE through this edge.
pub const MAX_CALL_AGE_MS: u64 = 12 * 3600 * 1000;

/// How an INVITE this edge proxied ended: the labels of `dialtone_calls_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// A 2xx.
    Answered = 0,
    /// 487 after a CANCEL.
    Cancelled = 1,
    /// No answer (408, 480).
    Unanswered = 2,
    /// Any other final answer.
    Failed = 3,
}

impl CallOutcome {
    /// The outcome of an INVITE's final status code. Pure.
    pub fn of(code: u16) -> Self {
        match code {
            200..=299 => CallOutcome::Answered,
            487 => CallOutcome::Cancelled,
            408 | 480 => CallOutcome::Unanswered,
            _ => CallOutcome::Failed,
        }
    }
}

/// An active call: when it was answered, the carrier trunk it went out through, and the
/// site it is counted under (the caller's; for a call in from a carrier, the callee's).
type Active = (u64, Option<Arc<str>>, Option<Arc<str>>);

/// Active calls by Call-ID hash and INVITE outcomes.
pub struct Calls {
    active: Mutex<HashMap<u64, Active>>,
    /// Random keys of the Call-ID hash, so no caller can make two calls collide.
    keys: RandomState,
    outcomes: Counters<4>,
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            active: Mutex::default(),
            keys: RandomState::new(),
            outcomes: Counters::new(
                "dialtone_calls_total",
                "INVITEs this edge proxied (initial and re-INVITEs), by how they ended: answered (2xx), cancelled (487), unanswered (408 or 480), failed (any other final answer).",
                "outcome",
                ["answered", "cancelled", "unanswered", "failed"],
            ),
        }
    }
}

impl Calls {
    /// An INVITE of `call_id` ended with `code`, at `now_ms`; `initial` when it opened
    /// the dialog (a re-INVITE's answer changes no call's count); `trunk`, the carrier
    /// trunk that answered a call out; `site`, the site the call counts under (none: it
    /// came from another edge, which counts it).
    pub fn invite_ended(
        &self,
        call_id: &str,
        code: u16,
        initial: bool,
        now_ms: u64,
        trunk: Option<&Arc<str>>,
        site: Option<&Arc<str>>,
    ) {
        let outcome = CallOutcome::of(code);
        self.outcomes.count_at(outcome as usize);
        if !initial || outcome != CallOutcome::Answered {
            return;
        }
        let key = self.keys.hash_one(call_id);
        let mut active = self.active.lock();
        if active.len() >= MAX_CALLS {
            forget_old(&mut active, now_ms);
        }
        if active.len() < MAX_CALLS {
            active.insert(key, (now_ms, trunk.cloned(), site.cloned()));
        }
    }

    /// A BYE of `call_id` got its final answer: the call is over, whatever the answer.
    pub fn ended(&self, call_id: &str) {
        self.active.lock().remove(&self.keys.hash_one(call_id));
    }

    /// Calls up now.
    pub fn active(&self) -> usize {
        self.active.lock().len()
    }

    /// Prometheus text; forgets calls older than [`MAX_CALL_AGE_MS`] first.
    pub fn render(&self, node: &str, out: &mut String) {
        forget_old(&mut self.active.lock(), dialtone_common::clock::unix_ms());
        dialtone_metrics::header(
            out,
            "dialtone_calls_active",
            "gauge",
            "Calls this edge proxied that are up: answered, and no BYE through this edge yet.",
        );
        let node = dialtone_metrics::escape(node);
        let _ = writeln!(
            out,
            "dialtone_calls_active{{node=\"{node}\"}} {}",
            self.active()
        );
        let mut by_trunk: BTreeMap<Arc<str>, usize> = BTreeMap::new();
        let mut by_site: BTreeMap<Arc<str>, usize> = BTreeMap::new();
        for (_, trunk, site) in self.active.lock().values() {
            if let Some(t) = trunk {
                *by_trunk.entry(t.clone()).or_default() += 1;
            }
            if let Some(s) = site {
                *by_site.entry(s.clone()).or_default() += 1;
            }
        }
        dialtone_metrics::header(
            out,
            "dialtone_site_calls_active",
            "gauge",
            "Calls up by site, counted by the edge the call entered through: the caller's site, or the callee's for a call in from a carrier (a site without one is not listed).",
        );
        for (site, n) in by_site {
            let site = dialtone_metrics::escape(&site);
            let _ = writeln!(
                out,
                "dialtone_site_calls_active{{node=\"{node}\",site=\"{site}\"}} {n}"
            );
        }
        dialtone_metrics::header(
            out,
            "dialtone_trunk_calls_active",
            "gauge",
            "Calls out through each carrier trunk that are up (a trunk without one is not listed).",
        );
        for (trunk, n) in by_trunk {
            let trunk = dialtone_metrics::escape(&trunk);
            let _ = writeln!(
                out,
                "dialtone_trunk_calls_active{{node=\"{node}\",trunk=\"{trunk}\"}} {n}"
            );
        }
        self.outcomes.render(Some(&node), out);
    }
}

fn forget_old(active: &mut HashMap<u64, Active>, now_ms: u64) {
    active.retain(|_, (at, _, _)| now_ms.saturating_sub(*at) < MAX_CALL_AGE_MS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_of_final_codes() {
        let cases = [
            (200, CallOutcome::Answered),
            (202, CallOutcome::Answered),
            (487, CallOutcome::Cancelled),
            (408, CallOutcome::Unanswered),
            (480, CallOutcome::Unanswered),
            (486, CallOutcome::Failed),
            (503, CallOutcome::Failed),
            (603, CallOutcome::Failed),
        ];
        for (code, want) in cases {
            assert_eq!(CallOutcome::of(code), want, "{code}");
        }
    }

    #[test]
    fn a_call_is_up_from_its_answer_to_its_bye() {
        let c = Calls::default();
        let now = dialtone_common::clock::unix_ms();
        let carrier: Arc<str> = "carrier".into();
        let hq: Arc<str> = "hq".into();
        c.invite_ended("a", 200, true, now, None, Some(&hq));
        c.invite_ended("b", 486, true, now, None, Some(&hq));
        c.invite_ended("a", 200, false, now, None, Some(&hq)); // a re-INVITE
        c.invite_ended("out", 200, true, now, Some(&carrier), Some(&hq));
        let mut out = String::new();
        c.render("edge-1", &mut out);
        assert!(
            out.contains("dialtone_trunk_calls_active{node=\"edge-1\",trunk=\"carrier\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("dialtone_site_calls_active{node=\"edge-1\",site=\"hq\"} 2"),
            "{out}"
        );
        c.ended("out");
        assert_eq!(c.active(), 1);
        c.ended("a");
        c.ended("never-seen");
        assert_eq!(c.active(), 0);
        // A call whose BYE went another way is forgotten after MAX_CALL_AGE_MS.
        c.invite_ended("lost", 200, true, now - MAX_CALL_AGE_MS - 1, None, None);
        c.invite_ended("fresh", 200, true, now, None, None);
        c.render("edge-1", &mut String::new());
        assert_eq!(c.active(), 1);
        c.ended("fresh");
        let mut out = String::new();
        c.render("edge-1", &mut out);
        assert!(
            out.contains("dialtone_calls_active{node=\"edge-1\"} 0"),
            "{out}"
        );
        assert!(out.contains("outcome=\"answered\"} 5"), "{out}");
        assert!(!out.contains("trunk=\"carrier\""), "{out}");
        assert!(!out.contains("site=\"hq\""), "{out}");
        assert!(out.contains("outcome=\"failed\"} 1"), "{out}");
    }
}
