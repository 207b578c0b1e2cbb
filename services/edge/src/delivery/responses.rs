//! The response context of a delivery (RFC 3261 §16.7): what its branches' answers become
//! upstream. Provisional answers are relayed while no final one has gone; every 2xx is
//! relayed at once (the first one cancels the other branches with `Reason: SIP;cause=200`,
//! "Call completed elsewhere", RFC 3326); a 6xx cancels them too; other finals are held
//! until every branch has one, and the best of them goes upstream ([`rank`], pure).

use std::sync::{Arc, atomic::Ordering::Relaxed};

use dialtone_sip::{Message, StartLine, proxy::forward_response_with, response::Source};
use parking_lot::Mutex;

use super::Txn;
use crate::{flow::Answer, replies::Responder};

/// Why the edge cancels its pending branches, as the `Reason` header of their CANCEL says.
pub const ANSWERED_ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

/// How good a final status is as the answer of a forked request: lower is better. A 6xx
/// (the callee declined everywhere) beats everything; then the lowest class (a redirect,
/// then a client error, then a server error); among client errors a phone's own answer
/// (busy, declined) beats the edge's "nobody answered" (408, 480) and 487 (cancelled).
/// Pure.
pub fn rank(code: u16) -> (u8, u8) {
    let class = match code / 100 {
        6 => 0,
        3 => 1,
        4 => 2,
        5 => 3,
        _ => 4,
    };
    let no_answer = u8::from(matches!(code, 408 | 480 | 487));
    (class, no_answer)
}

/// The answers of one delivery's branches, and what went upstream.
pub(super) struct Responses<'a> {
    /// The upstream request (what generated answers answer).
    pub request: &'a Message,
    pub src: Source,
    pub txn: &'a Txn,
    pub upstream: &'a Answer,
    pub responder: &'a Responder,
    /// Whether the request is an INVITE (forked 2xx and cancels apply to INVITEs only).
    invite: bool,
    /// The best non-2xx final answer so far (status, bytes to send upstream).
    best: Mutex<Option<(u16, Vec<u8>)>>,
    /// The latest final answer of a branch, and whether the edge made it.
    last: Mutex<Option<(u16, bool)>>,
    /// Who sent the 2xx that went upstream first (for the record of calls).
    answered: Mutex<Answered>,
}

/// Who sent the 2xx that went upstream first.
#[derive(Clone, Debug, Default)]
pub(super) struct Answered {
    /// The phone, when a phone's.
    pub phone: Option<Arc<str>>,
    /// Where its branch was anchored.
    pub media: Option<super::calls::Anchored>,
    /// Its To tag: the dialog that is up.
    pub to_tag: Option<String>,
}

impl<'a> Responses<'a> {
    pub fn new(
        request: &'a Message,
        src: Source,
        txn: &'a Txn,
        upstream: &'a Answer,
        responder: &'a Responder,
    ) -> Self {
        let invite =
            matches!(&request.start, StartLine::Request { method, .. } if method == "INVITE");
        Responses {
            request,
            invite,
            src,
            txn,
            upstream,
            responder,
            best: Mutex::new(None),
            last: Mutex::new(None),
            answered: Mutex::default(),
        }
    }

    /// Whether a final answer went upstream.
    fn finished(&self) -> bool {
        self.txn.final_code.load(Relaxed) != 0
    }

    /// A response from a branch's next hop (ringing phone `phone`, if a phone; its media
    /// anchored as `media` says, if it is), to a request sent with its CSeq number
    /// `cseq_shift` higher than it came, without the headers named in `strip`.
    pub fn relay(
        &self,
        resp: &Message,
        cseq_shift: u32,
        strip: &[&str],
        (phone, media): (Option<&Arc<str>>, Option<&super::calls::Anchored>),
    ) {
        let StartLine::Response { code, .. } = resp.start else {
            return;
        };
        let Some(bytes) = forward_response_with(resp, cseq_shift, strip) else {
            return;
        };
        match code {
            101..=199 if !self.finished() => {
                self.upstream.send(bytes);
            }
            200..=299 => {
                *self.last.lock() = Some((code, false));
                let first = !self.finished();
                if first {
                    *self.answered.lock() = Answered {
                        phone: phone.cloned(),
                        media: media.cloned(),
                        to_tag: resp
                            .addressing()
                            .ok()
                            .and_then(|a| a.to.tag.map(str::to_owned)),
                    };
                    self.txn.finished(code, bytes.clone());
                    if self.invite {
                        self.txn
                            .cancel_branches(Some(ANSWERED_ELSEWHERE.to_owned()));
                    }
                }
                // Every 2xx to an INVITE goes upstream: the caller acknowledges each and ends
                // the extra dialogs (RFC 3261 §16.7 step 5); any other request has one answer.
                if first || self.invite {
                    self.upstream.send(bytes);
                }
            }
            300.. => {
                *self.last.lock() = Some((code, false));
                // A 503 means "this hop is overloaded"; passed on as it is, it would say this
                // edge is (§16.7 step 6).
                let (code, bytes) = if code == 503 {
                    (500, as_500(&bytes))
                } else {
                    (code, bytes)
                };
                self.candidate(code, bytes);
            }
            _ => {}
        }
    }

    /// An answer the edge makes for a branch (no answer, no listener, too many hops).
    pub fn generated(&self, code: u16, reason: &str) {
        let bytes = self
            .responder
            .reply(self.request, &self.src, code, reason, vec![]);
        *self.last.lock() = Some((code, true));
        self.candidate(code, bytes);
    }

    /// The latest final answer of a branch (status, whether the edge made it), for a
    /// delivery that tries its targets one after another.
    pub fn last_final(&self) -> Option<(u16, bool)> {
        *self.last.lock()
    }

    /// Who sent the 2xx that went upstream (all none: no 2xx yet).
    pub fn answered(&self) -> Answered {
        self.answered.lock().clone()
    }

    /// Whether a 2xx went upstream, or the delivery was cancelled.
    pub fn settled(&self) -> bool {
        self.finished() || self.txn.cancel.borrow().is_some()
    }

    fn candidate(&self, code: u16, bytes: Vec<u8>) {
        if code >= 600 && self.invite && !self.finished() {
            self.txn.cancel_branches(Some(format!("SIP;cause={code}")));
        }
        let mut best = self.best.lock();
        if best.as_ref().is_none_or(|(b, _)| rank(code) < rank(*b)) {
            *best = Some((code, bytes));
        }
    }

    /// Every branch is done: the best final answer goes upstream unless a 2xx went.
    pub fn finish(&self) {
        if self.finished() {
            return;
        }
        let (code, bytes) = self.best.lock().take().unwrap_or_else(|| {
            let r =
                self.responder
                    .reply(self.request, &self.src, 480, "No live registration", vec![]);
            (480, r)
        });
        self.txn.finished(code, bytes.clone());
        self.upstream.send(bytes);
    }
}

/// A relayed 503 as a 500: its status line rewritten, the rest as it came.
fn as_500(bytes: &[u8]) -> Vec<u8> {
    let end = bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(bytes.len());
    let mut out = b"SIP/2.0 500 Server Internal Error".to_vec();
    out.extend_from_slice(&bytes[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::{as_500, rank};

    #[test]
    fn a_relayed_503_goes_upstream_as_500() {
        let got = as_500(b"SIP/2.0 503 Service Unavailable\r\nVia: x\r\n\r\n");
        assert_eq!(got, b"SIP/2.0 500 Server Internal Error\r\nVia: x\r\n\r\n");
    }

    #[test]
    fn the_best_final_answer_of_a_fork_wins() {
        // (one branch's answer, another's, the one that goes upstream)
        let cases = [
            (486, 480, 486), // busy beats "nobody answered"
            (480, 486, 486),
            (603, 486, 603), // declined everywhere beats busy
            (503, 486, 486), // a client error beats a server error
            (302, 486, 302), // a redirect beats a client error
            (487, 480, 487), // cancelled and unanswered: the first of equals stays
            (408, 500, 408),
            (500, 503, 500),
        ];
        for (a, b, want) in cases {
            let best = if rank(b) < rank(a) { b } else { a };
            assert_eq!(best, want, "{a} vs {b}");
        }
    }
}
