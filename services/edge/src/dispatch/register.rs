//! REGISTER: authenticated here (digest, bans, the nonce's scope), then handed to the
//! phone's actor in the registrar, which checks the nonce count and reduces the bindings.

use std::sync::atomic::Ordering;

use dialtone_sip::{Message, header::parse_name_addr, response::Source, transaction::server_key};

use super::Dispatcher;
use crate::{
    flow::{NOT_AUTHENTICATED, Peer, Replier},
    metrics::Reason,
    registrar::phone::{Register, RegisterJob},
    replies::ChallengeKind,
};

impl Dispatcher {
    pub(super) fn register(
        &self,
        m: Message,
        peer: &Peer,
        src: Source,
        reply: Replier,
        now_ms: u64,
    ) {
        let to = parse_name_addr(m.get("to").unwrap_or("")).ok();
        let user = match to.as_ref().map(|a| (&a.uri, a.uri.user)) {
            Some((uri, Some(u))) if uri.is_sip() => u,
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
        // The flow proved itself: it may stay open as long as a registration lasts.
        if let Some(idle) = &peer.idle {
            let _ = idle.compare_exchange(
                NOT_AUTHENTICATED,
                self.stream_idle().as_secs(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        // Only what reaches the phone's actor needs its transaction recognised.
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
        self.directory.tell_or_start(
            &phone_id,
            Register(Box::new(RegisterJob {
                entry,
                msg: m,
                source: peer.source(),
                nonce,
                nc,
                txn,
                src,
                reply,
                transport: peer.transport,
                idle: peer.idle.clone(),
            })),
        );
    }
}
