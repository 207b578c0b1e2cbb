//! Which phones' registrations just changed, for the live status streams: one watch of
//! the bindings the edges write (`bindings/{phone}/{line}/{node}`) per node, shared by
//! every open stream, so a stream re-reads its phones the moment one of them changes
//! instead of on its next poll. A binding counts only while its edge's membership record
//! exists (`members/edge/{node}`), so a record that comes or goes (an edge died, or came
//! back) tells every stream to re-read all its phones. The watch runs only while a stream listens: it stops
//! after the last one closes.
//!
//! Streams still poll, slowly, as a safety net; and a lagging listener (it missed
//! batches) re-reads everything, as every listener does when the watch broke and started
//! again.

use std::{collections::HashSet, sync::Arc, time::Duration};

use dialtone_domain::keys;
use dialtone_store::{Store, WatchBatch};
use parking_lot::Mutex;
use tokio::sync::broadcast;

/// The phone ids of one batch of binding changes; empty: unknown (the watch broke and
/// started again), read every phone.
pub type Changed = Arc<Vec<String>>;

/// Batches a slow listener may fall behind by before it is told it lagged.
const BACKLOG: usize = 256;
/// How often an idle watch checks whether anyone still listens.
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// How long a broken watch waits before watching again.
const RETRY: Duration = Duration::from_secs(1);

/// The node's shared watch of binding changes; see the module doc.
#[derive(Clone)]
pub struct BindingChanges {
    store: Store,
    sender: Arc<Mutex<Option<broadcast::Sender<Changed>>>>,
}

/// The phone ids a batch touches, each once, in first-seen order.
pub fn phones_of(batch: &WatchBatch) -> Vec<String> {
    let mut seen = HashSet::new();
    batch
        .events
        .iter()
        .filter_map(|e| keys::parse_binding(e.key()).map(|(phone, _, _)| phone))
        .filter(|p| seen.insert(*p))
        .map(str::to_owned)
        .collect()
}

impl BindingChanges {
    /// Changes seen in `store` (nothing is watched until someone subscribes).
    pub fn new(store: Store) -> Self {
        BindingChanges {
            store,
            sender: Arc::default(),
        }
    }

    /// Listens to every change from now on, starting the watch if none runs.
    pub fn subscribe(&self) -> broadcast::Receiver<Changed> {
        let mut slot = self.sender.lock();
        if let Some(tx) = slot.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(BACKLOG);
        *slot = Some(tx.clone());
        tokio::spawn(self.clone().run(tx));
        rx
    }

    /// Whether nobody listens any more; if so the slot is emptied (under its lock, so a
    /// subscriber either joins this watch before or starts a new one after).
    fn retire_if_idle(&self, tx: &broadcast::Sender<Changed>) -> bool {
        let mut slot = self.sender.lock();
        if tx.receiver_count() > 0 {
            return false;
        }
        *slot = None;
        true
    }

    async fn run(self, tx: broadcast::Sender<Changed>) {
        loop {
            let watches = futures::future::try_join(
                self.store.watch(keys::BINDINGS, 0),
                self.store.watch(keys::EDGE_MEMBERS, 0),
            );
            let (mut watch, mut members) = match watches.await {
                Ok(w) => w,
                Err(e) => {
                    tracing::debug!(error = %e, "console binding watch failed to start");
                    if self.retire_if_idle(&tx) {
                        return;
                    }
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            loop {
                // (whether it is the membership records' watch, what it said)
                let next = tokio::time::timeout(IDLE_CHECK, async {
                    tokio::select! {
                        b = watch.next() => (false, b),
                        m = members.next() => (true, m),
                    }
                })
                .await;
                if self.retire_if_idle(&tx) {
                    return;
                }
                match next {
                    // Quiet: nothing to say, and someone still listens.
                    Err(_) => continue,
                    Ok((false, Ok(Some(batch)))) => {
                        let phones = phones_of(&batch);
                        if !phones.is_empty() {
                            // No listener is not an error here: the next round retires.
                            let _ = tx.send(Arc::new(phones));
                        }
                    }
                    // An edge came or went: every phone bound to it changed.
                    Ok((true, Ok(Some(_)))) => {
                        let _ = tx.send(Arc::new(Vec::new()));
                    }
                    // Closed or broken (compacted included): watch again from now, and
                    // tell every stream to read all its phones (what changed in the gap
                    // is unknown).
                    Ok((_, Ok(None))) | Ok((_, Err(_))) => {
                        tokio::time::sleep(RETRY).await;
                        let _ = tx.send(Arc::new(Vec::new()));
                        break;
                    }
                }
            }
        }
    }
}

/// Waits for a change to one of `ids`; returns the ones that changed, or None when the
/// stream cannot know which (it lagged, or the watch is gone) and must re-read them all.
/// Without a listener it never returns.
pub async fn next_relevant(
    rx: &mut Option<broadcast::Receiver<Changed>>,
    ids: &HashSet<String>,
) -> Option<Vec<String>> {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match r.recv().await {
            Ok(changed) if changed.is_empty() => return None,
            Ok(changed) => {
                let mine = relevant(&changed, ids);
                if !mine.is_empty() {
                    return Some(mine);
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => return None,
            Err(broadcast::error::RecvError::Closed) => {
                *rx = None;
                return None;
            }
        }
    }
}

/// The phones of `changed` a stream of `ids` follows.
pub fn relevant(changed: &[String], ids: &HashSet<String>) -> Vec<String> {
    changed
        .iter()
        .filter(|p| ids.contains(*p))
        .cloned()
        .collect()
}

/// How many phones one stream may read, however often they change: a burst of
/// [`ReadBudget::BURST`] phones at once, then [`ReadBudget::PER_SECOND`] a second, the
/// cost of the one-read-a-second poll this replaced. A change to one phone is read the
/// moment it comes; a page whose phones all flap costs the store a bounded rate, and
/// what changed while it waited is in the read that follows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadBudget {
    phones: f64,
    at: std::time::Instant,
}

impl ReadBudget {
    /// Phones read back to back.
    pub const BURST: f64 = 2.0 * super::status::MAX_FOLLOWED as f64;
    /// Phones read a second, sustained.
    pub const PER_SECOND: f64 = super::status::MAX_FOLLOWED as f64;

    /// A full budget at `now`.
    pub fn new(now: std::time::Instant) -> Self {
        ReadBudget {
            phones: Self::BURST,
            at: now,
        }
    }

    /// Takes a read of `phones` phones at `now`; returns how long to wait first (zero:
    /// read at once).
    pub fn take(&mut self, phones: usize, now: std::time::Instant) -> Duration {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * Self::PER_SECOND;
        self.phones = (self.phones + earned).min(Self::BURST) - phones as f64;
        self.at = now;
        if self.phones >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.phones / Self::PER_SECOND)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_store::{KeyValue, WatchEvent};

    fn put(key: &str) -> WatchEvent {
        WatchEvent::Put(KeyValue {
            key: key.into(),
            ..Default::default()
        })
    }

    #[test]
    fn a_batch_names_each_phone_once() {
        for (keys_, want) in [
            (vec!["bindings/p1/0/e1", "bindings/p1/1/e2"], vec!["p1"]),
            (
                vec!["bindings/p2/0/e1", "bindings/p1/0/e1", "bindings/p2/0/e2"],
                vec!["p2", "p1"],
            ),
            (vec!["bindings/p1/x/e1", "config/phones/p1"], vec![]),
            (vec![], vec![]),
        ] {
            let batch = WatchBatch {
                events: keys_.iter().map(|k| put(k)).collect(),
                ..Default::default()
            };
            assert_eq!(phones_of(&batch), want, "{keys_:?}");
        }
        let deleted = WatchBatch {
            events: vec![WatchEvent::Delete {
                key: "bindings/p3/0/e1".into(),
                mod_revision: 2,
            }],
            ..Default::default()
        };
        assert_eq!(phones_of(&deleted), ["p3"]);
    }

    #[test]
    fn reads_come_at_once_until_the_burst_is_spent() {
        let t0 = std::time::Instant::now();
        let ms = Duration::from_millis;
        let mut b = ReadBudget::new(t0);
        // Two polls of a full page at once, then single changes must wait their turn.
        assert_eq!(b.take(100, t0), Duration::ZERO);
        assert_eq!(b.take(100, t0), Duration::ZERO);
        assert_eq!(b.take(1, t0), ms(10));
        assert_eq!(b.take(9, t0), ms(100));
        // A quiet while refills it, never beyond the burst.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.take(200, later), Duration::ZERO);
        assert!(b.take(1, later) > Duration::ZERO);
        // One phone changing every 10 ms, for ever, never waits.
        let mut b = ReadBudget::new(t0);
        for i in 1..1000 {
            assert_eq!(b.take(1, t0 + ms(10 * i)), Duration::ZERO, "read {i}");
        }
    }

    #[test]
    fn a_stream_hears_of_its_own_phones_only() {
        let ids: HashSet<String> = ["a", "b"].map(String::from).into();
        for (changed, want) in [
            (vec!["a", "x"], vec!["a"]),
            (vec!["x", "y"], vec![]),
            (vec!["b", "a"], vec!["b", "a"]),
        ] {
            let changed: Vec<String> = changed.into_iter().map(String::from).collect();
            assert_eq!(relevant(&changed, &ids), want);
        }
    }
}
