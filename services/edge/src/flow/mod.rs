//! The ground floor of the edge: what a message came over and how to answer it. Value
//! types ([`Transport`], [`Peer`], [`Replier`], a request's timed [`Answer`]) and the table of open flows ([`Flows`]),
//! plus the two ways a reply leaves: the per-thread UDP outbox ([`udp_out`], sent in
//! batches by [`udp_batch`]) and a stream connection's byte-bounded queue
//! ([`write_queue`]); and when a UDP receive loop reads ([`udp_pace`]). Everything above
//! (transport, registrar, delivery, dispatch) speaks these; nothing here knows SIP beyond
//! a transport's name.

mod answer;
pub(crate) mod udp_batch;
pub(crate) mod udp_out;
pub(crate) mod udp_pace;
pub(crate) mod write_queue;

pub use answer::Answer;
pub use dialtone_sip::transport::{FlowSource, Transport};

use std::{
    collections::HashMap,
    net::{SocketAddr, UdpSocket},
    os::fd::{AsRawFd, RawFd},
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
};

use dialtone_proto::edge::v1::SipTransport;
use parking_lot::Mutex;

/// [`FlowControl::idle_s`] of a stream connection no REGISTER over has authenticated yet. No real
/// timeout is 0 (a line's persistent-connection timeout is at least 15 s), so a connection
/// whose timeout happens to equal [`UNAUTHENTICATED_IDLE`] is not taken for unproven.
pub const NOT_AUTHENTICATED: u64 = 0;

/// The wire name of a transport in the protos.
pub fn proto(t: Transport) -> SipTransport {
    match t {
        Transport::Udp => SipTransport::Udp,
        Transport::Tcp => SipTransport::Tcp,
        Transport::Tls => SipTransport::Tls,
        Transport::Ws => SipTransport::Ws,
        Transport::Wss => SipTransport::Wss,
    }
}

/// The transport a proto names, inverse of [`proto`] (none for `UNSPECIFIED` or an
/// unknown number).
pub fn from_proto(t: i32) -> Option<Transport> {
    Some(match SipTransport::try_from(t).ok()? {
        SipTransport::Udp => Transport::Udp,
        SipTransport::Tcp => Transport::Tcp,
        SipTransport::Tls => Transport::Tls,
        SipTransport::Ws => Transport::Ws,
        SipTransport::Wss => Transport::Wss,
        SipTransport::Unspecified => return None,
    })
}

/// A way back to a peer.
#[derive(Clone, Debug)]
pub enum Replier {
    /// A datagram to `to` from the edge's socket.
    Udp {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
        /// The DSCP its datagrams carry (0: unmarked): the phone profile's SIP DSCP once
        /// the edge knows which phone it answers (see [`Replier::marked`]).
        dscp: u8,
    },
    /// A message queued on a connection's writer (bounded in bytes: see
    /// [`write_queue`]).
    Stream(write_queue::QueueTx),
}

impl Replier {
    /// Sends a message; false when the flow is gone or the socket is full (the peer
    /// retransmits over UDP; a stream is closing anyway). A datagram queued for a batch
    /// counts as sent: a full socket drops it later, as it would have now.
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        match self {
            // Batched when sent from the socket's own actor thread (see `udp_out`).
            Replier::Udp { socket, to, dscp } => {
                let fd = socket.as_raw_fd();
                match udp_out::queue(fd, *to, bytes, *dscp) {
                    Ok(()) => true,
                    Err(bytes) if *dscp == 0 => socket.send_to(&bytes, *to).is_ok(),
                    Err(bytes) => {
                        let one = udp_batch::Outgoing {
                            to: *to,
                            bytes,
                            dscp: *dscp,
                        };
                        udp_batch::send_all(fd, std::slice::from_ref(&one)) == 1
                    }
                }
            }
            // A full queue means a peer that does not read: its connection is closed.
            Replier::Stream(tx) => tx.send(bytes),
        }
    }
}

impl Replier {
    /// The queue of the connection it answers over (none: UDP).
    pub fn queue(&self) -> Option<&write_queue::QueueTx> {
        match self {
            Replier::Stream(tx) => Some(tx),
            Replier::Udp { .. } => None,
        }
    }

    /// This replier with its datagrams marked with `dscp` (a phone profile's SIP DSCP). A
    /// stream connection is marked as a whole instead, when a REGISTER over it is
    /// authenticated ([`FlowControl`]).
    pub fn marked(self, dscp: u8) -> Self {
        match self {
            Replier::Udp { socket, to, .. } => Replier::Udp { socket, to, dscp },
            stream => stream,
        }
    }
}

/// What the edge decides about a stream connection after it opened, shared between its
/// reader and writer and the dispatcher (which sets both when a REGISTER over the
/// connection authenticates). It lives in the connection's write queue
/// ([`write_queue::QueueTx::control`]): one allocation per connection, not two.
#[derive(Debug, Default)]
pub struct FlowControl {
    /// Idle timeout in seconds: [`NOT_AUTHENTICATED`] until a REGISTER over the connection
    /// is authenticated, then the handler's stream idle or the line's persistent-connection
    /// timeout (WS/WSS).
    pub idle_s: AtomicU64,
    /// The DSCP the connection's packets carry from the next write on (0: unmarked): the
    /// SIP DSCP of the profile of the phone that registered over it.
    pub dscp: AtomicU8,
}

impl FlowControl {
    /// A connection's control, idle for `idle_s` and unmarked.
    pub fn new(idle_s: u64) -> Self {
        FlowControl {
            idle_s: AtomicU64::new(idle_s),
            dscp: AtomicU8::new(0),
        }
    }

    /// Marks the socket `fd` with the wanted DSCP when it differs from `applied` (which
    /// follows once the mark is set): IP_TOS towards an IPv4 peer (an IPv4-mapped one on a
    /// dual-stack socket too, whose packets are IPv4), IPV6_TCLASS towards an IPv6 one.
    ///
    /// # Safety
    /// `fd` must be the connection's socket, open for the whole call: the caller holds one
    /// half of the connection, which keeps it open.
    pub(crate) unsafe fn apply_dscp(&self, fd: Option<RawFd>, applied: &mut u8) {
        let want = self.dscp.load(Ordering::Relaxed);
        let Some(fd) = fd.filter(|_| want != *applied) else {
            return;
        };
        // SAFETY: the caller keeps `fd` open (see above).
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&borrowed);
        let tos = u32::from(want) << 2;
        let v6_peer = sock
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| match a {
                SocketAddr::V6(a) => a.ip().to_ipv4_mapped().is_none(),
                SocketAddr::V4(_) => false,
            });
        let set = if v6_peer {
            sock.set_tclass_v6(tos)
        } else {
            sock.set_tos_v4(tos)
        };
        match set {
            Ok(()) => *applied = want,
            Err(e) => tracing::debug!(error = %e, "cannot mark a connection's dscp"),
        }
    }
}

/// Where a message came from and how to answer it.
#[derive(Clone, Debug)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub replier: Replier,
    /// The names of the verified client certificate a TLS or WSS connection presented
    /// (none otherwise; UDP peers are made per datagram, so this costs them nothing).
    pub tls_names: Option<Arc<[String]>>,
}

impl Peer {
    /// A stream connection's idle timeout and marking ([`FlowControl`], kept in its write
    /// queue). None over UDP.
    pub fn control(&self) -> Option<&FlowControl> {
        self.replier.queue().map(write_queue::QueueTx::control)
    }

    /// The flow it came over, recorded in bindings.
    pub fn source(&self) -> FlowSource {
        FlowSource {
            transport: self.transport,
            addr: self.addr,
        }
    }
}

type FlowSender = write_queue::QueueTx;

/// Opens connections from the edge to servers (carriers' TCP and TLS trunk targets). The
/// transport floor implements it; the floors below reach a target through
/// [`Flows::reach`] without knowing how a connection is served.
pub trait Connector: Send + Sync {
    /// A connection to `target` (TLS: its certificate must carry `tls_name`, else the
    /// target's IP), served like an accepted one; none when it cannot be opened.
    fn connect(
        &self,
        target: FlowSource,
        tls_name: Option<Arc<str>>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<Replier>> + Send + '_>>;
}

/// The edge's open flows, so requests to phones (NOTIFY) can use the connection a phone
/// registered over.
#[derive(Default)]
pub struct Flows {
    udp: Mutex<Option<Arc<UdpSocket>>>,
    streams: Mutex<HashMap<(Transport, SocketAddr), FlowSender>>,
    connector: std::sync::OnceLock<Arc<dyn Connector>>,
}

impl Flows {
    /// Makes `socket` the one answers to UDP flows go out of, unless one already is. Every
    /// receive loop offers its socket before its first read (they share one address): a
    /// request read by whichever loop starts first then finds a socket to reach phones
    /// through (a forwarded request read before any was set found no flow, and was answered
    /// 480 although the phone was registered, when an edge restarted under load).
    pub fn offer_udp(&self, socket: &Arc<UdpSocket>) {
        self.udp.lock().get_or_insert_with(|| socket.clone());
    }

    pub fn open(&self, t: Transport, addr: SocketAddr, tx: FlowSender) {
        self.streams.lock().insert((t, addr), tx);
    }

    /// A connection closed: its entry goes, unless a newer connection to the same address
    /// has replaced it (the edge's own connections to a carrier may overlap).
    pub fn close(&self, t: Transport, addr: SocketAddr, tx: &FlowSender) {
        let mut streams = self.streams.lock();
        if streams
            .get(&(t, addr))
            .is_some_and(|open| open.same_queue(tx))
        {
            streams.remove(&(t, addr));
        }
    }

    /// Lets [`Flows::reach`] open connections (set once, when the transport floor is up).
    pub fn set_connector(&self, c: Arc<dyn Connector>) {
        let _ = self.connector.set(c);
    }

    /// A replier for a server's `target` (a carrier's trunk target): over UDP at once, over
    /// TCP or TLS the open connection to it, else a new one.
    pub async fn reach(
        &self,
        target: FlowSource,
        tls_name: Option<Arc<str>>,
    ) -> Option<(Transport, Replier)> {
        if target.transport == Transport::Udp {
            return self.replier(target);
        }
        // The connector knows its own connections, and the name each TLS one was verified
        // for: an accepted connection from the target's address is not one of them.
        let connector = self.connector.get()?.clone();
        let r = connector.connect(target, tls_name).await?;
        Some((target.transport, r))
    }

    /// A replier for a binding's flow.
    pub fn replier(&self, source: FlowSource) -> Option<(Transport, Replier)> {
        let FlowSource { transport: t, addr } = source;
        let r = match t {
            Transport::Udp => Replier::Udp {
                socket: self.udp.lock().clone()?,
                to: addr,
                dscp: 0,
            },
            _ => Replier::Stream(self.streams.lock().get(&(t, addr))?.clone()),
        };
        Some((t, r))
    }
}
