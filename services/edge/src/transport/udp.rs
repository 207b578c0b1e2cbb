//! SIP over UDP: several receive loops share one socket; each datagram is one message.

use std::{net::SocketAddr, os::fd::AsRawFd, sync::Arc};

use tokio::{net::UdpSocket, sync::watch, task::JoinHandle};
use tracing::{info, warn};

use super::{Peer, Replier, Transport};
use crate::{error::EdgeError, handler::Handler};

/// Receive buffer asked of the kernel: registration storms arrive in bursts.
const RCVBUF: libc::c_int = 4 << 20;

pub async fn bind(addr: SocketAddr) -> Result<Arc<UdpSocket>, EdgeError> {
    let socket = UdpSocket::bind(addr)
        .await
        .map_err(|source| EdgeError::Listen {
            what: "--sip-udp",
            addr,
            source,
        })?;
    grow_receive_buffer(&socket);
    Ok(Arc::new(socket))
}

fn grow_receive_buffer(socket: &UdpSocket) {
    let fd = socket.as_raw_fd();
    let size = RCVBUF;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
    warn!("could not grow the udp receive buffer");
}

/// Starts `loops` receive loops on the socket; they end when `stop` turns true.
pub fn serve(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
    loops: usize,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    if let Ok(a) = socket.local_addr() {
        info!(addr = %a, "sip udp listening");
    }
    (0..loops.max(1))
        .map(|_| {
            let socket = socket.clone();
            let handler = handler.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_535];
                loop {
                    let (n, from) = tokio::select! {
                        r = socket.recv_from(&mut buf) => match r {
                            Ok(x) => x,
                            // ICMP errors of earlier sends surface here on Linux; keep going.
                            Err(_) => continue,
                        },
                        _ = stop.changed() => return,
                    };
                    let peer = Peer {
                        transport: Transport::Udp,
                        addr: from,
                        replier: Replier::Udp {
                            socket: socket.clone(),
                            to: from,
                        },
                        idle: None,
                    };
                    handler.handle(&buf[..n], &peer);
                }
            })
        })
        .collect()
}
