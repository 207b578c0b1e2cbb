//! A status watch: the phones' statuses (or, when resuming, the changes since a revision),
//! then every change as it happens, until the watcher leaves or its token is revoked.
//!
//! A watch that starts from nothing is sent the whole fleet. That snapshot is read in pages
//! of [`SNAPSHOT_PAGE`] phones, each under the view's read lock for a moment, and sent
//! before the next is read: built at once it held every phone's status in memory (about
//! 1.2 KB a phone, 1.2 GB for a million), which the allocator then kept. Live changes are
//! subscribed to before the first page, so none is missed; one that a page already showed
//! (its phone's page was read at or after it) is not sent again, which would show an older
//! status after a newer one ([`SentPages`], pure).

use std::{sync::Arc, time::Duration};

use dialtone_auth::{Permission, Tokens};
use dialtone_proto::status::v1::StatusChange;
use prost::Message as _;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;
use tracing::warn;

use crate::{
    fleet::Fleet,
    hub::{EncodedChange, Hub},
    metrics::Resumed,
    wire::{ChangeHead, Wire},
};

/// Phones read per page of a watch's snapshot.
pub const SNAPSHOT_PAGE: usize = 512;

/// Most changes a watch resumes with from the history at once: each phone's status is
/// built under the view's read lock, which holds the follower back. Past it, the phones
/// changed since are read from the view in pages.
const RESUME_MOST: usize = 4 * SNAPSHOT_PAGE;

/// How a watch starts.
#[derive(Debug, PartialEq)]
pub(crate) enum Start {
    /// The phones changed since the revision asked for, with their current statuses; the
    /// view was at revision `subscribed_at` when the live feed was subscribed to.
    Resume {
        changes: Vec<StatusChange>,
        subscribed_at: i64,
    },
    /// The fleet read in pages: every phone (`from` 0, a snapshot), or only the phones
    /// whose status changed at or after revision `from`.
    Pages { from: i64, subscribed_at: i64 },
}

/// What a watch starts from and its live feed, taken under one read lock so nothing
/// falls between them ([`plan`] says how).
pub(crate) fn start(
    hub: &Hub,
    after: i64,
    site: &str,
) -> (Start, Resumed, broadcast::Receiver<EncodedChange>) {
    let st = hub.state.read();
    let rx = hub.tx.subscribe();
    let subscribed_at = st.fleet.revision();
    // Only a site's watcher misses a phone that left the site.
    let last_move = if site.is_empty() {
        0
    } else {
        st.fleet.last_move_from(site)
    };
    let how = plan(
        st.held_since(after),
        after,
        st.fleet.last_removal(),
        last_move,
    );
    let first = match how {
        Resumed::History => {
            let mut changes = st.since(after).unwrap_or_default();
            changes.retain(|c| in_site(c, site));
            Start::Resume {
                changes,
                subscribed_at,
            }
        }
        Resumed::Changed => Start::Pages {
            from: after,
            subscribed_at,
        },
        Resumed::Snapshot => Start::Pages {
            from: 0,
            subscribed_at,
        },
    };
    (first, how, rx)
}

/// How a watch resuming from `after` starts, given how many changes since the history
/// holds (none when it no longer holds them all) and the latest removal: from the history
/// when it holds a few; else with the phones whose status changed at or after `after`,
/// read from the view (each status carries its revision); else, when a phone may have
/// been removed since (a removal leaves no status to read) or there is nothing to resume
/// from, with every phone. A removal since with many changes held: from the history. A
/// site's watcher after a phone left its site since (`last_move`, the latest such move;
/// 0 for a watcher of every site): with every phone of the site, since the history and
/// the view both hold the phone under its new site only.
fn plan(held: Option<usize>, after: i64, last_removal: i64, last_move: i64) -> Resumed {
    if after > 0 && last_move >= after {
        return Resumed::Snapshot;
    }
    let removed_since = last_removal >= after;
    match held {
        Some(n) if n <= RESUME_MOST || removed_since => Resumed::History,
        _ if after > 0 && !removed_since => Resumed::Changed,
        _ => Resumed::Snapshot,
    }
}

/// Whether a change concerns a watcher of `site` (removals concern everyone: the removed
/// phone's site is gone with it; a phone that left a site concerns that site's watchers).
pub(crate) fn in_site(c: &StatusChange, site: &str) -> bool {
    site.is_empty()
        || c.removed
        || c.left_site == site
        || c.status.as_ref().is_some_and(|s| s.site_id == site)
}

/// One page of a snapshot: the statuses of the next [`SNAPSHOT_PAGE`] phones after
/// `after` (exclusive, "" for the start) that are in `site` (every site when empty), and
/// the last phone read when the fleet goes on after it. With `from` above 0, only the
/// phones whose status changed at or after revision `from`, sent as changes, not as a
/// snapshot.
pub(crate) fn snapshot_page(
    fleet: &Fleet,
    after: &str,
    site: &str,
    from: i64,
) -> (Vec<StatusChange>, Option<String>) {
    let ids: Vec<&str> = fleet.ids_after(after).take(SNAPSHOT_PAGE).collect();
    let page = ids
        .iter()
        .filter(|id| {
            fleet
                .published(id)
                .is_some_and(|(s, _, r)| (site.is_empty() || s == site) && r >= from)
        })
        .filter_map(|id| fleet.get(id))
        .map(|s| StatusChange {
            phone_id: s.phone_id.clone(),
            revision: s.revision,
            status: Some(s),
            snapshot: from == 0,
            ..Default::default()
        })
        .collect();
    let more = (ids.len() == SNAPSHOT_PAGE).then(|| ids[ids.len() - 1].to_owned());
    (page, more)
}

/// The pages a snapshot was sent in, to tell which live changes they already showed.
#[derive(Debug, Default)]
pub(crate) struct SentPages {
    /// (last phone of the page, the view's revision when it was read), in id order.
    pages: Vec<(String, i64)>,
    /// The revision the last page, which read to the end of the fleet, was read at.
    end: Option<i64>,
    /// The pages held only the phones changed since a revision, not every phone.
    pub(crate) changed_only: bool,
}

impl SentPages {
    /// A page that ended with phone `last`, read at `revision`.
    pub(crate) fn page(&mut self, last: String, revision: i64) {
        self.pages.push((last, revision));
    }

    /// The last page, read to the end of the fleet at `revision`.
    pub(crate) fn end(&mut self, revision: i64) {
        self.end = Some(revision);
    }

    /// Whether a live change of `phone` at `revision` is held back: the page holding the
    /// phone showed it ([`SentPages::shown`]). A change that takes the phone out of the
    /// watcher's view (`gone`: a removal, or a move out of the watcher's site) is not shown
    /// by pages of changed phones only (such a phone is left out of them, not shown gone),
    /// so there it is held back only when the phone is in the watcher's view again,
    /// `present` (its page then showed it back).
    pub(crate) fn hides(
        &mut self,
        phone: &str,
        revision: i64,
        gone: bool,
        present: impl FnOnce() -> bool,
    ) -> bool {
        self.shown(phone, revision) && !(gone && self.changed_only && !present())
    }

    /// Whether a change of `phone` at `revision` was already shown by the page that
    /// holds the phone (read after the change). A change at the very revision a page was
    /// read at is sent again: etcd stamps the batches of a watch catching up with the
    /// store's current revision, so two batches may carry the same revision and a page
    /// read between them showed only the first (the second's changes are then sent, the
    /// first's repeated, harmlessly). Once a change comes after every page, none can have
    /// been shown any more and the pages are forgotten.
    pub(crate) fn shown(&mut self, phone: &str, revision: i64) -> bool {
        let Some(end) = self.end else {
            return false;
        };
        let i = self
            .pages
            .partition_point(|(last, _)| last.as_str() < phone);
        let read_at = self.pages.get(i).map_or(end, |(_, r)| *r);
        if revision > end {
            // Pages are read in order: the last one at the highest revision.
            self.pages.clear();
            self.end = None;
        }
        revision < read_at
    }
}

/// Longest a watcher that fell behind waits for the batch being applied ([`settle`]).
const SETTLE_MOST: Duration = Duration::from_secs(10);

/// Waits until the batch the hub was applying in parts when called is in (`applying`
/// true until then), at most [`SETTLE_MOST`]; false when the token stopped granting View
/// (`allowed`) meanwhile, or the tokens' channel closed. A watcher falls behind when a
/// batch changes more phones than the channel holds (a dead edge's, all at once); reading
/// the view in pages while that batch is still being applied would compute its phones as
/// they are re-reduced, contending with it for the lock and the cores, fall behind again
/// and compute them again. Only the batch under way is waited for: the follower may mark
/// the next one at once, and the watcher would never see the mark down between them.
async fn settle(
    mut applying: tokio::sync::watch::Receiver<bool>,
    token_changes: &mut tokio::sync::watch::Receiver<u64>,
    allowed: impl Fn() -> bool,
) -> bool {
    let deadline = tokio::time::sleep(SETTLE_MOST);
    tokio::pin!(deadline);
    // The follower only flips the mark, so the change after a raised one is its clear; a
    // closed channel (the hub gone) settles too.
    let settled = async move {
        if *applying.borrow_and_update() {
            let _ = applying.changed().await;
        }
    };
    tokio::pin!(settled);
    loop {
        tokio::select! {
            () = &mut settled => return true,
            () = &mut deadline => return true,
            changed = token_changes.changed() => {
                if changed.is_err() || !allowed() {
                    return false;
                }
            }
        }
    }
}

/// Ends a watch whose token no longer grants View.
async fn revoked(tx: &mpsc::Sender<Result<Wire, Status>>) {
    let _ = tx
        .send(Err(Status::unauthenticated("the token was revoked")))
        .await;
}

/// Runs a watch: its start, then live changes, into `tx`, until the watcher leaves, its
/// token stops granting View, or the status role stops.
/// `token_changes` was subscribed to before the token was first checked, so a
/// revocation between that check and this task is seen.
pub(crate) async fn serve(
    hub: Arc<Hub>,
    tokens: Arc<Tokens>,
    (token, mut token_changes): (String, tokio::sync::watch::Receiver<u64>),
    mut after: i64,
    site: String,
    tx: mpsc::Sender<Result<Wire, Status>>,
) {
    let allowed = || tokens.allows(&token, Permission::View);
    let (mut first, _, mut rx) = start(&hub, after, &site);
    // Every change before this revision has reached the watcher (changes at it may not
    // all have: a batch applied in parts stamps each part with its revision). A watcher
    // that falls behind resumes from it.
    let mut seen;
    loop {
        let mut sent = SentPages::default();
        match first {
            Start::Resume {
                changes,
                subscribed_at,
            } => {
                // Every change up to the view's revision then is in `changes`.
                seen = after.max(subscribed_at);
                for c in changes {
                    if tx.send(Ok(Wire::Message(Box::new(c)))).await.is_err() {
                        return;
                    }
                }
            }
            Start::Pages {
                from,
                subscribed_at,
            } => {
                seen = from.max(subscribed_at);
                sent.changed_only = from > 0;
                let mut after = String::new();
                loop {
                    let (page, more, revision) = {
                        let st = hub.state.read();
                        let (page, more) = snapshot_page(&st.fleet, &after, &site, from);
                        (page, more, st.fleet.revision())
                    };
                    for c in page {
                        if tx.send(Ok(Wire::Message(Box::new(c)))).await.is_err() {
                            return;
                        }
                    }
                    match more {
                        Some(last) => {
                            sent.page(last.clone(), revision);
                            after = last;
                        }
                        None => {
                            sent.end(revision);
                            break;
                        }
                    }
                }
                // Current as of the subscription: a watcher resuming from here is sent
                // every change after it (a few again, none missed).
                let synced = StatusChange {
                    revision: subscribed_at,
                    synced: true,
                    ..Default::default()
                };
                if tx.send(Ok(Wire::Message(Box::new(synced)))).await.is_err() {
                    return;
                }
            }
        }
        loop {
            let next = tokio::select! {
                n = rx.recv() => n,
                changed = token_changes.changed() => {
                    if changed.is_err() || !allowed() {
                        revoked(&tx).await;
                        return;
                    }
                    continue;
                }
            };
            match next {
                // Only what the filters read is decoded; the bytes go out as they are.
                Ok(bytes) => match ChangeHead::decode(&bytes[..]) {
                    Ok(c)
                        if c.in_site(&site)
                            && !sent.hides(&c.phone_id, c.revision, c.gone_from(&site), || {
                                hub.state
                                    .read()
                                    .fleet
                                    .published(&c.phone_id)
                                    .is_some_and(|(s, ..)| site.is_empty() || s == site)
                            }) =>
                    {
                        seen = c.revision;
                        if tx.send(Ok(Wire::Encoded(bytes))).await.is_err() {
                            return;
                        }
                    }
                    Ok(c) => seen = c.revision,
                    // The hub encoded it from a message: not expected.
                    Err(e) => warn!(error = %e, "a status change did not decode"),
                },
                // Fell too far behind: start again from the last revision it has whole
                // (the phones changed since, or the whole fleet), once the batch that
                // overflowed the channel is in.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Its place in the channel holds back nothing, but it is read no
                    // more: the resume subscribes anew.
                    drop(rx);
                    if !settle(hub.applying.subscribe(), &mut token_changes, &allowed).await {
                        revoked(&tx).await;
                        return;
                    }
                    let how;
                    (first, how, rx) = start(&hub, seen, &site);
                    hub.metrics.count_resume(how);
                    after = seen;
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
