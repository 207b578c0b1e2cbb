//! One process at a time writes for a node id: the newest. An edge claims its node id as it
//! starts, before it takes over the previous process's leases, by writing the node's claim
//! key (no lease: it must outlive them). The revision of that write is its fencing token:
//! every write the node then makes for itself (its owned keys, the record of its binding
//! leases, its phones' bindings) is a transaction that holds only while the claim still
//! carries that revision. A process whose node id a newer one claimed (a StatefulSet pod
//! force-deleted while its node was cut off and then reached etcd again, two processes
//! started with one `--node-id`) is fenced: its writes fail and change nothing, its keeper
//! stops refreshing leases the newer process took over and must not revoke, and it stops.
//! Without it, the old process's keeper would write its membership record and its stale
//! bindings over the newer process's on the leases they now share, and revoke them when it
//! shut down: the newer process's phones would lose bindings it had acknowledged.
//!
//! A claim found absent (deleted by hand) is taken again, not read as a newer process's:
//! nothing else deletes it.

use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::watch;
use tracing::{error, info};

use crate::{Compare, Op, Store, StoreError};

/// A process's claim on its node id.
pub(super) struct Claim {
    key: String,
    node_id: String,
    /// The claim's mod revision as this process wrote it: the fencing token.
    token: AtomicI64,
    fenced: watch::Sender<bool>,
}

/// What a look at the claim found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// It carries this process's token.
    Yes,
    /// Another process wrote it since.
    Taken,
    /// Nobody holds it (deleted by hand): claim it again.
    Absent,
}

/// What the claim key at `mod_revision` (none: absent) says of a process holding `token`.
pub(super) fn held(mod_revision: Option<i64>, token: i64) -> Held {
    match mod_revision {
        Some(r) if r == token => Held::Yes,
        Some(_) => Held::Taken,
        None => Held::Absent,
    }
}

impl Claim {
    /// Claims `node_id` under `key` for this process: whoever held it is fenced from now on.
    pub(super) async fn take(store: &Store, key: &str, node_id: &str) -> Result<Self, StoreError> {
        let token = store.put(key, describe(), None).await?;
        info!(node = node_id, revision = token, "node id claimed");
        Ok(Claim {
            key: key.to_owned(),
            node_id: node_id.to_owned(),
            token: AtomicI64::new(token),
            fenced: watch::channel(false).0,
        })
    }

    /// Whether a newer process claimed the node id.
    pub(super) fn is_fenced(&self) -> bool {
        *self.fenced.borrow()
    }

    /// Turns true once the node id is claimed by a newer process.
    pub(super) fn fenced(&self) -> watch::Receiver<bool> {
        self.fenced.subscribe()
    }

    /// Runs `ops` in one transaction that holds only while the claim is this process's;
    /// returns the revision. Fenced: nothing is written.
    pub(super) async fn write(&self, store: &Store, ops: Vec<Op>) -> Result<i64, StoreError> {
        // A failed compare is read: a newer process's claim fences this one; one deleted by
        // hand is claimed again and the write tried again. Three tries end it: a claim that
        // keeps moving under this process is not its own to write under.
        for _ in 0..3 {
            if self.is_fenced() {
                break;
            }
            let guard = Compare::ModRevision {
                key: self.key.clone(),
                revision: self.token.load(Ordering::Acquire),
            };
            let r = store.txn(vec![guard], ops.clone()).await?;
            if r.succeeded {
                return Ok(r.revision);
            }
            self.check(store).await?;
        }
        self.fence(0);
        Err(StoreError::Fenced(self.node_id.clone()))
    }

    /// Looks at the claim: fenced when a newer process holds it, claimed again when absent.
    pub(super) async fn check(&self, store: &Store) -> Result<Held, StoreError> {
        if self.is_fenced() {
            return Ok(Held::Taken);
        }
        let token = self.token.load(Ordering::Acquire);
        let found = store.get(&self.key).await?.map(|kv| kv.mod_revision);
        match held(found, token) {
            Held::Yes => Ok(Held::Yes),
            Held::Taken => {
                self.fence(found.unwrap_or_default());
                Ok(Held::Taken)
            }
            Held::Absent => {
                let r = store
                    .txn(
                        vec![Compare::Absent(self.key.clone())],
                        vec![Op::Put {
                            key: self.key.clone(),
                            value: describe(),
                            lease: None,
                        }],
                    )
                    .await?;
                if r.succeeded {
                    self.token.store(r.revision, Ordering::Release);
                    info!(node = %self.node_id, revision = r.revision, "node id claimed again: its claim was deleted");
                }
                // Not succeeded: someone wrote it meanwhile; the next look says who.
                Ok(Held::Absent)
            }
        }
    }

    /// Deletes the claim if it is still this process's (a node leaving for good).
    pub(super) async fn release(&self, store: &Store) {
        if self.is_fenced() {
            return;
        }
        let guard = Compare::ModRevision {
            key: self.key.clone(),
            revision: self.token.load(Ordering::Acquire),
        };
        let _ = store
            .txn(vec![guard], vec![Op::Delete(self.key.clone())])
            .await;
    }

    fn fence(&self, by_revision: i64) {
        if !self.fenced.send_replace(true) {
            error!(node = %self.node_id, claimed_at = by_revision, ours = self.token.load(Ordering::Acquire), "node id claimed by a newer process: this one stops writing and stops");
        }
    }
}

/// The claim's value: for an operator reading the key, nothing reads it back.
fn describe() -> Vec<u8> {
    format!(
        "pid {} claimed at unix ms {}",
        std::process::id(),
        dialtone_common::clock::unix_ms()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claims_revision_says_who_holds_it() {
        let cases = [
            (Some(7), 7, Held::Yes),
            (Some(9), 7, Held::Taken),
            // An older revision than ours cannot be read after our write, but it is not
            // ours either.
            (Some(5), 7, Held::Taken),
            (None, 7, Held::Absent),
        ];
        for (found, token, want) in cases {
            assert_eq!(held(found, token), want, "{found:?} against {token}");
        }
    }
}
