//! One process at a time writes for a node id: the newest. An edge claims its node id as it
//! starts, before it takes over the previous process's leases, by writing the node's claim
//! key (no lease: it must outlive them). The revision of that write is its fencing token:
//! every write the node then makes for itself (its owned keys, the record of its binding
//! leases, its phones' bindings, its performed actions' deletion) is a transaction that
//! holds only while the claim still carries that revision. A process whose node id a newer
//! one claimed (a StatefulSet pod force-deleted while its node was cut off, whose process
//! then reaches etcd again; two processes started with one `--node-id`) is fenced: its
//! writes fail and change nothing, its keeper stops refreshing leases the newer process
//! took over and must not revoke, and it stops. Without it, the old process's keeper would
//! write its membership record and its stale bindings over the newer process's on the
//! leases they now share, and revoke them when it shut down: the newer process's phones
//! would lose bindings it had acknowledged.
//!
//! A claim found absent fences too: only its holder deletes it, as it leaves (the next
//! process claims again), so a process that finds it gone is not the newest. Taking it back
//! instead would let an old process that had not noticed yet fence the newest.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::{Compare, Op, Store, StoreError};

/// A process's claim on its node id.
pub(super) struct Claim {
    key: String,
    node_id: String,
    /// The claim's mod revision as this process wrote it: the fencing token.
    token: i64,
    fenced: watch::Sender<bool>,
    /// Released as the process leaves: what still writes then (a task finishing) is
    /// refused quietly, not taken for a newer process's claim.
    released: AtomicBool,
}

/// What a look at the claim found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// It carries this process's token.
    Yes,
    /// Another process wrote it since, or deleted it.
    No,
}

/// What the claim key at `mod_revision` (none: absent) says of a process holding `token`.
pub(super) fn held(mod_revision: Option<i64>, token: i64) -> Held {
    match mod_revision {
        Some(r) if r == token => Held::Yes,
        _ => Held::No,
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
            token,
            fenced: watch::channel(false).0,
            released: AtomicBool::new(false),
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

    /// Runs `ops` in one transaction that holds only while `compares` do and the claim is
    /// this process's: true when applied, false when one of `compares` failed. Fenced:
    /// nothing is written, ever again.
    pub(super) async fn write_if(
        &self,
        store: &Store,
        mut compares: Vec<Compare>,
        ops: Vec<Op>,
    ) -> Result<bool, StoreError> {
        if self.is_fenced() || self.released.load(Ordering::Acquire) {
            return Err(self.refused());
        }
        let extra = compares.len();
        compares.push(self.guard());
        if store.txn(compares, ops).await?.succeeded {
            return Ok(true);
        }
        // Which compare failed is not said: the claim is read. Still ours with no other
        // compare cannot be (the token never changes): fenced all the same.
        match self.check(store).await? {
            Held::Yes if extra > 0 => Ok(false),
            _ => {
                self.fence();
                Err(self.refused())
            }
        }
    }

    /// Looks at the claim; fences this process when it is no longer its own.
    pub(super) async fn check(&self, store: &Store) -> Result<Held, StoreError> {
        if self.is_fenced() {
            return Ok(Held::No);
        }
        let found = store.get(&self.key).await?.map(|kv| kv.mod_revision);
        let h = held(found, self.token);
        if h == Held::No {
            self.fence();
        }
        Ok(h)
    }

    /// Deletes the claim if it is still this process's (the process leaves; the next one
    /// with this node id claims again); writes are refused from then on. A claim no longer
    /// this process's fences it: told to stop before it noticed, it learns it here.
    pub(super) async fn release(&self, store: &Store) {
        if self.is_fenced() {
            return;
        }
        self.released.store(true, Ordering::Release);
        let deleted = store
            .txn(vec![self.guard()], vec![Op::Delete(self.key.clone())])
            .await;
        match deleted {
            Ok(r) if r.succeeded => {}
            Ok(_) => self.fence(),
            Err(e) => {
                warn!(node = %self.node_id, error = %e, "releasing the node id's claim failed: the next process claims it over it")
            }
        }
    }

    fn guard(&self) -> Compare {
        Compare::ModRevision {
            key: self.key.clone(),
            revision: self.token,
        }
    }

    fn refused(&self) -> StoreError {
        StoreError::Fenced(self.node_id.clone())
    }

    fn fence(&self) {
        if !self.fenced.send_replace(true) {
            error!(node = %self.node_id, ours = self.token, "node id claimed by a newer process: this one stops writing and stops");
        }
    }
}

/// The claim's value, for an operator reading the key (nothing reads it back): the host
/// (a pod's name), the process and when.
fn describe() -> Vec<u8> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!(
        "host {host} pid {} claimed at unix ms {}",
        std::process::id(),
        dialtone_common::clock::unix_ms()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_revision_this_process_wrote_is_its_claim() {
        let cases = [
            (Some(7), 7, Held::Yes),
            (Some(9), 7, Held::No),
            // Older than ours cannot be read after our write; not ours either.
            (Some(5), 7, Held::No),
            // Deleted: only its holder does, as it leaves.
            (None, 7, Held::No),
        ];
        for (found, token, want) in cases {
            assert_eq!(held(found, token), want, "{found:?} against {token}");
        }
    }
}
