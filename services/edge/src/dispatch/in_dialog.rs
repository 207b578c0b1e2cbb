//! Requests of a dialog the edge record-routed (see [`crate::delivery::in_dialog`]): they
//! carry the edge's Route, whose flow token is what admits them, instead of a line's
//! digest (a phone does not authenticate its BYE).

use dialtone_sip::{Message, response::Source};
use tracing::warn;

use super::Dispatcher;
use crate::{
    delivery::in_dialog::{Onward, Refused},
    flow::Replier,
};

impl Dispatcher {
    pub(super) fn in_dialog(
        &self,
        m: Message,
        method: &str,
        route: Result<Onward, Refused>,
        src: Source,
        reply: Replier,
    ) {
        // A retransmission, or the ACK of a non-2xx answer this edge relayed (it was
        // acknowledged hop by hop already): absorbed.
        if self.delivery.retransmission(&m, &src, &reply) {
            return;
        }
        let onward = match route {
            Ok(o) => o,
            Err(why) => {
                if method != "ACK" {
                    let (code, reason) = match why {
                        Refused::NotAParticipant => (403, "Not a Participant of the Dialog"),
                        Refused::ForeignRoute => (403, "Route Not Written by This Edge Group"),
                    };
                    reply.send(self.responder().reply(&m, &src, code, reason, vec![]));
                }
                return;
            }
        };
        if method == "ACK" {
            self.delivery.forward_ack(&m, onward);
            return;
        }
        let permit = match self.delivery.admission.admit(src.ip) {
            Ok(p) => p,
            Err(why) => {
                warn!(source = %src.ip, ?why, "deliveries at their cap");
                let extra = vec![("Retry-After", "5".to_owned())];
                reply.send(self.responder().reply(&m, &src, 503, "", extra));
                return;
            }
        };
        let delivery = self.delivery.clone();
        self.runtime
            .spawn(delivery.relay(m, src, reply, onward, permit));
    }
}
