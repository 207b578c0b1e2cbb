//! REGISTER: turned away first when the edge sheds load (its bindings' publication too far
//! behind the store: `registrar::backlog`) and the phone has no state here, authenticated
//! here (digest, bans, the nonce's scope), then handled by the phone in the registrar, on
//! this thread under its shard's lock: it checks the nonce count and reduces the bindings.

use dialtone_sip::{Message, addressing::Party, response::Source, transaction::server_key};

use super::Dispatcher;
use crate::{
    flow::{Answer, Peer},
    metrics::Reason,
    registrar::{backlog, phone::RegisterJob},
    replies::ChallengeKind,
};

impl Dispatcher {
    pub(super) fn register(
        &self,
        m: Message,
        peer: &Peer,
        src: Source,
        reply: Answer,
        now_ms: u64,
    ) {
        // The verdict read the To already.
        let user = match m.addressing().map(|a| a.to) {
            Ok(Party {
                sip: true,
                user: Some(u),
                ..
            }) => u,
            _ => {
                self.stats.rejected(Reason::UnknownDomain);
                reply.send(self.responder().reply(
                    &m,
                    &src,
                    404,
                    "Not a SIP address-of-record",
                    vec![],
                ));
                return;
            }
        };
        if self.shed(&m, user, &src, &reply) {
            return;
        }
        let (entry, nonce, nc) = match self.authenticate(
            &m,
            "REGISTER",
            user,
            peer,
            &src,
            now_ms,
            ChallengeKind::Registrar,
        ) {
            Ok(x) => x,
            Err(bytes) => {
                reply.send(bytes);
                return;
            }
        };
        self.proven(peer);
        // From here on the edge knows the phone: its packets carry its profile's SIP DSCP
        // (a stream connection as a whole, a datagram as it is sent).
        // Set here, before the connection's reader waits again: a WS/WSS line with a
        // persistent connection keeps it for its timeout after the last thing it sent.
        if let Some(c) = peer.control() {
            use std::sync::atomic::Ordering::Relaxed;
            c.dscp.store(entry.sip_dscp, Relaxed);
            if let (Some(t), true) = (
                entry.persistent_timeout_s,
                peer.transport.connection_bound(),
            ) {
                c.idle_s.store(u64::from(t), Relaxed);
            }
        }
        let reply = reply.marked(entry.sip_dscp);
        // Only what reaches the phone needs its transaction recognised.
        let txn = server_key(&self.txn_keys, &m, m.top_via().as_ref(), peer.addr);
        if peer.transport.connection_bound() {
            let mut map = self.ws_phones.lock();
            let list = map.entry((peer.transport, peer.addr)).or_default();
            if !list.contains(&entry.phone_id) {
                list.push(entry.phone_id.clone());
            }
        }
        let phone_id = entry.phone_id.clone();
        tracing::Span::current().record("phone.id", &*phone_id);
        self.directory.register(
            &phone_id,
            RegisterJob {
                entry,
                msg: m,
                source: peer.source(),
                nonce,
                nc,
                txn,
                src,
                reply,
            },
        );
    }

    /// Turns the REGISTER away (503 with Retry-After) when the edge sheds load and the
    /// phone has no state here: a phone registered on this edge keeps refreshing (and its
    /// retransmissions get their answers), only phones arriving are paced. Before anything
    /// is spent on it: no digest, no nonce, no phone state. Returns whether it was turned away.
    fn shed(&self, m: &Message, user: &str, src: &Source, reply: &Answer) -> bool {
        let queue = self.directory.backlog();
        let Some(after) = backlog::shed(
            queue.len(),
            queue.rate(),
            queue.stalled(),
            self.settings.register_backlog,
            rand::random::<f64>,
        ) else {
            return false;
        };
        // The cache's lock is not held while the directory's shard is looked at.
        let phone = self.cache.read().lookup(user).map(|e| e.phone_id.clone());
        let known = phone.is_some_and(|id| self.directory.has(&id));
        if known {
            return false;
        }
        self.stats.rejected(Reason::Overloaded);
        reply.send(self.responder().reply(
            m,
            src,
            503,
            "Service Unavailable",
            vec![("Retry-After", after.to_string())],
        ));
        true
    }
}
