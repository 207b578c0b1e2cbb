//! Where the phone actors live: several actix arbiters, each its own `System` on its own
//! thread (`edge-actors-{i}`, a current-thread tokio runtime whose park hook flushes the
//! thread's UDP outbox), and a map per shard from phone id to the phone: an awake actor, or
//! the compact state of a sleeping one ([`crate::registrar::sleeping`]). The UDP sockets
//! are read on these threads too: one `SO_REUSEPORT` socket and its receive loop per actor
//! thread (`transport/udp.rs`, a floor above this wing). Stream connections, gRPC,
//! deliveries and the store client stay on tokio, and reach an actor only through this
//! directory. A phone always
//! lands on the same map shard; its actor starts on the current actor thread when the
//! message comes from one (for UDP, the thread whose socket received the phone), else on
//! its shard's thread.
//!
//! Every message to a phone goes through [`Directory::tell`], [`Directory::tell_or_start`]
//! or [`Directory::ask`], which enqueue it while holding the shard lock and count it as
//! pending ([`crate::registrar::pending`]); an actor falls asleep (under the same lock)
//! only when nothing is pending, so no message can reach an actor that has already handed
//! its state back. A sleeping phone wakes for its next message or for its earliest binding
//! expiry (a per-shard queue checked every second).

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    hash::BuildHasher,
    sync::Arc,
    time::Duration,
};

use actix::{Actor, Addr, Handler, Message as ActixMessage, dev::Request, dev::ToEnvelope};
use actix_rt::ArbiterHandle;
use dialtone_common::clock::unix_ms;
use parking_lot::Mutex;
use tracing::warn;

use crate::{
    metrics::Stats,
    registrar::publisher::Publisher,
    registrar::sleeping::{PhoneState, wake_at},
    registrar::{pending::Pending, phone::PhoneActor},
    replies::Replies,
};

/// A phone known to this edge.
enum Slot {
    /// Its actor, and how many messages were sent to it and not yet handled.
    Awake(Addr<PhoneActor>, Pending),
    /// Its encoded state.
    Asleep(Box<[u8]>),
}

#[derive(Default)]
struct Shard {
    phones: HashMap<Arc<str>, Slot, foldhash::fast::RandomState>,
    /// Sleeping phones by the second they must wake; entries of phones that woke earlier
    /// are skipped when they come due.
    wakeups: BinaryHeap<Reverse<(u64, Arc<str>)>>,
}

/// What every phone actor shares: the [`SharedParts`] it was started with (reached
/// through `Deref`) and the phone maps, so an actor can fall asleep or leave.
pub struct ActorShared {
    me: std::sync::Weak<ActorShared>,
    parts: SharedParts,
    shards: Box<[Mutex<Shard>]>,
    arbiters: Vec<ArbiterHandle>,
    hasher: foldhash::fast::RandomState,
}

impl std::ops::Deref for ActorShared {
    type Target = SharedParts;

    fn deref(&self) -> &SharedParts {
        &self.parts
    }
}

impl ActorShared {
    fn shard_of(&self, id: &str) -> usize {
        (self.hasher.hash_one(id) % self.shards.len() as u64) as usize
    }

    /// Called by a stopping actor: removes it unless a newer one or its sleeping state
    /// took its place.
    pub fn forget_actor(&self, id: &str, addr: &Addr<PhoneActor>) {
        let mut shard = self.shards[self.shard_of(id)].lock();
        if matches!(shard.phones.get(id), Some(Slot::Awake(a, _)) if a == addr) {
            shard.phones.remove(id);
        }
    }

    /// Called by an idle actor with bindings: stores `state` in its place if nothing is
    /// pending for it. The actor stops when this returns true.
    pub fn fall_asleep(
        &self,
        id: &Arc<str>,
        addr: &Addr<PhoneActor>,
        pending: &Pending,
        state: Box<[u8]>,
    ) -> bool {
        let mut shard = self.shards[self.shard_of(id)].lock();
        let shard = &mut *shard;
        let Some(slot) = shard.phones.get_mut(id) else {
            return false;
        };
        let ours = matches!(&*slot, Slot::Awake(a, _) if a == addr);
        if !ours || !pending.is_clear() {
            return false;
        }
        shard.wakeups.push(Reverse((wake_at(&state), id.clone())));
        *slot = Slot::Asleep(state);
        self.stats.sleeping_changed(1);
        true
    }

    /// Starts an actor from `slot`'s sleeping state, if it is asleep.
    fn wake(&self, s: usize, id: &Arc<str>, slot: &mut Slot) {
        if let Slot::Asleep(bytes) = slot {
            let state = PhoneState::decode(bytes).unwrap_or_else(|| {
                warn!(phone_id = %id, "undecodable sleeping state: starting empty");
                PhoneState::default()
            });
            self.stats.sleeping_changed(-1);
            *slot = self.start(s, id, state);
        }
    }

    /// The awake actor for `slot` (waking it if asleep), with its pending count raised.
    /// Lent, not cloned: an actix address is three `Arc`s, each its own allocation, and a
    /// clone and its drop would touch all three on every request.
    fn awake<'s>(&self, s: usize, id: &Arc<str>, slot: &'s mut Slot) -> &'s Addr<PhoneActor> {
        self.wake(s, id, slot);
        let Slot::Awake(addr, pending) = slot else {
            unreachable!("woken above")
        };
        pending.sent();
        addr
    }

    fn start(&self, s: usize, id: &Arc<str>, state: PhoneState) -> Slot {
        let pending = Pending::default();
        let shared = self
            .me
            .upgrade()
            .expect("the directory outlives its actors");
        let (pid, p) = (id.clone(), pending.clone());
        // On the calling actor thread when there is one: UDP receive loops run there, and
        // the kernel keeps a phone's datagrams on one socket (SO_REUSEPORT hashes the
        // source), so its requests never cross threads. Otherwise on the phone's shard.
        let arbiter = actix_rt::Arbiter::try_current().unwrap_or_else(|| self.arbiters[s].clone());
        let addr =
            PhoneActor::start_in_arbiter(&arbiter, move |_| PhoneActor::new(pid, shared, state, p));
        Slot::Awake(addr, pending)
    }

    /// Wakes the phones of shard `s` whose earliest expiry has come.
    fn wake_due(&self, s: usize, now: u64) {
        let mut shard = self.shards[s].lock();
        let shard = &mut *shard;
        while let Some(Reverse((at, _))) = shard.wakeups.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, id))) = shard.wakeups.pop() else {
                break;
            };
            if let Some(slot) = shard.phones.get_mut(&id)
                && matches!(slot, Slot::Asleep(b) if wake_at(b) == at)
            {
                // An awake phone sweeps its expired bindings as it starts.
                self.wake(s, &id, slot);
            }
        }
    }
}

/// What the edge gives every phone actor.
pub struct SharedParts {
    pub node_id: String,
    /// How long a phone with bindings stays quiet before its actor falls asleep: a whole
    /// transaction lifetime ([`super::phone::TXN_MEMORY_S`]), so no retransmission needs the last
    /// answer (unit tests make it 0).
    pub quiet_before_sleep_s: u64,
    pub publisher: Publisher,
    pub replies: Arc<Replies>,
    pub stats: Arc<Stats>,
}

/// The arbiters and the phone maps.
pub struct Directory {
    systems: Vec<actix_rt::System>,
    shared: Arc<ActorShared>,
}

impl Directory {
    /// Starts `n` arbiter threads.
    pub fn start(n: usize, parts: SharedParts) -> Self {
        let mut arbiters = Vec::with_capacity(n);
        let mut systems = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            std::thread::Builder::new()
                .name(format!("edge-actors-{i}"))
                .spawn(move || {
                    // A current-thread runtime as actix builds one (IO and timers; the
                    // actors need no signal or process driver), plus a park hook: UDP
                    // answers queued on this thread leave before it sleeps, and what it
                    // freed goes back ([`dialtone_common::idle`]).
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
        let shared = Arc::new_cyclic(|me| ActorShared {
            me: me.clone(),
            parts,
            shards: (0..n).map(|_| Mutex::default()).collect(),
            arbiters,
            hasher: Default::default(),
        });
        for (s, arb) in shared.arbiters.iter().enumerate() {
            let weak = Arc::downgrade(&shared);
            arb.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let Some(shared) = weak.upgrade() else { return };
                    shared.wake_due(s, unix_ms() / 1000);
                }
            });
        }
        Directory { systems, shared }
    }

    /// How far the publication of the phones' bindings is behind the store.
    pub fn backlog(&self) -> &Arc<super::backlog::Backlog> {
        self.shared.publisher.backlog()
    }

    /// The actor threads.
    pub fn arbiters(&self) -> &[ArbiterHandle] {
        &self.shared.arbiters
    }

    /// Sends `msg` to the phone's actor, starting one if the phone has none (or waking it).
    pub fn tell_or_start<M>(&self, id: &Arc<str>, msg: M)
    where
        M: ActixMessage + Send + 'static,
        M::Result: Send,
        PhoneActor: Handler<M>,
        <PhoneActor as Actor>::Context: ToEnvelope<PhoneActor, M>,
    {
        let sh = &self.shared;
        let s = sh.shard_of(id);
        let mut shard = sh.shards[s].lock();
        let slot = shard
            .phones
            .entry(id.clone())
            .or_insert_with(|| sh.start(s, id, PhoneState::default()));
        if matches!(slot, Slot::Awake(a, _) if !a.connected()) {
            *slot = sh.start(s, id, PhoneState::default());
        }
        sh.awake(s, id, slot).do_send(msg);
    }

    /// Sends `msg` to the phone's actor (waking it) if the phone has state here.
    pub fn tell<M>(&self, id: &str, msg: M) -> bool
    where
        M: ActixMessage + Send + 'static,
        M::Result: Send,
        PhoneActor: Handler<M>,
        <PhoneActor as Actor>::Context: ToEnvelope<PhoneActor, M>,
    {
        self.with_awake(id, |a| a.do_send(msg)).is_some()
    }

    /// Asks the phone's actor (waking it) if the phone has state here.
    pub fn ask<M>(&self, id: &str, msg: M) -> Option<Request<PhoneActor, M>>
    where
        M: ActixMessage + Send + 'static,
        M::Result: Send,
        PhoneActor: Handler<M>,
        <PhoneActor as Actor>::Context: ToEnvelope<PhoneActor, M>,
    {
        self.with_awake(id, |a| a.send(msg))
    }

    fn with_awake<R>(&self, id: &str, f: impl FnOnce(&Addr<PhoneActor>) -> R) -> Option<R> {
        let sh = &self.shared;
        let s = sh.shard_of(id);
        let mut shard = sh.shards[s].lock();
        let (key, slot) = shard.phones.get_key_value(id)?;
        if matches!(slot, Slot::Awake(a, _) if !a.connected()) {
            return None;
        }
        let key = key.clone();
        let slot = shard.phones.get_mut(id)?;
        Some(f(sh.awake(s, &key, slot)))
    }

    /// Whether the phone has an actor or a sleeping state here.
    pub fn has(&self, id: &str) -> bool {
        let sh = &self.shared;
        sh.shards[sh.shard_of(id)].lock().phones.contains_key(id)
    }

    /// Puts a restored phone to sleep here (see [`crate::registrar::restore`]), unless the
    /// phone is already known (it registered meanwhile: what it sent is newer). Returns
    /// whether it was added.
    pub fn adopt(&self, id: &str, state: &PhoneState) -> bool {
        let sh = &self.shared;
        let bytes = state.encode(unix_ms() / 1000, sh.replies.nonce_lifetime_s);
        let id: Arc<str> = id.into();
        let mut shard = sh.shards[sh.shard_of(&id)].lock();
        if shard.phones.contains_key(&id) {
            return false;
        }
        shard.wakeups.push(Reverse((wake_at(&bytes), id.clone())));
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
        self.shared
            .shards
            .iter()
            .flat_map(|m| m.lock().phones.keys().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Stops every arbiter (and so every actor).
    pub fn stop(&self) {
        for s in &self.systems {
            s.stop();
        }
    }
}
