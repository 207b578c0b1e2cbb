//! The queue between what answers over a stream connection (the handler, the phone actors)
//! and the task that writes the connection, bounded in bytes. SIP over a stream has no
//! retransmissions, so an answer cannot just be dropped when the peer does not read: as
//! Kamailio does past `tcp_conn_wq_max`, the connection is closed instead (its phone
//! reconnects and registers again), and the edge's memory stays flat whatever the peer
//! does.
//!
//! A queue costs a connection about 250 bytes while idle (a lock, a list that keeps room
//! for at most four messages once emptied, and two wake-ups): it lives as long as the
//! connection, so a fleet of idle phones over TCP pays it once per phone.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Bytes queued for one connection before it is closed.
pub const MAX_QUEUED_BYTES: usize = 256 * 1024;

/// Messages queued for one connection (the byte bound usually comes first).
const MAX_QUEUED_MESSAGES: usize = 1024;

/// What the senders and the writer share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer (a message queued, or the queue closing).
    to_writer: Notify,
    /// Wakes those waiting for the writer to stop.
    writer_stopped: Notify,
    /// Senders alive: when the last goes, the queue closes after what it holds.
    senders: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    messages: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The writer stops once the queue is empty.
    closing: bool,
    /// The writer has stopped.
    stopped: bool,
}

/// The sending side: cloned into the flow table and every replier of the connection.
#[derive(Debug)]
pub struct QueueTx {
    shared: Arc<Shared>,
}

/// The writer's side.
#[derive(Debug)]
pub struct QueueRx {
    shared: Arc<Shared>,
}

/// A new queue.
pub fn queue() -> (QueueTx, QueueRx) {
    let shared = Arc::new(Shared {
        senders: AtomicUsize::new(1),
        ..Shared::default()
    });
    (
        QueueTx {
            shared: shared.clone(),
        },
        QueueRx { shared },
    )
}

impl Clone for QueueTx {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        QueueTx {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close();
        }
    }
}

impl QueueTx {
    /// Queues `bytes` for the writer; false when the connection is closed or closing (a
    /// full queue closes it: the writer stops once it has written what the queue held).
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        if bytes.is_empty() {
            return true;
        }
        let mut st = self.shared.state.lock();
        if st.closing || st.stopped {
            return false;
        }
        if st.bytes + bytes.len() > MAX_QUEUED_BYTES || st.messages.len() >= MAX_QUEUED_MESSAGES {
            st.closing = true;
            drop(st);
            self.shared.to_writer.notify_one();
            return false;
        }
        st.bytes += bytes.len();
        st.messages.push_back(bytes);
        drop(st);
        self.shared.to_writer.notify_one();
        true
    }

    /// Asks the writer to stop (and so the connection to close) once it has written what
    /// is queued.
    pub fn close(&self) {
        self.shared.state.lock().closing = true;
        self.shared.to_writer.notify_one();
    }

    /// Resolves when the writer has stopped.
    pub async fn closed(&self) {
        loop {
            let stopped = self.shared.writer_stopped.notified();
            tokio::pin!(stopped);
            stopped.as_mut().enable();
            if self.is_closed() {
                return;
            }
            stopped.await;
        }
    }

    /// Whether the writer has stopped.
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().stopped
    }

    /// Whether `other` queues for the same connection.
    pub fn same_queue(&self, other: &QueueTx) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl QueueRx {
    /// The next message to write; None once the connection is to close.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            {
                let mut st = self.shared.state.lock();
                if let Some(b) = st.messages.pop_front() {
                    st.bytes -= b.len();
                    if st.messages.is_empty() && st.messages.capacity() > 4 {
                        // A burst went through: an idle connection keeps room for four
                        // messages at most.
                        st.messages = VecDeque::new();
                    }
                    return Some(b);
                }
                if st.closing {
                    return None;
                }
            }
            // A send between the look above and this wait leaves its wake-up stored.
            self.shared.to_writer.notified().await;
        }
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.stopped = true;
        st.messages = VecDeque::new();
        st.bytes = 0;
        drop(st);
        self.shared.writer_stopped.notify_waiters();
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
