//! One branch's client transaction: a request forwarded one hop (to a phone's flow or to
//! the edge holding its binding), retransmitted over UDP, and its answers handed to the
//! delivery's [`Responses`]. Timer C (RFC 3261 §16.6 step 11) cancels an INVITE ringing
//! too long; a cancel of the delivery (upstream CANCEL, a 2xx or 6xx on another branch)
//! is passed on once the hop has answered provisionally (§9.1), with its `Reason`.

use std::time::Duration;

use dialtone_common::clock::unix_ms;
use dialtone_sip::{
    Message, StartLine,
    proxy::{ForwardError, Routing, ack_for, cancel_because, forward_routed},
};
use tokio::{sync::mpsc, time::Instant};

use super::{
    Delivery, FORWARDED, FORWARDED_CANONICAL, HOP_TIMEOUT, Hop, Marked, Outcome, forwarding,
    responses::Responses,
};
use crate::{flow::Transport, replies::new_branch};

/// Headers a phone's request loses on its way to a carrier: who calls (the carrier hears
/// that from the edge only), where it should be routed (the edge decides), and what a
/// carrier would bill or redirect by.
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
        } = hop;
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
        let branch = new_branch();
        let via = format!("{};branch={branch}", local.via());
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
        let routing = Routing {
            record_route: &record_route,
            pop_routes,
        };
        let bytes = match forward_routed(m, uri, &via, &strip, &extra, routing) {
            Ok(b) => b,
            Err(ForwardError::TooManyHops) => {
                responses.generated(483, "");
                return true;
            }
            Err(ForwardError::NotARequest) => return true,
        };
        let Ok(sent) = dialtone_sip::parse(&bytes) else {
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
        self.clients.lock().insert(branch.clone(), tx);
        replier.send(bytes.clone());

        let start = Instant::now();
        let mut deadline = start + wait;
        let mut resend = Instant::now() + Duration::from_millis(500);
        let mut interval = Duration::from_millis(500);
        let mut answered = false;
        // The edge gave this branch's final answer itself (Timer C): what comes later is
        // only acknowledged.
        let mut gave_final = false;
        let mut cancelling = Cancelling::No;
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
                Ok(Some(resp)) => {
                    let StartLine::Response { code, .. } = resp.start else {
                        continue;
                    };
                    // The answer to our CANCEL shares the branch: not the request's answer.
                    if cseq_method(&resp).is_none_or(|m| m != method) {
                        continue;
                    }
                    answered = true;
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
                            responses.relay(&resp);
                        }
                        continue;
                    }
                    if invite
                        && code >= 300
                        && let Some(ack) = ack_for(&sent, &resp)
                    {
                        replier.send(ack);
                    }
                    // A 2xx always goes on, even after a cancel: the caller ends that dialog.
                    if !gave_final || code < 300 {
                        responses.relay(&resp);
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
                    self.clients.lock().remove(&branch);
                    if to_edge.is_some() && wait == HOP_TIMEOUT && !answered {
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
        self.clients.lock().remove(&branch);
        true
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
