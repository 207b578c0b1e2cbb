//! TCP and TLS fleets: one connection per phone and registrar, opened at the first REGISTER
//! and kept (it is the phone's flow: the edge delivers requests back over it), re-opened
//! after a loss. Messages are framed by Content-Length (`dialtone_sip::stream`); keep-alive
//! pings are answered. No retransmissions: TCP is reliable, so a transaction just waits.
//!
//! A lost connection is what RFC 5626 calls a flow failure: the phone registers again over
//! a new one, after [`crate::SimConfig::reconnect_after`] and a random wait within
//! [`crate::SimConfig::reconnect_spread`], so that a whole site losing its connections at
//! once comes back at a rate, not in one burst.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use dialtone_sip::{
    message::{Message, parse},
    stream::{Frame, PONG, next_frame},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
    sync::{mpsc, oneshot},
};

use crate::{Inner, Pending, Phone, SimTransport, stats::Failure};

/// A connection's bytes, plain or under TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Largest message read from a registrar.
const MAX_MESSAGE: usize = 65_535;

/// One open connection to a registrar.
#[derive(Clone)]
pub(crate) struct TcpLink {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    /// The phone's end of the connection (its Via and Contact).
    pub local: SocketAddr,
    pending: Arc<Pending>,
    alive: Arc<AtomicBool>,
    /// The registrar it goes to.
    peer: SocketAddr,
    /// Its reader and writer, aborted when the simulator drops the connection.
    tasks: Arc<[tokio::task::AbortHandle; 2]>,
}

impl TcpLink {
    /// Sends `text` and waits for the final answer of transaction `key`.
    pub async fn transact(
        &self,
        key: String,
        text: &str,
        timeout: Duration,
    ) -> Result<Message, Failure> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(key.clone(), tx);
        if self.tx.send(text.as_bytes().to_vec()).is_err() {
            self.pending.lock().remove(&key);
            return Err(Failure::Io);
        }
        let r = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(_)) => Err(Failure::Io),
            Err(_) => Err(Failure::Timeout),
        };
        self.pending.lock().remove(&key);
        r
    }
}

/// The address phone `phone`'s connections come from: `base` plus `phone` mod `sources`
/// (at least one), carried over the octets; `base` itself for IPv6, whose loopback is one
/// address. Pure.
pub(crate) fn source_ip(base: IpAddr, sources: u32, phone: usize) -> IpAddr {
    let step = (phone % sources.max(1) as usize) as u32;
    match base {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).saturating_add(step).into()),
        IpAddr::V6(_) => base,
    }
}

/// Whether `sources` addresses from `base` up are all loopback addresses, which a host
/// has without configuring them (127.0.0.0/8); one address always is whatever it is. Pure.
pub fn sources_are_loopback(base: IpAddr, sources: u32) -> bool {
    if sources <= 1 {
        return true;
    }
    let IpAddr::V4(a) = base else {
        return false;
    };
    let last = u64::from(u32::from(a)) + u64::from(sources) - 1;
    a.is_loopback() && last <= u64::from(u32::from(Ipv4Addr::new(127, 255, 255, 255)))
}

/// Prints the first failure of each kind (the counters count them all); an IO failure.
fn said_once(what: &str, to: SocketAddr, e: &std::io::Error) -> Failure {
    static SAID: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());
    let mut said = SAID.lock();
    if !said.iter().any(|w| w == what) {
        said.push(what.to_owned());
        eprintln!("{what} to {to} failed: {e} (said once)");
    }
    Failure::Io
}

impl TcpLink {
    /// Whether the connection is still open as far as the phone knows.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Relaxed)
    }

    /// Closes the connection now, as a network blip would (the phone is not told).
    pub(crate) fn drop_connection(&self) {
        self.alive.store(false, Relaxed);
        for t in self.tasks.iter() {
            t.abort();
        }
        self.pending.lock().clear();
    }
}

impl Inner {
    /// The phone's live connection to registrar `which`, opened when there is none.
    pub(crate) async fn tcp_link(
        self: &Arc<Self>,
        p: &Phone,
        which: usize,
    ) -> Result<TcpLink, Failure> {
        let mut slot = p.regs[which].tcp.lock().await;
        if let Some(l) = slot.as_ref()
            && l.alive.load(Relaxed)
            && l.peer == p.registrar(which)
        {
            return Ok(l.clone());
        }
        // A link to a registrar the phone left is closed here, without counting as a loss.
        if let Some(old) = slot.take() {
            old.drop_connection();
        }
        let registrar = p.registrar(which);
        let socket = if registrar.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| said_once("opening a socket", registrar, &e))?;
        // The port is chosen at connect, by the whole address pair: binding port 0 first
        // makes the kernel search the port range for one no socket on the address holds,
        // a search as long as the sockets bound (quadratic over a fleet of connections).
        let no_port: libc::c_int = 1;
        // SAFETY: a valid option of the right size on the socket this owns.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                std::ptr::addr_of!(no_port).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        socket
            .bind(SocketAddr::new(
                source_ip(self.cfg.bind_ip, self.cfg.tcp_sources, p.index),
                0,
            ))
            .map_err(|e| said_once("binding", registrar, &e))?;
        let stream = tokio::time::timeout(self.cfg.timeout, socket.connect(registrar))
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(|e| said_once("connecting", registrar, &e))?;
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().map_err(|_| Failure::Io)?;
        let io: Box<dyn Io> = match (self.cfg.transport, &self.cfg.tls) {
            (SimTransport::Tls, Some(tls)) => {
                let name = rustls::pki_types::ServerName::IpAddress(registrar.ip().into());
                // The phone's own session cache: one session per registrar it uses.
                let sessions = p.tls_sessions.get_or_init(|| {
                    Arc::new(rustls::client::ClientSessionMemoryCache::new(p.regs.len()))
                });
                let mut config = (**tls).clone();
                config.resumption = rustls::client::Resumption::store(sessions.clone());
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let s = tokio::time::timeout(self.cfg.timeout, connector.connect(name, stream))
                    .await
                    .map_err(|_| Failure::Timeout)?
                    .map_err(|e| said_once("a tls handshake", registrar, &e))?;
                Box::new(s)
            }
            (SimTransport::Tls, None) => return Err(Failure::Io),
            _ => Box::new(stream),
        };
        let (mut rd, mut wr) = tokio::io::split(io);
        #[expect(
            clippy::disallowed_methods,
            reason = "one simulated phone's own requests on its own connection, a handful in flight"
        )]
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let pending = Arc::new(Pending::default());
        let alive = Arc::new(AtomicBool::new(true));
        let writer = tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
        });
        let (me, reader_pending, reader_alive) = (self.clone(), pending.clone(), alive.clone());
        let reply_tx = tx.clone();
        let phone = p.index;
        let reading = tokio::spawn(async move {
            let mut buf = Vec::with_capacity(8192);
            let mut chunk = vec![0u8; 16 << 10];
            let send = crate::Reply::Tcp(reply_tx);
            'read: loop {
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                loop {
                    match next_frame(&buf, MAX_MESSAGE) {
                        Ok(None) => break,
                        Ok(Some(Frame::Ping(n))) => {
                            send.send(PONG.to_vec());
                            buf.drain(..n);
                        }
                        Ok(Some(Frame::Skip(n))) => {
                            buf.drain(..n);
                        }
                        Ok(Some(Frame::Message(n))) => {
                            if let Ok(m) = parse(&buf[..n]) {
                                me.on_message(m, registrar, &reader_pending, &send);
                            }
                            buf.drain(..n);
                        }
                        Err(_) => break 'read,
                    }
                }
            }
            // The flow is gone: waiting transactions fail now, and the phone registers again
            // over a new connection.
            if reader_alive.swap(false, Relaxed) {
                reader_pending.lock().clear();
                me.flow_lost(phone, which);
            }
        });
        let link = TcpLink {
            tx,
            local,
            pending,
            alive,
            peer: registrar,
            tasks: Arc::new([writer.abort_handle(), reading.abort_handle()]),
        };
        *slot = Some(link.clone());
        Ok(link)
    }
}

#[cfg(test)]
mod tests {
    use super::{source_ip, sources_are_loopback};

    #[test]
    fn a_phones_connections_come_from_its_share_of_the_addresses() {
        let ip = |s: &str| s.parse().unwrap();
        // (base, sources, phone, expected)
        let cases = [
            ("127.0.0.10", 1, 7, "127.0.0.10"),
            ("127.0.0.10", 0, 7, "127.0.0.10"),
            ("127.10.0.1", 250, 0, "127.10.0.1"),
            ("127.10.0.1", 250, 249, "127.10.0.250"),
            ("127.10.0.1", 250, 250, "127.10.0.1"),
            // Carried over the octets.
            ("127.10.0.200", 100, 60, "127.10.1.4"),
            // IPv6's loopback is one address.
            ("::1", 3, 5, "::1"),
        ];
        for (base, sources, phone, want) in cases {
            assert_eq!(
                source_ip(ip(base), sources, phone),
                ip(want),
                "{base} {sources} {phone}"
            );
        }
    }

    #[test]
    fn only_loopback_addresses_are_spread_over() {
        let ip = |s: &str| s.parse().unwrap();
        // (base, sources, allowed)
        let cases = [
            ("127.10.0.1", 250, true),
            ("127.255.255.0", 256, true),
            ("127.255.255.0", 257, false),
            ("10.0.0.5", 2, false),
            ("0.0.0.0", 2, false),
            ("::1", 2, false),
            // One address is whatever the user gave.
            ("10.0.0.5", 1, true),
            ("::1", 1, true),
        ];
        for (base, sources, want) in cases {
            assert_eq!(
                sources_are_loopback(ip(base), sources),
                want,
                "{base} {sources}"
            );
        }
    }
}
