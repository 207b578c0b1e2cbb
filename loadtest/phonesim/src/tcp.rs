//! TCP fleets: one connection per phone and registrar, opened at the first REGISTER and
//! kept (it is the phone's flow: the edge delivers requests back over it), re-opened after
//! a loss. Messages are framed by Content-Length (`dialtone_sip::stream`); keep-alive pings
//! are answered. No retransmissions: TCP is reliable, so a transaction just waits.

use std::{
    net::SocketAddr,
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

use crate::{Inner, Pending, Phone, stats::Failure};

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

impl Inner {
    /// The phone's live connection to registrar `which`, opened when there is none.
    pub(crate) async fn tcp_link(
        self: &Arc<Self>,
        p: &Phone,
        which: usize,
    ) -> Result<TcpLink, Failure> {
        let mut slot = p.tcp[which].lock().await;
        if let Some(l) = slot.as_ref()
            && l.alive.load(Relaxed)
            && l.peer == p.registrar(which)
        {
            return Ok(l.clone());
        }
        let registrar = p.registrar(which);
        let socket = if registrar.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|_| Failure::Io)?;
        socket
            .bind(SocketAddr::new(self.cfg.bind_ip, 0))
            .map_err(|_| Failure::Io)?;
        let stream = tokio::time::timeout(self.cfg.timeout, socket.connect(registrar))
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(|_| Failure::Io)?;
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().map_err(|_| Failure::Io)?;
        let (mut rd, mut wr) = stream.into_split();
        #[expect(
            clippy::disallowed_methods,
            reason = "one simulated phone's own requests on its own connection, a handful in flight"
        )]
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let link = TcpLink {
            tx: tx.clone(),
            local,
            pending: Arc::new(Pending::default()),
            alive: Arc::new(AtomicBool::new(true)),
            peer: registrar,
        };
        let writer = tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
        });
        let (me, reader) = (self.clone(), link.clone());
        let reading = tokio::spawn(async move {
            let mut buf = Vec::with_capacity(8192);
            let mut chunk = vec![0u8; 16 << 10];
            let send = crate::Reply::Tcp(tx);
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
                                me.on_message(m, registrar, &reader.pending, &send);
                            }
                            buf.drain(..n);
                        }
                        Err(_) => break 'read,
                    }
                }
            }
            // The flow is gone: waiting transactions fail now, the next REGISTER reconnects.
            reader.alive.store(false, Relaxed);
            reader.pending.lock().clear();
        });
        // Stopping the fleet closes its connections (after de-registering over them).
        self.connections.lock().extend([writer, reading]);
        *slot = Some(link.clone());
        Ok(link)
    }
}
