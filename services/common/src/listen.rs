//! Listening sockets whose accept queue is as deep as the kernel allows.
//!
//! tokio's (and std's) `TcpListener::bind` asks the kernel for an accept queue of 128
//! connections. When thousands of phones reconnect at once (a site's network blip, a load
//! balancer losing its flows, a power cut's provisioning fetches) and the process is busy
//! for a few hundred milliseconds, the queue fills and the kernel drops further SYNs: each
//! such phone sends its SYN again 1, 3 and 7 s later, and its registration takes seconds
//! or times out while the server sits idle afterwards.

use std::{io, net::SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// The accept queue asked for. Linux takes the smaller of this and `net.core.somaxconn`
/// (4096 by default since 5.4), so the kernel's own setting decides, as it does for Go's
/// listeners; Kamailio asks for 1024. Each queued connection is one the kernel has already
/// completed, kept only until it is accepted: the queue bounds what waiting costs.
pub const BACKLOG: u32 = 65_535;

/// A TCP listener on `addr` (address reuse on, as tokio's `bind` sets it) with an accept
/// queue of [`BACKLOG`]. Needs a tokio runtime.
pub fn tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpStream;

    /// The kernel's cap on an accept queue (`net.core.somaxconn`).
    fn somaxconn() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(128)
    }

    #[tokio::test]
    async fn connections_nobody_has_accepted_yet_are_queued_past_128() {
        let listener = super::tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // More than a queue of 128 holds (129: the kernel lets one past it), within what
        // the kernel allows. Connected one after another and kept open: with a queue of
        // 128, the 130th's SYN is dropped and sent again only a second later.
        let n = somaxconn().min(400);
        assert!(n > 200, "net.core.somaxconn is {n}: too small to tell");
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
