//! Late offers (RFC 3261 §13.2.1, RFC 6337 §2.1): an INVITE or re-INVITE without SDP,
//! whose 2xx carries the offer and whose ACK carries the answer. In an anchored call the
//! media server is given them in that order: `offer` with the 2xx's SDP (the party that
//! answered offers, so its tag is the ng from-tag), then `answer` with the ACK's. Between
//! the two the edge remembers where the answer goes ([`LateAnswers`]: bounded, each entry
//! forgotten when its ACK passes or after 32 s, 64×T1, as long as a 2xx is retransmitted).

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

/// Late offers waiting for their ACK, by Call-ID.
#[derive(Default)]
pub(crate) struct LateAnswers(Mutex<HashMap<String, (LateAnswer, Instant)>>);

impl LateAnswers {
    /// Waits for the answer of call `call_id` (replacing one it waited for); false when
    /// [`MAX_WAITING`] calls wait already, none of them expired.
    pub fn expect(&self, call_id: &str, a: LateAnswer, now: Instant) -> bool {
        let mut waiting = self.0.lock();
        if waiting.len() >= MAX_WAITING && !waiting.contains_key(call_id) {
            waiting.retain(|_, (_, at)| now.duration_since(*at) < WAIT);
            if waiting.len() >= MAX_WAITING {
                return false;
            }
        }
        waiting.insert(call_id.to_owned(), (a, now));
        true
    }

    /// Whether call `call_id` waits for an answer.
    pub fn waiting(&self, call_id: &str) -> bool {
        self.0.lock().contains_key(call_id)
    }

    /// The answer's destination for an ACK of call `call_id` from the party tagged
    /// `from_tag` to the one tagged `to_tag`, no longer waited for; none when no such late
    /// offer waits (or it waited too long).
    pub fn take(
        &self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        now: Instant,
    ) -> Option<LateAnswer> {
        let mut waiting = self.0.lock();
        let (a, at) = waiting.get(call_id)?;
        if now.duration_since(*at) >= WAIT {
            waiting.remove(call_id);
            return None;
        }
        if a.answerer_tag != from_tag || a.offerer_tag != to_tag {
            return None;
        }
        waiting.remove(call_id).map(|(a, _)| a)
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
        let mut offerer = leg.callee.clone();
        offerer.behind_nat = leg.callee_direct && summary.behind_nat(offerer.source);
        // What its SDP shows it speaks (WebRTC, SDES-SRTP or plain RTP).
        offerer.side = summary.side();
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
            warn!(call_id = %leg.call_id, "too many late offers waiting for their ACK: this one's answer will pass as it comes");
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
        let late = self
            .late_answers
            .take(call_id, from_tag, to_tag, Instant::now())?;
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
    fn an_answer_is_taken_once_by_its_own_ack_within_its_time() {
        let t0 = Instant::now();
        let w = LateAnswers::default();
        assert!(w.expect("c1", answer("caller", "callee"), t0));
        assert!(w.waiting("c1"));
        // (call, from tag, to tag, after, taken)
        let cases = [
            ("c2", "caller", "callee", 0, false),
            ("c1", "callee", "caller", 0, false),
            ("c1", "caller", "other", 0, false),
            ("c1", "caller", "callee", 1, true),
            ("c1", "caller", "callee", 2, false),
        ];
        for (i, (call, from, to, after, want)) in cases.into_iter().enumerate() {
            let got = w.take(call, from, to, t0 + Duration::from_secs(after));
            assert_eq!(got.is_some(), want, "case {i}");
        }
        assert!(!w.waiting("c1"));
        // Too late: forgotten.
        assert!(w.expect("c3", answer("a", "b"), t0));
        assert!(w.take("c3", "a", "b", t0 + WAIT).is_none());
        assert!(!w.waiting("c3"));
    }

    #[test]
    fn waiting_is_bounded_and_expired_entries_make_room() {
        let t0 = Instant::now();
        let w = LateAnswers::default();
        for i in 0..MAX_WAITING {
            assert!(w.expect(&format!("c{i}"), answer("a", "b"), t0));
        }
        assert!(!w.expect("one-more", answer("a", "b"), t0 + Duration::from_secs(1)));
        // A call already waiting may still be replaced.
        assert!(w.expect("c7", answer("a", "b"), t0 + Duration::from_secs(1)));
        // Once the first ones expired there is room again.
        assert!(w.expect("one-more", answer("a", "b"), t0 + WAIT));
        assert!(w.waiting("one-more") && w.waiting("c7") && !w.waiting("c0"));
    }
}
