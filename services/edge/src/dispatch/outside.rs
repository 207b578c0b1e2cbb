//! Calls from one of our lines for a number outside the fleet: classified by the caller's
//! site's number plan and decided against its restrictions and call patterns
//! (`dialtone_domain::dialplan`). A refusal is a 403 whose Warning says which rule refused;
//! a call the site allows has no trunk to take it yet, and gets 404 saying so. Emergency
//! numbers of the plan are decided before anything else is looked up, so no extension,
//! line or missing assignment stands between a phone and an emergency call.

use dialtone_domain::dialplan::{Decision, Refusal};
use dialtone_sip::{Message, response::Source};

use super::Dispatcher;
use crate::{
    credentials::{LineEntry, calling::without_site},
    flow::Replier,
    replies::UNASSIGNED_REASON,
};

impl Dispatcher {
    /// Whether `dialled`, from `caller`, is an emergency number of its site's plan.
    pub(super) fn is_emergency(&self, caller: &LineEntry, dialled: &str) -> bool {
        let calling = self.cache.read().calling_of(&caller.phone_id);
        calling.is_some_and(|(site, _)| site.is_emergency(dialled))
    }

    /// Answers a call from `caller` for `dialled`, which no line, extension or REMOTE phone
    /// of ours answers to.
    pub(super) fn outside_call(
        &self,
        m: &Message,
        caller: &LineEntry,
        dialled: &str,
        src: &Source,
        reply: &Replier,
    ) {
        let calling = self.cache.read().calling_of(&caller.phone_id);
        let assigned = !caller.unassigned;
        let decision = match calling {
            Some((site, phone)) => site.decide(dialled, assigned, phone.as_deref()),
            None => without_site(assigned),
        };
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
        reply.send(self.responder().reply(m, src, code, reason, extra));
    }
}
