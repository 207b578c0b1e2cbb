//! Where the phones live: a map per shard from phone id to the phone, awake
//! ([`crate::registrar::phone::Phone`]) or asleep as compact bytes
//! ([`crate::registrar::sleeping`]), and per shard a queue of the seconds phones are due to
//! be checked. Every message for a phone goes through this directory, which runs it on the
//! phone under the shard's lock on the calling thread: for UDP the actor thread whose socket
//! received it, for streams the connection's tokio task. A phone's messages are so handled
//! one at a time, in the order they took the lock, and a phone's answer to a UDP REGISTER
//! joins the batch its loop sends once the datagrams it read are handled.
//!
//! The actor threads (`edge-actors-{i}`: each an actix `System` on a current-thread tokio
//! runtime whose park hook flushes the thread's UDP outbox) run one `SO_REUSEPORT` socket's
//! receive loop each (`transport/udp.rs`, a floor above this wing) and a 1 s tick over their
//! shards' queues: an awake phone whose check is due sweeps its expired bindings, then stays,
//! falls asleep (quiet for a transaction lifetime) or goes (no binding, no live nonce); a
//! sleeping phone whose earliest expiry has come is swept in its sleeping state and sleeps
//! on while bindings are left (else it wakes while a nonce of its lives, or goes).

use std::{
    collections::{HashMap, hash_map::Entry},
    hash::BuildHasher,
    sync::Arc,
    time::Duration,
};

use actix_rt::ArbiterHandle;
use dialtone_common::clock::unix_ms;
use dialtone_proto::edge::v1 as pb;
use dialtone_sip::registration::from_message;
use parking_lot::Mutex;
use tracing::warn;

use crate::{
    flow::FlowSource,
    metrics::{Reason, Stats},
    registrar::due::{Due, Queued, queued},
    registrar::phone::{self, Fate, Phone, Reachable, RegisterJob},
    registrar::publisher::Publisher,
    registrar::sleeping::{PhoneState, wake_at},
    replies::Replies,
};

/// Map shards per actor thread. One, as when each phone was an actix actor: a lock is held
/// only while one message is handled, so two threads rarely wait on it. More shards looked
/// like a cost in memory, not a saving in CPU: each shard's map and queue grow by doubling
/// and leave the smaller tables behind in partly used pages, and with 16 a thread a sleeping
/// phone measured 1.10-1.29 of the build before in eight of ten runs, with one 1.04-1.17
/// in four quiet runs, median 1.10 (`docs/benchmarks.md`, 2026-12-07).
const SHARDS_PER_THREAD: usize = 1;

/// Checks the tick makes per hold of a shard's lock: a second in which many phones come due
/// (a reconnect wave's phones 33 s later, a restored edge's at their expiries) does not
/// hold up the shard's requests behind all of them.
const CHECKS_PER_HOLD: usize = 256;

/// A phone known to this edge.
enum Slot {
    Awake(Box<Phone>),
    /// Its encoded state.
    Asleep(Box<[u8]>),
}

#[derive(Default)]
struct Shard {
    phones: HashMap<Arc<str>, Slot, foldhash::fast::RandomState>,
    due: Due,
}

/// What the edge gives every phone.
pub struct SharedParts {
    pub node_id: String,
    /// How long a phone with bindings stays quiet before it falls asleep: a whole
    /// transaction lifetime ([`super::phone::TXN_MEMORY_S`]), so no retransmission needs
    /// the last answer (unit tests make it 0).
    pub quiet_before_sleep_s: u64,
    pub publisher: Publisher,
    pub replies: Arc<Replies>,
    pub stats: Arc<Stats>,
}

struct Inner {
    parts: SharedParts,
    shards: Box<[Mutex<Shard>]>,
    arbiters: Vec<ArbiterHandle>,
    hasher: foldhash::fast::RandomState,
}

impl Inner {
    fn shard(&self, id: &str) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(id) % self.shards.len() as u64) as usize]
    }

    /// Checks the phones of shard `s` that are due, [`CHECKS_PER_HOLD`] at a time; between
    /// two batches the lock goes to a thread waiting for it, if one is.
    fn check_due(&self, s: usize, now: u64) {
        loop {
            let mut shard = self.shards[s].lock();
            let Shard { phones, due } = &mut *shard;
            for _ in 0..CHECKS_PER_HOLD {
                if due.first().is_none_or(|(at, _)| *at > now) {
                    return;
                }
                let Some((at, Queued(id))) = due.pop_first() else {
                    return;
                };
                check(&self.parts, phones, due, at, id, now);
            }
            parking_lot::MutexGuard::unlock_fair(shard);
        }
    }
}

/// The check of the phone whose entry (at `at`) was taken off `due`: an awake phone sweeps
/// its expired bindings, then stays, sleeps or goes ([`Phone::check`]); a sleeping one
/// sweeps its state without waking and sleeps on if bindings are left, else wakes until no
/// nonce of its could be replayed, or goes.
fn check(
    sh: &SharedParts,
    phones: &mut HashMap<Arc<str>, Slot, foldhash::fast::RandomState>,
    due: &mut Due,
    at: u64,
    id: Arc<str>,
    now: u64,
) {
    // The map's own key from here on: an entry holding another allocation of the id
    // (never expected) is not queued again, and the phone's own entry is found by the key.
    let Some((key, _)) = phones.get_key_value(&id) else {
        return;
    };
    let id = key.clone();
    let Some(slot) = phones.get_mut(&id) else {
        return;
    };
    let gone = match slot {
        Slot::Awake(p) => {
            if p.due != at {
                // Not the phone's own entry (never expected): its own one goes too.
                due.remove(&queued(p.due, &id));
            }
            match p.check(&id, sh, now) {
                Fate::Stay(next) => {
                    p.due = next;
                    due.insert(queued(next, &id));
                    false
                }
                Fate::Sleep => {
                    let bytes = p.encode(sh, now);
                    due.insert(queued(wake_at(&bytes), &id));
                    *slot = Slot::Asleep(bytes);
                    sh.stats.sleeping_changed(1);
                    false
                }
                Fate::Leave => true,
            }
        }
        Slot::Asleep(bytes) => {
            if wake_at(bytes) != at {
                due.remove(&queued(wake_at(bytes), &id));
            }
            let mut state = decode(&id, bytes);
            phone::sweep(&mut state, &id, sh, now);
            if state.earliest_expiry().is_some() {
                // Bindings left: asleep again, until the next expiry.
                let bytes = state.encode(now, sh.replies.nonce_lifetime_s);
                due.insert(queued(wake_at(&bytes), &id));
                *slot = Slot::Asleep(bytes);
                return;
            }
            sh.stats.sleeping_changed(-1);
            let live_nonce = state
                .nonce_counts
                .entries(now, sh.replies.nonce_lifetime_s)
                .next()
                .is_some();
            if live_nonce {
                // Awake until no nonce of its could be replayed.
                let mut p = Box::new(Phone::new(state, now));
                schedule(sh, due, &id, &mut p);
                *slot = Slot::Awake(p);
                false
            } else {
                true
            }
        }
    };
    if gone {
        phones.remove(&id);
    }
}

fn decode(id: &str, bytes: &[u8]) -> PhoneState {
    PhoneState::decode(bytes).unwrap_or_else(|| {
        warn!(phone_id = %id, "undecodable sleeping state: starting empty");
        PhoneState::default()
    })
}

/// The awake phone in `slot`, woken (active at `now`) if it slept: its entry in `due` goes,
/// and [`schedule`] queues the woken phone's.
fn awake<'s>(
    sh: &SharedParts,
    due: &mut Due,
    id: &Arc<str>,
    slot: &'s mut Slot,
    now: u64,
) -> &'s mut Phone {
    if let Slot::Asleep(bytes) = slot {
        due.remove(&queued(wake_at(bytes), id));
        let state = decode(id, bytes);
        sh.stats.sleeping_changed(-1);
        *slot = Slot::Awake(Box::new(Phone::new(state, now)));
    }
    match slot {
        Slot::Awake(p) => p,
        Slot::Asleep(_) => unreachable!("woken above"),
    }
}

/// Moves the phone's entry in `due` to its next check if that is earlier (or queues it if
/// it has none); a later check is found when the entry comes due.
fn schedule(sh: &SharedParts, due: &mut Due, id: &Arc<str>, p: &mut Phone) {
    let next = p.next_check(sh);
    if p.due == 0 || next < p.due {
        if p.due != 0 {
            due.remove(&queued(p.due, id));
        }
        p.due = next;
        due.insert(queued(next, id));
    }
}

/// The actor threads and the phone maps.
pub struct Directory {
    systems: Vec<actix_rt::System>,
    inner: Arc<Inner>,
}

impl Directory {
    /// Starts `n` actor threads.
    pub fn start(n: usize, parts: SharedParts) -> Self {
        let n = n.max(1);
        let mut arbiters = Vec::with_capacity(n);
        let mut systems = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            std::thread::Builder::new()
                .name(format!("edge-actors-{i}"))
                .spawn(move || {
                    // A current-thread runtime as actix builds one (IO and timers; nothing
                    // here needs a signal or process driver), plus a park hook: UDP answers
                    // queued on this thread leave before it sleeps, and what it freed goes
                    // back ([`dialtone_common::idle`]).
                    let sys = actix_rt::System::with_tokio_rt(|| {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_io()
                            .enable_time()
                            .on_thread_park(|| {
                                crate::flow::udp_out::flush();
                                dialtone_common::idle::parked();
                            })
                            .build()
                            .expect("an actor thread's runtime")
                    });
                    let _ = tx.send((actix_rt::System::current(), actix_rt::Arbiter::current()));
                    let _ = sys.run();
                })
                .expect("spawning an actor thread");
            let (sys, arb) = rx.recv().expect("actor thread started");
            systems.push(sys);
            arbiters.push(arb);
        }
        let inner = Arc::new(Inner {
            parts,
            shards: (0..n * SHARDS_PER_THREAD)
                .map(|_| Mutex::default())
                .collect(),
            arbiters,
            hasher: Default::default(),
        });
        for (i, arb) in inner.arbiters.iter().enumerate() {
            let weak = Arc::downgrade(&inner);
            arb.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    let now = unix_ms() / 1000;
                    for s in (i..inner.shards.len()).step_by(n) {
                        inner.check_due(s, now);
                    }
                }
            });
        }
        Directory { systems, inner }
    }

    /// How far the publication of the phones' bindings is behind the store.
    pub fn backlog(&self) -> &Arc<super::backlog::Backlog> {
        self.inner.parts.publisher.backlog()
    }

    /// The actor threads.
    pub fn arbiters(&self) -> &[ArbiterHandle] {
        &self.inner.arbiters
    }

    /// Runs `f` on the phone (woken if asleep) and queues its next check; `None` if the
    /// phone has no state here.
    fn with_phone<R>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Phone, &Arc<str>, &SharedParts, u64) -> R,
    ) -> Option<R> {
        let sh = &self.inner.parts;
        let now = unix_ms() / 1000;
        let mut shard = self.inner.shard(id).lock();
        let Shard { phones, due } = &mut *shard;
        let (key, _) = phones.get_key_value(id)?;
        let key = key.clone();
        let slot = phones.get_mut(id)?;
        let p = awake(sh, due, &key, slot, now);
        let r = f(p, &key, sh, now);
        schedule(sh, due, &key, p);
        Some(r)
    }

    /// Handles an authenticated REGISTER on its phone, which starts here if it had no state.
    pub fn register(&self, id: &Arc<str>, job: RegisterJob) {
        let sh = &self.inner.parts;
        // Read before the lock is taken, from the message the job carries.
        let req = match from_message(&job.msg, job.source) {
            Ok(r) => r,
            Err(why) => {
                sh.stats.rejected(Reason::Invalid);
                let bytes = sh
                    .replies
                    .responder
                    .reply(&job.msg, &job.src, 400, why, vec![]);
                job.reply.send(bytes);
                return;
            }
        };
        let now = unix_ms() / 1000;
        let mut shard = self.inner.shard(id).lock();
        let Shard { phones, due } = &mut *shard;
        // The queue holds the map's own key (see [`Queued`]), not the line's `phone_id`.
        let (key, slot) = match phones.entry(id.clone()) {
            Entry::Occupied(o) => (o.key().clone(), o.into_mut()),
            Entry::Vacant(v) => {
                let fresh = Box::new(Phone::new(PhoneState::default(), now));
                (id.clone(), v.insert(Slot::Awake(fresh)))
            }
        };
        let p = awake(sh, due, &key, slot, now);
        p.register(&key, sh, &job, &req, now);
        schedule(sh, due, &key, p);
    }

    /// Drops bindings of the phone: all, those of some lines, or those learned over one
    /// flow. Returns how many went (`None`: the phone has no state here).
    pub fn forget(
        &self,
        id: &str,
        lines: Option<&[u32]>,
        source: Option<FlowSource>,
    ) -> Option<u32> {
        self.with_phone(id, |p, id, sh, now| p.forget(id, sh, lines, source, now))
    }

    /// Writes every line of the phone again (after the node re-registered on a new lease);
    /// a sleeping phone stays asleep, its state written again with the time published.
    pub fn republish(&self, id: &str) {
        let sh = &self.inner.parts;
        let now = unix_ms() / 1000;
        let mut shard = self.inner.shard(id).lock();
        match shard.phones.get_mut(id) {
            Some(Slot::Awake(p)) => p.republish(id, sh, now),
            Some(Slot::Asleep(bytes)) => {
                let mut state = decode(id, bytes);
                phone::republish(&mut state, id, sh, now);
                let again = state.encode(now, sh.replies.nonce_lifetime_s);
                // Nothing was swept, so the earliest expiry, and with it the entry in
                // `due`, is the same.
                debug_assert_eq!(wake_at(&again), wake_at(bytes));
                *bytes = again;
            }
            None => {}
        }
    }

    /// Reads the phone's state, awake or asleep (not woken: nothing changes), if it has
    /// state here. A sleeping phone's bytes are copied out and decoded after the shard's
    /// lock is let go: the lock is held for a copy, not for a decode.
    fn read<R>(&self, id: &str, f: impl FnOnce(&PhoneState) -> R) -> Option<R> {
        let shard = self.inner.shard(id).lock();
        let bytes = match shard.phones.get(id)? {
            Slot::Awake(p) => return Some(f(p.state())),
            Slot::Asleep(bytes) => bytes.clone(),
        };
        drop(shard);
        Some(f(&decode(id, &bytes)))
    }

    /// Whether the phone holds a live binding of the line of `sip_user` learned from a
    /// source `from` accepts ([`phone::bound_from`]).
    pub fn bound_from(
        &self,
        id: &str,
        sip_user: &str,
        now: u64,
        from: impl Fn(std::net::IpAddr) -> bool,
    ) -> bool {
        self.read(id, |s| phone::bound_from(s, sip_user, now, from))
            .unwrap_or(false)
    }

    /// Every registered contact of the phone on this edge.
    pub fn contacts(&self, id: &str) -> Vec<Reachable> {
        self.read(id, phone::contacts).unwrap_or_default()
    }

    /// The phone's bindings on this edge, as published.
    pub fn bindings(&self, id: &str) -> Vec<pb::Binding> {
        let node = &self.inner.parts.node_id;
        self.read(id, |s| phone::bindings(s, id, node))
            .unwrap_or_default()
    }

    /// Whether the phone has state here, awake or asleep.
    pub fn has(&self, id: &str) -> bool {
        self.inner.shard(id).lock().phones.contains_key(id)
    }

    /// Puts a restored phone to sleep here (see [`crate::registrar::restore`]), unless the
    /// phone is already known (it registered meanwhile: what it sent is newer) or has no
    /// binding. Returns whether it was added.
    pub fn adopt(&self, id: &str, state: &PhoneState) -> bool {
        if state.earliest_expiry().is_none() {
            // Nothing to restore, and nothing would ever wake it.
            return false;
        }
        let sh = &self.inner.parts;
        let bytes = state.encode(unix_ms() / 1000, sh.replies.nonce_lifetime_s);
        let id: Arc<str> = id.into();
        let mut shard = self.inner.shard(&id).lock();
        if shard.phones.contains_key(&id) {
            return false;
        }
        shard.due.insert(queued(wake_at(&bytes), &id));
        shard.phones.insert(id, Slot::Asleep(bytes));
        drop(shard);
        sh.stats.sleeping_changed(1);
        let none = [0; crate::metrics::TRANSPORTS.len()];
        sh.stats
            .bindings_changed(&none, &state.contacts_by_transport());
        sh.stats.phones_changed(1);
        true
    }

    /// Every phone with state here.
    pub fn ids(&self) -> Vec<Arc<str>> {
        self.inner
            .shards
            .iter()
            .flat_map(|m| m.lock().phones.keys().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Entries in the shards' queues of due checks.
    #[cfg(test)]
    pub fn queued_checks(&self) -> usize {
        self.inner.shards.iter().map(|m| m.lock().due.len()).sum()
    }

    /// Stops every actor thread.
    pub fn stop(&self) {
        for s in &self.systems {
            s.stop();
        }
    }
}
