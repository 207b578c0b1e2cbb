//! The server transactions of requests being delivered: each keyed by its top Via
//! branch, matched by source, Call-ID and CSeq (a CANCEL or a retransmission), kept 32 s
//! after its final answer to answer retransmissions of it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU16, Ordering::Relaxed},
    },
    time::Duration,
};

use dialtone_sip::{Message, response::Source};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::Delivery;
use crate::{admission::Permit, flow::Answer};

/// One upstream request being delivered (keyed by its top Via branch).
pub(super) struct Txn {
    /// Where the request came from, and its Call-ID and CSeq: a CANCEL must match all
    /// three, not the branch alone (which the callee sees).
    origin: (Source, String, String),
    /// The last response sent upstream (answers a retransmission).
    last: Mutex<Option<Vec<u8>>>,
    /// The status code of the final answer sent upstream (0 until there is one).
    pub(super) final_code: AtomicU16,
    /// Set once the delivery is cancelled (an upstream CANCEL, a 2xx or 6xx on another
    /// branch), with the `Reason` its branches' CANCELs carry.
    pub(super) cancel: watch::Sender<Option<Option<String>>>,
}

impl Txn {
    /// Keeps `bytes`, a final answer with `code`, to answer retransmissions.
    pub(super) fn finished(&self, code: u16, bytes: Vec<u8>) {
        *self.last.lock() = Some(bytes);
        self.final_code.store(code, Relaxed);
    }

    /// Cancels the branches still pending (the first reason given stays).
    pub(super) fn cancel_branches(&self, reason: Option<String>) {
        self.cancel.send_if_modified(|c| {
            let first = c.is_none();
            if first {
                *c = Some(reason);
            }
            first
        });
    }
}

/// A request's Call-ID and CSeq number (a CANCEL's CSeq method differs).
fn call_and_number(m: &Message) -> (String, String) {
    let number = m
        .get("cseq")
        .and_then(|c| c.split_whitespace().next())
        .unwrap_or("");
    (m.get("call-id").unwrap_or("").to_owned(), number.to_owned())
}

pub(super) fn branch_of(m: &Message) -> Option<String> {
    m.top_via()
        .and_then(|v| v.param("branch").map(str::to_owned))
}

impl Delivery {
    /// CANCEL for a request being delivered: 200, and the CANCEL passed on to every
    /// branch, with the CANCEL's `Reason`. False when no delivery matches (the caller
    /// answers 481).
    pub(crate) fn cancel(&self, m: &Message, src: &Source, reply: &Answer) -> bool {
        let Some(txn) = self.delivery_of(m, src) else {
            return false;
        };
        reply.send(self.replies.responder.reply(m, src, 200, "", vec![]));
        txn.cancel_branches(m.get("reason").map(str::to_owned));
        true
    }

    /// The delivery `m` (a retransmission or a CANCEL) belongs to: same top branch, and
    /// from the same source with the same Call-ID and CSeq number.
    fn delivery_of(&self, m: &Message, src: &Source) -> Option<Arc<Txn>> {
        let txn = self.txns.lock().get(&branch_of(m)?).cloned()?;
        let (call_id, number) = call_and_number(m);
        (txn.origin == (*src, call_id, number)).then_some(txn)
    }

    /// Whether `m` belongs to a transaction under way or kept (an ACK for its non-2xx
    /// answer, or a retransmission).
    pub(crate) fn is_under_way(&self, m: &Message, src: &Source) -> bool {
        self.delivery_of(m, src).is_some()
    }

    /// A retransmission of a request being delivered, from where it first came: answered
    /// with the last answer (or nothing yet) before the trust boundary, which counts each
    /// nonce and marker once. True when it was one.
    pub(crate) fn retransmission(&self, m: &Message, src: &Source, upstream: &Answer) -> bool {
        let Some(txn) = self.delivery_of(m, src) else {
            return false;
        };
        if let Some(last) = txn.last.lock().clone() {
            upstream.resend(last);
        }
        true
    }

    /// Opens the transaction of a request to relay: its key and state, or none when it is a
    /// retransmission of one under way (answered here with the last answer, if any).
    pub(super) fn open(
        &self,
        m: &Message,
        src: Source,
        upstream: &Answer,
    ) -> Option<(String, Arc<Txn>)> {
        let key = branch_of(m)?;
        let mut txns = self.txns.lock();
        if let Some(t) = txns.get(&key) {
            // A retransmission: the last answer again, or nothing yet.
            if let Some(last) = t.last.lock().clone() {
                upstream.resend(last);
            }
            return None;
        }
        let (call_id, number) = call_and_number(m);
        let t = Arc::new(Txn {
            origin: (src, call_id, number),
            last: Mutex::default(),
            final_code: AtomicU16::new(0),
            cancel: watch::Sender::new(None),
        });
        txns.insert(key.clone(), t.clone());
        Some((key, t))
    }

    /// Keeps a finished transaction a while to answer retransmissions (64×T1, RFC 3261
    /// §17.2 and RFC 6026), then forgets it. Its delivery `permit`, which counts against
    /// its source, goes at once: a source's cap bounds the requests it has under way, not
    /// those it finished (an office behind one NAT address places many calls). The kept
    /// answers have a cap of their own, for all sources together; past it a transaction is
    /// forgotten at once (a retransmission of it is then taken as a new request, which its
    /// spent nonce count refuses).
    pub(super) async fn linger(&self, key: String, permit: Permit) {
        drop(permit);
        let source = self.txns.lock().get(&key).map(|t| t.origin.0.ip);
        let kept = match source {
            Some(ip) => self.lingering.admit(ip),
            None => return,
        };
        let Ok(kept) = kept else {
            self.txns.lock().remove(&key);
            return;
        };
        tokio::time::sleep(Duration::from_secs(32)).await;
        self.txns.lock().remove(&key);
        drop(kept);
    }
}
