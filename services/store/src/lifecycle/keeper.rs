//! Keeps a node's leases alive, each on its own: a lease is lost when etcd says it expired,
//! and only a lost lease is replaced. One that no refresh reached for a whole TTL is stale:
//! the node is unhealthy (its main lease's keys may be gone), but the lease is kept and
//! refreshed on, because etcd that is slow, not gone, still holds it and every key on it.
//! Replacing it then would abandon it with its bindings still on it: etcd deletes them all
//! when it expires (seconds of stall at 300,000 keys), and the edge writes them all again,
//! load that slows etcd further. `fleet-bench`'s power cut at 500,000 phones saw that
//! spiral: every node's leases "lost" 24 to 29 times while etcd was merely busy. A stale
//! lease is looked up (`TimeToLive`) each round, so one whose refreshes fail for another
//! reason while etcd answers is still found gone and replaced.
//! A lost main lease is replaced and the owned keys written again on the new one; a lost
//! binding lease is replaced in its shard and its phones' bindings written again
//! ([`super::NodeLease::binding_generations`]). Replacing every lease when one is lost
//! would abandon the others, whose bindings then expire before they are all written
//! again: `fleet-bench` saw 669,000 phones OFFLINE that way, at a million phones, when the
//! refreshes of the edges left alive waited behind etcd deleting a dead edge's bindings.
//! Binding leases are granted [`super::BINDING_REFRESH_S`] longer and refreshed all
//! together that much less often than the main lease ([`binding_schedule`]): 256 of them at a
//! third of the TTL were most of what an edge sent etcd in steady state. Between those
//! refreshes the keeper looks for them among the store's leases (`listing.rs`), so one
//! revoked behind the node's back is replaced a round after the next listing (every round
//! up to 5,000 leases in the store), not at its next refresh.
//! An edge's keeper also reads its node id's claim each round, beside the refreshes (a slow
//! read must not delay them); a newer process's claim, or none, fences the process and the
//! keeper stops: the leases are the newer process's to keep.

use std::time::{Duration, Instant};

use futures::future::join_all;
use tracing::{info, warn};

use super::{
    BINDING_REFRESH_S, Shared,
    listing::{Listed, Listing},
    shards::{keeper_round, refresh_limit, unrefreshed_for},
};
use crate::{
    LeaseId, LeaseKeepAlive, StoreError,
    metrics::{self, KeepAliveOutcome},
};

/// What became of one lease in a round of refreshes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fate {
    Kept,
    /// The refresh failed, but the lease was refreshed within the TTL: it may still live.
    Failed,
    /// Nothing refreshed it for a whole TTL: it may have expired, or etcd is slow. The
    /// node is unhealthy until a refresh succeeds (or says it is gone), but it is kept.
    Stale,
    /// etcd said it no longer exists.
    Lost,
}

/// A lease's fate from its refresh (`Some(ttl left)`, `None` when it failed), how long ago
/// it was last refreshed and its TTL.
pub(super) fn fate(refresh: Option<i64>, since_ok: Duration, ttl: Duration) -> Fate {
    match refresh {
        Some(left) if left > 0 => Fate::Kept,
        Some(_) => Fate::Lost,
        None if since_ok >= ttl => Fate::Stale,
        None => Fate::Failed,
    }
}

/// Which binding leases are refreshed together, and how long they may go between two such
/// rounds, from the TTL each last answered (none: not refreshed yet) when the main lease's
/// is `ttl_s`: those granted room to go unrefreshed for at least half of
/// [`BINDING_REFRESH_S`] ([`unrefreshed_for`]), as long as the least of them allows. The
/// others, not refreshed yet or granted by a release without that room, are refreshed every
/// round (were they in, none could go longer than the least of them).
pub(super) fn binding_schedule(ttls: &[Option<Duration>], ttl_s: i64) -> (Duration, Vec<bool>) {
    let least = Duration::from_secs(BINDING_REFRESH_S as u64 / 2);
    let room: Vec<Option<Duration>> = ttls
        .iter()
        .map(|t| t.map(|t| unrefreshed_for(t, ttl_s)).filter(|r| *r >= least))
        .collect();
    let gap = room.iter().flatten().min().copied().unwrap_or_default();
    (gap, room.iter().map(Option::is_some).collect())
}

/// One lease as the keeper keeps it.
struct Kept {
    id: LeaseId,
    stream: Option<LeaseKeepAlive>,
    last_ok: Instant,
    /// The TTL its last refresh answered (its granted TTL); none before one.
    ttl: Option<Duration>,
}

/// Refreshes the main lease at a third of the TTL, and the binding leases all at once
/// (one after another, a hundred refreshes under load can take longer than the TTL) as
/// seldom as their TTLs allow ([`binding_schedule`]); a lease whose refresh failed at the next
/// round; every lease at once when told one may be gone
/// ([`super::NodeLease::check_now`]). On rounds between the binding leases' refreshes,
/// lists the store's leases at the store's pace and asks about a binding lease the list
/// lacked the round after (`listing.rs`). Replaces what is lost.
pub(super) async fn keep(shared: std::sync::Arc<Shared>) {
    let shared = &*shared;
    let interval = keeper_round(shared.ttl_s);
    let ttl = Duration::from_secs(shared.ttl_s as u64);
    let limit = refresh_limit(shared.ttl_s);
    let mut kept: Vec<Kept> = Vec::new();
    let mut bindings_refreshed: Option<Instant> = None;
    let mut listing = Listing::new();
    loop {
        let checking = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            _ = shared.check.notified() => true,
        };
        let leases = shared.leases();
        let fresh = |id: &LeaseId| Kept {
            id: *id,
            stream: None,
            last_ok: Instant::now(),
            ttl: None,
        };
        if kept.len() != leases.len() {
            kept = leases.iter().map(fresh).collect();
        }
        for (k, id) in kept.iter_mut().zip(&leases) {
            if k.id != *id {
                *k = fresh(id);
            }
        }
        let ttls: Vec<Option<Duration>> = kept.iter().skip(1).map(|k| k.ttl).collect();
        let (gap, together) = binding_schedule(&ttls, shared.ttl_s);
        let bindings_due = checking || bindings_refreshed.is_none_or(|at| at.elapsed() >= gap);
        if bindings_due {
            bindings_refreshed = Some(Instant::now());
        }
        // The main lease; a binding lease refreshed with the others when they are due, else
        // every round, and at the next round when its last refresh failed (it has no
        // keep-alive open then).
        let due =
            |i: usize, k: &Kept| i == 0 || bindings_due || k.stream.is_none() || !together[i - 1];
        let refreshing: Vec<bool> = kept.iter().enumerate().map(|(i, k)| due(i, k)).collect();
        // Futures for the due leases only: a refresh's future is large (the keep-alive's
        // gRPC call), and one built for each of an edge's hundreds of leases every round,
        // due or not, cost it page faults and copies on every round.
        let refreshes = join_all(
            kept.iter_mut()
                .zip(&refreshing)
                .enumerate()
                .filter(|(_, (_, is_due))| **is_due)
                .map(|(i, (k, _))| async move { (i, refresh(shared, k, limit).await) }),
        );
        // Beside the refreshes, never before them (a slow look would delay them): a newer
        // process claimed the node id? The leases are then its to keep (it took them over)
        // or to let expire, not this one's. An idle node finds out here, a busy one at its
        // next write.
        let looked = async {
            if let Some(c) = &shared.claim {
                let _ = tokio::time::timeout(limit, c.check(&shared.store)).await;
            }
        };
        // Beside them too, on rounds that leave binding leases unrefreshed: is each still
        // among the store's leases (`listing.rs`)?
        let listing_due = listing.due(&refreshing);
        let listed = async {
            if !listing_due {
                return None;
            }
            Some(
                match tokio::time::timeout(limit, shared.store.lease_ids()).await {
                    Ok(Ok(ids)) => Ok(ids),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {limit:?}")),
                },
            )
        };
        // And the leases the last listing lacked, asked whether they live.
        let suspects = listing.take_suspects();
        let asked = join_all(
            suspects
                .iter()
                .map(|&id| tokio::time::timeout(limit, shared.store.lease_info(id))),
        );
        let (refreshes, (), listed, answers) = tokio::join!(refreshes, looked, listed, asked);
        if shared.is_fenced() {
            return;
        }
        let now = Instant::now();
        // A suspect gone: lost, and refreshed next round (its keep-alive closed) should
        // its replacement not be granted this one.
        let mut lost: Vec<usize> = suspects
            .iter()
            .zip(answers)
            .filter(|(_, answer)| matches!(answer, Ok(Ok(None))))
            .filter_map(|(id, _)| kept.iter().position(|k| k.id == *id))
            .collect();
        for &i in &lost {
            kept[i].stream = None;
        }
        let mut stale = Vec::new();
        let mut failed = 0;
        for (i, refreshed) in refreshes {
            let k = &mut kept[i];
            match fate(refreshed, now - k.last_ok, k.ttl.unwrap_or(ttl)) {
                Fate::Kept => {
                    k.last_ok = now;
                    k.ttl = refreshed.map(|left| Duration::from_secs(left.max(0) as u64));
                }
                Fate::Failed => {
                    k.stream = None;
                    failed += 1;
                }
                Fate::Stale => {
                    k.stream = None;
                    failed += 1;
                    stale.push(i);
                    if i == 0 && shared.mark_lost() {
                        warn!(node = %shared.node_id, "main lease not refreshed for a whole ttl: unhealthy until etcd answers");
                    }
                }
                Fate::Lost => {
                    k.stream = None;
                    lost.push(i);
                }
            }
        }
        // Refreshes that fail for another reason than a slow etcd (a keep-alive that cannot
        // open): ask etcd whether a stale lease still lives.
        let asked = join_all(stale.iter().map(|&i| {
            let id = kept[i].id;
            tokio::time::timeout(limit, shared.store.lease_info(id))
        }))
        .await;
        for (&i, answer) in stale.iter().zip(asked) {
            if let Ok(Ok(None)) = answer {
                lost.push(i);
            }
        }
        // A suspect the round also refreshed may be in twice.
        lost.sort_unstable();
        lost.dedup();
        let settled: Vec<bool> = (0..kept.len())
            .map(|i| refreshing[i] || lost.binary_search(&i).is_ok())
            .collect();
        match listing.absorb(listed, &leases, &settled) {
            Listed::Skipped | Listed::Quiet => {}
            Listed::FirstFailure(error) => {
                warn!(node = %shared.node_id, error = %error, "listing the store's leases failed: listing less often, and a binding lease revoked behind this node may be found only at its next refresh")
            }
            Listed::Lacking { asked, of } => {
                let asked: Vec<String> = asked.iter().map(|id| format!("{id:x}")).collect();
                info!(node = %shared.node_id, lacking = of, asking = %asked.join(","), "binding leases not among the store's leases: asking whether they live");
            }
        }
        let main = leases[0];
        if lost.is_empty() && failed == 0 {
            metrics::keep_alive(KeepAliveOutcome::Ok);
            // Declared lost while etcd was unreachable, yet the main lease survived (etcd
            // extends every lease when a new leader is elected), or a re-registration was
            // cut short: write the owned keys again on it and become healthy again.
            if !shared.is_alive() && rewrite(shared, main).await {
                info!(node = %shared.node_id, lease = %format!("{main:x}"), "owned keys written again: the node is healthy");
            }
            continue;
        }
        if failed > 0 {
            warn!(node = %shared.node_id, failed, leases = leases.len(), "lease keep-alive failed");
            metrics::keep_alive(KeepAliveOutcome::Failed);
        }
        if lost.is_empty() {
            continue;
        }
        metrics::keep_alive(KeepAliveOutcome::Lost);
        warn!(node = %shared.node_id, lease = %format!("{main:x}"), lost = lost.len(), main_lost = lost.contains(&0), "lease lost: expired");
        replace(shared, &lost).await;
    }
}

/// One refresh of lease `id` outside the keeper's rounds (a node leaving its leases), as a
/// round's [`refresh`] does it: the TTL left, 0 when the lease is gone, none when it failed.
pub(super) async fn refresh_once(shared: &Shared, id: LeaseId, limit: Duration) -> Option<i64> {
    let mut k = Kept {
        id,
        stream: None,
        last_ok: Instant::now(),
        ttl: None,
    };
    refresh(shared, &mut k, limit).await
}

/// Refreshes one lease, opening its keep-alive first when it has none; returns the TTL
/// left (0 when the lease is gone, a keep-alive that cannot open for it included), none
/// when the refresh failed.
async fn refresh(shared: &Shared, k: &mut Kept, limit: Duration) -> Option<i64> {
    if k.stream.is_none() {
        // Bounded as the refresh is: opening one retries for seconds.
        let Ok(opened) = tokio::time::timeout(limit, shared.store.lease_keep_alive(k.id)).await
        else {
            return None;
        };
        match opened {
            Ok(stream) => k.stream = Some(stream),
            Err(StoreError::LeaseNotFound(_)) => return Some(0),
            Err(e) => {
                warn!(node = %shared.node_id, lease = %format!("{:x}", k.id), error = %e, "lease keep-alive could not open");
                return None;
            }
        }
    }
    let stream = k.stream.as_mut()?;
    match tokio::time::timeout(limit, stream.refresh()).await {
        Ok(Ok(left)) => Some(left),
        Ok(Err(_)) | Err(_) => None,
    }
}

/// Replaces the leases at `lost` (indexes into [`Shared::leases`]: 0 the main lease, `i`
/// binding lease `i - 1`) with new ones, writes the owned keys again when the main lease
/// was among them (else the record of the binding leases), and asks for the lost binding
/// leases' bindings to be written again. What fails is retried at the next round.
async fn replace(shared: &Shared, lost: &[usize]) {
    let main_lost = lost.contains(&0);
    if main_lost && shared.mark_lost() {
        warn!(node = %shared.node_id, "main lease lost: every owned key must be written again");
    }
    let grants = join_all(lost.iter().map(|i| {
        let ttl_s = match i {
            0 => shared.ttl_s,
            i => super::binding_ttl_s(shared.ttl_s, i - 1, shared.shard_count()),
        };
        shared.store.lease_grant(ttl_s)
    }))
    .await;
    let mut granted = Vec::with_capacity(lost.len());
    for (i, g) in lost.iter().zip(grants) {
        match g {
            Ok(id) => granted.push((*i, id)),
            Err(e) => {
                warn!(node = %shared.node_id, error = %e, "new lease could not be granted; retrying");
                // Granted ones are used; the rest are found lost again next round.
            }
        }
    }
    if granted.is_empty() {
        return;
    }
    let shards: Vec<usize> = granted
        .iter()
        .filter(|(i, _)| *i > 0)
        .map(|(i, _)| i - 1)
        .collect();
    shared.replace(&granted);
    let main = shared.main();
    let main_replaced = granted.iter().any(|(i, _)| *i == 0);
    if main_replaced {
        if rewrite(shared, main).await {
            info!(node = %shared.node_id, lease = %format!("{main:x}"), "node re-registered on a new lease");
        }
    } else if !main_lost && let Err(e) = shared.write_record().await {
        // The owned record already names the new leases: unhealthy until the next round
        // writes every owned key again.
        warn!(node = %shared.node_id, error = %e, "recording the new binding leases failed; retrying");
        shared.mark_lost();
    }
    if !shards.is_empty() {
        info!(node = %shared.node_id, binding_leases = shards.len(), "binding leases replaced: their bindings are written again");
        shared.bindings_replaced(&shards);
    } else if main_replaced && shared.shard_count() == 0 {
        // The bindings hung on the main lease.
        shared.bindings_replaced(&[0]);
    }
}

/// Writes the record of the binding leases (a process that takes them over finds them
/// through it) and every owned key on `lease`; on success the node is healthy again.
/// Returns whether it succeeded. The owned keys are written even when the record is not
/// (its lease lost too and not replaced yet): the node's membership does not wait for it.
pub(super) async fn rewrite(shared: &Shared, lease: LeaseId) -> bool {
    let recorded = shared.write_record().await;
    if let Err(e) = &recorded {
        warn!(node = %shared.node_id, error = %e, "recording the binding leases failed; retrying");
    }
    for (key, value) in shared.owned_keys() {
        if let Err(e) = shared.put(&key, value, lease).await {
            warn!(node = %shared.node_id, key = %key, error = %e, "re-registration write failed; retrying");
            return false;
        }
    }
    if recorded.is_err() {
        return false;
    }
    shared.mark_alive();
    true
}

#[cfg(test)]
#[path = "keeper_tests.rs"]
mod tests;
