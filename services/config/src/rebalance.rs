//! `sites rebalance`: moves a site's phones to the edges they are assigned. A phone's
//! assignment (primary and secondary edge) is computed from its site's edge group, so it
//! changes only when the group changes; the phones themselves learn of it only when they
//! fetch their configuration again. The dry run lists every phone registered elsewhere than
//! its assignment (the moves); applying asks each managed phone to fetch again through the
//! edge holding its registration (a resync, or a restart when its profile applies changes
//! only at a reboot). Phones configured by hand are listed for their admin ("how to
//! register" shows their new edges).
//!
//! Pure: [`plan`]. IO: [`ConfigCore::rebalance_site`].

use std::collections::HashMap;

use dialtone_domain::{
    actions::{self, Act},
    keys, placement,
};
use dialtone_proto::config::v1::{
    BaseSettings, Phone, PhoneMove, PhoneMoveAction, RebalanceSiteResponse,
};
use prost::Message;
use tracing::info;

use crate::{
    ConfigCore,
    error::{ConfigError, Result},
    phones,
    settings::of_phone,
};

/// How a misplaced phone is moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// It fetches its configuration again without rebooting.
    Resync,
    /// It applies configuration only at a reboot.
    Restart,
    /// Configured by hand: its admin must change it.
    Manual,
}

/// Whether a phone registered at `registered` edges must move to `assigned` ones. Pure.
/// A phone that is not registered anywhere is not a move (it registers where its
/// configuration says when it starts); one registered at exactly its edges is in place.
pub fn plan(assigned: &[String], registered: &[String]) -> bool {
    !registered.is_empty() && registered.iter().any(|r| !assigned.contains(r))
        || !registered.is_empty() && assigned.iter().any(|a| !registered.contains(a))
}

/// How `p` moves, given its effective dynamic-reload setting.
fn how(p: &Phone, dynamic_reload: bool) -> Move {
    if !phones::fetches_configuration(p) {
        Move::Manual
    } else if dynamic_reload {
        Move::Resync
    } else {
        Move::Restart
    }
}

impl ConfigCore {
    /// The phones of `site_id` not registered at their assigned edges; with `apply`, each
    /// managed one is asked to fetch its configuration again.
    pub async fn rebalance_site(
        &self,
        site_id: &str,
        apply: bool,
        requested_by: &str,
    ) -> Result<RebalanceSiteResponse> {
        let site = self.get_site(site_id).await?;
        let group = self.get_edge_group(&site.edge_group_id).await?;
        let prefix = keys::site_phones(site_id);
        let mut ids = Vec::new();
        self.store()
            .list_pages(&prefix, 1000, |kvs| {
                ids.extend(
                    kvs.iter()
                        .filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_owned)),
                )
            })
            .await?;
        let mut bases: HashMap<String, Option<BaseSettings>> = HashMap::new();
        let mut out = RebalanceSiteResponse::default();
        for chunk in ids.chunks(100) {
            let keys: Vec<String> = chunk.iter().map(|id| keys::phone(id)).collect();
            for kv in self.store().get_many(&keys).await?.into_iter().flatten() {
                let p =
                    Phone::decode(kv.value.as_slice()).map_err(|source| ConfigError::Decode {
                        key: kv.key.clone(),
                        kind: "phone",
                        source,
                    })?;
                out.phones_checked += 1;
                if !bases.contains_key(&p.base_settings_id) {
                    let b = match self.get_base_settings(&p.base_settings_id).await {
                        Ok(b) => Some(b),
                        Err(ConfigError::NotFound { .. }) => None,
                        Err(e) => return Err(e),
                    };
                    bases.insert(p.base_settings_id.clone(), b);
                }
                let (_, eff) = of_phone(bases[&p.base_settings_id].as_ref(), p.overrides.as_ref());
                let secondary = eff.secondary_registration.unwrap_or(true);
                let dynamic_reload = eff.dynamic_reload.unwrap_or(false);
                let assigned = placement::node_ids(&p.id, &group.edges, secondary);
                let registered = actions::holders(self.store(), &p.id).await?;
                if !plan(&assigned, &registered) {
                    continue;
                }
                let m = how(&p, dynamic_reload);
                let action = match m {
                    Move::Resync => PhoneMoveAction::Resync,
                    Move::Restart => PhoneMoveAction::Restart,
                    Move::Manual => PhoneMoveAction::Manual,
                };
                if apply && m != Move::Manual {
                    let act = if m == Move::Resync {
                        Act::Resync
                    } else {
                        Act::Restart
                    };
                    // Through one edge holding its registration; performed by that edge at its
                    // own pace, without waiting here.
                    let order = actions::by_placement(registered.clone(), &assigned);
                    let a = act.action(&p.id, requested_by, String::new());
                    actions::request(self.store(), &order[0], &a).await?;
                    out.requested += 1;
                }
                let mut mv = PhoneMove {
                    phone_id: p.id.clone(),
                    name: p.name.clone(),
                    registered_edges: registered,
                    assigned_edges: assigned,
                    ..Default::default()
                };
                mv.set_action(action);
                out.moves.push(mv);
            }
        }
        info!(site = %site_id, checked = out.phones_checked, moves = out.moves.len(), apply, "site rebalance");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_proto::config::v1::PhoneKind;

    #[test]
    fn a_phone_moves_when_it_is_registered_elsewhere_than_assigned() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&["a", "b"], &["a", "b"], false),
            (&["a", "b"], &["b", "a"], false),
            (&["a", "b"], &[], false),
            (&["a", "b"], &["a"], true),
            (&["a", "c"], &["a", "b"], true),
            (&["a"], &["a"], false),
            (&["a"], &["a", "b"], true),
            (&[], &["a"], true),
        ];
        for (assigned, registered, want) in cases {
            assert_eq!(
                plan(&s(assigned), &s(registered)),
                *want,
                "{assigned:?} {registered:?}"
            );
        }
    }

    #[test]
    fn managed_phones_resync_or_restart_and_the_rest_are_manual() {
        let phone = |kind: PhoneKind, hw: &str| Phone {
            kind: kind as i32,
            hardware_id: hw.into(),
            ..Default::default()
        };
        assert_eq!(
            how(&phone(PhoneKind::Managed, "0004f2aabb01"), true),
            Move::Resync
        );
        assert_eq!(
            how(&phone(PhoneKind::Managed, "0004f2aabb01"), false),
            Move::Restart
        );
        assert_eq!(how(&phone(PhoneKind::Unmanaged, ""), true), Move::Manual);
        assert_eq!(
            how(&phone(PhoneKind::Webrtc, "agent.example.com"), true),
            Move::Resync
        );
    }
}
