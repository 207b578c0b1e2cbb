//! One branch's client transaction: a request forwarded one hop (to a phone's flow or to
//! the edge holding its binding), retransmitted over UDP, and its answers handed to the
//! delivery's [`Responses`]. Timer C (RFC 3261 §16.6 step 11) cancels an INVITE ringing
//! too long; a cancel of the delivery (upstream CANCEL, a 2xx or 6xx on another branch)
//! is passed on once the hop has answered provisionally (§9.1), with its `Reason`.
//!
//! A carrier that challenges a trunk's request with 401/407 is answered here with the
//! trunk's credentials, and a phone that challenges what the edge hands it with its
//! profile's Digest Authentication ones: the challenge is acknowledged (an INVITE's) and
//! the request goes again with
//! the next CSeq number (RFC 3261 §22.2) on a new branch. A re-sent INVITE is
//! record-routed with that CSeq shift in its flow token, so the caller's later requests in
//! the dialog are moved up by it, and their answers back down (`in_dialog`).

use std::time::Duration;

use dialtone_common::clock::unix_ms;
use dialtone_sip::{
    Message, StartLine,
    proxy::{ForwardError, Routing, ack_for, cancel_because, forward_routed},
    route::FlowToken,
};
use tokio::{sync::mpsc, time::Instant};
use tracing::debug;

use super::{
    Delivery, FORWARDED, FORWARDED_CANONICAL, HOP_TIMEOUT, Hop, Marked, Outcome, forwarding,
    responses::Responses,
};
use crate::{flow::Transport, replies::new_branch};

/// Headers a phone's request loses on its way to a carrier: who calls (the carrier hears
/// that from the edge only), where it should be routed (the edge decides), and what a
/// carrier would bill or redirect by. The first three, what a phone asserts of its own
/// identity, it loses on its way to any phone too.
const IDENTITY_HEADERS: [&str; 9] = [
    "p-asserted-identity",
    "p-preferred-identity",
    "remote-party-id",
    "privacy",
    "route",
    "diversion",
    "history-info",
    "p-charge-info",
    "p-charging-vector",
];

/// Where a branch stands on cancelling its request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cancelling {
    /// Not asked to.
    No,
    /// Asked to, with this Reason; waiting for a provisional answer to send the CANCEL.
    Pending(Option<String>),
    /// CANCEL sent; waiting a little for the 487, to acknowledge it.
    Sent,
}

impl Delivery {
    /// Forwards `m` one hop and hands what comes back to `responses`. Returns false when
    /// nothing at all came back within the hop's wait (nothing was given to `responses`:
    /// the next binding may be tried); true otherwise.
    pub(super) async fn proxy(&self, m: &Message, hop: Hop<'_>, responses: &Responses<'_>) -> bool {
        let Hop {
            uri,
            transport,
            replier,
            to_edge,
            wait,
            record_route,
            pop_routes,
            ring,
            identity,
            auth,
            cseq_shift,
            refer_back,
            route_token,
            untrusted_identity,
            untrusted_answers,
            phone,
            media,
        } = hop;
        let mut anchored = media.as_ref().map(|l| l.anchored());
        // The last answer rewritten by the media server: (To tag, SDP as sent, as
        // rewritten).
        let mut last_answer: Option<(Option<String>, Vec<u8>, Vec<u8>)> = None;
        // What a phone asserts of its own identity in its answers does not pass either.
        let answer_strip: &[&str] = if untrusted_answers {
            &IDENTITY_HEADERS[..3]
        } else {
            &[]
        };
        let txn = responses.txn;
        let mut cancelled = txn.cancel.subscribe();
        if cancelled.borrow_and_update().is_some() {
            // Cancelled before it went anywhere.
            responses.generated(487, "");
            return true;
        }
        let Some(local) = self.local.of(transport) else {
            responses.generated(503, "No listener for the flow's transport");
            return true;
        };
        let mut branch = new_branch();
        let marker = to_edge.as_deref().map(|to_node| {
            let marked = Marked::of(m, &branch, to_node);
            let now_s = unix_ms() / 1000;
            forwarding::marker(
                &self.settings.nonce_key,
                &self.settings.node_id,
                now_s,
                &marked,
            )
        });
        let mut extra: Vec<(&str, &str)> = marker
            .as_deref()
            .map(|v| vec![(FORWARDED, v)])
            .unwrap_or_default();
        // What the edges of the group consumed stays with them: the line's credentials and
        // the marker of the edge that handed the request over. Towards a carrier, only the
        // edge says who calls.
        let mut strip = vec!["proxy-authorization", FORWARDED_CANONICAL];
        if auth.is_some() {
            strip.push("authorization");
        }
        if untrusted_identity {
            strip.extend(&IDENTITY_HEADERS[..3]);
        }
        let location = identity
            .as_ref()
            .and_then(|id| id.location.as_ref())
            .map(|url| format!("<{url}>"));
        if let Some(id) = &identity {
            strip.extend(IDENTITY_HEADERS);
            if let Some(pai) = &id.asserted {
                extra.push(("P-Asserted-Identity", pai));
            }
            if id.private {
                extra.push(("Privacy", "id"));
            }
        }
        if let Some(l) = &location {
            // The phone's configured location replaces any it sent itself.
            strip.extend(["geolocation", "geolocation-routing"]);
            extra.push(("Geolocation", l));
            extra.push(("Geolocation-Routing", "yes"));
        }
        // The request as it goes with `branch`, its CSeq `shift` higher than it came, and
        // the answer to a carrier's challenge: a dialog-creating request re-sent that way
        // is record-routed with the shift, so the dialog's later requests follow it.
        let forward = |branch: &str, shift: u8, answers: &[(&str, String)]| {
            let via = format!("{};branch={branch}", local.via());
            let shifted_routes;
            let record_route = match route_token {
                Some(base) if shift != cseq_shift && !record_route.is_empty() => {
                    let token = FlowToken {
                        cseq_shift: shift,
                        ..base
                    };
                    shifted_routes = self.record_route_token(m, token);
                    &shifted_routes
                }
                _ => &record_route,
            };
            let mut extra = extra.clone();
            for (name, value) in answers {
                extra.push((*name, value.as_str()));
            }
            let routing = Routing {
                record_route,
                pop_routes,
                cseq_shift: u32::from(shift),
                refer_id_back: u32::from(refer_back),
            };
            forward_routed(m, uri, &via, &strip, &extra, routing)
        };
        let mut shift = cseq_shift;
        let mut bytes = match forward(&branch, shift, &[]) {
            Ok(b) => b,
            Err(ForwardError::TooManyHops) => {
                responses.generated(483, "");
                return true;
            }
            Err(ForwardError::NotARequest) => return true,
        };
        let Ok(mut sent) = dialtone_sip::parse(&bytes) else {
            responses.generated(500, "Could not forward the request");
            return true;
        };
        let StartLine::Request { method, .. } = &sent.start else {
            return true;
        };
        let method = method.clone();
        let invite = method == "INVITE";
        #[expect(
            clippy::disallowed_methods,
            reason = "responses to one forwarded request, matched by its branch; the client transaction drains them as they come and ends within Timer B/F"
        )]
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.clients.lock().insert(branch.clone(), tx.clone());
        replier.send(bytes.clone());

        let mut start = Instant::now();
        let mut deadline = start + wait;
        let mut resend = Instant::now() + Duration::from_millis(500);
        let mut interval = Duration::from_millis(500);
        let mut answered = false;
        // The edge gave this branch's final answer itself (Timer C): what comes later is
        // only acknowledged.
        let mut gave_final = false;
        let mut cancelling = Cancelling::No;
        // Branches of attempts the carrier challenged, and the ACK of each challenge (sent
        // again if the challenge comes again: the ACK was lost).
        let mut challenged: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        // The answers the request carries: one per header, so a proxy's 407 and then the
        // far end's 401 are both answered (RFC 3261 §22.3), a second challenge in the same
        // header replacing the first answer (a stale nonce).
        let mut answers: Vec<(&str, String)> = Vec::new();
        loop {
            let wake = if answered || transport != Transport::Udp {
                deadline
            } else {
                resend.min(deadline)
            };
            let got = tokio::select! {
                got = tokio::time::timeout_at(wake, rx.recv()) => got,
                _ = cancelled.changed(), if invite && cancelling == Cancelling::No => {
                    let reason = cancelled.borrow().clone().flatten();
                    cancelling = Cancelling::Pending(reason);
                    if answered {
                        cancelling = self.send_cancel(&sent, &replier, cancelling);
                        deadline = Instant::now() + Duration::from_secs(4);
                    }
                    continue;
                }
            };
            match got {
                Ok(Some(mut resp)) => {
                    let StartLine::Response { code, .. } = resp.start else {
                        continue;
                    };
                    // An anchored call's answer (early media or final) reaches the caller
                    // with the media server's SDP; the same SDP again (a retransmitted
                    // 2xx, 183 after 183) is rewritten as before, without asking again.
                    if let (Some(leg), 180..=299) = (&media, code)
                        && (invite || method == "UPDATE")
                        && let Some(summary) = super::media::sdp_of(&resp)
                    {
                        // What the callee's answer shows it speaks (a WebRTC endpoint,
                        // SDES-SRTP) holds for the call's later offers too.
                        if let Some(a) = anchored.as_mut() {
                            a.callee = summary.side();
                        }
                        let to_tag = resp
                            .addressing()
                            .ok()
                            .and_then(|a| a.to.tag.map(str::to_owned));
                        match &last_answer {
                            Some((tag, body, sdp)) if *tag == to_tag && *body == resp.body => {
                                resp.body = sdp.clone();
                            }
                            _ => {
                                // A late offer's 2xx offers; its 18x's SDP goes on as it
                                // came (not reliable, so not an offer of the call).
                                let rewritten = match (leg.late, code) {
                                    (true, 200..=299) => {
                                        self.media_late_offer(leg, &resp, &summary).await
                                    }
                                    (true, _) => None,
                                    (false, _) => self.media_answer(leg, &resp, &summary).await,
                                };
                                if let Some(sdp) = rewritten {
                                    let body = std::mem::replace(&mut resp.body, sdp.clone());
                                    last_answer = Some((to_tag, body, sdp));
                                }
                            }
                        }
                    }
                    // The answer to our CANCEL shares the branch: not the request's answer.
                    if cseq_method(&resp).is_none_or(|m| m != method) {
                        continue;
                    }
                    if let Some((_, ack)) = challenged
                        .iter()
                        .find(|(b, _)| super::branch_of(&resp).as_deref() == Some(b))
                    {
                        if let (Some(ack), 300..) = (ack, code) {
                            replier.send(ack.clone());
                        }
                        continue;
                    }
                    answered = true;
                    if let Some(node) = to_edge.as_deref() {
                        self.hints.edge_answered(node);
                    }
                    if code < 200 {
                        if matches!(cancelling, Cancelling::Pending(_)) {
                            cancelling = self.send_cancel(&sent, &replier, cancelling);
                            deadline = Instant::now() + Duration::from_secs(4);
                            continue;
                        }
                        if cancelling == Cancelling::Sent {
                            continue;
                        }
                        deadline = if invite {
                            // Timer C: reset by every provisional.
                            Instant::now() + ring.unwrap_or(self.settings.invite_timeout)
                        } else {
                            // The next hop is alive: the whole wait for the final answer.
                            deadline.max(start + self.settings.notify_timeout)
                        };
                        if code > 100 && !gave_final {
                            responses.relay(
                                &resp,
                                u32::from(shift),
                                answer_strip,
                                (phone.as_ref(), anchored.as_ref()),
                            );
                        }
                        continue;
                    }
                    let ack = (invite && code >= 300)
                        .then(|| ack_for(&sent, &resp))
                        .flatten();
                    if let Some(ack) = &ack {
                        replier.send(ack.clone());
                    }
                    // A carrier's challenge to a trunk's INVITE or BYE is answered here with
                    // the trunk's credentials; a phone's to an INVITE or a MESSAGE outside a
                    // dialog that the edge hands it straight, with its profile's (read now:
                    // challenges are rare), and only a challenge asking for qop=auth, so the
                    // answer mixes in the edge's cnonce (whoever holds a line can register
                    // and challenge: it must not get an answer it could have precomputed).
                    // Twice at most (a stale nonce may cost one more).
                    let answerable = matches!(code, 401 | 407)
                        && challenged.len() < 2
                        && !gave_final
                        && cancelling == Cancelling::No;
                    let to_phone = to_edge.is_none() && phone.is_some();
                    let outside_dialog = sent.addressing().is_ok_and(|a| a.to.tag.is_none());
                    let answering = if !answerable {
                        None
                    } else if let Some(a) = auth.clone().filter(|_| invite || method == "BYE") {
                        Some(a)
                    } else if to_phone && outside_dialog && (invite || method == "MESSAGE") {
                        phone.as_ref().and_then(|p| self.cache.read().phone_auth(p))
                    } else {
                        None
                    };
                    let answer =
                        answering.and_then(|a| a.answer(&resp, &method, request_uri(&sent)));
                    let again = answer.and_then(|answer| {
                        let next = new_branch();
                        let mut with = answers.clone();
                        with.retain(|(name, _)| *name != answer.0);
                        with.push(answer);
                        let bytes = forward(&next, shift.checked_add(1)?, &with).ok()?;
                        let sent = dialtone_sip::parse(&bytes).ok()?;
                        Some((next, bytes, sent, with))
                    });
                    if let Some((next, b, s, with)) = again {
                        answers = with;
                        debug!(code, method = %method, "answering a challenge");
                        challenged.push((std::mem::replace(&mut branch, next), ack));
                        (bytes, sent) = (b, s);
                        shift += 1;
                        self.clients.lock().insert(branch.clone(), tx.clone());
                        replier.send(bytes.clone());
                        start = Instant::now();
                        deadline = start + wait;
                        interval = Duration::from_millis(500);
                        resend = start + interval;
                        answered = false;
                        continue;
                    }
                    // A challenge to a cancelled INVITE ends it as the cancel does.
                    if invite && matches!(code, 401 | 407) && cancelling != Cancelling::No {
                        responses.generated(487, "");
                        break;
                    }
                    // A 2xx always goes on, even after a cancel: the caller ends that dialog.
                    if !gave_final || code < 300 {
                        responses.relay(
                            &resp,
                            u32::from(shift),
                            answer_strip,
                            (phone.as_ref(), anchored.as_ref()),
                        );
                    }
                    break;
                }
                Ok(None) => break,
                Err(_) if Instant::now() >= deadline => {
                    if gave_final {
                        break;
                    }
                    if cancelling != Cancelling::No {
                        // Cancelled, and the hop never finished: as if it had said 487. A
                        // CANCEL still waiting for a provisional answer goes now, so a phone
                        // or edge that was slow to say anything rings no one.
                        self.send_cancel(&sent, &replier, cancelling);
                        responses.generated(487, "");
                        break;
                    }
                    if invite && answered {
                        self.count(Outcome::RingTimeout);
                        cancelling = self.send_cancel(&sent, &replier, Cancelling::Pending(None));
                        responses.generated(480, "No answer");
                        gave_final = true;
                        deadline = Instant::now() + Duration::from_secs(4);
                        continue;
                    }
                    self.forget(&branch, &challenged);
                    if let Some(node) = to_edge.as_deref()
                        && wait == HOP_TIMEOUT
                        && !answered
                    {
                        self.count(Outcome::EdgeUnanswered);
                        self.hints.edge_silent(node, std::time::Instant::now());
                        // That edge may still be alive but slow: make sure it rings no one.
                        if invite {
                            self.send_cancel(&sent, &replier, Cancelling::Pending(None));
                        }
                        return false;
                    }
                    self.count(Outcome::NoAnswer);
                    responses.generated(408, "");
                    return true;
                }
                Err(_) => {
                    replier.send(bytes.clone());
                    interval = (interval * 2).min(Duration::from_secs(4));
                    resend = Instant::now() + interval;
                }
            }
        }
        self.forget(&branch, &challenged);
        true
    }

    /// Stops matching answers to `branch` and to the challenged attempts before it.
    fn forget(&self, branch: &str, challenged: &[(String, Option<Vec<u8>>)]) {
        let mut clients = self.clients.lock();
        clients.remove(branch);
        for (b, _) in challenged {
            clients.remove(b);
        }
    }

    /// Sends the CANCEL of `sent` that `pending` asks for.
    fn send_cancel(
        &self,
        sent: &Message,
        replier: &crate::flow::Replier,
        pending: Cancelling,
    ) -> Cancelling {
        let reason = match pending {
            Cancelling::Pending(reason) => reason,
            other => return other,
        };
        if let Some(c) = cancel_because(sent, reason.as_deref()) {
            replier.send(c);
        }
        Cancelling::Sent
    }
}

fn cseq_method(m: &Message) -> Option<&str> {
    m.get("cseq")?.split_whitespace().nth(1)
}

/// The Request-URI of a request (empty for a response).
fn request_uri(m: &Message) -> &str {
    match &m.start {
        StartLine::Request { uri, .. } => uri,
        StartLine::Response { .. } => "",
    }
}
