//! Late offers (RFC 3261 §13.2.1, RFC 6337 §2.1): an INVITE or re-INVITE without SDP,
//! whose 2xx carries the offer and whose ACK carries the answer. In an anchored call the
//! media server is given them in that order: `offer` with the 2xx's SDP (the party that
//! answered offers, so its tag is the ng from-tag), then `answer` with the ACK's. Between
//! the two the edge remembers where the answer goes ([`LateAnswers`]: bounded, each entry
//! kept 32 s, 64×T1, as long as a 2xx is retransmitted, so an ACK sent again for a
//! retransmitted 2xx gets the same rewritten answer). A call for which there is no room
//! is not anchored at all (its 2xx and ACK pass as they came), never half anchored.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use dialtone_media::{
    anchor::{self, Party},
    ng::{self, Dialog},
    sdp::Summary,
};
use dialtone_sip::Message;
use parking_lot::Mutex;
use tracing::warn;

use super::{
    Delivery,
    media::{MediaLeg, sdp_of},
};

/// Calls waiting for the answer to a late offer, at most.
const MAX_WAITING: usize = 10_000;
/// How long an answer is waited for.
const WAIT: Duration = Duration::from_secs(32);

/// Where the ACK's answer to one late offer goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LateAnswer {
    pub server: SocketAddr,
    /// The tag of the party whose 2xx made the offer.
    pub offerer_tag: String,
    /// The tag of the party that sent the request (and answers in its ACK).
    pub answerer_tag: String,
    pub via_branch: Option<String>,
    pub offerer: Party,
    pub answerer: Party,
}

/// One late offer: where its answer goes, and once an ACK brought it, that ACK's body
/// and what the media server made of it.
struct Entry {
    answer: LateAnswer,
    at: Instant,
    answered: Option<(Vec<u8>, Vec<u8>)>,
}

/// What an ACK of a late offer gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ack {
    /// The answer goes to the media server first.
    Answer(LateAnswer),
    /// The same ACK again: the body the first one was given.
    Again(Vec<u8>),
}

/// Late offers waiting for their ACK, by Call-ID (cut to [`MAX_ID`] bytes).
#[derive(Default)]
pub(crate) struct LateAnswers(Mutex<HashMap<String, Entry>>);

/// Longest Call-ID or tag kept (longer ones are cut: they still match themselves).
const MAX_ID: usize = 96;

fn key(call_id: &str) -> String {
    super::calls::cut(call_id, MAX_ID).into()
}

impl LateAnswers {
    /// Whether there is room for call `call_id` (asked before its offer goes to the media
    /// server, so a call without room is not anchored at all).
    pub fn has_room(&self, call_id: &str, now: Instant) -> bool {
        let mut waiting = self.0.lock();
        if waiting.len() < MAX_WAITING || waiting.contains_key(&key(call_id)) {
            return true;
        }
        waiting.retain(|_, e| now.duration_since(e.at) < WAIT);
        waiting.len() < MAX_WAITING
    }

    /// Waits for the answer of call `call_id` (replacing one it waited for); false when
    /// [`MAX_WAITING`] calls wait already, none of them expired.
    pub fn expect(&self, call_id: &str, mut a: LateAnswer, now: Instant) -> bool {
        if !self.has_room(call_id, now) {
            return false;
        }
        a.offerer_tag = super::calls::cut(&a.offerer_tag, MAX_ID).into();
        a.answerer_tag = super::calls::cut(&a.answerer_tag, MAX_ID).into();
        let entry = Entry {
            answer: a,
            at: now,
            answered: None,
        };
        self.0.lock().insert(key(call_id), entry);
        true
    }

    /// Whether call `call_id` waits for an answer (or had one).
    pub fn waiting(&self, call_id: &str) -> bool {
        self.0.lock().contains_key(&key(call_id))
    }

    /// What an ACK of call `call_id` from the party tagged `from_tag` to the one tagged
    /// `to_tag`, with `body`, gets: its late offer's destination the first time, the body
    /// given to the first the next times; none when no such late offer waits (or it waited
    /// too long).
    pub fn take(
        &self,
        call_id: &str,
        (from_tag, to_tag): (&str, &str),
        body: &[u8],
        now: Instant,
    ) -> Option<Ack> {
        let mut waiting = self.0.lock();
        let k = key(call_id);
        let e = waiting.get(&k)?;
        if now.duration_since(e.at) >= WAIT {
            waiting.remove(&k);
            return None;
        }
        let a = &e.answer;
        if *a.answerer_tag != *super::calls::cut(from_tag, MAX_ID)
            || *a.offerer_tag != *super::calls::cut(to_tag, MAX_ID)
        {
            return None;
        }
        match &e.answered {
            Some((sent, given)) if sent == body => Some(Ack::Again(given.clone())),
            Some(_) => None,
            None => Some(Ack::Answer(a.clone())),
        }
    }

    /// The media server made `given` of the answer `body` of call `call_id`.
    pub fn answered(&self, call_id: &str, body: &[u8], given: &[u8]) {
        if let Some(e) = self.0.lock().get_mut(&key(call_id)) {
            e.answered = Some((body.to_vec(), given.to_vec()));
        }
    }
}

impl Delivery {
    /// The offer in `resp`, a 2xx to the late-offer request of `leg`, rewritten by its
    /// media server for the requester, whose ACK's answer is then waited for; none when
    /// the media server refused (the 2xx then goes on as it came).
    pub(crate) async fn media_late_offer(
        &self,
        leg: &MediaLeg,
        resp: &Message,
        summary: &Summary,
    ) -> Option<Vec<u8>> {
        let to_tag = resp.addressing().ok()?.to.tag?.to_owned();
        if !self.late_answers.has_room(&leg.call_id, Instant::now()) {
            warn!(call_id = %leg.call_id, "too many late offers waiting for their ACK: this call is not anchored");
            return None;
        }
        let offerer = leg.callee_as_seen(summary);
        let flags = anchor::flags(&offerer, &leg.caller);
        let dialog = Dialog {
            call_id: &leg.call_id,
            from_tag: &to_tag,
            to_tag: Some(&leg.from_tag),
            via_branch: leg.via_branch.as_deref(),
        };
        let command = ng::offer(&dialog, &resp.body, &flags);
        let sdp = self
            .ng_sdp(leg.server, "offer", command)
            .await
            .inspect_err(|e| warn!(call_id = %leg.call_id, error = %e, "late offer failed; the 2xx goes on as it came"))
            .ok()?;
        let waiting = LateAnswer {
            server: leg.server,
            offerer_tag: to_tag,
            answerer_tag: leg.from_tag.clone(),
            via_branch: leg.via_branch.clone(),
            offerer,
            answerer: leg.caller.clone(),
        };
        if !self
            .late_answers
            .expect(&leg.call_id, waiting, Instant::now())
        {
            // Filled meanwhile: the offer goes on as it came, and its session with it.
            warn!(call_id = %leg.call_id, "too many late offers waiting for their ACK: this call is not anchored");
            self.media_delete(leg.server, &leg.call_id);
            return None;
        }
        Some(sdp)
    }

    /// `m`, an ACK from `src` with the answer to a late offer this edge made, with that
    /// answer rewritten by the media server for the party that offered; none when no late
    /// offer waits for it, or the media server refused (the ACK then goes on as it came).
    pub(crate) async fn media_late_answer(&self, m: &Message, src: IpAddr) -> Option<Message> {
        let summary = sdp_of(m)?;
        let a = m.addressing().ok()?;
        let (from_tag, to_tag) = (a.from.tag?, a.to.tag?);
        let call_id = m.get("call-id")?;
        let late =
            match self
                .late_answers
                .take(call_id, (from_tag, to_tag), &m.body, Instant::now())?
            {
                Ack::Again(given) => {
                    let mut out = m.clone();
                    out.body = given;
                    return Some(out);
                }
                Ack::Answer(late) => late,
            };
        let mut answerer: Party = late.answerer.clone();
        // Behind a NAT only as its own flow shows it: an ACK that came through another
        // edge says nothing of the phone's address.
        answerer.behind_nat = answerer.source == src && summary.behind_nat(src);
        // What its SDP shows it speaks (WebRTC, SDES-SRTP or plain RTP).
        answerer.side = summary.side();
        let flags = anchor::flags(&answerer, &late.offerer);
        let dialog = Dialog {
            call_id,
            from_tag: &late.offerer_tag,
            to_tag: Some(&late.answerer_tag),
            via_branch: late.via_branch.as_deref(),
        };
        let command = ng::answer(&dialog, &m.body, &flags);
        let sdp = self
            .ng_sdp(late.server, "answer", command)
            .await
            .inspect_err(
                |e| warn!(%call_id, error = %e, "late answer failed; the ACK goes on as it came"),
            )
            .ok()?;
        self.late_answers.answered(call_id, &m.body, &sdp);
        let mut out = m.clone();
        out.body = sdp;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use dialtone_media::anchor::Side;

    use super::*;

    fn answer(answerer: &str, offerer: &str) -> LateAnswer {
        let party = Party {
            side: Side::Rtp,
            source: "127.0.0.1".parse().unwrap(),
            behind_nat: false,
            fixed_address: false,
        };
        LateAnswer {
            server: "127.0.0.1:2223".parse().unwrap(),
            offerer_tag: offerer.into(),
            answerer_tag: answerer.into(),
            via_branch: None,
            offerer: party.clone(),
            answerer: party,
        }
    }

    #[test]
    fn an_answer_is_taken_by_its_own_ack_and_repeated_for_the_same_ack() {
        let t0 = Instant::now();
        let w = LateAnswers::default();
        assert!(w.expect("c1", answer("caller", "callee"), t0));
        assert!(w.waiting("c1"));
        let sdp: &[u8] = b"v=0 answer";
        // (call, from tag, to tag, body, after, what it gets)
        let first = Some(Ack::Answer(answer("caller", "callee")));
        let cases = [
            ("c2", "caller", "callee", sdp, 0, None),
            ("c1", "callee", "caller", sdp, 0, None),
            ("c1", "caller", "other", sdp, 0, None),
            ("c1", "caller", "callee", sdp, 1, first),
        ];
        for (i, (call, from, to, body, after, want)) in cases.into_iter().enumerate() {
            let got = w.take(call, (from, to), body, t0 + Duration::from_secs(after));
            assert_eq!(got, want, "case {i}");
        }
        // Once answered, the same ACK again gets the same rewritten body; another body
        // gets nothing.
        w.answered("c1", sdp, b"v=0 rewritten");
        let again = w.take("c1", ("caller", "callee"), sdp, t0 + Duration::from_secs(2));
        assert_eq!(again, Some(Ack::Again(b"v=0 rewritten".to_vec())));
        assert_eq!(w.take("c1", ("caller", "callee"), b"v=0 other", t0), None);
        // Too late: forgotten.
        assert!(w.expect("c3", answer("a", "b"), t0));
        assert!(w.take("c3", ("a", "b"), sdp, t0 + WAIT).is_none());
        assert!(!w.waiting("c3"));
        // Long ids are kept cut, and still match themselves.
        let long = "x".repeat(500);
        assert!(w.expect(&long, answer(&long, "b"), t0));
        assert!(matches!(
            w.take(&long, (&long, "b"), sdp, t0),
            Some(Ack::Answer(_))
        ));
    }

    #[test]
    fn waiting_is_bounded_and_expired_entries_make_room() {
        let t0 = Instant::now();
        let w = LateAnswers::default();
        for i in 0..MAX_WAITING {
            assert!(w.expect(&format!("c{i}"), answer("a", "b"), t0));
        }
        assert!(!w.expect("one-more", answer("a", "b"), t0 + Duration::from_secs(1)));
        assert!(!w.has_room("one-more", t0 + Duration::from_secs(1)));
        // A call already waiting may still be replaced.
        assert!(w.expect("c7", answer("a", "b"), t0 + Duration::from_secs(1)));
        // Once the first ones expired there is room again.
        assert!(w.expect("one-more", answer("a", "b"), t0 + WAIT));
        assert!(w.waiting("one-more") && w.waiting("c7") && !w.waiting("c0"));
    }
}
