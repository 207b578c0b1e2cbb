//! Keeps a node's leases alive, and re-registers the node on new ones when they are lost.

use std::time::{Duration, Instant};

use futures::future::join_all;
use tracing::{info, warn};

use super::Shared;
use crate::{
    LeaseId, LeaseKeepAlive,
    metrics::{self, KeepAliveOutcome},
};

/// What one round of refreshes found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Round {
    /// Every lease refreshed.
    Kept,
    /// etcd said at least one lease no longer exists.
    Expired,
    /// At least one refresh failed or timed out (and none expired).
    Failed,
}

/// The round's outcome from each lease's refresh (`Some(ttl left)`, `None` when it failed).
pub(super) fn round(refreshes: &[Option<i64>]) -> Round {
    if refreshes
        .iter()
        .any(|r| matches!(r, Some(left) if *left <= 0))
    {
        Round::Expired
    } else if refreshes.iter().all(Option::is_some) {
        Round::Kept
    } else {
        Round::Failed
    }
}

/// Keeps the main lease and the binding leases alive, refreshed together at a third of the
/// TTL (at once, not one after another: a hundred refreshes in a row under load can take
/// longer than the TTL); on loss of any, re-registers on new ones.
pub(super) async fn keep(shared: std::sync::Arc<Shared>) {
    let interval = Duration::from_millis((shared.ttl_s as u64 * 1000 / 3).max(100));
    let ttl = Duration::from_secs(shared.ttl_s as u64);
    let mut kept: Vec<LeaseId> = Vec::new();
    let mut keepers: Vec<Option<LeaseKeepAlive>> = Vec::new();
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        let leases = shared.leases();
        if leases != kept {
            keepers = leases.iter().map(|_| None).collect();
            kept = leases.clone();
        }
        let shared = &*shared;
        let opened = join_all(keepers.iter().zip(&leases).map(|(k, id)| async move {
            match k {
                Some(_) => None,
                None => Some(shared.store.lease_keep_alive(*id).await.map_err(|e| {
                    warn!(node = %shared.node_id, lease = %format!("{id:x}"), error = %e, "lease keep-alive could not open");
                })),
            }
        }))
        .await;
        for (k, opened) in keepers.iter_mut().zip(opened) {
            if let Some(opened) = opened {
                *k = opened.ok();
            }
        }
        let limit = interval.max(Duration::from_secs(1));
        let refreshes = join_all(keepers.iter_mut().map(|k| async move {
            match k {
                Some(k) => match tokio::time::timeout(limit, k.refresh()).await {
                    Ok(Ok(left)) => Some(left),
                    Ok(Err(_)) | Err(_) => None,
                },
                None => None,
            }
        }))
        .await;
        for (k, r) in keepers.iter_mut().zip(&refreshes) {
            if r.is_none() {
                *k = None;
            }
        }
        let main = leases[0];
        let lost = match round(&refreshes) {
            Round::Kept => {
                metrics::keep_alive(KeepAliveOutcome::Ok);
                last_ok = Instant::now();
                // Declared lost while etcd was unreachable, yet the leases survived (etcd
                // extends every lease when a new leader is elected): write the owned keys
                // again on them, so nothing a half-done re-registration missed stays
                // missing, and become healthy again.
                if !shared.is_alive() && rewrite(shared, main).await {
                    info!(node = %shared.node_id, lease = %format!("{main:x}"), "lease survived the outage: owned keys written again");
                }
                false
            }
            Round::Expired => {
                warn!(node = %shared.node_id, lease = %format!("{main:x}"), "lease lost: expired");
                true
            }
            Round::Failed => {
                let failed = refreshes.iter().filter(|r| r.is_none()).count();
                warn!(node = %shared.node_id, failed, leases = leases.len(), "lease keep-alive failed");
                metrics::keep_alive(KeepAliveOutcome::Failed);
                last_ok.elapsed() >= ttl
            }
        };
        if lost {
            metrics::keep_alive(KeepAliveOutcome::Lost);
            if shared.mark_lost() {
                warn!(node = %shared.node_id, lease = %format!("{main:x}"), "lease lost: every owned key must be written again");
            }
            if reregister(shared).await {
                last_ok = Instant::now();
            }
        }
    }
}

/// Grants a new main lease and new binding leases and writes every owned key on the main
/// one. Returns whether it succeeded.
async fn reregister(shared: &Shared) -> bool {
    let grants =
        join_all((0..=shared.shard_count()).map(|_| shared.store.lease_grant(shared.ttl_s)))
            .await
            .into_iter()
            .collect::<Result<Vec<LeaseId>, _>>();
    let leases = match grants {
        Ok(l) => l,
        Err(e) => {
            warn!(node = %shared.node_id, error = %e, "new leases could not be granted; retrying");
            return false;
        }
    };
    let main = leases[0];
    shared.install(main, &leases[1..]);
    let ok = rewrite(shared, main).await;
    if ok {
        info!(node = %shared.node_id, lease = %format!("{main:x}"), binding_leases = leases.len() - 1, "node re-registered on a new lease");
    }
    ok
}

/// Writes every owned key on `lease`; on success the node is healthy again and subscribers
/// are told to re-publish. Returns whether it succeeded.
pub(super) async fn rewrite(shared: &Shared, lease: LeaseId) -> bool {
    for (key, value) in shared.owned_keys() {
        if let Err(e) = shared.store.put(&key, value, Some(lease)).await {
            warn!(node = %shared.node_id, key = %key, error = %e, "re-registration write failed; retrying");
            return false;
        }
    }
    shared.mark_alive();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_kept_only_when_every_lease_is() {
        let cases: Vec<(&str, Vec<Option<i64>>, Round)> = vec![
            ("the main lease alone", vec![Some(3)], Round::Kept),
            ("every lease", vec![Some(3), Some(2), Some(3)], Round::Kept),
            (
                "one expired",
                vec![Some(3), Some(0), Some(3)],
                Round::Expired,
            ),
            (
                "expired outweighs failed",
                vec![None, Some(0), Some(3)],
                Round::Expired,
            ),
            ("one failed", vec![Some(3), None, Some(3)], Round::Failed),
            ("the main one failed", vec![None, Some(3)], Round::Failed),
        ];
        for (name, refreshes, want) in cases {
            assert_eq!(round(&refreshes), want, "{name}");
        }
    }
}
