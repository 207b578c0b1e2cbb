//! UDP responses leave an actor thread in batches. The thread's receive loop answers what
//! it reads (a REGISTER's phone answers inline, on the same thread); each answer
//! is queued here and the queue goes out in one `sendmmsg` ([`super::udp_batch::send_all`])
//! when it holds a batch, when the loop has handled what it read, and before the thread
//! sleeps (the arbiter's park hook, [`flush`]). A response so waits only for the work the
//! thread already has in hand, and a burst costs one system call per batch instead of one
//! per datagram. Threads without a receive loop (the tokio runtime's) send directly.

use std::{cell::RefCell, net::SocketAddr, os::fd::RawFd};

use super::udp_batch::{BATCH, Outgoing, send_all};

struct Outbox {
    fd: RawFd,
    queued: Vec<Outgoing>,
}

thread_local! {
    static OUTBOX: RefCell<Option<Outbox>> = const { RefCell::new(None) };
}

/// Makes this thread queue what it sends on `fd` (the socket its receive loop reads).
pub fn install(fd: RawFd) {
    OUTBOX.with_borrow_mut(|o| {
        *o = Some(Outbox {
            fd,
            queued: Vec::with_capacity(BATCH),
        })
    });
}

/// Queues `bytes` for `to` (marked with `dscp`, 0: unmarked) when this thread batches
/// sends on `fd`; else gives them back, to be sent directly.
pub fn queue(fd: RawFd, to: SocketAddr, bytes: Vec<u8>, dscp: u8) -> Result<(), Vec<u8>> {
    OUTBOX.with_borrow_mut(|o| match o {
        Some(o) if o.fd == fd => {
            o.queued.push(Outgoing { to, bytes, dscp });
            if o.queued.len() >= BATCH {
                send(o);
            }
            Ok(())
        }
        _ => Err(bytes),
    })
}

thread_local! {
    /// Set while this thread's UDP receive loop handles what it read.
    static HANDLING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, the UDP receive loop's handling of what it read: what `f` starts may run on
/// this thread ([`in_loop`]). The loop itself runs in its arbiter's `LocalSet`; other tasks
/// on the thread's runtime (not in it) must not `spawn_local`.
pub fn handling<R>(f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            HANDLING.set(false);
        }
    }
    HANDLING.set(true);
    let _reset = Reset;
    f()
}

/// Whether this is a UDP receive loop handling what it read (see [`handling`]).
pub fn in_loop() -> bool {
    HANDLING.get()
}

/// Sends what this thread has queued.
pub fn flush() {
    OUTBOX.with_borrow_mut(|o| {
        if let Some(o) = o.as_mut().filter(|o| !o.queued.is_empty()) {
            send(o);
        }
    });
}

fn send(o: &mut Outbox) {
    send_all(o.fd, &o.queued);
    o.queued.clear();
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn queued_sends_wait_for_a_flush_or_a_full_batch() {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let to = rx.local_addr().unwrap();
        let fd = tx.as_raw_fd();
        let mut buf = [0u8; 64];
        let mut next = || {
            let n = rx.recv(&mut buf).ok()?;
            Some(buf[..n].to_vec())
        };
        // Not installed on this thread: the bytes come back to be sent directly.
        assert_eq!(queue(fd, to, b"x".to_vec(), 0), Err(b"x".to_vec()));
        install(fd);
        assert_eq!(queue(fd + 1000, to, b"y".to_vec(), 0), Err(b"y".to_vec()));
        queue(fd, to, b"0".to_vec(), 0).unwrap();
        assert_eq!(next(), None, "sent before the flush");
        flush();
        assert_eq!(next().as_deref(), Some(&b"0"[..]));
        // A full batch goes without a flush.
        for i in 0..BATCH {
            queue(fd, to, vec![b'a' + i as u8], 0).unwrap();
        }
        for i in 0..BATCH {
            assert_eq!(next(), Some(vec![b'a' + i as u8]));
        }
        assert_eq!(next(), None);
        flush();
        assert_eq!(next(), None, "nothing was left to send");
    }
}
