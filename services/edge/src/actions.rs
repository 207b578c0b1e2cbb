//! Actions other roles ask of this edge through the store: `actions/{node}/{phone}` holds a
//! `PhoneAction` (check-sync with or without reboot). The edge lists its prefix, then
//! watches it; each action is performed once (at most a few at a time, so a fleet-wide
//! reload cannot flood the phones) and its key deleted, guarded by its mod revision so a
//! newer request for the same phone written meanwhile is kept and performed next. An action
//! carrying an id gets a report under `action-results/{id}` for the caller waiting on it.

use std::sync::Arc;

use dialtone_common::clock::unix_ms;
use dialtone_domain::keys;
use dialtone_metrics::Counters;
use dialtone_proto::edge::v1::{
    NotifyResult, PhoneAction, PhoneActionKind, PhoneActionOutcome, PhoneActionResult,
};
use dialtone_store::{
    Compare, Follow, Follower, KeyValue, Op, Store, WatchBatch, WatchEvent, lifecycle::NodeLease,
};
use prost::Message;
use tokio::{sync::Semaphore, task::JoinHandle};
use tracing::{debug, warn};

use crate::{
    api::{check_sync, log_out},
    dispatch::Dispatcher,
    error::EdgeError,
};

/// Actions older than this are dropped unperformed.
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;
/// Actions performed at once.
const CONCURRENCY: usize = 16;

/// Counts of performed actions by outcome.
pub type ActionCounts = Counters<4>;

/// The family of performed actions, labelled in [`PhoneActionOutcome`] order.
pub fn counts() -> ActionCounts {
    Counters::new(
        "dialtone_phone_actions_total",
        "Phone actions (check-sync, log-out) performed for other roles, by outcome.",
        "outcome",
        ["answered", "failed", "not_registered", "expired"],
    )
}

/// How long an unread report stays.
const RESULT_TTL_S: i64 = 60;

/// How a check-sync ended: answered when any contact said 2xx.
fn check_sync_outcome(r: &Result<Vec<NotifyResult>, EdgeError>) -> PhoneActionOutcome {
    match r {
        Ok(results) if results.iter().any(|n| (200..300).contains(&n.status_code)) => {
            PhoneActionOutcome::Answered
        }
        Err(EdgeError::NotRegistered(_)) => PhoneActionOutcome::NotRegistered,
        Ok(_) | Err(_) => PhoneActionOutcome::Failed,
    }
}

/// Performs one action: its report (without the ids and time).
async fn act(handler: &Dispatcher, action: &PhoneAction) -> PhoneActionResult {
    let mut report = PhoneActionResult {
        kind: action.kind,
        reboot: action.reboot,
        ..Default::default()
    };
    let outcome = if action.phone_id.is_empty() {
        PhoneActionOutcome::Failed
    } else if unix_ms() as i64 - action.requested_at_ms > MAX_AGE_MS {
        PhoneActionOutcome::Expired
    } else if action.kind() == PhoneActionKind::LogOut {
        match log_out(handler, &action.phone_id).await {
            Ok(0) => PhoneActionOutcome::NotRegistered,
            Ok(n) => {
                report.contacts_dropped = n;
                PhoneActionOutcome::Answered
            }
            Err(_) => PhoneActionOutcome::Failed,
        }
    } else {
        let r = check_sync(handler, &action.phone_id, action.reboot)
            .await
            .map(|r| r.results);
        let outcome = check_sync_outcome(&r);
        report.results = r.unwrap_or_default();
        outcome
    };
    report.set_outcome(outcome);
    report
}

async fn perform(
    store: Store,
    lease: Arc<NodeLease>,
    handler: Arc<Dispatcher>,
    counts: Arc<ActionCounts>,
    kv: KeyValue,
) {
    let action = match PhoneAction::decode(kv.value.as_slice()) {
        Ok(a) => a,
        Err(e) => {
            warn!(key = %kv.key, error = %e, "undecodable phone action: dropped");
            PhoneAction::default()
        }
    };
    let mut report = act(&handler, &action).await;
    let outcome = report.outcome();
    // Edges report Answered..Expired, the counted labels' order; anything else counts failed.
    let index = (outcome as usize).checked_sub(1).filter(|i| *i < 4);
    counts.count_at(index.unwrap_or(1));
    debug!(phone_id = %action.phone_id, kind = ?action.kind(), reboot = action.reboot, by = %action.requested_by, ?outcome, "phone action performed");
    if valid_action_id(&action.action_id) {
        report.action_id = action.action_id.clone();
        report.phone_id = action.phone_id.clone();
        report.node_id = handler.settings.node_id.clone();
        report.performed_at_ms = unix_ms() as i64;
        let written = async {
            let lease = store.lease_grant(RESULT_TTL_S).await?;
            store
                .put(
                    &keys::action_result(&action.action_id),
                    report.encode_to_vec(),
                    Some(lease),
                )
                .await
        };
        if let Err(e) = written.await {
            warn!(phone_id = %action.phone_id, error = %e, "reporting a phone action failed");
        }
    }
    // Delete only the request performed: a newer one for the phone stays for next time.
    // And only while this process holds the node id: a newer one that claimed it performs
    // the request too, rather than never.
    let guard = Compare::ModRevision {
        key: kv.key.clone(),
        revision: kv.mod_revision,
    };
    if let Err(e) = lease
        .write_if(vec![guard], vec![Op::Delete(kv.key.clone())])
        .await
    {
        warn!(key = %kv.key, error = %e, "deleting a performed phone action failed");
    }
}

/// A report key must stay one path segment of sane length.
pub fn valid_action_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Performs each request as it is listed or written, at most `CONCURRENCY` at once.
struct ActionsFollower {
    store: Store,
    lease: Arc<NodeLease>,
    handler: Arc<Dispatcher>,
    counts: Arc<ActionCounts>,
    limit: Arc<Semaphore>,
}

impl ActionsFollower {
    fn run(&self, kv: KeyValue) {
        let (store, lease, handler, counts, limit) = (
            self.store.clone(),
            self.lease.clone(),
            self.handler.clone(),
            self.counts.clone(),
            self.limit.clone(),
        );
        tokio::spawn(async move {
            let Ok(_permit) = limit.acquire_owned().await else {
                return;
            };
            perform(store, lease, handler, counts, kv).await;
        });
    }
}

impl Follower for ActionsFollower {
    /// Everything waiting now (at start, and whatever a compaction may have hidden).
    fn listed(&mut self, page: Vec<KeyValue>) {
        page.into_iter().for_each(|kv| self.run(kv));
    }

    /// Every new request from the listed revision on (a performed one is deleted).
    fn changed(&mut self, batch: WatchBatch) {
        for ev in batch.events {
            if let WatchEvent::Put(kv) = ev {
                self.run(kv);
            }
        }
    }
}

/// Lists, then watches, `actions/{node}/`.
pub fn spawn(
    store: Store,
    lease: Arc<NodeLease>,
    node: String,
    handler: Arc<Dispatcher>,
    counts: Arc<ActionCounts>,
) -> JoinHandle<()> {
    let follower = ActionsFollower {
        store: store.clone(),
        lease,
        handler,
        counts,
        limit: Arc::new(Semaphore::new(CONCURRENCY)),
    };
    // After an outage everything waiting is listed again, as before the follower: an
    // action whose report or deletion failed then is performed again, not left behind.
    Follow::listing("phone actions", &[&keys::phone_actions(&node)])
        .page(500)
        .relisting_after_errors()
        .spawn(store, follower, Arc::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(codes: &[u32]) -> Result<Vec<NotifyResult>, EdgeError> {
        Ok(codes
            .iter()
            .map(|&status_code| NotifyResult {
                status_code,
                ..Default::default()
            })
            .collect())
    }

    #[test]
    fn a_check_sync_is_answered_when_any_contact_says_2xx() {
        use PhoneActionOutcome::*;
        let cases: &[(Result<Vec<NotifyResult>, EdgeError>, PhoneActionOutcome)] = &[
            (answered(&[200]), Answered),
            (answered(&[408, 202]), Answered),
            (answered(&[408]), Failed),
            (answered(&[481, 503]), Failed),
            (answered(&[]), Failed),
            (Err(EdgeError::NotRegistered("p".into())), NotRegistered),
            (Err(EdgeError::PhoneNotFound("p".into())), Failed),
        ];
        for (r, want) in cases {
            assert_eq!(check_sync_outcome(r), *want, "{r:?}");
        }
    }

    #[test]
    fn action_ids_are_short_hex() {
        for (id, ok) in [
            ("", false),
            ("00ff", true),
            ("0123456789abcdef0123456789abcdef", true),
            ("0123456789abcdef0123456789abcdef0", false),
            ("../x", false),
            ("ab/cd", false),
        ] {
            assert_eq!(valid_action_id(id), ok, "{id}");
        }
    }
}
