//! Restart, resync or log out many phones at once: a site's, a profile's, or a list. Each
//! phone goes through [`ConfigCore::act_on_phone`] as a single action would; the wave
//! starts `rate` phones a second with at most [`IN_FLIGHT`] waiting on their edges, so a
//! site's reboot does not storm the edges or the provisioning role (the phones fetch their
//! files as they come back). What each phone came to is tallied by a pure reducer
//! ([`Tally`]); the caller gets the tally as it moves.

use std::{
    collections::BTreeSet,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use dialtone_domain::actions::Act;
use dialtone_proto::{
    config::v1::{ActOnPhonesProgress, ActOnPhonesRequest, BulkAction, PhoneActionResponse},
    edge::v1::PhoneActionOutcome,
};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::{
    ConfigCore,
    error::{ConfigError, Result},
};

/// Most phones whose edges are being waited on at once.
pub const IN_FLIGHT: usize = 32;
/// Most phones a list may name.
pub const MAX_LISTED: usize = 10_000;
/// Most failed phones a progress message names.
const MAX_FAILED_IDS: usize = 100;

/// Which phones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Site(String),
    Profile(String),
    Phones(Vec<String>),
}

/// A checked request: what, which, how fast, how long each may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wave {
    pub act: Act,
    pub selector: Selector,
    pub rate_per_s: u32,
    pub timeout: Duration,
}

impl Wave {
    /// Checks a request, naming the bad field.
    pub fn of(r: ActOnPhonesRequest) -> Result<Wave> {
        let act = match r.action() {
            BulkAction::Restart => Act::Restart,
            BulkAction::Resync => Act::Resync,
            BulkAction::LogOut => Act::LogOut,
            BulkAction::Unspecified => {
                return Err(ConfigError::invalid(
                    "action",
                    "give RESTART, RESYNC or LOG_OUT",
                ));
            }
        };
        let chosen = [
            !r.site_id.is_empty(),
            !r.base_settings_id.is_empty(),
            !r.phone_ids.is_empty(),
        ];
        if chosen.iter().filter(|c| **c).count() != 1 {
            return Err(ConfigError::invalid(
                "site_id",
                "give exactly one of site_id, base_settings_id and phone_ids",
            ));
        }
        let selector = if !r.site_id.is_empty() {
            Selector::Site(r.site_id)
        } else if !r.base_settings_id.is_empty() {
            Selector::Profile(r.base_settings_id)
        } else {
            if r.phone_ids.len() > MAX_LISTED {
                return Err(ConfigError::invalid(
                    "phone_ids",
                    format!("at most {MAX_LISTED} phones"),
                ));
            }
            let distinct: BTreeSet<&String> = r.phone_ids.iter().collect();
            if distinct.len() != r.phone_ids.len() {
                return Err(ConfigError::invalid("phone_ids", "a phone is listed twice"));
            }
            Selector::Phones(r.phone_ids)
        };
        let rate_per_s = match r.rate_per_s {
            0 => 10,
            n @ 1..=1000 => n,
            _ => return Err(ConfigError::invalid("rate_per_s", "must be 1-1000")),
        };
        let timeout = crate::actions::timeout_of(r.timeout_ms)?;
        Ok(Wave {
            act,
            selector,
            rate_per_s,
            timeout,
        })
    }
}

/// What a phone came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Came {
    Answered,
    NotRegistered,
    Failed,
}

/// What one phone's action came to: answered when an edge reports the phone answered (or
/// its bindings dropped), not registered when no edge holds it, failed otherwise.
pub fn came(r: &std::result::Result<PhoneActionResponse, ConfigError>) -> Came {
    match r {
        Ok(resp) => {
            let outcomes = resp.results.iter().map(|x| x.outcome());
            if outcomes.clone().any(|o| o == PhoneActionOutcome::Answered) {
                Came::Answered
            } else if outcomes
                .clone()
                .all(|o| o == PhoneActionOutcome::NotRegistered)
            {
                Came::NotRegistered
            } else {
                Came::Failed
            }
        }
        Err(ConfigError::NotRegistered { .. }) => Came::NotRegistered,
        Err(_) => Came::Failed,
    }
}

/// The running count of a wave. Pure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally(pub ActOnPhonesProgress);

impl Tally {
    pub fn new(total: usize) -> Self {
        Tally(ActOnPhonesProgress {
            total: total as u32,
            ..Default::default()
        })
    }

    /// Phone `id` came to `c`.
    pub fn record(&mut self, id: &str, c: Came) {
        let p = &mut self.0;
        p.done += 1;
        match c {
            Came::Answered => p.answered += 1,
            Came::NotRegistered => p.not_registered += 1,
            Came::Failed => {
                p.failed += 1;
                if p.failed_phone_ids.len() < MAX_FAILED_IDS {
                    p.failed_phone_ids.push(id.to_owned());
                }
            }
        }
        p.finished = p.done == p.total;
    }
}

impl ConfigCore {
    /// The ids of the phones `sel` names (listed ones must exist).
    async fn wave_phones(&self, sel: &Selector) -> Result<Vec<String>> {
        let filter = match sel {
            Selector::Phones(ids) => {
                for id in ids {
                    self.get_phone(id).await?;
                }
                return Ok(ids.clone());
            }
            Selector::Site(site) => {
                self.get_site(site).await?;
                dialtone_proto::config::v1::PhoneFilter {
                    site_id: site.clone(),
                    ..Default::default()
                }
            }
            Selector::Profile(base) => {
                self.get_base_settings(base).await?;
                dialtone_proto::config::v1::PhoneFilter {
                    base_settings_id: base.clone(),
                    ..Default::default()
                }
            }
        };
        let mut ids = Vec::new();
        let mut token = String::new();
        loop {
            let (phones, next) = self.list_phones(filter.clone(), 1000, &token).await?;
            ids.extend(phones.into_iter().map(|p| p.id));
            if next.is_empty() {
                return Ok(ids);
            }
            token = next;
        }
    }

    /// Runs `wave`, sending the tally to `progress` every second (skipped while the
    /// caller is not reading: each is cumulative) and at the end. When `progress` is
    /// closed (the caller went away) no phone is started any more; those under way finish
    /// (their actions are already handed to the edges).
    pub async fn act_on_phones(
        &self,
        wave: Wave,
        requested_by: &str,
        progress: mpsc::Sender<std::result::Result<ActOnPhonesProgress, ConfigError>>,
    ) {
        let ids = match self.wave_phones(&wave.selector).await {
            Ok(ids) => ids,
            Err(e) => {
                let _ = progress.send(Err(e)).await;
                return;
            }
        };
        let mut tally = Tally::new(ids.len());
        if ids.is_empty() {
            tally.0.finished = true;
            let _ = progress.send(Ok(tally.0)).await;
            return;
        }
        let spacing = Duration::from_secs(1) / wave.rate_per_s;
        let (act, timeout) = (wave.act, wave.timeout);
        let stop = AtomicBool::new(false);
        let stop = &stop;
        // One phone started every `spacing`, at most IN_FLIGHT waiting on their edges.
        let started = futures::stream::iter(ids)
            .take_while(|_| std::future::ready(!stop.load(Ordering::Relaxed)))
            .then(|id| async move {
                tokio::time::sleep(spacing).await;
                id
            })
            .map(|id| async move {
                let r = self.act_on_phone(&id, act, timeout, requested_by).await;
                (id, came(&r))
            })
            .buffer_unordered(IN_FLIGHT);
        tokio::pin!(started);
        let mut report = tokio::time::interval(Duration::from_secs(1));
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                next = started.next() => match next {
                    Some((id, c)) => tally.record(&id, c),
                    None => break,
                },
                _ = report.tick() => {
                    let _ = progress.try_send(Ok(tally.0.clone()));
                }
                () = progress.closed(), if !stop.load(Ordering::Relaxed) => {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        tally.0.finished = tally.0.done == tally.0.total;
        let _ = progress.send(Ok(tally.0)).await;
    }
}

#[cfg(test)]
mod tests {
    use dialtone_proto::edge::v1::PhoneActionResult;

    use super::*;

    #[test]
    fn requests_are_checked_field_by_field() {
        let ok = ActOnPhonesRequest {
            action: BulkAction::Resync as i32,
            site_id: "hq".into(),
            ..Default::default()
        };
        let w = Wave::of(ok.clone()).unwrap();
        assert_eq!(
            (w.act, w.selector, w.rate_per_s),
            (Act::Resync, Selector::Site("hq".into()), 10)
        );
        // (change, field named)
        type Change = fn(&mut ActOnPhonesRequest);
        let cases: [(Change, &str); 6] = [
            (|r| r.action = 0, "action"),
            (|r| r.base_settings_id = "desk".into(), "site_id"),
            (|r| r.site_id.clear(), "site_id"),
            (
                |r| {
                    r.site_id.clear();
                    r.phone_ids = vec!["a".into(), "a".into()];
                },
                "phone_ids",
            ),
            (|r| r.rate_per_s = 1001, "rate_per_s"),
            (|r| r.timeout_ms = 60_001, "timeout_ms"),
        ];
        for (change, field) in cases {
            let mut r = ok.clone();
            change(&mut r);
            let e = Wave::of(r).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn each_phone_comes_to_one_count() {
        let with = |outcomes: &[PhoneActionOutcome]| {
            Ok(PhoneActionResponse {
                results: outcomes
                    .iter()
                    .map(|o| {
                        let mut r = PhoneActionResult::default();
                        r.set_outcome(*o);
                        r
                    })
                    .collect(),
            })
        };
        use PhoneActionOutcome as O;
        // (what the edges reported, what the phone came to)
        let cases = [
            (with(&[O::Answered]), Came::Answered),
            (with(&[O::NoReport, O::Answered]), Came::Answered),
            (with(&[O::NotRegistered]), Came::NotRegistered),
            (with(&[O::NotRegistered, O::Failed]), Came::Failed),
            (with(&[O::NoReport]), Came::Failed),
            (
                Err(ConfigError::NotRegistered { id: "p".into() }),
                Came::NotRegistered,
            ),
            (Err(ConfigError::invalid("id", "is required")), Came::Failed),
        ];
        for (r, want) in cases {
            assert_eq!(came(&r), want, "{r:?}");
        }
        let mut t = Tally::new(3);
        t.record("a", Came::Answered);
        t.record("b", Came::Failed);
        assert!(!t.0.finished);
        t.record("c", Came::NotRegistered);
        assert_eq!(
            (t.0.done, t.0.answered, t.0.not_registered, t.0.failed),
            (3, 1, 1, 1)
        );
        assert_eq!(t.0.failed_phone_ids, ["b"]);
        assert!(t.0.finished);
    }
}
