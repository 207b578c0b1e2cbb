//! Calls out through carrier trunks: the targets of the route's trunks tried one after
//! another (RFC 3261 §16.6, sequential forking). A target that is DOWN is skipped; a call
//! moves on when a target times out (408), fails (5xx), does not answer at all, or rings
//! past the route's no-answer limit (CANCEL, then the next); any other final answer is
//! the caller's (`dialtone_domain::trunks::fails_over`). The carrier is told the caller's
//! outbound caller id in P-Asserted-Identity (the phone's own identity headers are
//! dropped), with `Privacy: id` where the trunk asks for it; an emergency call carries the
//! phone's E911 location by reference (`Geolocation`). The INVITE is record-routed,
//! so the dialog's later requests pass through this edge both ways. A carrier's digest
//! challenge is answered with the trunk's credentials (`client`).

use std::{sync::Arc, time::Duration};

use dialtone_domain::trunks::fails_over;
use dialtone_sip::{Message, response::Source, route::FlowToken};
use tracing::{debug, warn};

use super::{
    Delivery, Hop, Identity, Outcome,
    calls::{Parties, Party},
    responses::Responses,
};
use crate::{
    admission::Permit,
    credentials::trunks::TrunkPlan,
    flow::{Answer, FlowSource, Transport},
};

impl Delivery {
    /// Sends `m`, a call from one of our lines (come over `inbound`) for `number`, out as
    /// `plan` says, and relays the answers along `upstream`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call's parts, each used once"
    )]
    pub(crate) async fn to_trunks(
        self: Arc<Self>,
        m: Message,
        src: Source,
        inbound: FlowSource,
        upstream: Answer,
        number: String,
        plan: TrunkPlan,
        permit: Permit,
    ) {
        let Some((key, txn)) = self.open(&m, src, &upstream) else {
            return;
        };
        upstream.send(self.replies.responder.reply(&m, &src, 100, "", vec![]));
        let responses = Responses::new(&m, src, &txn, &upstream, &self.replies.responder);
        let ring = plan.no_answer_s.map(|s| Duration::from_secs(u64::from(s)));
        // The call's media is anchored where the caller or the trunk needs it (a WebRTC
        // phone calling out always: the carrier speaks plain RTP).
        let profile = self.cache.read().media_side(&plan.caller);
        let call_media = self.call_media(
            &m,
            src.ip,
            plan.site.as_ref(),
            super::media::CallerKind::phone(profile),
        );
        let anchored_at = parking_lot::Mutex::new(Vec::new());
        let mut tried = 0;
        // The trunk whose target answered (for the calls-per-trunk gauge).
        let mut answered_by = None;
        // Targets that are DOWN are skipped, except by an emergency call, which tries them
        // last rather than give up.
        let (up, down): (Vec<_>, Vec<_>) = plan
            .hops
            .iter()
            .partition(|h| self.trunk_health.is_up(&h.trunk, h.addr));
        if !down.is_empty() {
            debug!(
                down = down.len(),
                emergency = plan.emergency,
                "trunk targets down"
            );
        }
        let order = up
            .into_iter()
            .chain(down.into_iter().filter(|_| plan.emergency));
        for hop in order {
            let outbound = FlowSource {
                transport: hop.transport,
                addr: hop.addr,
            };
            if self.local.of(hop.transport).is_none() {
                warn!(trunk = %hop.trunk, target = %hop.addr, transport = hop.transport.name(), "no listener of the trunk target's transport: it is skipped");
                continue;
            }
            // Over TCP or TLS the edge's connection to the target, opened if need be: one
            // that cannot be opened is passed over like a target that is DOWN.
            let Some((_, replier)) = self.flows.reach(outbound, hop.tls_name.clone()).await else {
                debug!(trunk = %hop.trunk, target = %hop.addr, "trunk target unreachable");
                continue;
            };
            tried += 1;
            let uri = match hop.transport {
                Transport::Udp => format!("sip:{number}@{}", hop.addr),
                t => format!("sip:{number}@{};transport={}", hop.addr, t.name()),
            };
            let asserted = plan
                .caller_id
                .as_ref()
                .map(|id| format!("<sip:{id}@{};user=phone>", hop.addr.ip()));
            let token = FlowToken {
                inbound,
                outbound,
                cseq_shift: 0,
                outbound_server: hop.transport != Transport::Udp,
            };
            let next = Hop {
                uri: Some(&uri),
                transport: hop.transport,
                replier,
                to_edge: None,
                wait: self.settings.notify_timeout,
                record_route: self.record_route_token(&m, token),
                pop_routes: 0,
                ring,
                identity: Some(Identity {
                    asserted,
                    private: hop.privacy,
                    location: plan.location.clone(),
                }),
                auth: hop.auth.clone(),
                cseq_shift: 0,
                refer_back: 0,
                route_token: Some(token),
                untrusted_identity: false,
                untrusted_answers: false,
                phone: None,
                media: None,
            };
            // The offer for this target, when the call is anchored (each target a
            // branch of its own at the media server).
            let mut offered = None;
            if let Some(call) = &call_media {
                let callee = super::media::carrier(hop.addr, hop.anchor_media);
                let via_branch = format!("trunk-{tried}");
                offered = self
                    .media_offer(&m, call, callee, via_branch, false, &anchored_at)
                    .await;
            }
            let (m, next) = match offered {
                Some((o, leg)) => (
                    std::borrow::Cow::Owned(o),
                    Hop {
                        media: Some(leg),
                        ..next
                    },
                ),
                None => (std::borrow::Cow::Borrowed(&m), next),
            };
            self.proxy(&m, next, &responses).await;
            self.count(Outcome::Trunk);
            if (200..300).contains(&txn.final_code.load(std::sync::atomic::Ordering::Relaxed)) {
                answered_by = Some(hop.trunk.clone());
            }
            if responses.settled() {
                break;
            }
            match responses.last_final() {
                Some((code, generated)) if fails_over(code, generated) => {
                    debug!(trunk = %hop.trunk, target = %hop.addr, code, "trunk failed over");
                    self.count(Outcome::TrunkFailover);
                }
                _ => break,
            }
        }
        if tried == 0 {
            responses.generated(503, "No Trunk Available");
        }
        let code = txn.final_code.load(std::sync::atomic::Ordering::Relaxed);
        let call_id = m.get("call-id").unwrap_or("");
        let anchored_at = anchored_at.into_inner();
        let answered = (200..300).contains(&code);
        // As for a call to a phone (`deliver`): a failed call's sessions go before its
        // final answer does; an answered one keeps only the answering target's.
        if !answered {
            self.media_leftovers(&anchored_at, None, call_id);
        }
        responses.finish();
        let won = responses.answered();
        let won_at = won.media.as_ref().map(|a| a.server);
        if answered {
            self.media_leftovers(&anchored_at, won_at, call_id);
        }
        let parties = Parties {
            caller: Party::Phone(plan.caller.clone()),
            callee: answered_by.map_or(Party::Unknown, Party::Trunk),
            site: plan.site.clone(),
            dialled: number,
            media: won.media,
            to_tag: won.to_tag,
        };
        self.call_ended(call_id, code, parties);
        self.linger(key, permit).await;
    }
}
