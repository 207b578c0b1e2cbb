//! The action protocol: how a role asks the edge holding a phone's registration to
//! restart, resync or log it out. Roles coordinate only through the store: the request is
//! a `PhoneAction` under `actions/{node}/{phone}`, the edge's report a `PhoneActionResult`
//! under `action-results/{action_id}` (see [`crate::keys`]). The config role waits for
//! reports (`dialtone_config::actions`); provisioning asks for resyncs; the edge performs.

use std::time::Duration;

use dialtone_common::clock;
use dialtone_proto::edge::v1::{Binding, PhoneAction, PhoneActionKind};
use dialtone_store::{Store, StoreError};
use prost::Message;

use crate::keys;

/// What the caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// `check-sync;reboot=true`.
    Restart,
    /// `check-sync;reboot=false`.
    Resync,
    /// Drop every binding.
    LogOut,
}

impl Act {
    /// The kind of action an edge performs for it.
    pub fn kind(self) -> PhoneActionKind {
        if self == Act::LogOut {
            PhoneActionKind::LogOut
        } else {
            PhoneActionKind::CheckSync
        }
    }

    /// The request an edge is handed; `action_id` empty when nobody waits for a report.
    pub fn action(self, phone_id: &str, requested_by: &str, action_id: String) -> PhoneAction {
        let mut a = PhoneAction {
            phone_id: phone_id.to_owned(),
            reboot: self == Act::Restart,
            requested_at_ms: clock::unix_ms_i64(),
            requested_by: requested_by.to_owned(),
            action_id,
            ..Default::default()
        };
        a.set_kind(self.kind());
        a
    }
}

/// Default and largest wait for the edges' reports.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The edges holding a live binding of `phone`, by node id (binding keys are
/// `bindings/{phone}/{line}/{node}`, on each edge's leases): only edges whose membership
/// record `members/edge/{node}` exists, as the status role counts them (a dead edge's
/// record goes with its node lease, its bindings a little later).
pub async fn holders(store: &Store, phone: &str) -> Result<Vec<String>, StoreError> {
    let prefix = keys::phone_bindings(phone);
    let page = store.range(&prefix, None, 256).await?;
    let mut nodes: Vec<String> = page
        .kvs
        .iter()
        .filter(|kv| Binding::decode(kv.value.as_slice()).is_ok_and(|b| !b.contacts.is_empty()))
        .filter_map(|kv| kv.key.rsplit('/').next().map(str::to_owned))
        .collect();
    nodes.sort();
    nodes.dedup();
    let members: Vec<String> = nodes.iter().map(|n| keys::member("edge", n)).collect();
    let up = store.get_many(&members).await?;
    Ok(nodes
        .into_iter()
        .zip(up)
        .filter_map(|(n, m)| m.map(|_| n))
        .collect())
}

/// `holders` in the order they are asked: as `placement` (primary, secondary) lists them,
/// then the rest by node id. Pure.
pub fn by_placement(mut holders: Vec<String>, placement: &[String]) -> Vec<String> {
    holders.sort_by_key(|n| {
        (
            placement.iter().position(|p| p == n).unwrap_or(usize::MAX),
            n.clone(),
        )
    });
    holders
}

/// Writes `action` for `node`; returns the revision of the write.
pub async fn request(store: &Store, node: &str, action: &PhoneAction) -> Result<i64, StoreError> {
    store
        .put(
            &keys::phone_action(node, &action.phone_id),
            action.encode_to_vec(),
            None,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_asked_primary_first_then_secondary_then_by_id() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&["a", "b"], &["b", "a"], &["b", "a"]),
            (&["a"], &["b", "a"], &["a"]),
            (&["c", "a", "b"], &["b"], &["b", "a", "c"]),
            (&["z", "y"], &[], &["y", "z"]),
            (&[], &["a", "b"], &[]),
        ];
        for (holders, placement, want) in cases {
            assert_eq!(
                by_placement(s(holders), &s(placement)),
                s(want),
                "{holders:?} {placement:?}"
            );
        }
    }

    #[test]
    fn each_act_asks_for_its_action() {
        let a = Act::Restart.action("p1", "config/n", "ab".into());
        assert_eq!(
            (
                a.kind(),
                a.reboot,
                a.phone_id.as_str(),
                a.action_id.as_str()
            ),
            (PhoneActionKind::CheckSync, true, "p1", "ab")
        );
        let a = Act::Resync.action("p1", "config/n", "ab".into());
        assert_eq!((a.kind(), a.reboot), (PhoneActionKind::CheckSync, false));
        let a = Act::LogOut.action("p1", "config/n", "ab".into());
        assert_eq!((a.kind(), a.reboot), (PhoneActionKind::LogOut, false));
        assert!(a.requested_at_ms > 0);
    }
}
