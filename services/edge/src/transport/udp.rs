//! SIP over UDP, the way a registrar under load wants it: one socket per actor thread, all
//! bound to the same address with SO_REUSEPORT, so the kernel spreads phones over the
//! threads by their source address and keeps each phone on one thread. Each thread's
//! receive loop reads datagrams in batches ([`crate::flow::udp_batch`]) and handles them
//! inline, a REGISTER up to its phone's answer (`registrar::directory`), so a refresh never
//! crosses threads. Under load a loop reads on a clock instead of being woken for each
//! datagram ([`crate::flow::udp_pace`]).

use std::{
    io,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Instant,
};

use actix_rt::ArbiterHandle;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::watch,
    time::{Interval, MissedTickBehavior},
};
use tracing::{error, info, warn};

use crate::{
    dispatch::Dispatcher,
    error::EdgeError,
    flow::{
        Peer, Replier, Transport,
        udp_batch::{BATCH, Batch},
        udp_pace::{Pace, TICK, Wait},
    },
    metrics,
};

/// Receive buffer asked of the kernel: registration storms arrive in bursts.
const RCVBUF: usize = 4 << 20;

/// Batches a tick reads at most before the loop lets the thread's other tasks run: a flood
/// must not starve its timers. A tick that reads this many reads again at once, unslept.
const TICK_BATCHES: usize = 64;

/// Datagrams a tick may read and still sleep until the next: one that read more reads
/// again at once (after letting the thread's other tasks run). A receive buffer capped by
/// a default `net.core.rmem_max` (425,984 bytes granted) holds about 400 small datagrams,
/// so a flood must not wait out a whole tick.
const TICK_HURRY: usize = 128;

/// Binds `n` sockets to `addr` (the first picks the port when it is 0).
pub fn bind(addr: SocketAddr, n: usize) -> Result<Vec<UdpSocket>, EdgeError> {
    let err = |source| EdgeError::Listen {
        what: "--sip-udp",
        addr,
        source,
    };
    let mut out: Vec<UdpSocket> = Vec::with_capacity(n);
    let mut at = addr;
    for _ in 0..n.max(1) {
        let s =
            Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
        s.set_reuse_port(true).map_err(err)?;
        // Linux grants twice what it is asked, up to twice net.core.rmem_max, silently.
        let granted = s
            .set_recv_buffer_size(RCVBUF)
            .and_then(|()| s.recv_buffer_size());
        match granted {
            Ok(n) if n >= RCVBUF => {}
            Ok(n) => warn!(
                granted = n,
                asked = RCVBUF,
                "udp receive buffer smaller than asked: raise net.core.rmem_max"
            ),
            Err(e) => warn!(error = %e, "could not grow the udp receive buffer"),
        }
        s.bind(&at.into()).map_err(err)?;
        s.set_nonblocking(true).map_err(err)?;
        let s: UdpSocket = s.into();
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
    sockets: Vec<UdpSocket>,
    arbiters: &[ArbiterHandle],
    handler: Arc<Dispatcher>,
    stop: watch::Receiver<bool>,
) {
    for (i, socket) in sockets.into_iter().enumerate() {
        let handler = handler.clone();
        let stop = stop.clone();
        let arbiter = &arbiters[i % arbiters.len()];
        arbiter.spawn(async move {
            let socket = Arc::new(socket);
            handler.flows().offer_udp(&socket);
            crate::flow::udp_out::install(socket.as_raw_fd());
            receive(
                Loop {
                    socket,
                    handler,
                    batch: Batch::default(),
                },
                stop,
            )
            .await;
        });
    }
}

/// One receive loop's socket and what it reads into.
struct Loop {
    socket: Arc<UdpSocket>,
    handler: Arc<Dispatcher>,
    batch: Batch,
}

/// Reads and answers until `stop` changes, woken by the socket or on a clock as
/// [`Pace`] decides. Woken, the socket is registered with the thread's poller; on the
/// clock it is not, so its datagrams wake nobody.
async fn receive(mut l: Loop, mut stop: watch::Receiver<bool>) {
    let mut pace = Pace::default();
    // Whether the last registration failed: said once, not at each round of ticks.
    let mut refused = false;
    // Made once, not per wait: each new one would register with the channel.
    let mut stopped = std::pin::pin!(stop.changed());
    loop {
        match pace.wait() {
            Wait::Woken => {
                // SAFETY: the registration holds a clone of the `Arc` that owns the socket,
                // so its descriptor stays open, the same one, until the registration drops.
                let registered = unsafe {
                    AsyncFd::register_with_interest(l.socket.clone(), Interest::READABLE)
                };
                let registered = match registered {
                    Ok(r) => {
                        if std::mem::take(&mut refused) {
                            info!("udp socket joined its thread's poller again");
                        }
                        r
                    }
                    // The poller is full (max_user_watches) or the kernel short of
                    // memory: the socket is read on the clock until it can join.
                    Err(e) => {
                        if !std::mem::replace(&mut refused, true) {
                            error!(error = %e, "udp socket could not join its thread's poller; reading it on a clock");
                        }
                        pace = Pace::ticking();
                        continue;
                    }
                };
                let mut woken_at = Instant::now();
                while pace.wait() == Wait::Woken {
                    let mut ready = tokio::select! {
                        // It fails only when the thread's runtime is going away.
                        r = registered.readable() => match r {
                            Ok(r) => r,
                            Err(_) => return,
                        },
                        _ = &mut stopped => return,
                    };
                    // A short batch means the queue is empty: it is reported to tokio as
                    // WouldBlock, which clears the readiness without another read that
                    // would fail with EAGAIN. A full one leaves it set, so the loop reads
                    // again (tokio's budget makes it yield to the thread's other tasks now
                    // and then).
                    let mut read = 0;
                    let _ = ready.try_io(|_| {
                        read = l.batch.recv(l.socket.as_raw_fd())?;
                        match read {
                            BATCH => Ok(()),
                            _ => Err(io::ErrorKind::WouldBlock.into()),
                        }
                    });
                    l.answer();
                    let now = Instant::now();
                    pace.woken(now - woken_at, read);
                    woken_at = now;
                }
                // Dropping the registration takes the socket out of the poller.
            }
            Wait::Ticking => {
                let _ticking = metrics::LoopTicking::start();
                let mut clock = clock();
                while pace.wait() == Wait::Ticking {
                    tokio::select! {
                        _ = clock.tick() => {}
                        _ = &mut stopped => return,
                    }
                    metrics::UDP_TICKS.fetch_add(1, Relaxed);
                    let (read, drained) = l.drain();
                    pace.ticked(read);
                    if !drained || read > TICK_HURRY {
                        tokio::task::yield_now().await;
                        clock.reset_immediately();
                    }
                }
            }
        }
    }
}

/// A tick each [`TICK`], the first one a tick from now; a late one is not made up for.
fn clock() -> Interval {
    let mut clock = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
    clock.set_missed_tick_behavior(MissedTickBehavior::Delay);
    clock
}

impl Loop {
    /// Reads what is queued, up to [`TICK_BATCHES`] batches, answering each batch as it
    /// comes; returns how many datagrams it read and whether it found the queue empty.
    fn drain(&mut self) -> (usize, bool) {
        let mut read = 0;
        for _ in 0..TICK_BATCHES {
            match self.batch.recv(self.socket.as_raw_fd()) {
                Ok(n) => {
                    read += n;
                    self.answer();
                    if n < BATCH {
                        return (read, true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (read, true),
                // An error the socket reports is consumed by the read that reports it.
                Err(_) => {}
            }
        }
        (read, false)
    }

    /// Handles the datagrams of the last read, then sends the answers queued meanwhile.
    fn answer(&self) {
        // A read that failed left no datagram here.
        crate::flow::udp_out::handling(|| {
            for (datagram, from) in self.batch.datagrams() {
                let peer = Peer {
                    transport: Transport::Udp,
                    addr: from,
                    tls_names: None,
                    replier: Replier::Udp {
                        socket: self.socket.clone(),
                        to: from,
                        dscp: 0,
                    },
                };
                self.handler.handle(datagram, &peer);
            }
        });
        crate::flow::udp_out::flush();
    }
}
