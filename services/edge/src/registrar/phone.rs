//! One awake phone: its bindings (per line), nonce counts, the last transaction it answered
//! and when it was last active. The phone's actor, run in place: the
//! [`crate::registrar::directory`] hands it one message at a time under its shard's lock, on
//! the thread the message arrived on, so its state has one owner and its messages one
//! order, with no mailbox, no task and no timer of its own (the shard's queue of due checks
//! calls [`Phone::check`]). Quiet phones sleep as compact bytes ([`super::sleeping`]).

use std::sync::Arc;

use dialtone_common::clock::unix_ms;
use dialtone_domain::keys;
use dialtone_proto::edge::v1 as pb;
use dialtone_sip::{
    Message as SipMessage,
    registration::{Refusal, Register as RegisterReq, apply},
    response::Source,
};
use prost::Message as _;

use crate::{
    credentials::LineEntry,
    flow::{Answer, FlowSource, proto},
    metrics::Reason,
    registrar::directory::SharedParts,
    registrar::sleeping::{LineState, PhoneState},
    replies::ChallengeKind,
};

/// Retransmissions of a request are recognised for Timer J (64×T1, RFC 3261 §17.2.2).
pub(crate) const TXN_MEMORY_S: u64 = dialtone_sip::transaction::TIMER_J.as_secs();

struct LastTxn {
    key: u64,
    line: u32,
    at: u64,
    /// The final response when it was not a 200 (a 200 is rebuilt from the bindings).
    error: Option<Vec<u8>>,
}

/// The awake phone.
pub struct Phone {
    state: PhoneState,
    last: Option<LastTxn>,
    /// Unix second of its last request.
    last_activity: u64,
    /// The second its entry in the shard's queue of checks is due (0: none queued).
    pub(super) due: u64,
}

/// What a phone's check decided ([`fate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Stays awake; checked again at that second.
    Stay(u64),
    /// Quiet for a whole transaction lifetime with bindings: its state goes to sleep.
    Sleep,
    /// No binding and no nonce it could still be replayed with: it goes.
    Leave,
}

/// When a phone must next be checked: its earliest expiry, or when it will have been quiet
/// long enough to sleep (bindings) or to go (none). Pure.
pub fn next_check(
    contacts: usize,
    earliest_expiry: Option<u64>,
    last_activity: u64,
    quiet_s: u64,
    nonce_lifetime_s: u64,
) -> u64 {
    if contacts == 0 {
        return last_activity + nonce_lifetime_s + 1;
    }
    let sleep = last_activity + quiet_s + 1;
    earliest_expiry.map_or(sleep, |e| e.min(sleep))
}

/// What becomes of a phone checked at `now`, its expired bindings already swept. Pure.
pub fn fate(
    contacts: usize,
    earliest_expiry: Option<u64>,
    last_activity: u64,
    now: u64,
    quiet_s: u64,
    nonce_lifetime_s: u64,
) -> Fate {
    match contacts {
        0 if now > last_activity + nonce_lifetime_s => Fate::Leave,
        1.. if now > last_activity + quiet_s => Fate::Sleep,
        _ => Fate::Stay(next_check(
            contacts,
            earliest_expiry,
            last_activity,
            quiet_s,
            nonce_lifetime_s,
        )),
    }
}

impl Phone {
    /// A phone from its state (new, woken or restored), active at `now`.
    pub fn new(state: PhoneState, now: u64) -> Self {
        Phone {
            state,
            last: None,
            last_activity: now,
            due: 0,
        }
    }

    pub fn state(&self) -> &PhoneState {
        &self.state
    }

    pub fn contacts(&self) -> usize {
        self.state.lines.iter().map(|l| l.bindings.len()).sum()
    }

    /// When it must next be checked (see [`next_check`]).
    pub fn next_check(&self, sh: &SharedParts) -> u64 {
        next_check(
            self.contacts(),
            self.state.earliest_expiry(),
            self.last_activity,
            sh.quiet_before_sleep_s,
            sh.replies.nonce_lifetime_s,
        )
    }

    /// Its due check: expired bindings go, then what becomes of it.
    pub fn check(&mut self, id: &str, sh: &SharedParts, now: u64) -> Fate {
        sweep(&mut self.state, id, sh, now);
        fate(
            self.contacts(),
            self.state.earliest_expiry(),
            self.last_activity,
            now,
            sh.quiet_before_sleep_s,
            sh.replies.nonce_lifetime_s,
        )
    }

    /// Its sleeping form.
    pub fn encode(&self, sh: &SharedParts, now: u64) -> Box<[u8]> {
        self.state.encode(now, sh.replies.nonce_lifetime_s)
    }

    /// The line's position, added if new; a line given another user loses its old
    /// bindings (they are not this user's), deleted from the store at once if it had any,
    /// whatever the REGISTER turns out to be (the caller counts them gone).
    fn line_pos(&mut self, id: &str, sh: &SharedParts, entry: &LineEntry, now: u64) -> usize {
        let (index, sip_user) = (entry.line_index, &*entry.sip_user);
        if let Some(p) = self.state.lines.iter().position(|l| l.index == index) {
            if self.state.lines[p].sip_user != sip_user {
                let had = !self.state.lines[p].bindings.is_empty();
                self.state.lines[p].bindings.clear();
                self.state.lines[p].sip_user = sip_user.to_owned();
                if had {
                    publish(&mut self.state, p, id, sh, now);
                }
            }
            return p;
        }
        self.state.lines.push(LineState {
            index,
            sip_user: sip_user.to_owned(),
            bindings: Vec::new(),
            published_at: 0,
            republish_after: 0,
        });
        self.state.lines.len() - 1
    }

    /// Handles an authenticated REGISTER: answers it (a retransmission gets the answer
    /// again, a replayed nonce count a new challenge), applies it to the line's bindings
    /// and publishes the line when it changed or its stored expiry grew stale.
    pub fn register(
        &mut self,
        id: &str,
        sh: &SharedParts,
        job: &RegisterJob,
        req: &RegisterReq,
        now: u64,
    ) {
        self.last_activity = now;
        if let Some(last) = self
            .last
            .as_ref()
            .filter(|l| l.key == job.txn && now.saturating_sub(l.at) <= TXN_MEMORY_S)
        {
            let bytes = match &last.error {
                Some(b) => b.clone(),
                None => {
                    let bindings = self
                        .state
                        .lines
                        .iter()
                        .find(|l| l.index == last.line)
                        .map(|l| l.bindings.as_slice())
                        .unwrap_or(&[]);
                    let outbound = registers_flow(req);
                    sh.replies
                        .responder
                        .register_ok(&job.msg, &job.src, bindings, now, outbound)
                }
            };
            sh.stats.retransmission();
            job.reply.resend(bytes);
            return;
        }
        if !self.state.nonce_counts.accept_hashed(
            job.nonce,
            job.nc,
            now,
            sh.replies.nonce_lifetime_s,
        ) {
            // A replayed nonce count: challenge again (a real phone just retries).
            sh.stats.rejected(Reason::Replay);
            job.reply.send(sh.replies.challenge(
                &job.msg,
                &job.src,
                now,
                false,
                ChallengeKind::Registrar,
                job.entry.offer,
            ));
            return;
        }
        let before = self.state.contacts_by_transport();
        let pos = self.line_pos(id, sh, &job.entry, now);
        let policy = job.entry.policy;
        let line = &mut self.state.lines[pos];
        let (bytes, ok) = match apply(&mut line.bindings, req, &policy, now) {
            Ok(changed) => {
                line.republish_after = u64::from(policy.default_expires / 2);
                let outbound = registers_flow(req);
                let bytes = sh.replies.responder.register_ok(
                    &job.msg,
                    &job.src,
                    &line.bindings,
                    now,
                    outbound,
                );
                if changed || now >= line.published_at + line.republish_after {
                    publish(&mut self.state, pos, id, sh, now);
                }
                sh.stats.registered();
                (bytes, true)
            }
            Err(refusal) => (refused(job, sh, refusal), false),
        };
        self.last = Some(LastTxn {
            key: job.txn,
            line: job.entry.line_index,
            at: now,
            error: (!ok).then(|| bytes.clone()),
        });
        job.reply.send(bytes);
        account(&self.state, sh, before);
    }

    /// Drops bindings: all, those of some lines, or those learned over one flow. Returns
    /// how many went.
    pub fn forget(
        &mut self,
        id: &str,
        sh: &SharedParts,
        lines: Option<&[u32]>,
        source: Option<FlowSource>,
        now: u64,
    ) -> u32 {
        let before = self.state.contacts_by_transport();
        for pos in 0..self.state.lines.len() {
            if lines.is_some_and(|l| !l.contains(&self.state.lines[pos].index)) {
                continue;
            }
            let n = self.state.lines[pos].bindings.len();
            match source {
                Some(s) => self.state.lines[pos].bindings.retain(|b| b.source != s),
                None => self.state.lines[pos].bindings.clear(),
            }
            if self.state.lines[pos].bindings.len() != n {
                publish(&mut self.state, pos, id, sh, now);
            }
        }
        account(&self.state, sh, before);
        (before.iter().sum::<i64>() - self.contacts() as i64) as u32
    }

    /// Writes every line with bindings again (after the node re-registered on a new lease).
    pub fn republish(&mut self, id: &str, sh: &SharedParts, now: u64) {
        republish(&mut self.state, id, sh, now);
    }
}

/// Writes every line with bindings again, of an awake phone or of a sleeping one's decoded
/// state.
pub fn republish(state: &mut PhoneState, id: &str, sh: &SharedParts, now: u64) {
    for pos in 0..state.lines.len() {
        if !state.lines[pos].bindings.is_empty() {
            publish(state, pos, id, sh, now);
        }
    }
}

/// The answer to a REGISTER its line's bindings refused.
fn refused(job: &RegisterJob, sh: &SharedParts, refusal: Refusal) -> Vec<u8> {
    let reply = |code, reason: &str, headers| {
        sh.replies
            .responder
            .reply(&job.msg, &job.src, code, reason, headers)
    };
    match refusal {
        Refusal::IntervalTooBrief { min_expires } => {
            sh.stats.rejected(Reason::IntervalTooBrief);
            reply(423, "", vec![("Min-Expires", min_expires.to_string())])
        }
        Refusal::Invalid(why) => {
            sh.stats.rejected(Reason::Invalid);
            reply(400, why, vec![])
        }
        Refusal::OutOfOrder => {
            sh.stats.rejected(Reason::OutOfOrder);
            reply(400, "CSeq not higher than the binding's", vec![])
        }
        Refusal::TooManyBindings { max } => {
            sh.stats.rejected(Reason::TooManyBindings);
            let reason = format!("Too many registered contacts (at most {max})");
            reply(403, &reason, vec![])
        }
    }
}

/// Removes expired bindings, publishing the lines that lost some; of an awake phone or of a
/// sleeping one's decoded state (woken by its earliest expiry).
pub fn sweep(state: &mut PhoneState, id: &str, sh: &SharedParts, now: u64) {
    let before = state.contacts_by_transport();
    for pos in 0..state.lines.len() {
        let n = state.lines[pos].bindings.len();
        state.lines[pos].bindings.retain(|b| b.expires_at > now);
        if state.lines[pos].bindings.len() != n {
            publish(state, pos, id, sh, now);
        }
    }
    account(state, sh, before);
}

fn publish(state: &mut PhoneState, pos: usize, id: &str, sh: &SharedParts, now: u64) {
    let line = &mut state.lines[pos];
    line.published_at = now;
    let key = keys::binding(id, line.index, &sh.node_id);
    if line.bindings.is_empty() {
        sh.publisher.delete(key);
    } else {
        let b = to_proto(id, line, &sh.node_id);
        sh.publisher.put(key, b.encode_to_vec());
    }
}

/// Applies a contact-count change to the gauges.
fn account(state: &PhoneState, sh: &SharedParts, before: [i64; crate::metrics::TRANSPORTS.len()]) {
    let after = state.contacts_by_transport();
    sh.stats.bindings_changed(&before, &after);
    let (before, after) = (before.iter().sum::<i64>(), after.iter().sum::<i64>());
    match (before, after) {
        (0, a) if a > 0 => sh.stats.phones_changed(1),
        (b, 0) if b > 0 => sh.stats.phones_changed(-1),
        _ => {}
    }
}

/// An authenticated REGISTER for one line of the phone.
pub struct RegisterJob {
    pub entry: Arc<LineEntry>,
    pub msg: SipMessage,
    /// The flow it came over, recorded in the binding.
    pub source: FlowSource,
    /// The nonce answered, by its [`dialtone_sip::digest::nonce_hash`].
    pub nonce: u64,
    pub nc: u32,
    /// Identifies the transaction (branch, source, method) for retransmissions.
    pub txn: u64,
    pub src: Source,
    pub reply: Answer,
}

/// A registered contact the edge can send a request to.
#[derive(Clone, Debug)]
pub struct Reachable {
    pub sip_user: String,
    pub uri: String,
    pub source: FlowSource,
}

/// Whether the phone holds a live binding (at `now`) of the line of `sip_user` learned
/// from a source `from` accepts. Pure.
pub fn bound_from(
    state: &PhoneState,
    sip_user: &str,
    now: u64,
    from: impl Fn(std::net::IpAddr) -> bool,
) -> bool {
    state
        .lines
        .iter()
        .filter(|l| l.sip_user == sip_user)
        .flat_map(|l| &l.bindings)
        .any(|b| b.expires_at > now && from(b.source.addr.ip()))
}

/// Every registered contact of a phone.
pub fn contacts(state: &PhoneState) -> Vec<Reachable> {
    state
        .lines
        .iter()
        .flat_map(|l| {
            l.bindings.iter().map(|b| Reachable {
                sip_user: l.sip_user.clone(),
                uri: b.uri.clone(),
                source: b.source,
            })
        })
        .collect()
}

/// A phone's bindings on this edge, as published.
pub fn bindings(state: &PhoneState, id: &str, node: &str) -> Vec<pb::Binding> {
    state
        .lines
        .iter()
        .filter(|l| !l.bindings.is_empty())
        .map(|l| to_proto(id, l, node))
        .collect()
}

/// Whether a REGISTER registers an RFC 5626 flow (its 200 then says `Require: outbound`).
fn registers_flow(req: &RegisterReq) -> bool {
    matches!(&req.contacts,
        dialtone_sip::registration::Contacts::List(l) if l.iter().any(|c| c.reg_id.is_some()))
}

fn to_proto(phone: &str, line: &LineState, node: &str) -> pb::Binding {
    pb::Binding {
        phone_id: phone.to_owned(),
        line_index: line.index,
        sip_user: line.sip_user.clone(),
        node_id: node.to_owned(),
        contacts: line
            .bindings
            .iter()
            .map(|b| {
                let mut addr = String::with_capacity(48);
                dialtone_sip::response::push_socket_addr(&mut addr, b.source.addr);
                pb::Contact {
                    uri: b.uri.clone(),
                    expires_at_s: b.expires_at as i64,
                    instance: b.instance.clone().unwrap_or_default(),
                    reg_id: b.reg_id.unwrap_or(0),
                    path: b.path.clone(),
                    transport: proto(b.source.transport) as i32,
                    source: addr,
                    user_agent: b.user_agent.clone().unwrap_or_default(),
                    q: b.q.clone().unwrap_or_default(),
                }
            })
            .collect(),
        updated_at_ms: unix_ms() as i64,
        republish_after_s: line.republish_after as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_is_bound_from_a_source_by_a_live_binding_of_that_line() {
        let binding = |at: &str, expires_at: u64| dialtone_sip::registration::Binding {
            uri: format!("sip:u@{at}"),
            instance: None,
            reg_id: None,
            call_id: "c".into(),
            cseq: 1,
            expires_at,
            q: None,
            path: Vec::new(),
            source: format!("udp:{at}").parse().unwrap(),
            user_agent: None,
        };
        let line = |index: u32, sip_user: &str, bindings| LineState {
            index,
            sip_user: sip_user.into(),
            bindings,
            published_at: 0,
            republish_after: 0,
        };
        // A phone of two lines: alice's bound from .1 (live) and .3 (expired at 1000),
        // bob's from .2.
        let state = PhoneState {
            lines: vec![
                line(
                    0,
                    "alice",
                    vec![
                        binding("10.0.0.1:5060", 2000),
                        binding("10.0.0.3:5060", 1000),
                    ],
                ),
                line(1, "bob", vec![binding("10.0.0.2:5060", 2000)]),
            ],
            nonce_counts: Default::default(),
        };
        // (line's user, source, now, bound)
        let cases = [
            ("alice", "10.0.0.1", 1500, true),
            ("alice", "10.0.0.2", 1500, false),
            ("bob", "10.0.0.2", 1500, true),
            ("bob", "10.0.0.1", 1500, false),
            ("alice", "10.0.0.3", 999, true),
            ("alice", "10.0.0.3", 1000, false),
            ("alice", "10.0.0.1", 2000, false),
            ("carol", "10.0.0.1", 1500, false),
        ];
        for (user, ip, now, want) in cases {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(
                bound_from(&state, user, now, |at| at == ip),
                want,
                "{user} from {ip} at {now}"
            );
        }
    }

    #[test]
    fn a_phone_stays_sleeps_or_goes_by_its_bindings_and_its_quiet() {
        const Q: u64 = 32;
        const L: u64 = 300;
        // (contacts, earliest expiry, last activity, now, fate)
        let cases = [
            // Bindings, active lately: awake until the earlier of expiry and the sleep.
            (1, Some(5000), 1000, 1010, Fate::Stay(1033)),
            (1, Some(1020), 1000, 1010, Fate::Stay(1020)),
            // Quiet for the transaction lifetime: not yet at 32 s, asleep past it.
            (2, Some(5000), 1000, 1032, Fate::Stay(1033)),
            (2, Some(5000), 1000, 1033, Fate::Sleep),
            // No binding: stays while a nonce of its could be replayed, then goes.
            (0, None, 1000, 1033, Fate::Stay(1301)),
            (0, None, 1000, 1300, Fate::Stay(1301)),
            (0, None, 1000, 1301, Fate::Leave),
        ];
        for (contacts, expiry, active, now, want) in cases {
            assert_eq!(
                fate(contacts, expiry, active, now, Q, L),
                want,
                "{contacts} contacts, expiry {expiry:?}, active {active}, at {now}"
            );
        }
    }

    #[test]
    fn a_checked_phone_is_due_again_after_now() {
        // Whatever stays is checked again later than now, so a check never loops.
        for contacts in [0, 1, 3] {
            for now in 1000..1400 {
                if let Fate::Stay(at) = fate(contacts, Some(now + 1), 1000, now, 32, 300) {
                    assert!(at > now, "{contacts} contacts at {now}: due {at}");
                }
            }
        }
    }
}
