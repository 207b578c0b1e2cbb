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

use std::sync::Arc;

use dialtone_auth::{Permission, Tokens};
use dialtone_proto::status::v1::StatusChange;
use prost::Message as _;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;
use tracing::warn;

use crate::{
    fleet::Fleet,
    hub::{EncodedChange, Hub},
    wire::{ChangeHead, Wire},
};

/// Phones read per page of a watch's snapshot.
pub const SNAPSHOT_PAGE: usize = 512;

/// How a watch starts.
pub(crate) enum Start {
    /// The phones changed since the revision asked for, with their current statuses.
    Resume(Vec<StatusChange>),
    /// The whole fleet, read in pages; the view was at this revision when the live feed
    /// was subscribed to.
    Snapshot(i64),
}

/// What a watch starts from and its live feed, taken under one read lock so nothing
/// falls between them.
pub(crate) fn start(
    hub: &Hub,
    after: i64,
    site: &str,
) -> (Start, broadcast::Receiver<EncodedChange>) {
    let st = hub.state.read();
    let rx = hub.tx.subscribe();
    match st.since(after) {
        Some(mut changes) => {
            changes.retain(|c| in_site(c, site));
            (Start::Resume(changes), rx)
        }
        None => (Start::Snapshot(st.fleet.revision()), rx),
    }
}

/// Whether a change concerns a watcher of `site` (removals concern everyone: the removed
/// phone's site is gone with it).
pub(crate) fn in_site(c: &StatusChange, site: &str) -> bool {
    site.is_empty() || c.removed || c.status.as_ref().is_some_and(|s| s.site_id == site)
}

/// One page of a snapshot: the statuses of the next [`SNAPSHOT_PAGE`] phones after
/// `after` (exclusive, "" for the start) that are in `site` (every site when empty), and
/// the last phone read when the fleet goes on after it.
pub(crate) fn snapshot_page(
    fleet: &Fleet,
    after: &str,
    site: &str,
) -> (Vec<StatusChange>, Option<String>) {
    let ids: Vec<&str> = fleet.ids_after(after).take(SNAPSHOT_PAGE).collect();
    let page = ids
        .iter()
        .filter(|id| site.is_empty() || fleet.published(id).is_some_and(|(s, _)| s == site))
        .filter_map(|id| fleet.get(id))
        .map(|s| StatusChange {
            phone_id: s.phone_id.clone(),
            revision: s.revision,
            status: Some(s),
            snapshot: true,
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

/// Runs a watch: its start, then live changes, into `tx`, until the watcher leaves, its
/// token stops granting View, or the status role stops.
/// `token_changes` was subscribed to before the token was first checked, so a
/// revocation between that check and this task is seen.
pub(crate) async fn serve(
    hub: Arc<Hub>,
    tokens: Arc<Tokens>,
    (token, mut token_changes): (String, tokio::sync::watch::Receiver<u64>),
    after: i64,
    site: String,
    tx: mpsc::Sender<Result<Wire, Status>>,
) {
    let (mut first, mut rx) = start(&hub, after, &site);
    loop {
        let mut sent = SentPages::default();
        match first {
            Start::Resume(changes) => {
                for c in changes {
                    if tx.send(Ok(Wire::Message(Box::new(c)))).await.is_err() {
                        return;
                    }
                }
            }
            Start::Snapshot(subscribed_at) => {
                let mut after = String::new();
                loop {
                    let (page, more, revision) = {
                        let st = hub.state.read();
                        let (page, more) = snapshot_page(&st.fleet, &after, &site);
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
                    if changed.is_err() || !tokens.allows(&token, Permission::View) {
                        let _ = tx
                            .send(Err(Status::unauthenticated("the token was revoked")))
                            .await;
                        return;
                    }
                    continue;
                }
            };
            match next {
                // Only what the filters read is decoded; the bytes go out as they are.
                Ok(bytes) => match ChangeHead::decode(&bytes[..]) {
                    Ok(c) if c.in_site(&site) && !sent.shown(&c.phone_id, c.revision) => {
                        if tx.send(Ok(Wire::Encoded(bytes))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // The hub encoded it from a message: not expected.
                    Err(e) => warn!(error = %e, "a status change did not decode"),
                },
                // Fell too far behind: start over from a fresh snapshot.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    (first, rx) = start(&hub, 0, &site);
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use dialtone_domain::keys;
    use dialtone_proto::config::v1::{EdgeGroup, Line, Phone, Site};

    use super::*;

    /// A fleet of `n` configured phones, every third at site "b", the rest at "a".
    fn fleet(n: usize) -> Fleet {
        let mut f = Fleet::new("example.com");
        let mut kvs: Vec<(String, Vec<u8>)> = ["a", "b"]
            .iter()
            .map(|s| {
                let site = Site {
                    id: (*s).into(),
                    edge_group_id: "g".into(),
                    ..Default::default()
                };
                (format!("{}{s}", keys::SITES), site.encode_to_vec())
            })
            .collect();
        let group = EdgeGroup {
            id: "g".into(),
            ..Default::default()
        };
        kvs.push((format!("{}g", keys::EDGE_GROUPS), group.encode_to_vec()));
        for i in 0..n {
            let p = Phone {
                id: format!("p{i:05}"),
                name: format!("phone {i}"),
                site_id: if i % 3 == 0 { "b" } else { "a" }.into(),
                lines: vec![Line {
                    sip_user: format!("u{i}"),
                    ..Default::default()
                }],
                ..Default::default()
            };
            kvs.push((keys::phone(&p.id), p.encode_to_vec()));
        }
        f.load(kvs.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        f.settle(1, 0);
        f
    }

    /// Every phone the pages hold, in order, and the pages' sizes.
    fn page_through(f: &Fleet, site: &str) -> (Vec<String>, Vec<usize>) {
        let (mut ids, mut sizes, mut after) = (Vec::new(), Vec::new(), String::new());
        loop {
            let (page, more) = snapshot_page(f, &after, site);
            sizes.push(page.len());
            assert!(page.iter().all(|c| c.snapshot && c.status.is_some()));
            ids.extend(page.into_iter().map(|c| c.phone_id));
            match more {
                Some(last) => after = last,
                None => return (ids, sizes),
            }
        }
    }

    #[test]
    fn a_snapshot_in_pages_holds_every_phone_once_in_order() {
        let f = fleet(2 * SNAPSHOT_PAGE + 100);
        let (ids, sizes) = page_through(&f, "");
        assert_eq!(sizes, [SNAPSHOT_PAGE, SNAPSHOT_PAGE, 100]);
        let want: Vec<String> = (0..2 * SNAPSHOT_PAGE + 100)
            .map(|i| format!("p{i:05}"))
            .collect();
        assert_eq!(ids, want);

        // A site's watcher: pages still read SNAPSHOT_PAGE phones, and keep that site's.
        let (ids, sizes) = page_through(&f, "b");
        assert_eq!(sizes.len(), 3);
        let want: Vec<String> = (0..2 * SNAPSHOT_PAGE + 100)
            .filter(|i| i % 3 == 0)
            .map(|i| format!("p{i:05}"))
            .collect();
        assert_eq!(ids, want);

        // A fleet of exactly one page ends with an empty one.
        let (ids, sizes) = page_through(&fleet(SNAPSHOT_PAGE), "");
        assert_eq!((ids.len(), sizes), (SNAPSHOT_PAGE, vec![SNAPSHOT_PAGE, 0]));
    }

    #[test]
    fn a_change_a_page_already_showed_is_not_sent_again() {
        // Pages: (.., "c"] read at 10, (.., "f"] at 12, the rest at 15.
        let pages = || {
            let mut s = SentPages::default();
            s.page("c".into(), 10);
            s.page("f".into(), 12);
            s.end(15);
            s
        };
        for (phone, revision, shown) in [
            ("a", 9, true),
            ("c", 10, false),
            ("c", 11, false),
            ("d", 11, true),
            ("f", 12, false),
            ("f", 13, false),
            ("g", 14, true),
            ("g", 15, false),
            ("z", 14, true),
            ("z", 16, false),
        ] {
            assert_eq!(
                pages().shown(phone, revision),
                shown,
                "{phone} at {revision}"
            );
        }
    }

    #[test]
    fn pages_are_forgotten_once_changes_pass_them() {
        let mut s = SentPages::default();
        s.page("m".into(), 10);
        s.end(12);
        assert!(s.shown("a", 9));
        assert!(!s.shown("x", 13), "after every page");
        assert!(!s.shown("a", 9), "forgotten: nothing is held back any more");
    }

    #[test]
    fn without_a_snapshot_every_change_is_sent() {
        assert!(!SentPages::default().shown("a", 1));
    }
}
