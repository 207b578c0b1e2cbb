//! A node's leases and everything it owns.
//!
//! Each process holds a main lease and hangs every key it owns on it (its membership records
//! `members/{role}/{node}`, an edge's health records), and an edge its bindings too. An edge
//! may also hold binding leases ([`Shards`], `--binding-leases`) and hang each phone's
//! bindings on one of them, chosen by the phone's id ([`NodeLease::binding_lease`]): when
//! the edge dies, etcd revokes each binding lease in a transaction of its own, a few
//! thousand keys each, where one lease for all its bindings is one transaction of all of
//! them (666,000 at a million phones), during which etcd answers nothing else for seconds
//! (`loadtest`'s `lease-bench`).
//!
//! Binding leases are granted [`BINDING_GRACE_S`] longer than the main lease (and more, to
//! go unrefreshed for [`BINDING_REFRESH_S`]), so a dead edge's main lease, with its
//! membership record on it, expires first and is revoked in a
//! transaction of a key or two: the status role sees the edge gone and its phones DEGRADED
//! at the TTL, not after etcd has deleted every binding. Their TTLs are spread over
//! [`BINDING_SPREAD_S`] more, so etcd deletes a dead edge's bindings a few leases at a
//! time and goes on answering lease refreshes meanwhile. Their record (`node-leases/{node}`)
//! hangs on the last, longest-lived one: a process started after the main lease expired
//! still takes over those alive, with their bindings.
//!
//! The keeper (`lifecycle/keeper.rs`) refreshes the main lease at a third of the TTL and
//! the binding leases, all together, every [`BINDING_REFRESH_S`], each on its own (and
//! looks for them among the store's leases in between, at the store's pace), and
//! replaces only a lost one (etcd says TTL 0; the main lease that no refresh reached for a
//! whole TTL leaves the node unhealthy but is kept, since a slow etcd still holds it and
//! every key on it): the main lease lost, the node is unhealthy until it has written every
//! owned key again on a new one ([`NodeLease::generation`] counts those rewrites); a lease that
//! bindings hang on lost, its counter in [`NodeLease::binding_generations`] moves and the
//! edge writes those bindings again. Graceful shutdown revokes the leases, so the node's
//! keys vanish at once instead of after the TTL; or refreshes them one last time and leaves
//! them to expire ([`NodeLease::leave`]), so the next process with the same node id,
//! started within the TTL (a restart, a rollout), takes the leases and every key on them
//! over ([`NodeLease::resume`]): an edge's bindings survive.
//!
//! An edge claims its node id before it takes anything over (`lifecycle/claim.rs`), and
//! writes for the node only while it holds the claim: a process still running with that
//! node id is fenced, writes nothing more, revokes nothing and stops.

mod claim;
mod keeper;
mod listing;
pub mod shards;

pub use shards::{
    BINDING_GRACE_S, BINDING_REFRESH_S, BINDING_SPREAD_S, binding_ttl_s, is_binding_ttl,
};

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
};

use futures::future::join_all;
use parking_lot::Mutex;
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

use self::claim::{Claim, Held};
use crate::{Compare, LeaseId, Op, Store, StoreError};

/// The binding leases a node holds besides its main lease.
#[derive(Clone, Copy, Debug)]
pub struct Shards<'a> {
    /// How many (0: bindings hang on the main lease).
    pub count: usize,
    /// The key their ids are recorded under ([`shards::encode_ids`]), on the last of them,
    /// for the next process with this node id to take them over.
    pub key: &'a str,
}

impl Shards<'_> {
    /// No binding leases.
    pub const NONE: Shards<'static> = Shards { count: 0, key: "" };
}

struct Shared {
    store: Store,
    node_id: String,
    ttl_s: i64,
    lease: AtomicI64,
    /// The binding leases, in shard order; a lost one is replaced in its place.
    shards: Mutex<Arc<[LeaseId]>>,
    /// Where the binding leases are recorded, on the last of them (empty: they are not).
    shards_key: String,
    alive: AtomicBool,
    owned: Mutex<BTreeMap<String, Vec<u8>>>,
    generation: watch::Sender<u64>,
    /// How often each binding lease was replaced (one counter for the main lease when
    /// the bindings hang on it).
    binding_generations: watch::Sender<Arc<[u64]>>,
    /// Wakes the keeper for a round now.
    check: Notify,
    /// The node id's claim, when this process fences the ones it replaces (an edge).
    claim: Option<Arc<Claim>>,
    /// Never sent: what [`NodeLease::fenced`] gives when there is no claim.
    unfenced: watch::Sender<bool>,
}

impl Shared {
    /// Writes `ops` for the node if `compares` hold: under its claim when it has one.
    /// Returns whether they held.
    async fn write_if(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool, StoreError> {
        match &self.claim {
            Some(c) => c.write_if(&self.store, compares, ops).await,
            None => Ok(self.store.txn(compares, ops).await?.succeeded),
        }
    }

    /// Writes `ops` for the node (see [`Shared::write_if`]).
    async fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.write_if(Vec::new(), ops).await.map(drop)
    }

    /// Writes one key for the node (see [`Shared::write`]).
    async fn put(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<(), StoreError> {
        let put = Op::Put {
            key: key.to_owned(),
            value,
            lease: Some(lease),
        };
        self.write(vec![put]).await
    }

    fn is_fenced(&self) -> bool {
        self.claim.as_ref().is_some_and(|c| c.is_fenced())
    }

    fn main(&self) -> LeaseId {
        self.lease.load(Ordering::Acquire)
    }

    /// Puts new leases in at `replaced` (indexes into [`Shared::leases`]).
    fn replace(&self, replaced: &[(usize, LeaseId)]) {
        let mut shards = self.shards.lock().to_vec();
        let mut main = self.main();
        for (i, id) in replaced {
            match i {
                0 => main = *id,
                i => shards[i - 1] = *id,
            }
        }
        self.install(main, &shards);
    }

    /// Writes the record of the binding leases on the last of them, the longest-lived
    /// (so the next process with this node id finds those still alive after its main lease
    /// expired), again if the leases changed meanwhile (the keeper replaced one).
    async fn write_record(&self) -> Result<(), StoreError> {
        if self.shards_key.is_empty() {
            return Ok(());
        }
        loop {
            let before = self.leases();
            let binding = &before[1..];
            let Some(&last) = binding.last() else {
                return Ok(());
            };
            let record = shards::encode_ids(binding);
            self.put(&self.shards_key, record, last).await?;
            if self.leases() == before {
                return Ok(());
            }
        }
    }

    /// Tells subscribers the bindings of binding leases `shards` must be written again.
    fn bindings_replaced(&self, shards: &[usize]) {
        self.binding_generations.send_modify(|g| {
            let mut next = g.to_vec();
            for s in shards {
                if let Some(n) = next.get_mut(*s) {
                    *n += 1;
                }
            }
            *g = next.into();
        });
    }

    fn shard_count(&self) -> usize {
        self.shards.lock().len()
    }

    /// The main lease, then the binding leases.
    fn leases(&self) -> Vec<LeaseId> {
        let shards = self.shards.lock().clone();
        std::iter::once(self.lease.load(Ordering::Acquire))
            .chain(shards.iter().copied())
            .collect()
    }

    /// Switches to new leases (the record of the binding leases is the caller's to write).
    fn install(&self, main: LeaseId, shards: &[LeaseId]) {
        self.lease.store(main, Ordering::Release);
        *self.shards.lock() = shards.into();
    }

    fn owned_keys(&self) -> Vec<(String, Vec<u8>)> {
        self.owned
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Marks the node unhealthy; returns whether it was healthy.
    fn mark_lost(&self) -> bool {
        self.alive.swap(false, Ordering::AcqRel)
    }

    /// Marks the node healthy and tells subscribers to re-publish.
    fn mark_alive(&self) {
        self.alive.store(true, Ordering::Release);
        self.generation.send_modify(|g| *g += 1);
    }
}

/// The node's leases; see the module docs.
pub struct NodeLease {
    shared: Arc<Shared>,
    keeper: JoinHandle<()>,
}

impl NodeLease {
    /// Grants the node's lease and starts keeping it alive.
    pub async fn start(store: Store, node_id: &str, ttl_s: i64) -> Result<Self, StoreError> {
        Self::start_with(store, node_id, ttl_s, Shards::NONE).await
    }

    /// Grants the node's main lease and `shards.count` binding leases, records the binding
    /// leases under `shards.key` and starts keeping them all alive.
    pub async fn start_with(
        store: Store,
        node_id: &str,
        ttl_s: i64,
        shards: Shards<'_>,
    ) -> Result<Self, StoreError> {
        Self::grant_new(store, node_id, ttl_s, shards, None).await
    }

    /// [`NodeLease::start_with`], writing under `claim` when given.
    async fn grant_new(
        store: Store,
        node_id: &str,
        ttl_s: i64,
        shards: Shards<'_>,
        claim: Option<Arc<Claim>>,
    ) -> Result<Self, StoreError> {
        let lease = store.lease_grant(ttl_s).await?;
        let ttls = (0..shards.count).map(|i| binding_ttl_s(ttl_s, i, shards.count));
        let bindings = grant(&store, ttls).await?;
        info!(node = node_id, lease = %format!("{lease:x}"), ttl_s, binding_leases = bindings.len(), "node lease granted");
        let node = Self::keeping(store, node_id, ttl_s, lease, &bindings, shards.key, claim);
        node.record_shards().await?;
        Ok(node)
    }

    /// Takes over the leases of the process this one replaces under the same node id (left
    /// by [`NodeLease::leave`] or by a crash): the main lease `key` hangs on, when it is
    /// still alive and was granted with `ttl_s`, and the binding leases recorded under
    /// `shards.key` that still are, even once the main lease has expired (they outlive it:
    /// [`BINDING_SPREAD_S`]). A lost one is replaced by a new lease (its keys are gone);
    /// they are refreshed at once. With nothing alive, grants new ones as
    /// [`NodeLease::start_with`] does. Returns the node's leases and the keys the previous
    /// process left on the leases taken over.
    ///
    /// First it claims the node id under `claim_key` (`lifecycle/claim.rs`): a process still
    /// running with this node id is fenced from then on (its writes fail,
    /// [`NodeLease::fenced`] turns true for it), and this one writes only while it holds
    /// the claim.
    pub async fn resume(
        store: Store,
        node_id: &str,
        ttl_s: i64,
        key: &str,
        shards: Shards<'_>,
        claim_key: &str,
    ) -> Result<(Self, Vec<String>), StoreError> {
        // Before the previous process's keys are read: what it writes from now on fails,
        // what it wrote before is read.
        let claim = Arc::new(Claim::take(&store, claim_key, node_id).await?);
        // A main lease that is gone, or was granted with another TTL (the flag changed),
        // is not taken over: its keys expire with it and its phones register again, as
        // after a crash. A store that cannot tell is an error: the leases may be alive and
        // hold bindings.
        let previous = store.get(key).await?.map_or(0, |kv| kv.lease);
        let main_taken = previous != 0 && take_over(&store, previous, |t| t == ttl_s).await?;
        // The record hangs on one of the leases it names (on the main lease, written by a
        // release before the spread): one on another lease is not this node's.
        let recorded = match shards.key {
            "" => Vec::new(),
            key => store.get(key).await?.map_or_else(Vec::new, |kv| {
                let ids = shards::parse_ids(&kv.value);
                let own = ids.contains(&kv.lease) || (main_taken && kv.lease == previous);
                if own { ids } else { Vec::new() }
            }),
        };
        // Binding leases not taken over (none wanted, or granted with a TTL that no longer
        // fits) would live on for minutes (`binding_ttl_s`) with their bindings, counted as this
        // node's once it is a member again, though it holds none of those phones: revoked.
        let (recorded, mut abandoned) = match shards.count {
            0 => (Vec::new(), recorded),
            _ => (recorded, Vec::new()),
        };
        let taken = join_all(
            recorded
                .iter()
                .map(|id| take_over(&store, *id, |t| is_binding_ttl(ttl_s, t))),
        )
        .await;
        let mut taken_over = Vec::new();
        if main_taken {
            taken_over.push(previous);
        }
        let mut bindings: Vec<Option<LeaseId>> = Vec::with_capacity(recorded.len());
        for (id, taken) in recorded.iter().zip(taken) {
            if taken? {
                bindings.push(Some(*id));
                taken_over.push(*id);
            } else {
                warn!(node = node_id, lease = %format!("{id:x}"), "a binding lease of the previous process is not taken over: its phones register again");
                bindings.push(None);
                abandoned.push(*id);
            }
        }
        revoke_paced(store.clone(), node_id, abandoned, claim.clone());
        if taken_over.is_empty() {
            return Ok((
                Self::grant_new(store, node_id, ttl_s, shards, Some(claim)).await?,
                Vec::new(),
            ));
        }
        let main = match main_taken {
            true => previous,
            false => store.lease_grant(ttl_s).await?,
        };
        // Lost ones replaced in their shards; more than the previous process held (the
        // setting grew) granted. Fewer: every one it held is kept, so no binding is lost.
        let count = shards.count.max(bindings.len());
        bindings.resize(count, None);
        let wanted: Vec<usize> = (0..count).filter(|i| bindings[*i].is_none()).collect();
        let granted = grant(
            &store,
            wanted.iter().map(|i| binding_ttl_s(ttl_s, *i, count)),
        )
        .await?;
        for (i, id) in wanted.into_iter().zip(granted) {
            bindings[i] = Some(id);
        }
        let bindings: Vec<LeaseId> = bindings.into_iter().map(|b| b.expect("granted")).collect();
        // Kept alive from here on: reading hundreds of thousands of keys may take longer
        // than the leases have left.
        let lease = Self::keeping(
            store.clone(),
            node_id,
            ttl_s,
            main,
            &bindings,
            shards.key,
            Some(claim),
        );
        let held = lease.leases();
        let mut keys = Vec::new();
        for id in &taken_over {
            match store.lease_keys(*id).await {
                Ok(k) => keys.extend(k),
                Err(e) => {
                    // Keys this process cannot name would live on with the leases for ever.
                    warn!(node = node_id, lease = %format!("{id:x}"), error = %e, "the previous process's keys could not be read: revoking its leases and granting new ones");
                    let claim = lease.shared.claim.clone();
                    drop(lease);
                    // Only while the claim is ours: a newer process may have taken these
                    // leases over since. (One that claims between this look and the
                    // revokes is not seen: etcd has no revoke guarded by a key.)
                    if let Some(c) = &claim
                        && c.check(&store).await? == Held::No
                    {
                        return Err(StoreError::Fenced(node_id.to_owned()));
                    }
                    for id in &taken_over {
                        if let Err(e) = store.lease_revoke(*id).await {
                            warn!(node = node_id, lease = %format!("{id:x}"), error = %e, "revoking the previous process's lease failed: its keys expire with it");
                        }
                    }
                    return Ok((
                        Self::grant_new(store, node_id, ttl_s, shards, claim).await?,
                        Vec::new(),
                    ));
                }
            }
        }
        // A lease the keeper found lost while its keys were read took them with it: they
        // are still handed over (the edge skips a key it cannot read), so the keys on the
        // leases alive are taken back or deleted, not left on them for ever.
        if lease.leases() != held {
            warn!(node = node_id, lease = %format!("{main:x}"), "a lease of the previous process was lost while its keys were read: its keys expired with it");
        }
        lease.record_shards().await?;
        info!(node = node_id, lease = %format!("{main:x}"), ttl_s, main_taken_over = main_taken, binding_leases = taken_over.len() - usize::from(main_taken), keys = keys.len(), "node leases taken over from the previous process");
        Ok((lease, keys))
    }

    fn keeping(
        store: Store,
        node_id: &str,
        ttl_s: i64,
        lease: LeaseId,
        bindings: &[LeaseId],
        shards_key: &str,
        claim: Option<Arc<Claim>>,
    ) -> Self {
        let shared = Arc::new(Shared {
            store,
            node_id: node_id.to_owned(),
            ttl_s,
            lease: AtomicI64::new(lease),
            shards: Mutex::new(Arc::from([])),
            shards_key: shards_key.to_owned(),
            alive: AtomicBool::new(true),
            owned: Mutex::new(BTreeMap::new()),
            generation: watch::channel(0).0,
            binding_generations: watch::channel(vec![0; bindings.len().max(1)].into()).0,
            check: Notify::new(),
            claim,
            unfenced: watch::channel(false).0,
        });
        shared.install(lease, bindings);
        let keeper = tokio::spawn(keeper::keep(shared.clone()));
        NodeLease { shared, keeper }
    }

    /// Writes the record of the binding leases (when there are some to record).
    async fn record_shards(&self) -> Result<(), StoreError> {
        if self.shared.shard_count() == 0 {
            return Ok(());
        }
        self.shared.write_record().await
    }

    /// The current main lease id.
    pub fn lease_id(&self) -> LeaseId {
        self.shared.lease.load(Ordering::Acquire)
    }

    /// The shard of phone `phone`: the index of its binding lease, and of its counter in
    /// [`NodeLease::binding_generations`] (0 when the node holds no binding leases).
    pub fn shard_of(&self, phone: &str) -> usize {
        shards::shard_of(phone, self.shared.shard_count())
    }

    /// A counter per binding lease (one for the main lease when the bindings hang on it),
    /// bumped when it was lost and replaced: the bindings of its phones are gone and must
    /// be written again. Counters start at 0, so a subscriber that compares with zeros
    /// misses no replacement made before it subscribed.
    pub fn binding_generations(&self) -> watch::Receiver<Arc<[u64]>> {
        self.shared.binding_generations.subscribe()
    }

    /// Asks the keeper for a round of refreshes now (a write found a lease gone): a lost
    /// lease is replaced without waiting for the next round.
    pub fn check_now(&self) {
        self.shared.check.notify_one();
    }

    /// The lease phone `phone`'s bindings hang on: its binding lease, or the main lease
    /// when the node holds none.
    pub fn binding_lease(&self, phone: &str) -> LeaseId {
        let shards = self.shared.shards.lock();
        match shards.len() {
            0 => self.lease_id(),
            n => shards[shards::shard_of(phone, n)],
        }
    }

    /// Every lease the node holds: the main one, then the binding leases.
    pub fn leases(&self) -> Vec<LeaseId> {
        self.shared.leases()
    }

    /// Whether the lease is known to be alive (false between a loss and re-registration).
    pub fn is_alive(&self) -> bool {
        self.shared.is_alive()
    }

    /// A counter bumped every time the node wrote its owned keys again (on a new main
    /// lease, or after an outage it survived).
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// Turns true once a newer process claimed this node id (`lifecycle/claim.rs`): this
    /// one's writes fail from then on and it must stop. Never for a node without a claim.
    pub fn fenced(&self) -> watch::Receiver<bool> {
        match &self.shared.claim {
            Some(c) => c.fenced(),
            None => self.shared.unfenced.subscribe(),
        }
    }

    /// Writes `ops` for the node in one transaction (its phones' bindings): under its claim
    /// when it has one, so that nothing is written once a newer process claimed the node id
    /// ([`StoreError::Fenced`]).
    pub async fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.shared.write(ops).await
    }

    /// [`NodeLease::write`] if `compares` hold too; returns whether they did.
    pub async fn write_if(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool, StoreError> {
        self.shared.write_if(compares, ops).await
    }

    /// Writes a key on the node's lease and remembers it, so it is written again after a
    /// lost lease.
    pub async fn put_owned(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.shared
            .owned
            .lock()
            .insert(key.to_owned(), value.clone());
        self.shared.put(key, value, self.lease_id()).await
    }

    /// Deletes an owned key and forgets it.
    pub async fn delete_owned(&self, key: &str) -> Result<(), StoreError> {
        self.shared.owned.lock().remove(key);
        self.shared.write(vec![Op::Delete(key.to_owned())]).await
    }

    /// Stops the keeper and revokes the leases: every owned key and binding disappears at
    /// once.
    pub async fn shutdown(&self) {
        self.keeper.abort();
        // The leases may be the newer process's now (taken over): not ours to revoke.
        if let Some(c) = &self.shared.claim
            && !matches!(c.check(&self.shared.store).await, Ok(Held::Yes))
        {
            return;
        }
        // The binding leases first, so the bindings go before the membership record.
        let mut leases = self.leases();
        leases.rotate_left(1);
        for lease in leases {
            match self.shared.store.lease_revoke(lease).await {
                Ok(()) => {
                    info!(node = %self.shared.node_id, lease = %format!("{lease:x}"), "node lease revoked")
                }
                Err(e) => {
                    warn!(node = %self.shared.node_id, lease = %format!("{lease:x}"), error = %e, "lease revoke failed; keys expire with the ttl")
                }
            }
        }
        if let Some(c) = &self.shared.claim {
            c.release(&self.shared.store).await;
        }
    }

    /// Stops refreshing the leases without revoking them, after a last refresh of every one
    /// of them (at once, each as a keeper round refreshes it): the node's keys stay for a
    /// whole TTL, for the next process with this node id to take over
    /// ([`NodeLease::resume`]); if none comes, they expire as after a crash. Without it the
    /// next process would have only what the keeper's last round left of the main lease,
    /// down to two thirds of the TTL. The binding leases are refreshed too so that each
    /// still outlives the main lease: one granted by an older release, with no room to go
    /// unrefreshed, lives only [`BINDING_GRACE_S`] longer than the TTL.
    pub async fn leave(&self) {
        self.keeper.abort();
        if self.shared.is_fenced() {
            return;
        }
        let leases = self.leases();
        let limit = shards::refresh_limit(self.shared.ttl_s);
        let shared = &*self.shared;
        // Each as a keeper round refreshes it: the TTL left, 0 when gone, none when failed.
        let last = join_all(
            leases
                .iter()
                .map(|&id| keeper::refresh_once(shared, id, limit)),
        )
        .await;
        // The next process claims the node id again; none finds a claim left behind.
        if let Some(c) = &shared.claim {
            c.release(&shared.store).await;
        }
        let node = &shared.node_id;
        let lease = format!("{:x}", leases[0]);
        let bindings = &last[1..];
        let refreshed = bindings.iter().filter(|r| r.is_some_and(|l| l > 0)).count();
        match last[0] {
            Some(ttl_s) if ttl_s > 0 => {
                info!(node = %node, lease = %lease, ttl_s, binding_leases = bindings.len(), refreshed, "node leases refreshed and left to expire: a restart within the ttl takes them over")
            }
            Some(_) => {
                warn!(node = %node, lease = %lease, "node lease already gone when left")
            }
            None => {
                warn!(node = %node, lease = %lease, limit_ms = limit.as_millis() as u64, "node lease left without a last refresh: a restart must come within what the last one left")
            }
        }
    }
}

impl Drop for NodeLease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// How long [`revoke_paced`] waits between two revokes: about the pace a dead edge's 256
/// binding leases expire at ([`BINDING_SPREAD_S`]).
const REVOKE_PACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Revokes `leases` one after another in a task of its own, [`REVOKE_PACE`] apart: each
/// revoke of thousands of keys holds etcd's apply loop, and etcd 3.5 makes every lease
/// refresh wait for it (1 s at most), so they must not queue up in etcd at once (see
/// [`BINDING_SPREAD_S`]). One already gone is fine.
fn revoke_paced(store: Store, node_id: &str, leases: Vec<LeaseId>, claim: Arc<Claim>) {
    if leases.is_empty() {
        return;
    }
    let node_id = node_id.to_owned();
    tokio::spawn(async move {
        let mut revoked = 0;
        for (i, id) in leases.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(REVOKE_PACE).await;
            }
            // A newer process holds the node id now: what is left is its to judge.
            if claim.is_fenced() {
                break;
            }
            match store.lease_revoke(*id).await {
                Ok(()) => revoked += 1,
                Err(StoreError::LeaseNotFound(_)) => {}
                Err(e) => {
                    warn!(node = %node_id, lease = %format!("{id:x}"), error = %e, "revoking a binding lease not taken over failed: it expires with its ttl")
                }
            }
        }
        info!(node = %node_id, revoked, of = leases.len(), "binding leases not taken over revoked");
    });
}

/// Grants a lease of each TTL in `ttls` at once.
async fn grant(store: &Store, ttls: impl Iterator<Item = i64>) -> Result<Vec<LeaseId>, StoreError> {
    join_all(ttls.map(|ttl_s| store.lease_grant(ttl_s)))
        .await
        .into_iter()
        .collect()
}

/// Refreshes lease `id` when it is alive and was granted with a TTL `ttl_fits`; returns
/// whether it was (and so is now this process's).
async fn take_over(
    store: &Store,
    id: LeaseId,
    ttl_fits: impl Fn(i64) -> bool,
) -> Result<bool, StoreError> {
    match store.lease_info(id).await? {
        Some(i) if ttl_fits(i.granted_ttl_s) => {
            // It may expire between the two calls: gone, not an error.
            match store.lease_keep_alive(id).await {
                Ok(mut k) => Ok(k.refresh().await? > 0),
                Err(StoreError::LeaseNotFound(_)) => Ok(false),
                Err(e) => Err(e),
            }
        }
        _ => Ok(false),
    }
}
