//! Requests of a dialog the edge record-routed (see [`crate::delivery::in_dialog`]): they
//! carry the edge's Route, whose flow token is what admits them, instead of a line's
//! digest (a phone does not authenticate its BYE).

use dialtone_sip::{Message, response::Source};

use super::Dispatcher;
use crate::{
    delivery::in_dialog::{Onward, Refused},
    flow::Answer,
};

impl Dispatcher {
    pub(super) fn in_dialog(
        &self,
        m: Message,
        method: &str,
        route: Result<Onward, Refused>,
        src: Source,
        reply: Answer,
        trusted: bool,
    ) {
        // The ACK of a non-2xx answer this edge relayed was acknowledged hop by hop
        // already: absorbed, and never answered (the answer again would make the phone
        // acknowledge it again, and so on).
        if method == "ACK" {
            if !self.delivery.is_under_way(&m, &src)
                && let Ok(onward) = route
            {
                // The answer to a late offer this edge made goes to the media server first
                // (an ACK sent again gets the same rewritten answer).
                let late = m
                    .get("call-id")
                    .is_some_and(|c| self.delivery.late_answers.waiting(c));
                if late {
                    let delivery = self.delivery.clone();
                    self.spawn_delivery(async move {
                        let answered = delivery.media_late_answer(&m, src.ip).await;
                        delivery.forward_ack(answered.as_ref().unwrap_or(&m), onward);
                    });
                } else {
                    self.delivery.forward_ack(&m, onward);
                }
            }
            return;
        }
        // A retransmission gets the last answer again.
        if self.delivery.retransmission(&m, &src, &reply) {
            return;
        }
        let onward = match route {
            Ok(o) => o,
            Err(why) => {
                let reason = match why {
                    Refused::NotAParticipant => "Not a Participant of the Dialog",
                    Refused::NotInDialog => "Not a Request of the Dialog",
                };
                reply.send(self.responder().reply(&m, &src, 403, reason, vec![]));
                return;
            }
        };
        let admitted = self.delivery.admission.admit(src.ip);
        let Some(permit) = self.permit(admitted, &m, &src, &reply) else {
            return;
        };
        let delivery = self.delivery.clone();
        self.spawn_delivery(delivery.relay(m, src, reply, (onward, !trusted), permit));
    }
}
