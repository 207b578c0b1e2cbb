//! Watches on the embedded store: the history a watcher resumes from, then live batches
//! from the commit broadcast; a watcher that falls behind is told to re-list.

use std::{collections::VecDeque, sync::Arc};

use tokio::sync::broadcast;

use crate::{
    StoreError,
    types::{WatchBatch, WatchEvent},
};

/// A watch on the embedded store.
pub struct EmbeddedWatch {
    pub(crate) prefix: String,
    pub(crate) rx: broadcast::Receiver<Arc<WatchBatch>>,
    pub(crate) backlog: VecDeque<Arc<WatchBatch>>,
    /// A compaction to report before anything else.
    pub(crate) pending: Option<i64>,
}

impl EmbeddedWatch {
    fn filtered(&self, batch: &WatchBatch) -> Option<WatchBatch> {
        let events: Vec<WatchEvent> = batch
            .events
            .iter()
            .filter(|e| e.key().starts_with(&self.prefix))
            .cloned()
            .collect();
        (!events.is_empty()).then_some(WatchBatch {
            events,
            revision: batch.revision,
        })
    }

    pub(crate) async fn next(&mut self) -> Result<Option<WatchBatch>, StoreError> {
        if let Some(compact_revision) = self.pending.take() {
            return Err(StoreError::Compacted { compact_revision });
        }
        while let Some(b) = self.backlog.pop_front() {
            if let Some(f) = self.filtered(&b) {
                return Ok(Some(f));
            }
        }
        loop {
            match self.rx.recv().await {
                Ok(b) => {
                    if let Some(f) = self.filtered(&b) {
                        return Ok(Some(f));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // The watcher fell too far behind; it must re-list like after compaction.
                    return Err(StoreError::Compacted {
                        compact_revision: 0,
                    });
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }
}
