//! SUBSCRIBE: message-summary (MWI) for an authenticated line.

use dialtone_sip::{
    Message,
    header::{event_package, parse_name_addr},
    response::Source,
};

use super::Dispatcher;
use crate::{
    flow::{Answer, Peer},
    replies::{ChallengeKind, OutRequest, new_branch},
};

impl Dispatcher {
    /// SUBSCRIBE: only `message-summary` (MWI) for an authenticated line with MWI on; the
    /// 200 is followed by a NOTIFY of the current state (no voicemail behind the edge yet:
    /// no messages waiting).
    pub(super) fn subscribe(
        &self,
        m: Message,
        peer: &Peer,
        src: Source,
        reply: Answer,
        now_ms: u64,
    ) {
        let event = event_package(m.get("event").unwrap_or(""));
        if !event.eq_ignore_ascii_case("message-summary") {
            let extra = vec![("Allow-Events", "message-summary".to_owned())];
            reply.send(self.responder().reply(&m, &src, 489, "", extra));
            return;
        }
        let Some(user) = m.addressing().ok().and_then(|a| a.from.user) else {
            reply.send(self.responder().reply(&m, &src, 404, "", vec![]));
            return;
        };
        let entry = match self.authenticate(
            &m,
            "SUBSCRIBE",
            user,
            peer,
            &src,
            now_ms,
            ChallengeKind::Registrar,
        ) {
            Ok((e, _, _)) => e,
            Err(bytes) => {
                reply.send(bytes);
                return;
            }
        };
        if !entry.mwi {
            let extra = vec![("Allow-Events", "check-sync".to_owned())];
            reply.send(
                self.responder()
                    .reply(&m, &src, 489, "MWI is off for this phone", extra),
            );
            return;
        }
        let expires = m
            .get("expires")
            .and_then(|e| e.trim().parse::<u32>().ok())
            .unwrap_or(3600)
            .min(self.settings.max_expires);
        let local = self.local.of(peer.transport);
        let contact = local.map_or_else(String::new, |l| l.contact(None));
        let extra = vec![
            ("Expires", expires.to_string()),
            ("Contact", contact.clone()),
        ];
        reply.send(self.responder().reply(&m, &src, 200, "", extra));
        let Some(target) = m
            .get("contact")
            .and_then(|c| parse_name_addr(c).ok())
            .map(|a| a.uri_text)
        else {
            return;
        };
        let Some(local) = local else { return };
        let to_tag = &self.responder().to_tag;
        let from_hdr = format!("{};tag={to_tag}", m.get("to").unwrap_or(""));
        let state = if expires == 0 {
            "terminated;reason=timeout".to_owned()
        } else {
            format!("active;expires={expires}")
        };
        let body = format!(
            "Messages-Waiting: no\r\nMessage-Account: sip:{user}@{}\r\n",
            self.settings.realm
        );
        let via = local.via();
        let branch = new_branch();
        let notify = OutRequest {
            method: "NOTIFY",
            uri: target,
            via: &via,
            branch: &branch,
            from: &from_hdr,
            to: m.get("from").unwrap_or(""),
            call_id: m.get("call-id").unwrap_or(""),
            cseq: 1,
            extra: vec![
                ("Event", "message-summary".into()),
                ("Subscription-State", state),
                ("Contact", contact),
                ("Content-Type", "application/simple-message-summary".into()),
            ],
            body: body.as_bytes(),
        };
        reply.send(notify.to_bytes());
    }
}
