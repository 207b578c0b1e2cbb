//! The queue between what answers over a stream connection (the handler, the phone actors)
//! and the task that writes the connection, bounded in bytes. SIP over a stream has no
//! retransmissions, so an answer cannot just be dropped when the peer does not read: as
//! Kamailio does past `tcp_conn_wq_max`, the connection is closed instead (its phone
//! reconnects and registers again), and the edge's memory stays flat whatever the peer
//! does.
//!
//! A queue costs a connection 144 bytes while idle (a lock, an empty list, the writer's
//! waker, one wake-up for those waiting for it to stop and the connection's
//! [`FlowControl`]; heaptrack measured 128 before the control moved in, 2026-12-06): it
//! lives as long as the connection, so a fleet of idle phones over TCP pays it once per
//! phone. The writer waits through [`QueueRx::poll_next`], whose
//! waker lives here, so waiting costs the connection's task nothing.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::FlowControl;

/// Bytes queued for one connection before it is closed.
pub const MAX_QUEUED_BYTES: usize = 256 * 1024;

/// Messages queued for one connection (the byte bound usually comes first).
const MAX_QUEUED_MESSAGES: usize = 1024;

/// What the senders and the writer share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes those waiting for the writer to stop.
    writer_stopped: Notify,
    /// Senders alive: when the last goes, the queue closes after what it holds.
    senders: AtomicUsize,
    /// The connection's idle timeout and marking.
    control: FlowControl,
}

#[derive(Debug, Default)]
struct State {
    messages: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The writer stops once the queue is empty.
    closing: bool,
    /// The writer has stopped.
    stopped: bool,
    /// Woken when a message is queued or the queue closes: the writer waiting for either.
    writer: Option<Waker>,
}

/// Releases the queue's lock `st`, then wakes the writer if it waits (woken under the
/// lock, it would only wait for it).
fn unlock_and_wake_writer(mut st: parking_lot::MutexGuard<'_, State>) {
    let writer = st.writer.take();
    drop(st);
    if let Some(w) = writer {
        w.wake();
    }
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

/// A new queue, for a connection whose idle timeout is `idle_s` seconds
/// ([`crate::flow::NOT_AUTHENTICATED`] for one yet to prove itself).
pub fn queue(idle_s: u64) -> (QueueTx, QueueRx) {
    let shared = Arc::new(Shared {
        senders: AtomicUsize::new(1),
        control: FlowControl::new(idle_s),
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
            unlock_and_wake_writer(st);
            return false;
        }
        st.bytes += bytes.len();
        st.messages.push_back(bytes);
        unlock_and_wake_writer(st);
        true
    }

    /// Asks the writer to stop (and so the connection to close) once it has written what
    /// is queued.
    pub fn close(&self) {
        let mut st = self.shared.state.lock();
        st.closing = true;
        unlock_and_wake_writer(st);
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

    /// The connection's idle timeout and marking.
    pub fn control(&self) -> &FlowControl {
        &self.shared.control
    }

    /// Whether `other` queues for the same connection.
    pub fn same_queue(&self, other: &QueueTx) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl QueueRx {
    /// The connection's idle timeout and marking.
    pub fn control(&self) -> &FlowControl {
        &self.shared.control
    }

    /// The next message to write; None once the connection is to close.
    pub fn next(&mut self) -> impl Future<Output = Option<Vec<u8>>> + '_ {
        std::future::poll_fn(|cx| self.poll_next(cx))
    }

    /// The next message to write (None once the connection is to close), or Pending with
    /// `cx`'s waker kept until a message is queued or the queue closes. Cancel-safe: a
    /// message leaves the queue only when it is returned.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        let mut st = self.shared.state.lock();
        if let Some(b) = st.messages.pop_front() {
            st.bytes -= b.len();
            if st.messages.is_empty() {
                // An idle connection keeps no room for messages: most of a fleet's
                // connections are idle phones, and a message is rare next to that.
                st.messages = VecDeque::new();
            }
            return Poll::Ready(Some(b));
        }
        if st.closing {
            return Poll::Ready(None);
        }
        // Under the lock a send takes too: one after this look finds the waker.
        match &mut st.writer {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.stopped = true;
        st.messages = VecDeque::new();
        st.bytes = 0;
        st.writer = None;
        drop(st);
        self.shared.writer_stopped.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_writer_is_woken_by_a_message_and_by_closing() {
        let (tx, mut rx) = queue(crate::flow::NOT_AUTHENTICATED);
        let writer = tokio::spawn(async move {
            let first = rx.next().await;
            let second = rx.next().await;
            (first, second)
        });
        // The writer waits on an empty queue before anything is sent.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!writer.is_finished());
        assert!(tx.send(b"x".to_vec()));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        tx.close();
        let (first, second) = tokio::time::timeout(std::time::Duration::from_secs(2), writer)
            .await
            .expect("the writer was not woken")
            .unwrap();
        assert_eq!(first.as_deref(), Some(&b"x"[..]));
        assert_eq!(second, None);
    }

    /// Most connections are idle phones: once what was queued is written, the queue keeps
    /// no room for messages (it kept four, 96 bytes a phone, before 2026-12-06).
    #[tokio::test]
    async fn an_emptied_queue_keeps_no_room() {
        let (tx, mut rx) = queue(crate::flow::NOT_AUTHENTICATED);
        for burst in [1, 3, 40] {
            for _ in 0..burst {
                assert!(tx.send(b"x".to_vec()));
            }
            for _ in 0..burst {
                assert!(rx.next().await.is_some());
            }
            assert_eq!(
                tx.shared.state.lock().messages.capacity(),
                0,
                "after {burst}"
            );
        }
    }

    #[test]
    fn the_queue_carries_its_connections_control() {
        let (tx, rx) = queue(7);
        assert_eq!(tx.control().idle_s.load(Ordering::Relaxed), 7);
        rx.control().dscp.store(46, Ordering::Relaxed);
        assert_eq!(tx.control().dscp.load(Ordering::Relaxed), 46);
    }

    #[tokio::test]
    async fn a_full_queue_closes_the_connection() {
        let (tx, mut rx) = queue(crate::flow::NOT_AUTHENTICATED);
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
