//! Requests the edge sends itself (NOTIFY check-sync to phones, OPTIONS keep-alives and
//! REGISTERs to carriers) as non-INVITE client transactions (RFC 3261 §17.1.2):
//! retransmitted over UDP from T1 doubling up to T2, ended by the first final response or
//! a timeout (408).

use std::{collections::HashMap, time::Duration};

use dialtone_sip::{Message, StartLine, transaction::T1};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::flow::{Replier, Transport};

const T2: Duration = Duration::from_secs(4);

/// Pending client transactions by branch.
#[derive(Default)]
pub struct Uac {
    pending: Mutex<HashMap<String, oneshot::Sender<Message>>>,
}

impl Uac {
    /// A response arrived: completes its transaction when final.
    pub fn on_response(&self, m: &Message) {
        let StartLine::Response { code, .. } = &m.start else {
            return;
        };
        if *code < 200 {
            return;
        }
        let Some(branch) = m
            .top_via()
            .and_then(|v| v.param("branch").map(str::to_owned))
        else {
            return;
        };
        if let Some(tx) = self.pending.lock().remove(&branch) {
            let _ = tx.send(m.clone());
        }
    }

    /// Sends `bytes` (a request with Via branch `branch`) and waits for its final answer:
    /// its status and reason (408 when none came).
    pub async fn request(
        &self,
        bytes: Vec<u8>,
        branch: String,
        transport: Transport,
        replier: Replier,
        timeout: Duration,
    ) -> (u16, String) {
        match self
            .exchange(bytes, branch, transport, replier, timeout)
            .await
        {
            Some(Message {
                start: StartLine::Response { code, reason, .. },
                ..
            }) => (code, reason),
            _ => (408, "Request Timeout".into()),
        }
    }

    /// [`Uac::request`], with the whole final answer (none when none came).
    pub async fn exchange(
        &self,
        bytes: Vec<u8>,
        branch: String,
        transport: Transport,
        replier: Replier,
        timeout: Duration,
    ) -> Option<Message> {
        let (tx, mut rx) = oneshot::channel();
        self.pending.lock().insert(branch.clone(), tx);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut interval = T1;
        replier.send(bytes.clone());
        let answer = loop {
            let wait = if transport == Transport::Udp {
                interval
            } else {
                timeout
            };
            let until = (tokio::time::Instant::now() + wait).min(deadline);
            match tokio::time::timeout_at(until, &mut rx).await {
                Ok(Ok(a)) => break Some(a),
                Ok(Err(_)) => break None,
                Err(_) if tokio::time::Instant::now() >= deadline => break None,
                Err(_) => {
                    replier.send(bytes.clone());
                    interval = (interval * 2).min(T2);
                }
            }
        };
        self.pending.lock().remove(&branch);
        answer
    }
}
