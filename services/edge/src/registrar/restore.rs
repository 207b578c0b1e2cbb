//! Bindings back from the store after a restart. An edge that stops gracefully leaves its
//! lease to expire instead of revoking it; the next process with the same node id, started
//! within the TTL (a restart, a rollout), takes the lease over and reads the binding keys on
//! it (`bindings/{phone}/{line}/{node}`), and this module turns them back into the phones'
//! sleeping state, so a UDP phone registered for an hour stays reachable through the
//! restart without registering again. Pure: stored bindings in, phone states out.
//!
//! What the store does not keep is rebuilt conservatively:
//! - **Expiry.** A refresh that changed nothing is published only once the line's
//!   republish interval (half the edge's default registration period, stored with the
//!   binding) has passed since the last write, so a stored expiry can lag the real one by
//!   that much. A restored contact expires that much later: the latest the phone can have
//!   been granted. (A binding written by an older edge, without the interval, gets half
//!   of what was left of the contact when written.)
//! - **Call-ID and CSeq** are not stored. A restored binding has neither, so the phone's
//!   next REGISTER (its own Call-ID) replaces it as a new registration would.
//! - **WS and WSS** contacts are dropped: their connection closed with the old process,
//!   and the edge drops such bindings when their connection closes. TCP and TLS contacts are
//!   kept, as on a closed connection, until the phone connects and registers again.
//! - **Nonce counts** start empty, as after any restart.

use std::collections::BTreeMap;

use dialtone_proto::edge::v1 as pb;
use dialtone_sip::registration::Binding;

use crate::{
    flow::{FlowSource, from_proto},
    registrar::sleeping::{LineState, PhoneState},
};

/// What the stored bindings of one node give back.
#[derive(Debug, Default)]
pub struct Restored {
    /// Each phone with a live contact, its lines in index order.
    pub phones: Vec<(String, PhoneState)>,
    /// Lines whose stored key holds no live contact any more: (phone, line) keys to delete.
    pub emptied: Vec<(String, u32)>,
}

/// The phones of `node` from its stored bindings, at Unix second `now`. Bindings of other
/// nodes are ignored.
pub fn restore(bindings: impl IntoIterator<Item = pb::Binding>, node: &str, now: u64) -> Restored {
    let mut phones: BTreeMap<String, Vec<LineState>> = BTreeMap::new();
    let mut out = Restored::default();
    for b in bindings {
        if b.node_id != node {
            continue;
        }
        let published_at = (b.updated_at_ms / 1000).max(0) as u64;
        let lag = u64::try_from(b.republish_after_s).ok().filter(|l| *l > 0);
        let live: Vec<Binding> = b
            .contacts
            .iter()
            .filter_map(|c| contact(c, published_at, lag, now))
            .collect();
        if live.is_empty() {
            out.emptied.push((b.phone_id, b.line_index));
            continue;
        }
        phones.entry(b.phone_id).or_default().push(LineState {
            index: b.line_index,
            sip_user: b.sip_user,
            bindings: live,
            published_at,
            // Written again at the phone's next REGISTER, which also learns the period.
            republish_after: 0,
        });
    }
    out.phones = phones
        .into_iter()
        .map(|(id, mut lines)| {
            lines.sort_by_key(|l| l.index);
            lines.dedup_by_key(|l| l.index);
            let state = PhoneState {
                lines,
                ..PhoneState::default()
            };
            (id, state)
        })
        .collect();
    out
}

/// One stored contact as a live binding, or `None` when it expired, came over WS/WSS or
/// names no flow.
fn contact(c: &pb::Contact, published_at: u64, lag: Option<u64>, now: u64) -> Option<Binding> {
    let transport = from_proto(c.transport).filter(|t| !t.connection_bound())?;
    let stored = u64::try_from(c.expires_at_s).ok()?;
    let expires_at = stored + lag.unwrap_or(stored.saturating_sub(published_at) / 2);
    if expires_at <= now {
        return None;
    }
    Some(Binding {
        uri: c.uri.clone(),
        instance: Some(c.instance.clone()).filter(|s| !s.is_empty()),
        reg_id: Some(c.reg_id).filter(|r| *r != 0),
        call_id: String::new(),
        cseq: 0,
        expires_at,
        q: Some(c.q.clone()).filter(|s| !s.is_empty()),
        path: c.path.clone(),
        source: FlowSource {
            transport,
            addr: c.source.parse().ok()?,
        },
        user_agent: Some(c.user_agent.clone()).filter(|s| !s.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_proto::edge::v1::SipTransport;

    const NOW: u64 = 1_000_000;

    fn contact(transport: SipTransport, expires_at_s: i64, source: &str) -> pb::Contact {
        pb::Contact {
            uri: format!("sip:p@{source}"),
            expires_at_s,
            transport: transport as i32,
            source: source.into(),
            user_agent: "Yealink".into(),
            ..Default::default()
        }
    }

    fn binding(phone: &str, line: u32, node: &str, contacts: Vec<pb::Contact>) -> pb::Binding {
        pb::Binding {
            phone_id: phone.into(),
            line_index: line,
            sip_user: format!("{phone}-{line}"),
            node_id: node.into(),
            contacts,
            // Published 1,000 s ago, by an edge that did not store its interval.
            updated_at_ms: ((NOW - 1000) * 1000) as i64,
            republish_after_s: 0,
        }
    }

    /// Each line's index and its contacts' expiries.
    type Lines = Vec<(u32, Vec<u64>)>;

    /// (what, stored bindings, phones restored with their live contacts' expiries per
    /// line, lines to delete)
    #[test]
    fn stored_bindings_come_back_as_phones() {
        let udp = |exp: u64| contact(SipTransport::Udp, exp as i64, "10.0.0.1:5060");
        type Case = (
            &'static str,
            Vec<pb::Binding>,
            Vec<(&'static str, Lines)>,
            Vec<(&'static str, u32)>,
        );
        let cases: Vec<Case> = vec![
            (
                "a live UDP contact gets up to half its period more: published with 3,600 s \
                 left, it may have been refreshed for 1,800 s unpublished",
                vec![binding("p1", 0, "e1", vec![udp(NOW - 1000 + 3600)])],
                vec![("p1", vec![(0, vec![NOW - 1000 + 3600 + 1800])])],
                vec![],
            ),
            (
                "a stored expiry passed but within the half period: still live",
                vec![binding("p1", 0, "e1", vec![udp(NOW - 10)])],
                vec![("p1", vec![(0, vec![NOW - 10 + 495])])],
                vec![],
            ),
            (
                "expired past the half period: the key is deleted",
                vec![binding("p1", 0, "e1", vec![udp(NOW - 1000)])],
                vec![],
                vec![("p1", 0)],
            ),
            (
                "the stored republish interval wins: a phone asking for 300 s on an edge \
                 whose default period is 3,600 s may be refreshed 1,800 s unpublished",
                vec![pb::Binding {
                    republish_after_s: 1800,
                    ..binding("p1", 0, "e1", vec![udp(NOW - 1000 + 300)])
                }],
                vec![("p1", vec![(0, vec![NOW - 700 + 1800])])],
                vec![],
            ),
            (
                "another node's binding is not ours",
                vec![binding("p1", 0, "e2", vec![udp(NOW + 60)])],
                vec![],
                vec![],
            ),
            (
                "WS and WSS contacts lost their connection; TCP and TLS ones are kept",
                vec![binding(
                    "p1",
                    0,
                    "e1",
                    vec![
                        contact(SipTransport::Ws, (NOW + 60) as i64, "10.0.0.1:1"),
                        contact(SipTransport::Wss, (NOW + 60) as i64, "10.0.0.1:2"),
                        contact(SipTransport::Tcp, (NOW + 60) as i64, "10.0.0.1:3"),
                        contact(SipTransport::Tls, (NOW + 60) as i64, "10.0.0.1:4"),
                    ],
                )],
                vec![("p1", vec![(0, vec![NOW + 60 + 530, NOW + 60 + 530])])],
                vec![],
            ),
            (
                "only WS contacts: nothing left, the key is deleted",
                vec![binding(
                    "p1",
                    1,
                    "e1",
                    vec![contact(SipTransport::Ws, (NOW + 60) as i64, "10.0.0.1:1")],
                )],
                vec![],
                vec![("p1", 1)],
            ),
            (
                "a source that names no flow is dropped",
                vec![binding(
                    "p1",
                    0,
                    "e1",
                    vec![contact(SipTransport::Udp, (NOW + 60) as i64, "nowhere")],
                )],
                vec![],
                vec![("p1", 0)],
            ),
            (
                "lines of one phone are gathered in index order; phones in id order",
                vec![
                    binding("p2", 0, "e1", vec![udp(NOW + 100)]),
                    binding("p1", 2, "e1", vec![udp(NOW + 100)]),
                    binding("p1", 0, "e1", vec![udp(NOW + 100)]),
                ],
                vec![
                    ("p1", vec![(0, vec![NOW + 650]), (2, vec![NOW + 650])]),
                    ("p2", vec![(0, vec![NOW + 650])]),
                ],
                vec![],
            ),
        ];
        for (what, stored, want_phones, want_emptied) in cases {
            let got = restore(stored, "e1", NOW);
            let phones: Vec<(&str, Lines)> = got
                .phones
                .iter()
                .map(|(id, s)| {
                    let lines = s
                        .lines
                        .iter()
                        .map(|l| (l.index, l.bindings.iter().map(|b| b.expires_at).collect()))
                        .collect();
                    (id.as_str(), lines)
                })
                .collect();
            assert_eq!(phones, want_phones, "{what}");
            let emptied: Vec<(&str, u32)> =
                got.emptied.iter().map(|(p, l)| (p.as_str(), *l)).collect();
            assert_eq!(emptied, want_emptied, "{what}");
        }
    }

    #[test]
    fn a_restored_contact_keeps_what_the_phone_registered() {
        let mut c = contact(SipTransport::Udp, (NOW + 60) as i64, "192.0.2.7:5062");
        c.instance = "\"<urn:uuid:1>\"".into();
        c.reg_id = 1;
        c.path = vec!["<sip:proxy>".into()];
        c.q = "0.5".into();
        let got = restore([binding("p1", 0, "e1", vec![c])], "e1", NOW);
        let state = &got.phones[0].1;
        assert_eq!(state.lines[0].sip_user, "p1-0");
        let b = &state.lines[0].bindings[0];
        assert_eq!(b.uri, "sip:p@192.0.2.7:5062");
        assert_eq!(b.instance.as_deref(), Some("\"<urn:uuid:1>\""));
        assert_eq!(b.reg_id, Some(1));
        assert_eq!(b.path, ["<sip:proxy>"]);
        assert_eq!(b.q.as_deref(), Some("0.5"));
        assert_eq!(b.user_agent.as_deref(), Some("Yealink"));
        assert_eq!(b.source.to_string(), "udp:192.0.2.7:5062");
        assert_eq!((b.call_id.as_str(), b.cseq), ("", 0));
        // The sleeping form round-trips it.
        let bytes = state.encode(NOW, 300);
        assert_eq!(PhoneState::decode(&bytes).unwrap().lines, state.lines);
    }
}
