//! The queue between a stream connection's readers (the handler, the phone actors) and its
//! writer task, bounded in bytes. SIP over a stream has no retransmissions, so an answer
//! cannot just be dropped when the peer does not read: as Kamailio does past
//! `tcp_conn_wq_max`, the connection is closed instead (its phone reconnects and
//! registers again), and the edge's memory stays flat whatever the peer does.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::mpsc;

/// Bytes queued for one connection before it is closed.
pub const MAX_QUEUED_BYTES: usize = 256 * 1024;

/// Messages queued for one connection (the byte bound usually comes first).
const MAX_QUEUED_MESSAGES: usize = 1024;

/// The sending side: cloned into the flow table and every replier of the connection.
#[derive(Clone, Debug)]
pub struct QueueTx {
    tx: mpsc::Sender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

/// The writer's side.
#[derive(Debug)]
pub struct QueueRx {
    rx: mpsc::Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

/// A new queue.
pub fn queue() -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::channel(MAX_QUEUED_MESSAGES);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        QueueTx {
            tx,
            queued: queued.clone(),
        },
        QueueRx { rx, queued },
    )
}

impl QueueTx {
    /// Queues `bytes` for the writer; false when the connection is closed or closing (a
    /// full queue closes it: the writer stops at the empty message that says so).
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        let len = bytes.len();
        if len == 0 {
            return true;
        }
        let before = self.queued.fetch_add(len, Ordering::Relaxed);
        if before + len <= MAX_QUEUED_BYTES && self.tx.try_send(bytes).is_ok() {
            return true;
        }
        self.queued.fetch_sub(len, Ordering::Relaxed);
        self.close();
        false
    }

    /// Asks the writer to stop (and so the connection to close).
    pub fn close(&self) {
        // When even this does not fit, the writer is far behind and sees the full queue's
        // bytes refused anyway: the reader stops on the next send that fails.
        let _ = self.tx.try_send(Vec::new());
    }

    /// Resolves when the writer has stopped.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Whether the writer has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Whether `other` queues for the same connection.
    pub fn same_queue(&self, other: &QueueTx) -> bool {
        self.tx.same_channel(&other.tx)
    }
}

impl QueueRx {
    /// The next message to write; None once the connection is to close.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        let bytes = self.rx.recv().await.filter(|b| !b.is_empty())?;
        self.queued.fetch_sub(bytes.len(), Ordering::Relaxed);
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_closes_the_connection() {
        let (tx, mut rx) = queue();
        assert!(tx.send(b"a".to_vec()));
        assert!(tx.send(vec![b'b'; MAX_QUEUED_BYTES - 1]));
        assert_eq!(rx.next().await.as_deref(), Some(&b"a"[..]));
        // One byte of room: the next message does not fit, and the queue ends after what
        // was in it.
        assert!(!tx.send(b"cc".to_vec()));
        assert_eq!(rx.next().await.map(|b| b.len()), Some(MAX_QUEUED_BYTES - 1));
        assert_eq!(rx.next().await, None);
        drop(rx);
        tx.closed().await;
        assert!(tx.is_closed() && !tx.send(b"d".to_vec()));
    }
}
