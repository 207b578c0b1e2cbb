//! The edge's light record of calls, for metrics, the per-phone view of calls
//! (`EdgeService.ListCalls`) and media anchoring: which dialogs it proxied are up (their
//! INVITE got a 2xx and no BYE of that dialog has passed yet), who is in each, where its
//! media is anchored, and how each INVITE ended. Routing never reads it (the Record-Route
//! token carries what routing needs), so a full record costs a metric and, for an
//! anchored call, an early delete of its media session (rtpengine ends it by its own
//! timeout instead), never a call: past [`MAX_CALLS`] new calls go unrecorded, and a call
//! whose BYE took another path is forgotten after [`MAX_CALL_AGE_MS`] (checked at every
//! scrape and whenever the record is full). A call is keyed by a keyed 64-bit hash of its
//! Call-ID; what a caller writes is kept only cut to [`MAX_CALL_ID`] and [`MAX_DIALLED`]
//! bytes, so the record is at most about 300 bytes a call (30 MB at the cap), whatever
//! the caller sends.

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

/// Bytes of a Call-ID kept for the view (a longer one is cut at a character boundary).
pub const MAX_CALL_ID: usize = 96;

/// Bytes of the dialled user part kept for the view.
pub const MAX_DIALLED: usize = 32;

/// Bytes of the answering dialog's To tag kept (a longer tag is cut; a BYE matches the
/// cut tag's prefix).
pub const MAX_TAG: usize = 64;

/// Calls whose BYE came before their INVITE's delivery ended (a losing fork branch still
/// waiting for its 487), remembered so the late record is not written: at most this
/// many, each for [`ENDED_EARLY_MS`].
pub const MAX_ENDED_EARLY: usize = 10_000;

/// How long a BYE that found no call is remembered.
pub const ENDED_EARLY_MS: u64 = 64_000;

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

/// One end of a call, as this edge knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Party {
    /// One of our phones, by id.
    Phone(Arc<str>),
    /// A carrier trunk a call went out through, by trunk id.
    Trunk(Arc<str>),
    /// A trusted peer (a carrier whose call came in), by peer id.
    Peer(Arc<str>),
    /// Another edge of the group handed the call over (it knows the caller).
    Edge,
    /// Not known here (a fork whose answering branch this edge did not see).
    Unknown,
}

impl Party {
    fn phone(&self) -> Option<&str> {
        match self {
            Party::Phone(p) => Some(p),
            _ => None,
        }
    }
}

/// Where a call's media is anchored, and what each side speaks: what a re-INVITE of the
/// call needs to be offered there too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchored {
    /// The media server's `ng` address.
    pub server: std::net::SocketAddr,
    pub caller: dialtone_media::anchor::Side,
    pub callee: dialtone_media::anchor::Side,
    /// The caller's From tag (cut to [`MAX_TAG`]): who sends a re-INVITE.
    pub caller_tag: Box<str>,
}

/// Who is in a call that opened a dialog, for the record.
#[derive(Clone, Debug)]
pub struct Parties {
    pub caller: Party,
    pub callee: Party,
    /// The site the call counts under (the caller's; for a call in from a carrier, the
    /// callee's; none when another edge handed it over, which counts it).
    pub site: Option<Arc<str>>,
    /// What the caller dialled (the Request-URI's user part).
    pub dialled: String,
    /// Where its media is anchored, if it is.
    pub media: Option<Anchored>,
    /// The To tag of the answer that went upstream first: the dialog that is up (a forked
    /// call's other 2xx make dialogs the caller ends at once).
    pub to_tag: Option<String>,
}

/// A call up now, as [`Calls::list`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveCall {
    /// Its Call-ID, cut to [`MAX_CALL_ID`] bytes.
    pub call_id: Box<str>,
    /// When it was answered, Unix milliseconds.
    pub answered_at_ms: u64,
    pub caller: Party,
    pub callee: Party,
    pub site: Option<Arc<str>>,
    /// Cut to [`MAX_DIALLED`] bytes.
    pub dialled: Box<str>,
    /// Where its media is anchored.
    pub media: Option<Anchored>,
    /// The answering dialog's To tag, cut to [`MAX_TAG`] bytes.
    pub to_tag: Option<Box<str>>,
}

impl ActiveCall {
    /// Whether phone `id` is in the call.
    pub fn involves(&self, id: &str) -> bool {
        self.caller.phone() == Some(id) || self.callee.phone() == Some(id)
    }

    /// The carrier trunk the call went out through.
    pub fn trunk(&self) -> Option<&Arc<str>> {
        match &self.callee {
            Party::Trunk(t) => Some(t),
            _ => None,
        }
    }
}

/// `s` cut to at most `max` bytes, at a character boundary. Pure.
pub(crate) fn cut(s: &str, max: usize) -> Box<str> {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].into()
}

/// A BYE that found no call: when, and its From and To tags (cut to [`MAX_TAG`]).
type EndedEarly = (u64, [Option<Box<str>>; 2]);

/// What a BYE did to the record.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// It ended this call.
    Call(Box<ActiveCall>),
    /// The call is up, but the BYE is of another dialog of it (a forked call's extra
    /// 2xx, which the caller ends at once).
    OtherDialog,
    /// No such call here (yet: its record is written when its INVITE's delivery ends).
    Unknown,
}

/// Active calls by Call-ID hash and INVITE outcomes.
pub struct Calls {
    active: Mutex<HashMap<u64, ActiveCall>>,
    /// Calls whose BYE found no record, by Call-ID hash: when, and the BYE's tags (cut):
    /// the dialog it ended. Locked after `active` only.
    ended_early: Mutex<HashMap<u64, EndedEarly>>,
    /// Random keys of the Call-ID hash, so no caller can make two calls collide.
    keys: RandomState,
    outcomes: Counters<4>,
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            active: Mutex::default(),
            ended_early: Mutex::default(),
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
    /// An INVITE of `call_id` ended with `code`, at `now_ms`; `parties` when it opened
    /// the dialog (a re-INVITE's answer, `None`, changes no call's count). Returns false
    /// when the answered call's BYE came first (it is not recorded: the call is over).
    pub fn invite_ended(
        &self,
        call_id: &str,
        code: u16,
        now_ms: u64,
        parties: Option<Parties>,
    ) -> bool {
        let outcome = CallOutcome::of(code);
        self.outcomes.count_at(outcome as usize);
        let Some(p) = parties.filter(|_| outcome == CallOutcome::Answered) else {
            return true;
        };
        let key = self.keys.hash_one(call_id);
        let mut active = self.active.lock();
        // A BYE of this very dialog came first (another dialog's BYE, a forked call's
        // extra 2xx ended at once, leaves the call up).
        let to_tag = p.to_tag.as_deref().map(|t| cut(t, MAX_TAG));
        let mut early = self.ended_early.lock();
        if let Some((at, tags)) = early.get(&key)
            && now_ms.saturating_sub(*at) < ENDED_EARLY_MS
            && to_tag
                .as_ref()
                .is_none_or(|up| tags.iter().flatten().any(|t| t == up))
        {
            early.remove(&key);
            return false;
        }
        drop(early);
        if active.len() >= MAX_CALLS {
            forget_old(&mut active, now_ms);
        }
        if active.len() < MAX_CALLS {
            let call = ActiveCall {
                call_id: cut(call_id, MAX_CALL_ID),
                answered_at_ms: now_ms,
                caller: p.caller,
                callee: p.callee,
                site: p.site,
                dialled: cut(&p.dialled, MAX_DIALLED),
                media: p.media,
                to_tag,
            };
            active.insert(key, call);
        }
        true
    }

    /// A BYE of `call_id` with tags `tags` (its From and To tags) got its final answer
    /// at `now_ms`: the call is over, whatever the answer, if the BYE is of the dialog that
    /// is up (either side may send it, so either tag may be the answer's).
    pub fn ended(&self, call_id: &str, tags: [Option<&str>; 2], now_ms: u64) -> Ended {
        let key = self.keys.hash_one(call_id);
        let mut active = self.active.lock();
        let Some(call) = active.get(&key) else {
            // Remembered while `active` is held, so the record cannot be written between
            // this look and the mark.
            let mut early = self.ended_early.lock();
            if early.len() >= MAX_ENDED_EARLY {
                early.retain(|_, (at, _)| now_ms.saturating_sub(*at) < ENDED_EARLY_MS);
            }
            if early.len() < MAX_ENDED_EARLY {
                let tags = tags.map(|t| t.map(|t| cut(t, MAX_TAG)));
                early.insert(key, (now_ms, tags));
            }
            return Ended::Unknown;
        };
        let ours = call.to_tag.as_deref().is_none_or(|up| {
            tags.iter()
                .flatten()
                .any(|t| cut(t, MAX_TAG).as_ref() == up)
        });
        if !ours {
            return Ended::OtherDialog;
        }
        match active.remove(&key) {
            Some(call) => Ended::Call(Box::new(call)),
            None => Ended::Unknown,
        }
    }

    /// Calls up now.
    pub fn active(&self) -> usize {
        self.active.lock().len()
    }

    /// Calls up now, phone `phone`'s only when given, oldest first: at most `limit`, and
    /// how many there are in all.
    pub fn list(&self, phone: Option<&str>, limit: usize) -> (Vec<ActiveCall>, usize) {
        let mut calls: Vec<ActiveCall> = self
            .active
            .lock()
            .values()
            .filter(|c| phone.is_none_or(|p| c.involves(p)))
            .cloned()
            .collect();
        calls.sort_by(|a, b| (a.answered_at_ms, &a.call_id).cmp(&(b.answered_at_ms, &b.call_id)));
        let total = calls.len();
        calls.truncate(limit);
        (calls, total)
    }

    /// Where call `call_id` (up now) has its media anchored, if it does.
    pub fn anchored(&self, call_id: &str) -> Option<Anchored> {
        let key = self.keys.hash_one(call_id);
        self.active.lock().get(&key)?.media.clone()
    }

    /// Calls up now by the media server their media is anchored at.
    pub fn by_media_server(&self) -> HashMap<std::net::SocketAddr, u32> {
        let mut by = HashMap::new();
        for c in self.active.lock().values() {
            if let Some(m) = &c.media {
                *by.entry(m.server).or_default() += 1;
            }
        }
        by
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
        for call in self.active.lock().values() {
            if let Some(t) = call.trunk() {
                *by_trunk.entry(t.clone()).or_default() += 1;
            }
            if let Some(s) = &call.site {
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

fn forget_old(active: &mut HashMap<u64, ActiveCall>, now_ms: u64) {
    active.retain(|_, c| now_ms.saturating_sub(c.answered_at_ms) < MAX_CALL_AGE_MS);
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

    const NO_TAGS: [Option<&str>; 2] = [None, None];

    fn phone(id: &str) -> Party {
        Party::Phone(id.into())
    }

    fn parties(caller: Party, callee: Party, site: Option<&str>) -> Option<Parties> {
        Some(Parties {
            caller,
            callee,
            site: site.map(Arc::from),
            dialled: "201".into(),
            media: None,
            to_tag: None,
        })
    }

    #[test]
    fn a_call_is_up_from_its_answer_to_its_bye() {
        let c = Calls::default();
        let now = dialtone_common::clock::unix_ms();
        let carrier = || Party::Trunk("carrier".into());
        c.invite_ended("a", 200, now, parties(phone("p1"), phone("p2"), Some("hq")));
        c.invite_ended("b", 486, now, parties(phone("p1"), phone("p3"), Some("hq")));
        c.invite_ended("a", 200, now, None); // a re-INVITE
        c.invite_ended("out", 200, now, parties(phone("p1"), carrier(), Some("hq")));
        let peer = Party::Peer("carrier-peer".into());
        c.invite_ended("in", 200, now, parties(peer, phone("p4"), Some("hq")));
        let mut out = String::new();
        c.render("edge-1", &mut out);
        assert!(
            out.contains("dialtone_trunk_calls_active{node=\"edge-1\",trunk=\"carrier\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("dialtone_site_calls_active{node=\"edge-1\",site=\"hq\"} 3"),
            "{out}"
        );
        c.ended("out", NO_TAGS, now);
        c.ended("in", NO_TAGS, now);
        assert_eq!(c.active(), 1);
        c.ended("a", NO_TAGS, now);
        c.ended("never-seen", NO_TAGS, now);
        assert_eq!(c.active(), 0);
        // A call whose BYE went another way is forgotten after MAX_CALL_AGE_MS.
        let old = now - MAX_CALL_AGE_MS - 1;
        c.invite_ended("lost", 200, old, parties(Party::Edge, phone("p2"), None));
        c.invite_ended("fresh", 200, now, parties(Party::Edge, phone("p2"), None));
        c.render("edge-1", &mut String::new());
        assert_eq!(c.active(), 1);
        c.ended("fresh", NO_TAGS, now);
        let mut out = String::new();
        c.render("edge-1", &mut out);
        assert!(
            out.contains("dialtone_calls_active{node=\"edge-1\"} 0"),
            "{out}"
        );
        assert!(out.contains("outcome=\"answered\"} 6"), "{out}");
        assert!(!out.contains("trunk=\"carrier\""), "{out}");
        assert!(!out.contains("site=\"hq\""), "{out}");
        assert!(out.contains("outcome=\"failed\"} 1"), "{out}");
    }

    #[test]
    fn a_phones_calls_are_those_it_is_in() {
        let c = Calls::default();
        let carrier = Party::Trunk("carrier".into());
        c.invite_ended("x", 200, 3, parties(phone("p1"), phone("p2"), None));
        c.invite_ended("y", 200, 1, parties(phone("p2"), carrier, None));
        let peer = Party::Peer("carrier".into());
        c.invite_ended("z", 200, 2, parties(peer, phone("p3"), None));
        // (phone, Call-IDs listed oldest first, limit, total)
        let cases: [(Option<&str>, &[&str], usize, usize); 6] = [
            (None, &["y", "z", "x"], 10, 3),
            (None, &["y"], 1, 3),
            (Some("p1"), &["x"], 10, 1),
            (Some("p2"), &["y", "x"], 10, 2),
            (Some("p3"), &["z"], 10, 1),
            (Some("carrier"), &[], 10, 0), // a trunk is not a phone
        ];
        for (phone, want, limit, total) in cases {
            let (got, all) = c.list(phone, limit);
            let ids: Vec<&str> = got.iter().map(|c| &*c.call_id).collect();
            assert_eq!((ids.as_slice(), all), (want, total), "{phone:?}");
        }
    }

    #[test]
    fn what_a_caller_writes_is_kept_cut() {
        let c = Calls::default();
        let long_id = "é".repeat(200);
        let p = Parties {
            caller: phone("p1"),
            callee: phone("p2"),
            site: None,
            dialled: "9".repeat(1000),
            media: None,
            to_tag: None,
        };
        c.invite_ended(&long_id, 200, 1, Some(p));
        let (calls, _) = c.list(None, 1);
        assert!(calls[0].call_id.len() <= MAX_CALL_ID);
        assert!(long_id.starts_with(&*calls[0].call_id));
        assert_eq!(calls[0].dialled.len(), MAX_DIALLED);
        // Recorded by its full Call-ID: the BYE of the full one ends it.
        c.ended(&long_id, NO_TAGS, 1);
        assert_eq!(c.active(), 0);
    }

    #[test]
    fn a_bye_ends_the_dialog_that_is_up_and_one_before_the_record_keeps_it_out() {
        let c = Calls::default();
        let mut p = parties(phone("p1"), phone("p2"), None).unwrap();
        p.to_tag = Some("winner".into());
        assert!(c.invite_ended("forked", 200, 1, Some(p)));
        // The caller ends the extra dialog a forked call's other 2xx made: the call stays.
        let other = c.ended("forked", [Some("caller"), Some("loser")], 2);
        assert_eq!(other, Ended::OtherDialog);
        assert_eq!(c.active(), 1);
        // Either side's BYE of the dialog that is up ends it.
        let ended = c.ended("forked", [Some("winner"), Some("caller")], 3);
        assert!(matches!(ended, Ended::Call(_)), "{ended:?}");
        // A BYE of the dialog that is up, come before the INVITE's delivery ended, keeps
        // the call out of the record, for ENDED_EARLY_MS only; a BYE of another dialog of
        // the call (a forked call's extra 2xx) does not.
        let mut quick = parties(phone("p1"), phone("p2"), None).unwrap();
        quick.to_tag = Some("winner".into());
        let bye_of = |tag| [Some("caller"), Some(tag)];
        assert_eq!(c.ended("quick", bye_of("winner"), 10), Ended::Unknown);
        assert!(!c.invite_ended("quick", 200, 11, Some(quick.clone())));
        assert_eq!(c.active(), 0);
        assert_eq!(c.ended("other", bye_of("loser"), 10), Ended::Unknown);
        assert!(c.invite_ended("other", 200, 11, Some(quick.clone())));
        assert_eq!(c.active(), 1);
        assert_eq!(c.ended("late", bye_of("winner"), 10), Ended::Unknown);
        assert!(c.invite_ended("late", 200, 10 + ENDED_EARLY_MS, Some(quick)));
        assert_eq!(c.active(), 2);
    }
}
