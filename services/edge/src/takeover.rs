//! An edge restarted under the same node id takes its phones back: the keys the previous
//! process left on the lease this one took over (`NodeLease::resume`) are read, and the
//! bindings among them become sleeping phones again ([`crate::registrar::restore`]), before
//! the listeners serve. Lines with nothing live left are deleted from the store, and so is
//! every other key left on the lease that this process does not take back (a binding that
//! could not be read, another role's or the edge's health records): the lease now lives on
//! with this process, and would keep them alive for ever.

use dialtone_common::clock::unix_ms;
use dialtone_domain::keys;
use dialtone_proto::edge::v1 as pb;
use dialtone_store::{MAX_TXN_OPS, Op, Store, lifecycle::NodeLease};
use prost::Message as _;
use tracing::{info, warn};

use crate::registrar::{directory::Directory, publisher::Publisher, restore::restore};

/// How many keys one read asks for.
const READ_CHUNK: usize = 1000;

/// What was taken back, for the log and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TakenBack {
    pub phones: usize,
    pub contacts: usize,
    pub lines_deleted: usize,
    /// Other keys left on the lease, deleted.
    pub others_deleted: usize,
}

/// Restores the phones whose binding keys are among `left` (the keys on the lease taken
/// over). A key that cannot be read or decoded is skipped: its phone registers again.
pub async fn take_back(
    store: &Store,
    lease: &NodeLease,
    directory: &Directory,
    publisher: &Publisher,
    node: &str,
    left: &[String],
) -> TakenBack {
    let ours: Vec<String> = left
        .iter()
        .filter(|k| keys::parse_binding(k).is_some_and(|(_, _, n)| n == node))
        .cloned()
        .collect();
    let mut stored = Vec::with_capacity(ours.len());
    for chunk in ours.chunks(READ_CHUNK) {
        match store.get_many(chunk).await {
            Ok(kvs) => stored.extend(
                kvs.into_iter()
                    .flatten()
                    .filter_map(|kv| pb::Binding::decode(kv.value.as_slice()).ok()),
            ),
            Err(e) => {
                warn!(error = %e, keys = chunk.len(), "reading bindings to take back failed: those phones register again")
            }
        }
    }
    let restored = restore(stored, node, unix_ms() / 1000);
    let mut out = TakenBack::default();
    let emptied: std::collections::HashSet<String> = restored
        .emptied
        .iter()
        .map(|(p, l)| keys::binding(p, *l, node))
        .collect();
    for key in &emptied {
        publisher.delete(key.clone());
    }
    out.lines_deleted = emptied.len();
    let mut kept = std::collections::HashSet::new();
    kept.insert(keys::member("edge", node));
    kept.insert(keys::node_leases(node));
    for (id, state) in &restored.phones {
        if directory.adopt(id, state) {
            out.phones += 1;
            out.contacts += state.lines.iter().map(|l| l.bindings.len()).sum::<usize>();
            kept.extend(state.lines.iter().map(|l| keys::binding(id, l.index, node)));
        }
    }
    let others: Vec<&String> = left
        .iter()
        .filter(|k| !kept.contains(*k) && !emptied.contains(*k))
        .collect();
    for chunk in others.chunks(MAX_TXN_OPS) {
        let ops = chunk.iter().map(|k| Op::Delete((*k).clone())).collect();
        match lease.write(ops).await {
            Ok(_) => out.others_deleted += chunk.len(),
            Err(e) => {
                warn!(error = %e, keys = chunk.len(), "deleting keys left on the lease failed: they live on with it")
            }
        }
    }
    if !left.is_empty() {
        info!(
            phones = out.phones,
            contacts = out.contacts,
            lines_deleted = out.lines_deleted,
            others_deleted = out.others_deleted,
            "bindings taken back from the previous process"
        );
    }
    out
}
