//! Listening sockets whose accept queue is as deep as the kernel allows.
//!
//! tokio's (and std's) `TcpListener::bind` asks the kernel for an accept queue of 128
//! connections. When many phones reconnect at once (a site's network blip, a load
//! balancer losing its flows, a power cut's provisioning fetches) and the process is busy
//! for a moment, the queue fills and the kernel drops further SYNs: each such phone sends
//! its SYN again a second later (then 3 s, then 7 s), however idle the server is by then.

use std::{io, net::SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// The accept queue asked for: as much as `listen` takes. Linux takes the smaller of this
/// and `net.core.somaxconn` (4096 by default since 5.4), so the kernel's own setting
/// decides, as it does for Go's listeners; Kamailio asks for 1024. A queued connection is
/// one the kernel has already completed, kept only until it is accepted: the queue bounds
/// what waiting costs.
pub const BACKLOG: u32 = i32::MAX as u32;

/// A TCP listener on `addr` with an accept queue of [`BACKLOG`], address reuse on as
/// tokio's `bind` sets it on Unix (a restarted process binds its port at once). Needs a
/// tokio runtime.
pub fn tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use std::{os::fd::AsRawFd, time::Duration};

    use tokio::net::{TcpListener, TcpStream};

    /// The kernel's cap on an accept queue (`net.core.somaxconn`).
    fn somaxconn() -> u32 {
        let text = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .expect("reading net.core.somaxconn");
        text.trim().parse().expect("net.core.somaxconn is a number")
    }

    /// The accept queue a listening socket was given: Linux reports it in `TCP_INFO`'s
    /// `tcpi_sacked` for a socket in LISTEN.
    fn accept_queue(listener: &TcpListener) -> u32 {
        // SAFETY: `tcp_info` is plain integers, for which zero is a value.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: a valid socket this test owns, and a buffer of the size passed.
        let rc = unsafe {
            libc::getsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                std::ptr::addr_of_mut!(info).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info.tcpi_sacked
    }

    #[tokio::test]
    async fn the_accept_queue_is_the_kernels_limit_and_holds_what_nobody_accepted_yet() {
        let listener = super::tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        // tokio's bind gives 128 whatever the kernel allows.
        assert_eq!(accept_queue(&listener), somaxconn());
        // Connected one after another, kept open, none accepted: past a queue of 128
        // (129: the kernel lets one past it) the next SYN would be dropped and sent again
        // only a second later.
        let addr = listener.local_addr().unwrap();
        let n = somaxconn().min(400) as usize;
        let open = tokio::time::timeout(Duration::from_millis(900), async {
            let mut open = Vec::with_capacity(n);
            for _ in 0..n {
                open.push(TcpStream::connect(addr).await.expect("connected"));
            }
            open
        })
        .await
        .expect("every connection completed without a SYN sent again");
        assert_eq!(open.len(), n);
    }
}
