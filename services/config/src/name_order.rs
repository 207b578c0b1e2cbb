//! Every phone in name order, kept in memory by each config node from the unique-name
//! index (`index/unique-phone-name/{folded name}` → phone id), so that a numbered page of
//! "every phone, by name" (the REST list's and the console's default view) costs its own
//! phones, not the fleet. Read from the store instead, page N would cost O(phones) each
//! time on etcd, which visits every key of a range whatever its limit.
//!
//! The view starts on the first such request (a node that never lists pays nothing) and
//! follows the index with [`Follow`]; until it has listed, callers read the store.
//! It holds a folded name and an id per phone: about 100 bytes a phone.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use dialtone_domain::keys;
use dialtone_store::{Follow, Follower, KeyValue, Store, WatchBatch, WatchEvent};
use parking_lot::RwLock;

/// Folded name → phone id, in name order.
type ByName = BTreeMap<String, String>;

/// The node's view; see the module doc.
#[derive(Clone, Default)]
pub struct NameOrder {
    by_name: Arc<RwLock<ByName>>,
    ready: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
}

/// The index's prefix.
fn prefix() -> String {
    keys::unique_phone_name("")
}

/// Applies one listed key or watch event to the view.
fn apply(by_name: &mut ByName, event: &WatchEvent) {
    let prefix = prefix();
    let Some(name) = event.key().strip_prefix(&prefix) else {
        return;
    };
    match event {
        WatchEvent::Put(kv) => {
            by_name.insert(
                name.to_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            );
        }
        WatchEvent::Delete { .. } => {
            by_name.remove(name);
        }
    }
}

/// The ids of `limit` phones after the first `offset`, in name order, and how many there are.
pub fn page_of(by_name: &ByName, offset: u64, limit: usize) -> (Vec<String>, u64) {
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let ids = by_name.values().skip(skip).take(limit).cloned().collect();
    (ids, by_name.len() as u64)
}

struct NameFollower {
    by_name: Arc<RwLock<ByName>>,
}

impl Follower for NameFollower {
    fn reset(&mut self) {
        self.by_name.write().clear();
    }

    fn listed(&mut self, page: Vec<KeyValue>) {
        let mut by_name = self.by_name.write();
        for kv in page {
            apply(&mut by_name, &WatchEvent::Put(kv));
        }
    }

    fn changed(&mut self, batch: WatchBatch) {
        let mut by_name = self.by_name.write();
        for e in &batch.events {
            apply(&mut by_name, e);
        }
    }
}

impl NameOrder {
    /// Starts following the index in `store`, once.
    pub fn start_once(&self, store: &Store) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let follower = NameFollower {
            by_name: self.by_name.clone(),
        };
        Follow::listing("phone names", &[&prefix()]).spawn(
            store.clone(),
            follower,
            self.ready.clone(),
        );
    }

    /// A page (see [`page_of`]), or None while the view is being listed.
    pub fn page(&self, offset: u64, limit: usize) -> Option<(Vec<String>, u64)> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        Some(page_of(&self.by_name.read(), offset, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(name: &str, id: &str) -> WatchEvent {
        WatchEvent::Put(KeyValue {
            key: keys::unique_phone_name(name),
            value: id.as_bytes().to_vec(),
            ..Default::default()
        })
    }

    #[test]
    fn the_view_follows_the_index_in_folded_name_order() {
        let mut v = ByName::new();
        for e in [
            put("Lobby", "3"),
            put("desk 2", "2"),
            put("Desk 10", "1"),
            put("Q upper", "4"),
            WatchEvent::Put(KeyValue {
                key: "config/phones/x".into(),
                ..Default::default()
            }),
        ] {
            apply(&mut v, &e);
        }
        // Folded: "desk 10" < "desk 2" < "lobby" < "q upper".
        assert_eq!(
            page_of(&v, 0, 10),
            (vec!["1".into(), "2".into(), "3".into(), "4".into()], 4)
        );
        assert_eq!(page_of(&v, 1, 2), (vec!["2".into(), "3".into()], 4));
        assert_eq!(page_of(&v, 4, 2), (vec![], 4));
        assert_eq!(page_of(&v, u64::MAX, 2), (vec![], 4));
        // A rename is a delete of the old name and a put of the new one.
        apply(
            &mut v,
            &WatchEvent::Delete {
                key: keys::unique_phone_name("Lobby"),
                mod_revision: 9,
            },
        );
        apply(&mut v, &put("Atrium", "3"));
        assert_eq!(page_of(&v, 0, 1), (vec!["3".into()], 4));
    }
}
