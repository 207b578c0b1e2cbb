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
    header::is_check_sync,
    proxy::{Routing, forward_routed},
    response::Source,
    route::{self, FlowToken},
};

use super::{Delivery, Hop, Outcome, calls, forwarding::FORWARDED_CANONICAL, responses::Responses};
use crate::{
    admission::Permit,
    flow::{Answer, FlowSource, Transport},
    replies::new_branch,
};

/// Where an in-dialog request goes from this edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Onward {
    /// How many of its Route entries, from the top, are this edge's own.
    pub pops: usize,
    /// The next hop: the flow of the hop's other side (a Route left below this edge's own
    /// goes on for that hop to follow).
    pub next: FlowSource,
    /// How much higher its CSeq number goes on (a request from the caller of a dialog whose
    /// INVITE the edge re-sent with a carrier's credentials; 0 otherwise).
    pub cseq_shift: u8,
    /// How much lower the `id` of an `Event: refer` goes on (a NOTIFY towards that caller).
    pub refer_back: u8,
}

/// Why a request with this edge's Route goes nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It came over neither flow of the hop (403).
    NotAParticipant,
    /// It is not within a dialog (no To tag), or it is a check-sync, which only the edge
    /// itself sends (403): a token admits a dialog's own requests, nothing else.
    NotInDialog,
}

/// Whether `m`'s top Route is one this edge wrote for this dialog (it names one of this
/// edge's listeners, `is_local`, and carries a token the group signed for that entry and
/// this Call-ID), and if so where the request goes, given the flow it came over: over the
/// other flow of the hop (the other phone, the other edge of the call, or a peer), with
/// this edge's own entries popped and any further Route left for the next hop. Pure.
pub(crate) fn route_of(
    m: &Message,
    key: &NonceKey,
    from: FlowSource,
    is_local: impl Fn(FlowSource) -> bool,
) -> Option<Result<Onward, Refused>> {
    let mut entries = route::routes(m);
    let (_, top) = entries.next()?;
    let (at, user) = route::entry(&top?)?;
    if !is_local(at) {
        return None;
    }
    let call_id = m.get("call-id")?;
    let token = FlowToken::decode(user?, key, call_id, at)?;
    let Some(next) = token.onward(from) else {
        return Some(Err(Refused::NotAParticipant));
    };
    let in_dialog = m.addressing().is_ok_and(|a| a.to.tag.is_some());
    if !in_dialog || m.all("event").any(is_check_sync) {
        return Some(Err(Refused::NotInDialog));
    }
    // The double Record-Route of a hop between transports: both entries are this edge's.
    let mut pops = 1;
    for (_, e) in entries {
        let ours = e.as_ref().and_then(route::entry).is_some_and(|(at, user)| {
            is_local(at) && user.and_then(|u| FlowToken::decode(u, key, call_id, at)) == Some(token)
        });
        if !ours {
            break;
        }
        pops += 1;
    }
    let (cseq_shift, refer_back) = if from == token.inbound {
        (token.cseq_shift, 0)
    } else {
        (0, token.cseq_shift)
    };
    Some(Ok(Onward {
        pops,
        next,
        cseq_shift,
        refer_back,
    }))
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
        let hop = FlowToken {
            inbound,
            outbound,
            cseq_shift: 0,
            outbound_server: false,
        };
        self.record_route_token(m, hop)
    }

    /// [`Delivery::record_route`] with `hop` as its token (a carrier's connection, a
    /// request re-sent with its CSeq shifted).
    pub(super) fn record_route_token(&self, m: &Message, hop: FlowToken) -> Vec<String> {
        let (inbound, outbound) = (hop.inbound, hop.outbound);
        let call_id = m.get("call-id").unwrap_or("");
        let entry = |t: Transport| {
            let local = self.local.of(t)?;
            let at = FlowSource {
                transport: t,
                addr: local.addr,
            };
            let token = hop.encode(&self.settings.nonce_key, call_id, at);
            Some(route::record_route(&local.host_port(), t, &token))
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
            cseq_shift: u32::from(onward.cseq_shift),
            refer_id_back: 0,
        };
        let strip = ["proxy-authorization", FORWARDED_CANONICAL];
        if let Ok(bytes) = forward_routed(m, None, &via, &strip, &[], routing) {
            replier.send(bytes);
        }
    }

    /// Relays an in-dialog request along `onward` and its answers along `upstream`, as a
    /// stateful proxy (retransmissions absorbed, CANCEL passed on); `permit` is held until
    /// the final answer has gone. From an `untrusted` source (not a trusted peer), its
    /// identity assertions are dropped.
    pub(crate) async fn relay(
        self: Arc<Self>,
        m: Message,
        src: Source,
        upstream: Answer,
        (onward, untrusted): (Onward, bool),
        permit: Permit,
    ) {
        let Some((key, txn)) = self.open(&m, src, &upstream) else {
            return;
        };
        let responses = Responses::new(&m, src, &txn, &upstream, &self.replies.responder);
        let method = match &m.start {
            dialtone_sip::StartLine::Request { method, .. } => method.as_ref(),
            dialtone_sip::StartLine::Response { .. } => "",
        };
        if method == "INVITE" {
            upstream.send(self.replies.responder.reply(&m, &src, 100, "", vec![]));
        }
        // Towards a carrier, the edge's own connection (opened again when it closed, and
        // over TLS only one verified for the target's name); towards a phone, its flow,
        // which is gone when it closed.
        let target = self.cache.read().trunk_target_at(onward.next);
        // Answers from anyone but a trusted peer (a phone) lose their identity assertions.
        let next_trusted = target.is_some()
            || self
                .cache
                .read()
                .trusted_peer(onward.next.addr, onward.next.transport.name(), &[])
                .is_some();
        let next = match target {
            Some(t) => self.flows.reach(t.flow, t.tls_name).await,
            None => self.flows.replier(onward.next),
        };
        match next {
            // The phone's connection closed (RFC 5626 §5.3: 430 Flow Failed).
            None => responses.generated(430, "Flow Failed"),
            Some((transport, replier)) => {
                // A carrier may challenge a BYE too: the trunk whose target the dialog's
                // other side is answers it (nothing follows a BYE, so its CSeq may move).
                let auth = (method == "BYE")
                    .then(|| self.cache.read().trunk_auth_at(onward.next.addr))
                    .flatten();
                // A new offer within a call whose media this edge anchored (hold, resume,
                // a new codec) goes to the same media server, and so does its answer.
                let anchored = matches!(method, "INVITE" | "UPDATE")
                    .then(|| self.calls.anchored(m.get("call-id").unwrap_or("")))
                    .flatten();
                let reoffer = match &anchored {
                    Some(at) => self.media_reoffer(&m, at).await,
                    None => None,
                };
                let (sent, leg) = match &reoffer {
                    Some((out, leg)) => (out, Some(leg.clone())),
                    None => (&m, None),
                };
                let hop = Hop {
                    uri: None,
                    transport,
                    replier,
                    to_edge: None,
                    wait: self.settings.notify_timeout,
                    record_route: Vec::new(),
                    pop_routes: onward.pops,
                    ring: None,
                    identity: None,
                    auth,
                    cseq_shift: onward.cseq_shift,
                    refer_back: onward.refer_back,
                    route_token: None,
                    untrusted_identity: untrusted,
                    untrusted_answers: !next_trusted,
                    phone: None,
                    media: leg,
                };
                self.proxy(sent, hop, &responses).await;
                self.count(Outcome::InDialog);
            }
        }
        responses.finish();
        let call_id = m.get("call-id").unwrap_or("");
        match method {
            "INVITE" => {
                let code = txn.final_code.load(std::sync::atomic::Ordering::Relaxed);
                let _ = self.calls.invite_ended(call_id, code, unix_ms(), None);
            }
            // Whatever its answer, a BYE ends the dialog (RFC 3261 §15.1.2).
            "BYE" => {
                let tags = m.addressing().ok();
                let tags = [
                    tags.as_ref().and_then(|a| a.from.tag),
                    tags.as_ref().and_then(|a| a.to.tag),
                ];
                if let calls::Ended::Call(call) = self.calls.ended(call_id, tags, unix_ms())
                    && let Some(media) = call.media
                {
                    self.media_delete(media.server, call_id);
                }
            }
            _ => {}
        }
        self.linger(key, permit).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(s: &str) -> FlowSource {
        s.parse().unwrap()
    }

    fn bye(routes: &[String], tagged: bool, extra: &str) -> Message {
        let route: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
        let tag = if tagged { ";tag=2" } else { "" };
        let text = format!(
            "BYE sip:b@10.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n{route}From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>{tag}\r\nCall-ID: call-9\r\nCSeq: 2 BYE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        dialtone_sip::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn in_dialog_requests_go_where_the_token_and_the_routes_say() {
        let key = NonceKey::new([5; 32]);
        let (caller, callee) = (flow("udp:192.0.2.1:5060"), flow("tcp:192.0.2.2:40000"));
        let hop = FlowToken {
            inbound: caller,
            outbound: callee,
            cseq_shift: 0,
            outbound_server: false,
        };
        let (udp, tcp) = (flow("udp:127.0.0.1:5060"), flow("tcp:127.0.0.1:5060"));
        let other_edge = flow("udp:127.0.0.2:5062");
        // An entry written for `at` (signed with `key`), naming `named`.
        let entry = |key: &NonceKey, at: FlowSource, named: FlowSource| {
            let t = hop.encode(key, "call-9", at);
            route::record_route(&named.addr.to_string(), named.transport, &t)
        };
        let ours = |at| entry(&key, at, at);
        let is_local = |f: FlowSource| f == udp || f == tcp;
        // (routes, the flow it came over, the answer)
        type Case = (Vec<String>, FlowSource, Option<Result<Onward, Refused>>);
        let cases: Vec<Case> = vec![
            (
                vec![ours(udp)],
                caller,
                Some(Ok(Onward {
                    pops: 1,
                    next: callee,
                    cseq_shift: 0,
                    refer_back: 0,
                })),
            ),
            (
                vec![ours(udp)],
                callee,
                Some(Ok(Onward {
                    pops: 1,
                    next: caller,
                    cseq_shift: 0,
                    refer_back: 0,
                })),
            ),
            // A double Record-Route: both entries are ours.
            (
                vec![ours(tcp), ours(udp)],
                callee,
                Some(Ok(Onward {
                    pops: 2,
                    next: caller,
                    cseq_shift: 0,
                    refer_back: 0,
                })),
            ),
            // Whatever Route follows (another edge of the call, a peer's own, anything a
            // phone wrote) stays for the next hop: the request goes over the hop's other
            // flow, never to an address the request names.
            (
                vec![ours(udp), entry(&key, other_edge, other_edge)],
                caller,
                Some(Ok(Onward {
                    pops: 1,
                    next: callee,
                    cseq_shift: 0,
                    refer_back: 0,
                })),
            ),
            (
                vec![ours(udp), "<sip:203.0.113.9:5060;lr>".to_owned()],
                caller,
                Some(Ok(Onward {
                    pops: 1,
                    next: callee,
                    cseq_shift: 0,
                    refer_back: 0,
                })),
            ),
            (
                vec![ours(udp), "<sip:pbx.example.com;lr>".to_owned()],
                callee,
                Some(Ok(Onward {
                    pops: 1,
                    next: caller,
                    cseq_shift: 0,
                    refer_back: 0,
                })),
            ),
            // From anywhere else: refused, token or not.
            (
                vec![ours(udp)],
                flow("udp:203.0.113.9:5060"),
                Some(Err(Refused::NotAParticipant)),
            ),
            // Not ours: another group's key, an entry moved to our address, another edge's
            // entry on top, no Route.
            (vec![entry(&NonceKey::new([6; 32]), udp, udp)], caller, None),
            (vec![entry(&key, other_edge, udp)], caller, None),
            (vec![entry(&key, other_edge, other_edge)], caller, None),
            (vec![], caller, None),
        ];
        for (routes, from, want) in cases {
            let got = route_of(&bye(&routes, true, ""), &key, from, is_local);
            assert_eq!(got, want, "{routes:?} from {from}");
        }
        // Out of a dialog (no To tag), or a check-sync: a token admits neither.
        for (tagged, event) in [(false, ""), (true, "Event: check-sync;reboot=true\r\n")] {
            let m = bye(&[ours(udp)], tagged, event);
            let got = route_of(&m, &key, caller, is_local);
            assert_eq!(got, Some(Err(Refused::NotInDialog)), "{tagged} {event}");
        }
    }
}
