//! The queue of due checks of a shard of the directory ([`super::directory`]): its phones
//! by the second each is due to be checked, one entry per phone.

use std::{collections::BTreeSet, sync::Arc};

/// The phones of a shard by the second they are due to be checked, one entry per phone: an
/// awake phone's [`super::phone::Phone::due`], a sleeping one's earliest expiry
/// ([`super::sleeping::wake_at`]). An entry moves only when the check comes earlier (a
/// phone woken by its request, whose sleep check comes before its expiry); one that comes
/// later is found when the entry comes due, which queues it again. So a refresh of an awake
/// phone touches nothing here.
pub(super) type Due = BTreeSet<(u64, Queued)>;

/// A phone in the queue of due checks: the phone map's own key, compared by its address.
/// The queue's searches then compare integers and never read an id's bytes (each would be
/// a cache miss, and phones due in the same second compared their ids byte by byte). So
/// every entry holds the map's key itself, never an equal id from elsewhere (a line's
/// `phone_id` after the credentials were reloaded is another allocation).
#[derive(Clone)]
pub(super) struct Queued(pub(super) Arc<str>);

impl Queued {
    fn addr(&self) -> usize {
        Arc::as_ptr(&self.0).cast::<u8>() as usize
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.addr() == other.addr()
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.addr().cmp(&other.addr())
    }
}

/// The entry of the phone whose map key is `id`, due at `at`.
pub(super) fn queued(at: u64, id: &Arc<str>) -> (u64, Queued) {
    (at, Queued(id.clone()))
}
