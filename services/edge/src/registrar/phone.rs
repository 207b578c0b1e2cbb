//! One actix actor per phone: it owns the phone's bindings (per line), nonce counts, its
//! expiry timer and the last transaction it answered. Actors live while their phone has
//! bindings or a nonce it could still replay, then stop; the [`crate::registrar::directory`] starts
//! them on demand on one of several arbiters.

use std::sync::Arc;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message, MessageResult};
use dialtone_common::clock::unix_ms;
use dialtone_domain::keys;
use dialtone_proto::edge::v1 as pb;
use dialtone_sip::{
    Message as SipMessage,
    registration::{Refusal, Register as RegisterReq, apply, from_message},
    response::Source,
};
use prost::Message as _;

use crate::{
    credentials::LineEntry,
    flow::{Answer, FlowSource, proto},
    metrics::Reason,
    registrar::sleeping::{LineState, PhoneState},
    registrar::{directory::ActorShared, pending::Pending},
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

/// The actor.
pub struct PhoneActor {
    id: Arc<str>,
    shared: Arc<ActorShared>,
    state: PhoneState,
    /// Kept inline, not boxed: it is read for every request, and actors live only while
    /// their phone is active (quiet phones sleep as compact state).
    last: Option<LastTxn>,
    /// Unix second the expiry sweep is scheduled for (0: none).
    timer_at: u64,
    last_activity: u64,
    idle_check: bool,
    sleep_check: bool,
    /// Messages the directory sent that this actor has not handled yet.
    pending: Pending,
}

impl PhoneActor {
    pub fn new(
        id: Arc<str>,
        shared: Arc<ActorShared>,
        state: PhoneState,
        pending: Pending,
    ) -> Self {
        PhoneActor {
            id,
            shared,
            state,
            last: None,
            timer_at: 0,
            last_activity: unix_ms() / 1000,
            idle_check: false,
            sleep_check: false,
            pending,
        }
    }

    /// Every handler starts here: one pending message fewer (see [`Pending`]).
    fn received(&self) {
        self.pending.received();
    }

    /// Hands the state to the directory and stops, if the phone has been quiet for a
    /// whole transaction lifetime (so no retransmission needs the last answer).
    fn try_sleep(&mut self, ctx: &mut Context<Self>, now: u64) -> bool {
        if now.saturating_sub(self.last_activity) < self.shared.quiet_before_sleep_s
            || self.contacts() == 0
        {
            return false;
        }
        let bytes = self.state.encode(now, self.shared.replies.nonce_lifetime_s);
        if self
            .shared
            .fall_asleep(&self.id, &ctx.address(), &self.pending, bytes)
        {
            ctx.stop();
            return true;
        }
        false
    }

    fn contacts(&self) -> usize {
        self.state.lines.iter().map(|l| l.bindings.len()).sum()
    }

    /// Bindings per transport (the metrics' [`crate::metrics::TRANSPORTS`] order).
    fn contacts_by_transport(&self) -> [i64; crate::metrics::TRANSPORTS.len()] {
        self.state.contacts_by_transport()
    }

    fn publish(&mut self, pos: usize, now: u64) {
        let line = &mut self.state.lines[pos];
        line.published_at = now;
        let key = keys::binding(&self.id, line.index, &self.shared.node_id);
        if line.bindings.is_empty() {
            self.shared.publisher.delete(key);
        } else {
            let b = to_proto(&self.id, line, &self.shared.node_id);
            self.shared.publisher.put(key, b.encode_to_vec());
        }
    }

    fn line_pos(&mut self, index: u32, sip_user: &str) -> usize {
        if let Some(p) = self.state.lines.iter().position(|l| l.index == index) {
            if self.state.lines[p].sip_user != sip_user {
                // The line was given another user: its old bindings are not this user's.
                let before = self.contacts_by_transport();
                self.state.lines[p].bindings.clear();
                self.state.lines[p].sip_user = sip_user.to_owned();
                self.shared
                    .stats
                    .bindings_changed(&before, &self.contacts_by_transport());
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

    /// Applies a contact-count change to the gauges.
    fn account(&self, before: [i64; crate::metrics::TRANSPORTS.len()]) {
        let after = self.contacts_by_transport();
        self.shared.stats.bindings_changed(&before, &after);
        let (before, after) = (before.iter().sum::<i64>(), after.iter().sum::<i64>());
        match (before, after) {
            (0, a) if a > 0 => self.shared.stats.phones_changed(1),
            (b, 0) if b > 0 => self.shared.stats.phones_changed(-1),
            _ => {}
        }
    }

    /// Schedules the expiry sweep for the earliest binding and falling asleep, or the idle
    /// stop.
    fn schedule(&mut self, ctx: &mut Context<Self>, now: u64) {
        if self.contacts() > 0 && !self.sleep_check {
            self.sleep_check = true;
            let wait =
                (self.last_activity + self.shared.quiet_before_sleep_s + 1).saturating_sub(now);
            ctx.run_later(std::time::Duration::from_secs(wait), |a, ctx| {
                a.sleep_check = false;
                let now = unix_ms() / 1000;
                if !a.try_sleep(ctx, now) {
                    a.schedule(ctx, now);
                }
            });
        }
        match self.state.earliest_expiry() {
            // An actor with bindings falls asleep at its sleep check, and a sleeping phone
            // wakes for its earliest expiry (the directory's queue); a check that finds it
            // busy schedules again. So only an expiry before the check needs a timer.
            Some(at)
                if self.sleep_check
                    && at > self.last_activity + self.shared.quiet_before_sleep_s + 1 => {}
            Some(at) if self.timer_at == 0 || at < self.timer_at => {
                self.timer_at = at;
                let wait = std::time::Duration::from_millis(at.saturating_sub(now) * 1000 + 200);
                ctx.run_later(wait, |a, ctx| {
                    a.timer_at = 0;
                    a.sweep(ctx);
                });
            }
            Some(_) => {}
            None if !self.idle_check => {
                self.idle_check = true;
                let wait = std::time::Duration::from_secs(self.shared.replies.nonce_lifetime_s + 1);
                ctx.run_later(wait, |a, ctx| {
                    a.idle_check = false;
                    let now = unix_ms() / 1000;
                    if a.contacts() == 0 {
                        if now.saturating_sub(a.last_activity) > a.shared.replies.nonce_lifetime_s {
                            ctx.stop();
                        } else {
                            a.schedule(ctx, now);
                        }
                    }
                });
            }
            None => {}
        }
    }

    /// Removes expired bindings.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = unix_ms() / 1000;
        let before = self.contacts_by_transport();
        for pos in 0..self.state.lines.len() {
            let n = self.state.lines[pos].bindings.len();
            self.state.lines[pos]
                .bindings
                .retain(|b| b.expires_at > now);
            if self.state.lines[pos].bindings.len() != n {
                self.publish(pos, now);
            }
        }
        self.account(before);
        self.schedule(ctx, now);
    }

    fn forget(&mut self, lines: Option<&[u32]>, source: Option<FlowSource>, now: u64) -> u32 {
        let before = self.contacts_by_transport();
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
                self.publish(pos, now);
            }
        }
        self.account(before);
        (before.iter().sum::<i64>() - self.contacts() as i64) as u32
    }
}

impl Actor for PhoneActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A burst of REGISTERs for one phone queues instead of being refused.
        ctx.set_mailbox_capacity(64);
        self.schedule(ctx, unix_ms() / 1000);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.shared.forget_actor(&self.id, &ctx.address());
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
    /// Counts the job in the edge's backlog until it is handled (dropped).
    #[expect(dead_code, reason = "held for its Drop")]
    pub reserved: super::backlog::Reserved,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Register(pub Box<RegisterJob>);

impl Handler<Register> for PhoneActor {
    type Result = ();

    fn handle(&mut self, Register(job): Register, ctx: &mut Context<Self>) -> Self::Result {
        self.received();
        let sh = self.shared.clone();
        // Read here, from the message the job carries, so that it can borrow from it.
        let req = match from_message(&job.msg, job.source) {
            Ok(r) => r,
            Err(why) => {
                sh.stats.rejected(Reason::Invalid);
                job.reply.send(
                    sh.replies
                        .responder
                        .reply(&job.msg, &job.src, 400, why, vec![]),
                );
                return;
            }
        };
        let now = unix_ms() / 1000;
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
                    let outbound = registers_flow(&req);
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
        let before = self.contacts_by_transport();
        let pos = self.line_pos(job.entry.line_index, &job.entry.sip_user);
        let policy = job.entry.policy;
        let line = &mut self.state.lines[pos];
        let (bytes, ok) = match apply(&mut line.bindings, &req, &policy, now) {
            Ok(changed) => {
                line.republish_after = u64::from(policy.default_expires / 2);
                let outbound = registers_flow(&req);
                let bytes = sh.replies.responder.register_ok(
                    &job.msg,
                    &job.src,
                    &line.bindings,
                    now,
                    outbound,
                );
                if changed || now >= line.published_at + line.republish_after {
                    self.publish(pos, now);
                }
                sh.stats.registered();
                (bytes, true)
            }
            Err(Refusal::IntervalTooBrief { min_expires }) => {
                sh.stats.rejected(Reason::IntervalTooBrief);
                let b = sh.replies.responder.reply(
                    &job.msg,
                    &job.src,
                    423,
                    "",
                    vec![("Min-Expires", min_expires.to_string())],
                );
                (b, false)
            }
            Err(Refusal::Invalid(why)) => {
                sh.stats.rejected(Reason::Invalid);
                (
                    sh.replies
                        .responder
                        .reply(&job.msg, &job.src, 400, why, vec![]),
                    false,
                )
            }
            Err(Refusal::OutOfOrder) => {
                sh.stats.rejected(Reason::OutOfOrder);
                let b = sh.replies.responder.reply(
                    &job.msg,
                    &job.src,
                    400,
                    "CSeq not higher than the binding's",
                    vec![],
                );
                (b, false)
            }
            Err(Refusal::TooManyBindings { max }) => {
                sh.stats.rejected(Reason::TooManyBindings);
                let reason = format!("Too many registered contacts (at most {max})");
                (
                    sh.replies
                        .responder
                        .reply(&job.msg, &job.src, 403, &reason, vec![]),
                    false,
                )
            }
        };
        self.last = Some(LastTxn {
            key: job.txn,
            line: job.entry.line_index,
            at: now,
            error: (!ok).then(|| bytes.clone()),
        });
        job.reply.send(bytes);
        self.account(before);
        self.schedule(ctx, now);
    }
}

/// The phone's bindings on this edge, as published.
#[derive(Message)]
#[rtype(result = "Vec<pb::Binding>")]
pub struct ListBindings;

impl Handler<ListBindings> for PhoneActor {
    type Result = MessageResult<ListBindings>;

    fn handle(&mut self, _: ListBindings, _: &mut Context<Self>) -> Self::Result {
        self.received();
        MessageResult(
            self.state
                .lines
                .iter()
                .filter(|l| !l.bindings.is_empty())
                .map(|l| to_proto(&self.id, l, &self.shared.node_id))
                .collect(),
        )
    }
}

/// Drops bindings: all, those of some lines, or those learned over one flow.
#[derive(Message)]
#[rtype(result = "u32")]
pub struct Forget {
    pub lines: Option<Vec<u32>>,
    pub source: Option<FlowSource>,
}

impl Handler<Forget> for PhoneActor {
    type Result = u32;

    fn handle(&mut self, f: Forget, ctx: &mut Context<Self>) -> u32 {
        self.received();
        let now = unix_ms() / 1000;
        let n = self.forget(f.lines.as_deref(), f.source, now);
        self.schedule(ctx, now);
        n
    }
}

/// Writes every line again (after the node re-registered on a new lease).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Republish;

impl Handler<Republish> for PhoneActor {
    type Result = ();

    fn handle(&mut self, _: Republish, _: &mut Context<Self>) {
        self.received();
        let now = unix_ms() / 1000;
        for pos in 0..self.state.lines.len() {
            if !self.state.lines[pos].bindings.is_empty() {
                self.publish(pos, now);
            }
        }
    }
}

/// A registered contact the edge can send a request to.
#[derive(Clone, Debug)]
pub struct Reachable {
    pub sip_user: String,
    pub uri: String,
    pub source: FlowSource,
}

/// Every registered contact of the phone.
#[derive(Message)]
#[rtype(result = "Vec<Reachable>")]
pub struct Contacts;

impl Handler<Contacts> for PhoneActor {
    type Result = MessageResult<Contacts>;

    fn handle(&mut self, _: Contacts, _: &mut Context<Self>) -> Self::Result {
        self.received();
        MessageResult(
            self.state
                .lines
                .iter()
                .flat_map(|l| {
                    l.bindings.iter().map(|b| Reachable {
                        sip_user: l.sip_user.clone(),
                        uri: b.uri.clone(),
                        source: b.source,
                    })
                })
                .collect(),
        )
    }
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
