//! Restart, resync and log-out of a phone from the config API. Roles coordinate only
//! through the store, so the request is handed to the edge holding the phone's
//! registration as a `PhoneAction` under `actions/{node}/{phone}`; the edge performs it
//! and writes its report under `action-results/{action_id}`, which this side watches for.
//!
//! A check-sync goes to ONE edge (the phone must reboot or fetch once, not twice): the
//! primary's when it holds a binding, else the secondary's, else any other holder. An edge
//! that reports the phone not registered, or does not report in time (it may have just
//! died, its bindings not yet expired), is passed over for the next and listed as such. A
//! log-out goes to every holder at once. Only when no edge reports at all is the call an
//! error (DEADLINE_EXCEEDED).

use std::time::Duration;

use dialtone_domain::{
    actions::{Act, MAX_TIMEOUT, by_placement, holders, request},
    keys, placement,
};
use dialtone_proto::{
    config::v1::{PhoneActionResponse, Site},
    edge::v1::{PhoneActionOutcome, PhoneActionResult},
};
use dialtone_store::{Compare, Op, WatchEvent};
use prost::Message;
use tracing::{info, warn};

use crate::{
    ConfigCore,
    error::{ConfigError, Result},
};

/// The most an edge that is not the last candidate gets before the next is asked: more
/// than the edge's default NOTIFY timeout (8 s), so a slow phone is not asked twice when
/// the caller's timeout allows; with less, each candidate left gets an equal share.
const HOP_WAIT: Duration = Duration::from_secs(9);

/// How long a phone's edges may take to report, from a request's `timeout_ms` (0: the
/// default; above the most: refused, naming the field).
pub fn timeout_of(ms: u32) -> Result<Duration> {
    match ms {
        0 => Ok(dialtone_domain::actions::DEFAULT_TIMEOUT),
        ms if u64::from(ms) > MAX_TIMEOUT.as_millis() as u64 => Err(ConfigError::invalid(
            "timeout_ms",
            format!("must be at most {}", MAX_TIMEOUT.as_millis()),
        )),
        ms => Ok(Duration::from_millis(u64::from(ms))),
    }
}

impl ConfigCore {
    /// The phone's primary then secondary edge (empty when its site has no edge group).
    async fn placement_of(&self, site_id: &str, phone_id: &str) -> Result<Vec<String>> {
        let site: Site = match self.get_site(site_id).await {
            Ok(s) => s,
            Err(ConfigError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let group = match self.get_edge_group(&site.edge_group_id).await {
            Ok(g) => g,
            Err(ConfigError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(placement::node_ids(phone_id, &group.edges, true))
    }

    /// Restarts, resyncs or logs out phone `id` through its edges and reports what each
    /// edge asked did, waiting at most `timeout` in all.
    pub async fn act_on_phone(
        &self,
        id: &str,
        act: Act,
        timeout: Duration,
        requested_by: &str,
    ) -> Result<PhoneActionResponse> {
        let phone = self.get_phone(id).await?;
        let order = self.placement_of(&phone.site_id, id).await?;
        let nodes = by_placement(holders(&self.store, id).await?, &order);
        if nodes.is_empty() {
            return Err(ConfigError::NotRegistered { id: id.to_owned() });
        }
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_TIMEOUT);
        let no_report = |node: &str| {
            let mut r = PhoneActionResult {
                phone_id: id.to_owned(),
                node_id: node.to_owned(),
                reboot: act == Act::Restart,
                ..Default::default()
            };
            r.set_outcome(PhoneActionOutcome::NoReport);
            r.set_kind(act.kind());
            r
        };
        let mut results = Vec::new();
        if act == Act::LogOut {
            // Every holder at once: each report is awaited side by side.
            let asks = nodes
                .iter()
                .map(|n| self.ask(n, id, act, requested_by, deadline));
            for (node, r) in nodes.iter().zip(futures::future::join_all(asks).await) {
                results.push(r?.unwrap_or_else(|| no_report(node)));
            }
        } else {
            for (i, node) in nodes.iter().enumerate() {
                // The later candidates keep a share of the time left.
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let share = (left / (nodes.len() - i) as u32).min(HOP_WAIT);
                let until = if i == nodes.len() - 1 {
                    deadline
                } else {
                    tokio::time::Instant::now() + share
                };
                match self.ask(node, id, act, requested_by, until).await? {
                    Some(r) if r.outcome() == PhoneActionOutcome::NotRegistered => results.push(r),
                    Some(r) => {
                        results.push(r);
                        break;
                    }
                    None => {
                        warn!(phone_id = %id, edge = %node, "edge did not report a phone action in time");
                        results.push(no_report(node));
                    }
                }
            }
        }
        if results
            .iter()
            .all(|r| r.outcome() == PhoneActionOutcome::NoReport)
        {
            return Err(timed_out(id, &nodes[0], timeout));
        }
        info!(phone_id = %id, ?act, edges = results.len(), "phone action performed");
        Ok(PhoneActionResponse { results })
    }

    /// Hands one action to `node` and waits until `until` for its report; on no report the
    /// request is withdrawn (unless the edge has taken it meanwhile).
    async fn ask(
        &self,
        node: &str,
        phone_id: &str,
        act: Act,
        requested_by: &str,
        until: tokio::time::Instant,
    ) -> Result<Option<PhoneActionResult>> {
        let action_id = format!("{:032x}", rand::random::<u128>());
        let result_key = keys::action_result(&action_id);
        let action = act.action(phone_id, requested_by, action_id);
        // Watch from the revision before the request, so a fast report is not missed.
        let from = self.store.revision().await? + 1;
        let mut watch = self.store.watch(&result_key, from).await?;
        let written = request(&self.store, node, &action).await?;
        let report = tokio::time::timeout_at(until, async {
            loop {
                match watch.next().await {
                    Ok(Some(batch)) => {
                        for ev in batch.events {
                            if let WatchEvent::Put(kv) = ev
                                && let Ok(r) = PhoneActionResult::decode(kv.value.as_slice())
                            {
                                return Ok(Some(r));
                            }
                        }
                    }
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        let report = match report {
            Ok(Ok(Some(r))) => Some(r),
            // The watch broke: the report may still be there.
            Ok(Ok(None)) | Ok(Err(_)) => self
                .store
                .get(&result_key)
                .await?
                .and_then(|kv| PhoneActionResult::decode(kv.value.as_slice()).ok()),
            Err(_) => None,
        };
        if report.is_some() {
            let _ = self.store.delete(&result_key).await;
        } else {
            // Withdraw the request only if it is still the one written.
            let key = keys::phone_action(node, phone_id);
            let guard = Compare::ModRevision {
                key: key.clone(),
                revision: written,
            };
            let _ = self.store.txn(vec![guard], vec![Op::Delete(key)]).await;
        }
        Ok(report)
    }
}

fn timed_out(id: &str, node: &str, timeout: Duration) -> ConfigError {
    ConfigError::ActionTimedOut {
        id: id.to_owned(),
        node: node.to_owned(),
        waited_ms: timeout.as_millis() as u64,
    }
}
