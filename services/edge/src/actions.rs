//! Actions other roles ask of this edge through the store: `actions/{node}/{phone}` holds a
//! `PhoneAction` (check-sync with or without reboot). The edge lists its prefix, then
//! watches it; each action is performed once (at most a few at a time, so a fleet-wide
//! reload cannot flood the phones) and its key deleted, guarded by its mod revision so a
//! newer request for the same phone written meanwhile is kept and performed next.

use std::{sync::Arc, time::Duration};

use dialtone_proto::edge::v1::PhoneAction;
use dialtone_store::{Compare, KeyValue, Op, Store, StoreError, WatchEvent};
use prost::Message;
use tokio::{sync::Semaphore, task::JoinHandle};
use tracing::{debug, info, warn};

use crate::{api::check_sync, error::EdgeError, handler::Handler, metrics::Outcomes, unix_ms};

/// Actions older than this are dropped unperformed.
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;
/// Actions performed at once.
const CONCURRENCY: usize = 16;

/// Counts of performed actions by outcome.
pub type ActionCounts = Outcomes<4>;

/// The family of performed actions.
pub fn counts() -> ActionCounts {
    Outcomes::new(
        "dialtone_phone_actions_total",
        "Check-sync requests performed for other roles, by outcome.",
        ["answered", "failed", "not_registered", "expired"],
    )
}

/// The key prefix of a node's actions.
pub fn prefix(node: &str) -> String {
    format!("actions/{node}/")
}

async fn perform(store: Store, handler: Arc<Handler>, counts: Arc<ActionCounts>, kv: KeyValue) {
    let action = match PhoneAction::decode(kv.value.as_slice()) {
        Ok(a) => a,
        Err(e) => {
            warn!(key = %kv.key, error = %e, "undecodable phone action: dropped");
            PhoneAction::default()
        }
    };
    let outcome = if action.phone_id.is_empty() {
        "failed"
    } else if unix_ms() as i64 - action.requested_at_ms > MAX_AGE_MS {
        "expired"
    } else {
        match check_sync(&handler, &action.phone_id, action.reboot).await {
            Ok(r)
                if r.results
                    .iter()
                    .any(|n| (200..300).contains(&n.status_code)) =>
            {
                "answered"
            }
            Ok(_) => "failed",
            Err(EdgeError::NotRegistered(_)) => "not_registered",
            Err(_) => "failed",
        }
    };
    counts.count(outcome);
    debug!(phone_id = %action.phone_id, reboot = action.reboot, by = %action.requested_by, outcome, "phone action performed");
    // Delete only the request performed: a newer one for the phone stays for next time.
    let guard = Compare::ModRevision {
        key: kv.key.clone(),
        revision: kv.mod_revision,
    };
    if let Err(e) = store
        .txn(vec![guard], vec![Op::Delete(kv.key.clone())])
        .await
    {
        warn!(key = %kv.key, error = %e, "deleting a performed phone action failed");
    }
}

/// Lists, then watches, `actions/{node}/`.
pub fn spawn(
    store: Store,
    node: String,
    handler: Arc<Handler>,
    counts: Arc<ActionCounts>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        let prefix = prefix(&node);
        let run = |kv: KeyValue| {
            let (store, handler, counts, limit) = (
                store.clone(),
                handler.clone(),
                counts.clone(),
                limit.clone(),
            );
            tokio::spawn(async move {
                let Ok(_permit) = limit.acquire_owned().await else {
                    return;
                };
                perform(store, handler, counts, kv).await;
            });
        };
        loop {
            // Everything waiting now, then every new request from that revision on.
            let revision = match store
                .list_pages(&prefix, 500, |kvs| kvs.into_iter().for_each(&run))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "listing phone actions failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut watch = match store.watch(&prefix, revision + 1).await {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "phone actions watch could not open; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                match watch.next().await {
                    Ok(Some(batch)) => {
                        for ev in batch.events {
                            if let WatchEvent::Put(kv) = ev {
                                run(kv);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(StoreError::Compacted { .. }) => {
                        info!("phone actions watch compacted: listing again");
                        break;
                    }
                    Err(e) => {
                        warn!(error = %e, "phone actions watch failed; listing again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
        }
    })
}
