//! Calls from one of our lines for a number outside the fleet: classified by the caller's
//! site's number plan and decided against its restrictions and call patterns
//! (`dialtone_domain::dialplan`). A refusal is a 403 whose Warning says which rule refused;
//! a call the site allows goes out through the trunks of its site's route for the call's
//! kind (`delivery/trunks.rs`), or gets 404 "No Outbound Route" when no route takes it. Emergency
//! numbers of the plan are decided before anything else is looked up, so no extension,
//! line or missing assignment stands between a phone and an emergency call.

use std::borrow::Cow;

use dialtone_domain::dialplan::{Decision, Kind, Refusal};
use dialtone_sip::{Message, response::Source};

use super::Dispatcher;
use crate::{
    credentials::{LineEntry, calling::without_site, trunks::TrunkPlan},
    flow::{Answer, Peer},
    replies::UNASSIGNED_REASON,
};

/// What a phone dialled, from a Request-URI's user part: without the parameters of a
/// telephone-subscriber (`911;phone-context=+1`, RFC 3966) and with %-escapes decoded
/// (`%2B1...`). Pure; a broken escape is kept as written (it then matches no rule).
pub(super) fn dialled(user: &str) -> Cow<'_, str> {
    let number = user.split(';').next().unwrap_or("");
    if !number.contains('%') {
        return Cow::Borrowed(number);
    }
    let bytes = number.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_or(Cow::Borrowed(number), Cow::Owned)
}

/// Whether `d` lets an emergency call through (decided before anything else is looked up).
pub(super) fn is_emergency(d: &Decision) -> bool {
    matches!(
        d,
        Decision::Allow {
            kind: Kind::Emergency,
            ..
        }
    )
}

impl Dispatcher {
    /// What `caller`'s site (and the phone's own rules) make of `dialled` as a number
    /// outside the fleet: classified once per call.
    pub(super) fn outside_decision(&self, caller: &LineEntry, dialled: &str) -> Decision {
        let calling = self.cache.read().calling_of(&caller.phone_id);
        let assigned = !caller.unassigned;
        match calling {
            Some((site, phone)) => site.decide(dialled, assigned, phone.as_deref()),
            None => without_site(assigned),
        }
    }

    /// Sends `m`, a call from one of our lines, out to `number` as `plan` says, if delivery
    /// admission lets its source have one more (an emergency call is never refused for its
    /// source's other calls).
    pub(super) fn call_out(
        &self,
        m: Message,
        number: String,
        plan: TrunkPlan,
        src: Source,
        peer: &Peer,
        reply: Answer,
    ) {
        let admitted = if plan.emergency {
            self.delivery.admission.admit_trusted()
        } else {
            self.delivery.admission.admit(src.ip)
        };
        let Some(permit) = self.permit(admitted, &m, &src, &reply) else {
            return;
        };
        let delivery = self.delivery.clone();
        self.spawn_delivery(delivery.to_trunks(m, src, peer.source(), reply, number, plan, permit));
    }

    /// Answers a call from `caller` for a number outside the fleet (no line, extension or
    /// REMOTE phone of ours answers to it) as `decision` says: refused, or sent out through
    /// the trunks of the route its site has for the call's kind.
    pub(super) fn outside_call(
        &self,
        m: Message,
        caller: &LineEntry,
        decision: &Decision,
        src: Source,
        peer: &Peer,
        reply: Answer,
    ) {
        if let Decision::Allow { kind, number } = decision
            && let Some(plan) = self.cache.read().trunk_plan(&caller.phone_id, *kind)
        {
            self.call_out(m, number.clone(), plan, src, peer, reply);
            return;
        }
        let warning = |text: &str| {
            // RFC 3261 §20.43: 399 is a miscellaneous warning; the agent is this edge.
            let text = text.replace(['"', '\\'], "");
            vec![(
                "Warning",
                format!("399 {} \"{text}\"", self.settings.node_id),
            )]
        };
        let (code, reason, extra) = match decision {
            Decision::Refuse(Refusal::NotClassified) => {
                (404, "", warning(&Refusal::NotClassified.warning_text()))
            }
            Decision::Refuse(r @ Refusal::Unassigned) => {
                (403, UNASSIGNED_REASON, warning(&r.warning_text()))
            }
            Decision::Refuse(r) => (403, "Call Restricted", warning(&r.warning_text())),
            Decision::Allow { kind, number } => (
                404,
                "No Outbound Route",
                warning(&format!(
                    "no trunk routes {} calls ({number}) from this site",
                    kind.name()
                )),
            ),
        };
        reply.send(self.responder().reply(&m, &src, code, reason, extra));
    }
}

#[cfg(test)]
mod tests {
    use super::dialled;

    #[test]
    fn what_was_dialled_is_read_from_the_user_part() {
        let cases = [
            ("911", "911"),
            ("911;phone-context=+1", "911"),
            ("%2B442071234567", "+442071234567"),
            ("%2b1%32", "+12"),
            ("12%", "12%"),
            ("12%zz", "12%zz"),
            ("%FF", "%FF"),
            ("", ""),
        ];
        for (user, want) in cases {
            assert_eq!(dialled(user), want, "{user}");
        }
    }
}
