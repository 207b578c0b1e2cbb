//! Dialogs through the edge: every INVITE it delivers is record-routed with a flow token
//! (`dialtone_sip::route`), so the requests of the dialog that follows (ACK, BYE,
//! re-INVITE, UPDATE, INFO, REFER) come back through it and reach each phone over its own
//! flow, behind NAT or on a connection, and through whichever edges the INVITE took.
//!
//! When transports differ on the two sides (a UDP desk phone calling a WSS browser) the
//! edge writes two Record-Route entries, one per listener (RFC 5658): the top one faces the
//! callee, the other the caller, and both carry the same token. A request whose top Route
//! is one of them is this edge's: its own entries are popped, then it goes to the next
//! Route if one remains (another edge), else over the flow it did not come over. The edge
//! keeps no dialog state for this: the token is the state, and its MAC over the Call-ID
//! and the check that the request comes over one of its two flows keep everyone else out.

use std::sync::Arc;

use dialtone_common::clock::unix_ms;

use dialtone_sip::{
    Message,
    digest::NonceKey,
    proxy::{Routing, forward_routed},
    response::Source,
    route::{self, FlowToken},
};

use super::{Delivery, Hop, Outcome, forwarding::FORWARDED_CANONICAL};
use crate::{
    admission::Permit,
    flow::{FlowSource, Replier, Transport},
    replies::new_branch,
};

/// Where an in-dialog request goes from this edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Onward {
    /// How many of its Route entries, from the top, are this edge's own.
    pub pops: usize,
    /// The next hop: the next Route's address, or the flow of the dialog's other side.
    pub next: FlowSource,
}

/// Why an in-dialog request with this edge's Route goes nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It came over neither flow of the hop (403).
    NotAParticipant,
    /// The next Route names no IP address and port this edge can send to (404).
    UnreachableRoute,
}

/// Whether `m`'s top Route is one this edge (or another edge of its group) wrote for this
/// dialog, and if so where it goes, given the flow it came over. Pure.
pub(crate) fn route_of(
    m: &Message,
    key: &NonceKey,
    from: FlowSource,
) -> Option<Result<Onward, Refused>> {
    let call_id = m.get("call-id")?;
    let mut entries = route::routes(m);
    let (_, top) = entries.next()?;
    let token_text = top?.uri.user?;
    let token = FlowToken::decode(token_text, key, call_id)?;
    let Some(other_side) = token.onward(from) else {
        return Some(Err(Refused::NotAParticipant));
    };
    // The double Record-Route of a hop between transports carries one token twice.
    let mut pops = 1;
    let mut next = None;
    for (_, entry) in entries {
        match entry {
            Some(a) if a.uri.user == Some(token_text) => pops += 1,
            Some(a) => {
                next = Some(route::next_hop(&a));
                break;
            }
            None => {
                next = Some(None);
                break;
            }
        }
    }
    Some(match next {
        None => Ok(Onward {
            pops,
            next: other_side,
        }),
        Some(Some((addr, transport))) => Ok(Onward {
            pops,
            next: FlowSource { transport, addr },
        }),
        Some(None) => Err(Refused::UnreachableRoute),
    })
}

impl Delivery {
    /// This edge's Record-Route values for a dialog-creating request that came over
    /// `inbound` and goes over `outbound`: one entry, or two when the transports differ
    /// (the callee's side on top).
    pub(super) fn record_route(
        &self,
        m: &Message,
        inbound: FlowSource,
        outbound: FlowSource,
    ) -> Vec<String> {
        let call_id = m.get("call-id").unwrap_or("");
        let token = FlowToken { inbound, outbound }.encode(&self.settings.nonce_key, call_id);
        let entry = |t: Transport| {
            self.local
                .of(t)
                .map(|l| route::record_route(&l.host_port(), t, &token))
        };
        if inbound.transport == outbound.transport {
            entry(outbound.transport).into_iter().collect()
        } else {
            [entry(outbound.transport), entry(inbound.transport)]
                .into_iter()
                .flatten()
                .collect()
        }
    }

    /// An ACK for a 2xx, passed on once (it has no answer and no transaction).
    pub(crate) fn forward_ack(&self, m: &Message, onward: Onward) {
        let Some((transport, replier)) = self.flows.replier(onward.next) else {
            return;
        };
        let Some(local) = self.local.of(transport) else {
            return;
        };
        let via = format!("{};branch={}", local.via(), new_branch());
        let routing = Routing {
            record_route: &[],
            pop_routes: onward.pops,
        };
        let strip = ["proxy-authorization", FORWARDED_CANONICAL];
        if let Ok(bytes) = forward_routed(m, None, &via, &strip, &[], routing) {
            replier.send(bytes);
        }
    }

    /// Relays an in-dialog request along `onward` and its answers along `upstream`, as a
    /// stateful proxy (retransmissions absorbed, CANCEL passed on); `permit` is held until
    /// the transaction is forgotten.
    pub(crate) async fn relay(
        self: Arc<Self>,
        m: Message,
        src: Source,
        upstream: Replier,
        onward: Onward,
        permit: Permit,
    ) {
        let Some((key, txn)) = self.open(&m, src, &upstream) else {
            return;
        };
        let answer = |code: u16, reason: &str| {
            let r = self.replies.responder.reply(&m, &src, code, reason, vec![]);
            txn.finished(code, r.clone());
            upstream.send(r);
        };
        let method = match &m.start {
            dialtone_sip::StartLine::Request { method, .. } => method.as_ref(),
            dialtone_sip::StartLine::Response { .. } => "",
        };
        if method == "INVITE" {
            upstream.send(self.replies.responder.reply(&m, &src, 100, "", vec![]));
        }
        match self.flows.replier(onward.next) {
            // The phone's connection closed (RFC 5626 §5.3: 430 Flow Failed).
            None => answer(430, "Flow Failed"),
            Some((transport, replier)) => {
                let hop = Hop {
                    uri: None,
                    transport,
                    replier,
                    to_edge: None,
                    wait: self.settings.notify_timeout,
                    record_route: Vec::new(),
                    pop_routes: onward.pops,
                };
                self.proxy(&m, hop, &txn, &upstream, &answer).await;
                self.count(Outcome::InDialog);
            }
        }
        let call_id = m.get("call-id").unwrap_or("");
        match method {
            "INVITE" => {
                let code = txn.final_code.load(std::sync::atomic::Ordering::Relaxed);
                self.calls.invite_ended(call_id, code, false, unix_ms());
            }
            // Whatever its answer, a BYE ends the dialog (RFC 3261 §15.1.2).
            "BYE" => self.calls.ended(call_id),
            _ => {}
        }
        self.linger(key).await;
        drop(permit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(s: &str) -> FlowSource {
        s.parse().unwrap()
    }

    fn bye(routes: &[String]) -> Message {
        let route: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
        let text = format!(
            "BYE sip:b@10.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n{route}From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: call-9\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        dialtone_sip::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn in_dialog_requests_go_where_the_token_and_the_routes_say() {
        let key = NonceKey::new([5; 32]);
        let (caller, callee) = (flow("udp:192.0.2.1:5060"), flow("tcp:192.0.2.2:40000"));
        let token = FlowToken {
            inbound: caller,
            outbound: callee,
        }
        .encode(&key, "call-9");
        let ours = |t: &str| route::record_route("127.0.0.1:5060", Transport::Udp, t);
        let other_edge = "<sip:x@127.0.0.2:5062;transport=udp;lr>".to_owned();
        let foreign = FlowToken {
            inbound: caller,
            outbound: callee,
        }
        .encode(&NonceKey::new([6; 32]), "call-9");
        // (routes, the flow it came over, the answer)
        type Case = (Vec<String>, FlowSource, Option<Result<Onward, Refused>>);
        let cases: Vec<Case> = vec![
            (
                vec![ours(&token)],
                caller,
                Some(Ok(Onward {
                    pops: 1,
                    next: callee,
                })),
            ),
            (
                vec![ours(&token)],
                callee,
                Some(Ok(Onward {
                    pops: 1,
                    next: caller,
                })),
            ),
            // A double Record-Route: both entries are ours.
            (
                vec![ours(&token), ours(&token)],
                callee,
                Some(Ok(Onward {
                    pops: 2,
                    next: caller,
                })),
            ),
            // Then on to the other edge of the call.
            (
                vec![ours(&token), other_edge.clone()],
                caller,
                Some(Ok(Onward {
                    pops: 1,
                    next: flow("udp:127.0.0.2:5062"),
                })),
            ),
            (
                vec![ours(&token), "<sip:pbx.example.com;lr>".to_owned()],
                caller,
                Some(Err(Refused::UnreachableRoute)),
            ),
            // From anywhere else: refused, token or not.
            (
                vec![ours(&token)],
                flow("udp:203.0.113.9:5060"),
                Some(Err(Refused::NotAParticipant)),
            ),
            // Not ours: another key, no token, no Route.
            (vec![ours(&foreign)], caller, None),
            (vec![other_edge], caller, None),
            (vec![], caller, None),
        ];
        for (routes, from, want) in cases {
            assert_eq!(
                route_of(&bye(&routes), &key, from),
                want,
                "{routes:?} from {from}"
            );
        }
    }
}
