//! Where the phone actors live: several actix arbiters (each its own `System` on its own
//! thread, as DESIGN.md prescribes: tokio owns the sockets, tonic and the store; only `Addr`
//! crosses over), and a map per shard from phone id to the actor's address. A phone always
//! lands on the same shard, so its messages stay in order.

use std::{collections::HashMap, hash::BuildHasher, sync::Arc};

use actix::{Actor, Addr};
use actix_rt::ArbiterHandle;
use dialtone_sip::{
    Message,
    digest::{Algorithm, NonceKey},
    response::Source,
};
use parking_lot::Mutex;

use crate::{metrics::Stats, phone::PhoneActor, publisher::Publisher, replies::Responder};

type Shard = Mutex<HashMap<Arc<str>, Addr<PhoneActor>>>;

/// What every phone actor shares: the [`SharedParts`] it was started with (reached
/// through `Deref`) and the actor maps, so a stopping actor can remove itself.
pub struct ActorShared {
    parts: SharedParts,
    shards: Arc<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::ops::Deref for ActorShared {
    type Target = SharedParts;

    fn deref(&self) -> &SharedParts {
        &self.parts
    }
}

impl ActorShared {
    /// A fresh challenge.
    pub fn challenge(&self, req: &Message, src: &Source, now: u64, stale: bool) -> Vec<u8> {
        let nonce = self.nonce_key.nonce(now, rand::random());
        self.stats.challenge();
        self.responder
            .challenge(req, src, &self.algorithms, &self.realm, &nonce, stale)
    }

    fn shard_of(&self, id: &str) -> usize {
        (self.hasher.hash_one(id) % self.shards.len() as u64) as usize
    }

    /// Called by a stopping actor: removes it unless a newer one took its place.
    pub fn forget_actor(&self, id: &str, addr: &Addr<PhoneActor>) {
        let mut map = self.shards[self.shard_of(id)].lock();
        if map.get(id) == Some(addr) {
            map.remove(id);
        }
    }
}

/// What the edge gives every phone actor.
pub struct SharedParts {
    pub node_id: String,
    pub realm: String,
    pub publisher: Publisher,
    pub responder: Responder,
    pub nonce_key: NonceKey,
    pub nonce_lifetime_s: u64,
    pub algorithms: Vec<Algorithm>,
    pub stats: Arc<Stats>,
}

/// The arbiters and the actor maps.
pub struct Directory {
    arbiters: Vec<ArbiterHandle>,
    systems: Vec<actix_rt::System>,
    shared: Arc<ActorShared>,
}

impl Directory {
    /// Starts `n` arbiter threads.
    pub fn start(n: usize, parts: SharedParts) -> Self {
        let mut arbiters = Vec::with_capacity(n);
        let mut systems = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("edge-actors-{i}"))
                .spawn(move || {
                    let sys = actix_rt::System::new();
                    let _ = tx.send((actix_rt::System::current(), actix_rt::Arbiter::current()));
                    let _ = sys.run();
                })
                .expect("spawning an actor thread");
            let (sys, arb) = rx.recv().expect("actor thread started");
            systems.push(sys);
            arbiters.push(arb);
        }
        let shards: Arc<[Shard]> = (0..n).map(|_| Mutex::new(HashMap::new())).collect();
        let shared = Arc::new(ActorShared {
            parts,
            shards,
            hasher: Default::default(),
        });
        Directory {
            arbiters,
            systems,
            shared,
        }
    }

    pub fn shared(&self) -> &Arc<ActorShared> {
        &self.shared
    }

    /// The actor threads.
    pub fn arbiters(&self) -> &[ArbiterHandle] {
        &self.arbiters
    }

    /// The phone's actor, started if it has none (or its last one stopped): on the calling
    /// actor thread when there is one (UDP receive loops run there, so the phone's messages
    /// stay on one thread), else on the phone's shard.
    pub fn get_or_start(&self, id: &Arc<str>) -> Addr<PhoneActor> {
        let s = self.shared.shard_of(id);
        let mut map = self.shared.shards[s].lock();
        if let Some(a) = map.get(id).filter(|a| a.connected()) {
            return a.clone();
        }
        let shared = self.shared.clone();
        let pid = id.clone();
        let addr =
            PhoneActor::start_in_arbiter(&self.arbiters[s], move |_| PhoneActor::new(pid, shared));
        map.insert(id.clone(), addr.clone());
        addr
    }

    /// The phone's actor if it has one.
    pub fn get(&self, id: &str) -> Option<Addr<PhoneActor>> {
        let s = self.shared.shard_of(id);
        self.shared.shards[s]
            .lock()
            .get(id)
            .filter(|a| a.connected())
            .cloned()
    }

    /// Every live actor.
    pub fn all(&self) -> Vec<Addr<PhoneActor>> {
        self.shared
            .shards
            .iter()
            .flat_map(|m| m.lock().values().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Number of live actors.
    pub fn actors(&self) -> usize {
        self.shared.shards.iter().map(|m| m.lock().len()).sum()
    }

    /// Stops every arbiter (and so every actor).
    pub fn stop(&self) {
        for s in &self.systems {
            s.stop();
        }
    }
}
