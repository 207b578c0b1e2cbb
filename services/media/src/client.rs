//! The `ng` client: commands to media servers over one UDP socket, each with a fresh
//! cookie, sent again after 500 ms and 1 s (rtpengine answers a repeated cookie from its
//! cache, so a retransmitted `offer` creates nothing twice) and given up after
//! [`TIMEOUT`]. A reply is taken only from the address the command went to, with the
//! cookie of a command still waiting; anything else is dropped. At most
//! [`MAX_PENDING`] commands wait at once.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio::{net::UdpSocket, sync::oneshot};
use tracing::debug;

use crate::{bencode::Value, error::MediaError, ng};

/// How long a command waits for its reply, retransmissions included.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Commands waiting for replies at once.
pub const MAX_PENDING: usize = 10_000;

/// Biggest datagram read (rtpengine's replies with SDP fit in a few KB).
const MAX_DATAGRAM: usize = 65_535;

type Pending = Mutex<HashMap<String, (SocketAddr, oneshot::Sender<Value>)>>;

/// A client; cheap to share (`Arc`).
pub struct NgClient {
    socket: Arc<UdpSocket>,
    pending: Arc<Pending>,
}

impl NgClient {
    /// A client on a socket bound to `bind` (port 0: any), reading replies on a task of
    /// the current runtime until the client is dropped.
    pub async fn bind(bind: SocketAddr) -> Result<Arc<NgClient>, MediaError> {
        let socket = Arc::new(UdpSocket::bind(bind).await?);
        let pending: Arc<Pending> = Arc::default();
        let client = Arc::new(NgClient {
            socket: socket.clone(),
            pending: pending.clone(),
        });
        let weak = Arc::downgrade(&client);
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    // A transient error (an ICMP report, say): never a busy loop.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if weak.strong_count() == 0 {
                    return;
                }
                match ng::unframe(&buf[..n]) {
                    Ok((cookie, reply)) => {
                        let mut p = pending.lock();
                        if p.get(cookie).is_some_and(|(to, _)| *to == from) {
                            let (_, tx) = p.remove(cookie).expect("present");
                            let _ = tx.send(reply);
                        }
                    }
                    Err(e) => debug!(%from, error = %e, "ng reply dropped"),
                }
            }
        });
        Ok(client)
    }

    /// Sends `message` to `to` and waits for its reply.
    pub async fn request(&self, to: SocketAddr, message: &Value) -> Result<Value, MediaError> {
        let cookie = format!("{:016x}", rand::random::<u64>());
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock();
            if p.len() >= MAX_PENDING {
                return Err(MediaError::Busy);
            }
            p.insert(cookie.clone(), (to, tx));
        }
        let datagram = ng::frame(&cookie, message);
        let exchange = async {
            let mut rx = rx;
            for wait in [500, 500, 1000] {
                self.socket.send_to(&datagram, to).await?;
                match tokio::time::timeout(Duration::from_millis(wait), &mut rx).await {
                    Ok(Ok(reply)) => return Ok(reply),
                    Ok(Err(_)) => break,
                    Err(_) => {}
                }
            }
            Err(MediaError::Timeout(to))
        };
        let result = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .unwrap_or(Err(MediaError::Timeout(to)));
        self.pending.lock().remove(&cookie);
        result
    }

    /// `command` sent, and its reply read: the rewritten SDP for `offer` and `answer`.
    pub async fn call(
        &self,
        to: SocketAddr,
        command: &'static str,
        message: &Value,
    ) -> Result<Option<Vec<u8>>, MediaError> {
        let reply = self.request(to, message).await?;
        ng::reply(command, &reply)
    }

    /// Whether the media server at `to` answers `ping` with `pong`; none when this
    /// client has too many commands under way to ask (which says nothing of the server).
    pub async fn ping(&self, to: SocketAddr) -> Option<bool> {
        match self.call(to, "ping", &ng::ping()).await {
            Ok(_) => Some(true),
            Err(MediaError::Busy) => None,
            Err(_) => Some(false),
        }
    }

    /// Commands waiting now.
    pub fn pending(&self) -> usize {
        self.pending.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode;

    /// A stand-in media server that answers the second copy of every command only (the
    /// first is "lost"), from the right address; and sends junk and a wrong cookie first.
    async fn lossy_server() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut seen = std::collections::HashSet::new();
            loop {
                let (n, from) = s.recv_from(&mut buf).await.unwrap();
                let (cookie, _) = ng::unframe(&buf[..n]).unwrap();
                if seen.insert(cookie.to_owned()) {
                    continue;
                }
                let _ = s.send_to(b"garbage", from).await;
                let _ = s.send_to(b"other d6:result4:ponge", from).await;
                let pong = ng::frame(cookie, &bencode::decode(b"d6:result4:ponge").unwrap());
                let _ = s.send_to(&pong, from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_lost_command_is_sent_again_and_its_reply_matched_by_cookie() {
        let server = lossy_server().await;
        let c = NgClient::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(c.ping(server).await, Some(true));
        assert_eq!(c.pending(), 0);
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_leaves_nothing_waiting() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let c = NgClient::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let r = c
            .call(silent.local_addr().unwrap(), "ping", &ng::ping())
            .await;
        assert!(matches!(r, Err(MediaError::Timeout(_))), "{r:?}");
        assert!(started.elapsed() <= TIMEOUT + Duration::from_millis(500));
        assert_eq!(c.pending(), 0);
    }
}
