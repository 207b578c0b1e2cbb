//! SIP over UDP, the way a registrar under load wants it: one socket per actor thread, all
//! bound to the same address with SO_REUSEPORT, so the kernel spreads phones over the
//! threads by their source address and keeps each phone on one thread. Each thread's
//! receive loop reads datagrams in batches ([`crate::flow::udp_batch`]) and handles them
//! inline, a REGISTER up to its phone's answer (`registrar::directory`), so a refresh never
//! crosses threads.

use std::{io, net::SocketAddr, os::fd::AsRawFd, sync::Arc};

use actix_rt::ArbiterHandle;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{io::Interest, net::UdpSocket, sync::watch};
use tracing::{info, warn};

use crate::{
    dispatch::Dispatcher,
    error::EdgeError,
    flow::{
        Peer, Replier, Transport,
        udp_batch::{BATCH, Batch},
    },
};

/// Receive buffer asked of the kernel: registration storms arrive in bursts.
const RCVBUF: usize = 4 << 20;

/// Binds `n` sockets to `addr` (the first picks the port when it is 0).
pub fn bind(addr: SocketAddr, n: usize) -> Result<Vec<std::net::UdpSocket>, EdgeError> {
    let err = |source| EdgeError::Listen {
        what: "--sip-udp",
        addr,
        source,
    };
    let mut out: Vec<std::net::UdpSocket> = Vec::with_capacity(n);
    let mut at = addr;
    for _ in 0..n.max(1) {
        let s =
            Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
        s.set_reuse_port(true).map_err(err)?;
        if s.set_recv_buffer_size(RCVBUF).is_err() {
            warn!("could not grow the udp receive buffer");
        }
        s.bind(&at.into()).map_err(err)?;
        s.set_nonblocking(true).map_err(err)?;
        let s: std::net::UdpSocket = s.into();
        at = s.local_addr().map_err(err)?;
        out.push(s);
    }
    info!(addr = %at, sockets = out.len(), "sip udp listening");
    Ok(out)
}

/// Runs one receive loop per socket, each on its own actor arbiter. The socket of the loop
/// that starts first is also the one the edge sends its own requests and forwarded answers
/// out of (`Flows::offer_udp`, before any loop reads).
pub fn serve(
    sockets: Vec<std::net::UdpSocket>,
    arbiters: &[ArbiterHandle],
    handler: Arc<Dispatcher>,
    stop: watch::Receiver<bool>,
) {
    for (i, std_socket) in sockets.into_iter().enumerate() {
        let handler = handler.clone();
        let mut stop = stop.clone();
        let arbiter = &arbiters[i % arbiters.len()];
        arbiter.spawn(async move {
            let socket = match UdpSocket::from_std(std_socket) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    warn!(error = %e, "udp socket could not join the actor thread");
                    return;
                }
            };
            handler.flows().offer_udp(&socket);
            let fd = socket.as_raw_fd();
            crate::flow::udp_out::install(fd);
            let mut batch = Batch::default();
            // Made once, not per datagram: each new one would register with the channel.
            let mut stopped = std::pin::pin!(stop.changed());
            loop {
                tokio::select! {
                    r = socket.readable() => if r.is_err() { continue },
                    _ = &mut stopped => return,
                }
                // A short batch means the queue is empty: it is reported to tokio as
                // WouldBlock, which clears the readiness without another read that would
                // fail with EAGAIN. A full one leaves it set, so the loop reads again
                // (tokio's budget makes it yield to the thread's other tasks now and then).
                let _ = socket.try_io(Interest::READABLE, || match batch.recv(fd)? {
                    BATCH => Ok(()),
                    _ => Err(io::ErrorKind::WouldBlock.into()),
                });
                // ICMP errors of earlier sends surface as failed reads on Linux; they are
                // consumed by the read that reports them, so the loop just goes on.
                crate::flow::udp_out::handling(|| {
                    for (datagram, from) in batch.datagrams() {
                        let peer = Peer {
                            transport: Transport::Udp,
                            addr: from,
                            tls_names: None,
                            replier: Replier::Udp {
                                socket: socket.clone(),
                                to: from,
                                dscp: 0,
                            },
                        };
                        handler.handle(datagram, &peer);
                    }
                });
                crate::flow::udp_out::flush();
            }
        });
    }
}
