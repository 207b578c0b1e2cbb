//! A simulated phone fleet: each phone registers to every registrar it was given (its
//! primary and secondary edge) over UDP or TCP ([`SimTransport`]) with digest authentication, refreshes at half the
//! granted expiry, and answers what edges deliver to it (OPTIONS, NOTIFY check-sync,
//! MESSAGE, INVITE with 180 then 200 or a rejection). Counters and a latency histogram
//! measure it; [`Sim::sample`] gives the per-second view (how many phones are fully,
//! partly or not registered).
//!
//! Many phones share a few sockets: each phone's Contact carries its SIP user, so a
//! delivered request finds its phone by Request-URI, and responses find their transaction
//! by Call-ID and CSeq. That is what lets one process hold 100,000 phones.
//!
//! Managed phones ([`managed`]) boot from their configuration over HTTPS ([`https`]), fetch
//! again on check-sync, re-register after a simulated reboot, and (softphones) answer
//! INVITEs by their audio-device rules.
//!
//! Pure: [`wire`] (messages), [`stats`] (histogram), [`managed::parse_document`]. IO: this
//! module, [`https`].

mod answer;
pub mod https;
pub mod managed;
pub mod stats;
mod tcp;
pub use tcp::sources_are_loopback;
pub mod wire;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use dialtone_sip::{
    digest,
    message::{Message, StartLine, parse},
};
use dialtone_softphone::{AudioState, Devices, Incoming, Rules};
use parking_lot::Mutex;
use tokio::{
    net::UdpSocket,
    sync::{Notify, oneshot},
    task::JoinHandle,
};

use crate::{
    stats::{Failure, Histogram, Sample, Stats},
    wire::Register,
};

/// One phone of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneSpec {
    /// Phone id (for reports).
    pub phone_id: String,
    /// SIP user (AOR user part and digest user name).
    pub user: String,
    /// Its password.
    pub password: String,
    /// SIP domain (empty: the registrar's address).
    pub domain: String,
    /// Registrars in order: primary, then secondary.
    pub registrars: Vec<SocketAddr>,
    /// Set for a managed phone (booted from its configuration, see [`managed`]): a
    /// check-sync makes it fetch again, and a softphone applies its audio-device rules.
    pub managed: Option<managed::Managed>,
}

/// How the fleet behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Expires asked for, seconds.
    pub expires: u32,
    /// UDP sockets the phones share.
    pub sockets: usize,
    /// Phones started per second (0: all at once).
    pub start_rate: u32,
    /// Final answer to INVITEs (200 answers after 180 Ringing; 0: ring until cancelled).
    pub invite_answer: u16,
    /// How long a phone rings before a 2xx `invite_answer` (a CANCEL meanwhile stops it).
    pub answer_after: Duration,
    /// Local address the sockets bind (port chosen by the OS).
    pub bind_ip: IpAddr,
    /// TCP/TLS: how many addresses from `bind_ip` up the phones' connections come from
    /// (phone `i` binds `bind_ip` + `i` mod this; 1: all from `bind_ip`; more only within
    /// 127.0.0.0/8, [`sources_are_loopback`]). Real phones each have their own; fifteen
    /// thousand connections from one address to one edge make the kernel walk the port
    /// range at every connect for a free address pair (`stream-bench`, 2026-12-06).
    pub tcp_sources: u32,
    /// A transaction fails after this long without a final answer (UDP retransmissions
    /// double from 500 ms meanwhile).
    pub timeout: Duration,
    /// Where managed phones fetch again after a check-sync (none: they only answer it).
    pub provisioning: Option<managed::ProvisioningSource>,
    /// The audio devices softphones list at start.
    pub devices: Devices,
    /// UDP (shared sockets), TCP or TLS (a connection per phone and registrar).
    pub transport: SimTransport,
    /// TLS fleets: the client configuration (the registrars' certificates are checked for
    /// their IP address).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// After a lost connection, a phone registers again after a random wait up to this
    /// long (RFC 5626's flow recovery, spread as real phones' backoff spreads it), past
    /// [`SimConfig::reconnect_after`].
    pub reconnect_spread: Duration,
    /// How long every phone waits after a lost connection before its random wait starts.
    /// 0 (the default) has the first phones back while the others' connections are still
    /// closing; enough of it keeps the reconnects clear of the closes (a diagnostic).
    pub reconnect_after: Duration,
    /// After a failed registration not told when to come back (no `Retry-After`), a phone
    /// waits between half this and this, doubled at each failure up to
    /// [`SimConfig::retry_most`] ([`retry_wait`]). The default (500 ms to 8 s) brings a
    /// test's phones back within seconds; desk phones wait far longer (Yealink retries a
    /// failed registration every 30 s, Snom after 300 s), and a fleet of a million retrying
    /// every few seconds is a load no real fleet makes.
    pub retry_first: Duration,
    /// The longest wait between failed registrations ([`SimConfig::retry_first`]).
    pub retry_most: Duration,
}

/// Where a phone's answers go, owned so that one can be sent later (a delayed answer).
#[derive(Clone)]
pub(crate) enum Reply {
    /// From a shared socket to an address.
    Udp(Arc<UdpSocket>, SocketAddr),
    /// Over a TCP link's writer.
    Tcp(tokio::sync::mpsc::UnboundedSender<Vec<u8>>),
}

impl Reply {
    pub(crate) fn send(&self, b: Vec<u8>) {
        match self {
            Reply::Udp(sock, to) => {
                let _ = sock.try_send_to(&b, *to);
            }
            Reply::Tcp(tx) => {
                let _ = tx.send(b);
            }
        }
    }
}

/// How the phones reach their registrars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimTransport {
    /// Shared UDP sockets; requests retransmitted on timers.
    #[default]
    Udp,
    /// One TCP connection per phone and registrar, kept open (its flow), re-opened after a
    /// loss; requests delivered to the phone come back over it.
    Tcp,
    /// As TCP, under TLS.
    Tls,
}

impl SimTransport {
    /// As Via and Contact name it.
    pub fn name(self) -> &'static str {
        match self {
            SimTransport::Udp => "UDP",
            SimTransport::Tcp => "TCP",
            SimTransport::Tls => "TLS",
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            expires: 120,
            sockets: 16,
            start_rate: 0,
            invite_answer: 200,
            answer_after: Duration::ZERO,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            tcp_sources: 1,
            timeout: Duration::from_secs(4),
            provisioning: None,
            devices: Devices::default(),
            transport: SimTransport::Udp,
            tls: None,
            reconnect_spread: Duration::from_secs(1),
            reconnect_after: Duration::ZERO,
            retry_first: Duration::from_millis(500),
            retry_most: Duration::from_secs(8),
        }
    }
}

/// One registration's dialog state (kept across refreshes, as a real phone does).
struct Registration {
    call_id: String,
    cseq: u32,
    /// The last challenge and the nonce count used with it.
    challenge: Option<(String, u32)>,
    /// How long the last 503 asked the phone to wait (`Retry-After`), until it has.
    retry_after: Option<Duration>,
}

struct Phone {
    spec: PhoneSpec,
    /// Its place in the fleet.
    index: usize,
    /// Off ([`Sim::power_off`]): it sends nothing until it boots again.
    off: AtomicBool,
    socket: usize,
    /// Per registrar, in the spec's order: one slice, not a list per field (a million
    /// phones, two registrars each).
    regs: Box<[Leg]>,
    /// A softphone's audio state.
    audio: Option<Mutex<AudioState>>,
    /// A managed phone's document ETag.
    etag: Mutex<Option<String>>,
    /// Its TLS sessions (TLS fleets): each phone resumes its own, as a real phone does,
    /// instead of the fleet sharing one cache keyed by the registrar's name.
    tls_sessions: std::sync::OnceLock<Arc<rustls::client::ClientSessionMemoryCache>>,
}

/// A phone's registration with one of its registrars.
struct Leg {
    /// Milliseconds (since start) until which the registration holds.
    until_ms: AtomicU64,
    reg: Mutex<Registration>,
    /// Wakes the refresh loop early (after a reboot or a lost connection).
    wake: Notify,
    /// Wakes asked for so far, so that a wake asked for before the last registration
    /// started is not taken as a new one.
    wakes: AtomicU64,
    /// The TCP connection (TCP fleets).
    tcp: tokio::sync::Mutex<Option<tcp::TcpLink>>,
    /// The registrar's address now (a managed phone's configuration may move it).
    registrar: Mutex<SocketAddr>,
}

impl Leg {
    fn new(which: usize, registrar: SocketAddr) -> Self {
        Leg {
            until_ms: AtomicU64::new(0),
            reg: Mutex::new(Registration::new(which)),
            wake: Notify::new(),
            wakes: AtomicU64::new(0),
            tcp: tokio::sync::Mutex::new(None),
            registrar: Mutex::new(registrar),
        }
    }

    /// Forgets registration `which` (a new Call-ID, no challenge, not registered): the
    /// phone booted again or moved to another registrar.
    fn start_afresh(&self, which: usize) {
        *self.reg.lock() = Registration::new(which);
        self.until_ms.store(0, Relaxed);
    }
}

impl Phone {
    /// Wakes registration `which`'s refresh loop now.
    fn wake_now(&self, which: usize) {
        self.regs[which].wakes.fetch_add(1, Relaxed);
        self.regs[which].wake.notify_one();
    }

    /// Where registration `which` goes now.
    fn registrar(&self, which: usize) -> SocketAddr {
        *self.regs[which].registrar.lock()
    }
}

impl Registration {
    fn new(registrar: usize) -> Self {
        Registration {
            call_id: format!("{:016x}-{registrar}@phonesim", rand::random::<u64>()),
            cseq: 0,
            challenge: None,
            retry_after: None,
        }
    }
}

type Pending = Mutex<HashMap<String, oneshot::Sender<Message>>>;

struct Inner {
    cfg: SimConfig,
    stats: Stats,
    phones: Vec<Phone>,
    by_user: HashMap<String, usize>,
    sockets: Vec<Arc<UdpSocket>>,
    pending: Vec<Pending>,
    started: Instant,
    /// The runtime the fleet started on: what a [`Sim`] method starts runs there too, so
    /// a caller on another runtime (a benchmark keeping its own measurements apart from
    /// the phones' work) does not take the phones' work onto its own.
    rt: tokio::runtime::Handle,
    stopping: AtomicBool,
    /// The registration tasks, aborted at stop.
    children: Mutex<Vec<JoinHandle<()>>>,
    /// INVITEs ringing until cancelled, by Via branch: the request and our To tag.
    ringing: Mutex<HashMap<String, (Message, String)>>,
}

/// The fleet's counters at one moment, or their growth since one ([`Sim::since`]).
#[derive(Debug, Clone)]
pub struct Mark {
    /// Registrations completed.
    pub registered: u64,
    /// Failures by kind: timeout, forbidden, rejected, io.
    pub failed: [u64; 4],
    /// REGISTERs answered 503, and of those the ones with a Retry-After
    /// ([`Stats::unavailable`]).
    pub unavailable: [u64; 2],
    /// Latency histogram counts ([`Histogram::quantile_ms`]).
    pub latency: Vec<u64>,
    /// When the mark was taken.
    pub at: Instant,
}

impl Mark {
    /// One report line: registrations, p50/p90/p99/max and failures.
    pub fn line(&self) -> String {
        let q =
            |x| Histogram::quantile_ms(&self.latency, x).map_or("-".into(), |v| format!("{v:.1}"));
        format!(
            "registrations {} p50 {} ms p90 {} ms p99 {} ms max {} ms; failures: timeout {}, forbidden {}, rejected {}, io {}; {:.1} s",
            self.registered,
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0),
            self.failed[0],
            self.failed[1],
            self.failed[2],
            self.failed[3],
            self.at.elapsed().as_secs_f64()
        )
    }
}

/// A running fleet.
pub struct Sim {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
    last: Mutex<(Instant, u64, Vec<u64>)>,
}

fn txn_key(call_id: &str, cseq: u32) -> String {
    format!("{call_id} {cseq}")
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn local(&self, socket: usize) -> SocketAddr {
        self.sockets[socket].local_addr().expect("bound")
    }

    /// Sends `text` and waits for the final answer, retransmitting over UDP.
    async fn transact(
        &self,
        socket: usize,
        to: SocketAddr,
        key: String,
        text: &str,
    ) -> Result<Message, Failure> {
        let (tx, mut rx) = oneshot::channel();
        self.pending[socket].lock().insert(key.clone(), tx);
        let deadline = Instant::now() + self.cfg.timeout;
        let mut wait = Duration::from_millis(500);
        let result = loop {
            if self.sockets[socket]
                .send_to(text.as_bytes(), to)
                .await
                .is_err()
            {
                break Err(Failure::Io);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait.min(left), &mut rx).await {
                Ok(Ok(m)) => break Ok(m),
                Ok(Err(_)) => break Err(Failure::Io),
                Err(_) if Instant::now() >= deadline => break Err(Failure::Timeout),
                Err(_) => wait = (wait * 2).min(Duration::from_secs(4)),
            }
        };
        self.pending[socket].lock().remove(&key);
        result
    }

    /// One REGISTER (answering a challenge when one comes); returns the expiry granted.
    async fn register(
        self: &Arc<Self>,
        p: &Phone,
        which: usize,
        expires: u32,
    ) -> Result<u32, Failure> {
        let registrar = p.registrar(which);
        let link = match self.cfg.transport {
            SimTransport::Tcp | SimTransport::Tls => Some(self.tcp_link(p, which).await?),
            SimTransport::Udp => None,
        };
        let local = link
            .as_ref()
            .map_or_else(|| self.local(p.socket), |l| l.local);
        for _ in 0..3 {
            let (text, key) = {
                let mut guard = p.regs[which].reg.lock();
                let r = &mut *guard;
                r.cseq += 1;
                let uri = format!(
                    "sip:{}",
                    if p.spec.domain.is_empty() {
                        registrar.to_string()
                    } else {
                        p.spec.domain.clone()
                    }
                );
                let auth = r.challenge.as_mut().and_then(|(ch, nc)| {
                    *nc += 1;
                    let cnonce = format!("{:08x}", rand::random::<u32>());
                    digest::answer(
                        ch,
                        &p.spec.user,
                        &p.spec.password,
                        "REGISTER",
                        &uri,
                        *nc,
                        &cnonce,
                    )
                    .ok()
                });
                let reg = Register {
                    user: &p.spec.user,
                    domain: &p.spec.domain,
                    registrar,
                    local,
                    transport: self.cfg.transport.name(),
                    call_id: &r.call_id,
                    cseq: r.cseq,
                    expires,
                    authorization: auth.as_deref(),
                };
                debug_assert_eq!(reg.uri(), uri);
                (reg.text(), txn_key(&r.call_id, r.cseq))
            };
            let resp = match &link {
                Some(l) => l.transact(key, &text, self.cfg.timeout).await?,
                None => self.transact(p.socket, registrar, key, &text).await?,
            };
            let StartLine::Response { code, .. } = resp.start else {
                return Err(Failure::Rejected);
            };
            match code {
                200..=299 => return Ok(granted(&resp, &p.spec.user).unwrap_or(expires)),
                401 | 407 => {
                    let name = if code == 401 {
                        "www-authenticate"
                    } else {
                        "proxy-authenticate"
                    };
                    // The first challenge the phone can answer (SHA-256 first, as offered).
                    let ch = resp
                        .all(name)
                        .find(|c| digest::answer(c, "u", "p", "REGISTER", "sip:x", 1, "c").is_ok())
                        .ok_or(Failure::Rejected)?
                        .to_owned();
                    p.regs[which].reg.lock().challenge = Some((ch, 0));
                }
                403 => {
                    p.regs[which].reg.lock().challenge = None;
                    first_answer(&resp);
                    return Err(Failure::Forbidden);
                }
                503 => {
                    let wait = retry_after(&resp);
                    self.stats.unavailable[0].fetch_add(1, Relaxed);
                    if wait.is_some() {
                        self.stats.unavailable[1].fetch_add(1, Relaxed);
                    }
                    p.regs[which].reg.lock().retry_after = wait;
                    return Err(Failure::Rejected);
                }
                _ => {
                    first_answer(&resp);
                    return Err(Failure::Rejected);
                }
            }
        }
        Err(Failure::Rejected)
    }

    /// Keeps one registration alive until the fleet stops.
    async fn keep_registered(self: Arc<Self>, phone: usize, which: usize) {
        let p = &self.phones[phone];
        let leg = &p.regs[which];
        // Never zero: a phone refused at once would otherwise retry in a loop.
        let first = self.cfg.retry_first.max(Duration::from_millis(1));
        let most = self.cfg.retry_most.max(first);
        let mut backoff = first;
        while !self.stopping.load(Relaxed) {
            // Off: nothing until it boots (a boot sets it on before it wakes this loop, and
            // a wake with no one waiting is kept for the next wait).
            if p.off.load(Relaxed) {
                leg.wake.notified().await;
                backoff = first;
                continue;
            }
            let t0 = Instant::now();
            let wakes = leg.wakes.load(Relaxed);
            // Boxed: the task lives as long as the phone and mostly sleeps, and a
            // transaction's state (2 KB) would otherwise be part of it for good (two tasks
            // a phone, a million phones).
            match Box::pin(self.register(p, which, self.cfg.expires)).await {
                Ok(granted) => {
                    self.stats.latency.record(t0.elapsed());
                    self.stats.registered.fetch_add(1, Relaxed);
                    let until = self.now_ms() + u64::from(granted) * 1000;
                    leg.until_ms.store(until, Relaxed);
                    backoff = first;
                    // Refresh at half the expiry, spread by ±10 % so refreshes do not bunch.
                    let half = f64::from(granted.max(2)) / 2.0;
                    let jitter = 0.9 + rand::random::<f64>() * 0.2;
                    let refresh = Duration::from_secs_f64(half * jitter);
                    wait_or_wake(p, which, refresh, wakes).await;
                }
                Err(f) => {
                    self.stats.fail(f);
                    if leg.until_ms.load(Relaxed) <= self.now_ms() {
                        leg.until_ms.store(0, Relaxed);
                    }
                    let told = leg.reg.lock().retry_after.take();
                    let wait = retry_wait(told, backoff, rand::random());
                    // A reboot, a lost connection or a move starts afresh, as a phone
                    // would: with the backoff of a phone that has not failed.
                    backoff = if wait_or_wake(p, which, wait, wakes).await {
                        first
                    } else {
                        (backoff * 2).min(most)
                    };
                }
            }
        }
    }

    /// Registration `which` of phone `phone` lost its connection: it is gone as far as the
    /// phone knows, and the phone registers again over a new one after
    /// [`SimConfig::reconnect_after`] and a random wait within
    /// [`SimConfig::reconnect_spread`].
    pub(crate) fn flow_lost(self: &Arc<Self>, phone: usize, which: usize) {
        if self.stopping.load(Relaxed) {
            return;
        }
        self.phones[phone].regs[which].until_ms.store(0, Relaxed);
        let wait =
            self.cfg.reconnect_after + self.cfg.reconnect_spread.mul_f64(rand::random::<f64>());
        let me = self.clone();
        self.rt.spawn(async move {
            tokio::time::sleep(wait).await;
            me.phones[phone].wake_now(which);
        });
    }

    /// Reads one socket: responses go to their transactions, requests get answered.
    async fn receive(self: Arc<Self>, socket: usize) {
        let sock = self.sockets[socket].clone();
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(m) = parse(&buf[..n]) else { continue };
            let send = Reply::Udp(sock.clone(), from);
            self.on_message(m, from, &self.pending[socket], &send);
        }
    }
}

/// Waits `wait`, or less when registration `which` of `p` is woken (a reboot, a lost
/// connection, a move) by a wake asked for since `wakes` were counted: a wake asked for
/// before the registration started is stale. Says whether it was woken.
async fn wait_or_wake(p: &Phone, which: usize, wait: Duration, wakes: u64) -> bool {
    let leg = &p.regs[which];
    let sleep = tokio::time::sleep(wait);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return false,
            _ = leg.wake.notified() => if leg.wakes.load(Relaxed) != wakes {
                return true;
            },
        }
    }
}

/// How long a phone waits before trying again after a failed REGISTER, `draw` a random
/// number in [0, 1): told a Retry-After (RFC 3261 §21.5.4), no less, and up to half as
/// much again, so a fleet told the same at once comes back spread out; else its backoff,
/// doubled at each failure, drawn from the upper half as RFC 5626 §4.5 does, so phones
/// that failed together do not retry together. Pure.
pub fn retry_wait(retry_after: Option<Duration>, backoff: Duration, draw: f64) -> Duration {
    let draw = draw.clamp(0.0, 1.0);
    match retry_after {
        Some(told) => told.mul_f64(1.0 + draw * 0.5),
        None => backoff.mul_f64(0.5 + draw * 0.5),
    }
}

/// A 503's `Retry-After` (seconds, a comment and parameters ignored), when it has one;
/// capped at an hour.
fn retry_after(resp: &Message) -> Option<Duration> {
    let v = resp.get("retry-after")?;
    let secs: u64 = v
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// Prints the first refusal of each status code (the counters count them all).
fn first_answer(resp: &Message) {
    static SAID: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let StartLine::Response { code, reason, .. } = &resp.start else {
        return;
    };
    let mut said = SAID.lock();
    if !said.contains(code) {
        said.push(*code);
        eprintln!("a REGISTER was answered {code} {reason} (said once per code)");
    }
}

/// The expiry the registrar granted our contact (its `expires` param, else `Expires`).
fn granted(resp: &Message, user: &str) -> Option<u32> {
    use dialtone_sip::header::{parse_name_addr, split_list};
    resp.all("contact")
        .flat_map(split_list)
        .filter_map(|c| parse_name_addr(c).ok())
        .find(|c| c.uri.user == Some(user))
        .and_then(|c| c.params.value("expires")?.parse().ok())
        .or_else(|| resp.get("expires")?.parse().ok())
}

impl Sim {
    /// Binds the sockets and starts every phone (paced by `start_rate`).
    pub async fn start(cfg: SimConfig, phones: Vec<PhoneSpec>) -> std::io::Result<Self> {
        let mut sockets = Vec::new();
        for _ in 0..cfg.sockets.max(1) {
            sockets.push(Arc::new(UdpSocket::bind((cfg.bind_ip, 0)).await?));
        }
        let n_sockets = sockets.len();
        let by_user = phones
            .iter()
            .enumerate()
            .map(|(i, p)| (p.user.clone(), i))
            .collect();
        let phones: Vec<Phone> = phones
            .into_iter()
            .enumerate()
            .map(|(i, spec)| Phone {
                index: i,
                off: AtomicBool::new(false),
                socket: i % n_sockets,
                regs: spec
                    .registrars
                    .iter()
                    .enumerate()
                    .map(|(r, a)| Leg::new(r, *a))
                    .collect(),
                audio: spec
                    .managed
                    .as_ref()
                    .and_then(|m| m.softphone.as_ref())
                    .and_then(|s| Rules::from_settings(s).ok())
                    .map(|r| Mutex::new(AudioState::new(r, cfg.devices.clone()))),
                etag: Mutex::new(spec.managed.as_ref().and_then(|m| m.etag.clone())),
                tls_sessions: std::sync::OnceLock::new(),
                spec,
            })
            .collect();
        let inner = Arc::new(Inner {
            pending: (0..n_sockets).map(|_| Mutex::default()).collect(),
            cfg,
            stats: Stats::default(),
            by_user,
            phones,
            sockets,
            started: Instant::now(),
            rt: tokio::runtime::Handle::current(),
            stopping: AtomicBool::new(false),
            children: Mutex::default(),
            ringing: Mutex::default(),
        });
        let mut tasks: Vec<JoinHandle<()>> = (0..n_sockets)
            .map(|s| tokio::spawn(inner.clone().receive(s)))
            .collect();
        let starter = inner.clone();
        tasks.push(tokio::spawn(async move {
            let rate = starter.cfg.start_rate;
            for i in 0..starter.phones.len() {
                if starter.stopping.load(Relaxed) {
                    return;
                }
                if rate > 0 {
                    let due = starter.started + Duration::from_secs_f64(i as f64 / f64::from(rate));
                    tokio::time::sleep_until(due.into()).await;
                }
                for r in 0..starter.phones[i].spec.registrars.len() {
                    let t = tokio::spawn(starter.clone().keep_registered(i, r));
                    starter.children.lock().push(t);
                }
            }
        }));
        let now = Instant::now();
        let snapshot = inner.stats.latency.snapshot();
        Ok(Self {
            inner,
            tasks,
            last: Mutex::new((now, 0, snapshot)),
        })
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Phones in the fleet.
    pub fn len(&self) -> usize {
        self.inner.phones.len()
    }

    /// Whether the fleet is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.phones.is_empty()
    }

    /// The fleet now, and the rate and latency since the previous sample.
    pub fn sample(&self) -> Sample {
        let now_ms = self.inner.now_ms();
        let (mut full, mut partial, mut none) = (0, 0, 0);
        for p in &self.inner.phones {
            let live = p
                .regs
                .iter()
                .filter(|l| l.until_ms.load(Relaxed) > now_ms)
                .count();
            match live {
                0 => none += 1,
                n if n == p.regs.len() => full += 1,
                _ => partial += 1,
            }
        }
        let stats = &self.inner.stats;
        let registered = stats.registered.load(Relaxed);
        let hist = stats.latency.snapshot();
        let mut last = self.last.lock();
        let dt = last.0.elapsed().as_secs_f64().max(1e-3);
        let delta: Vec<u64> = hist.iter().zip(&last.2).map(|(a, b)| a - b).collect();
        let s = Sample {
            t_s: self.inner.started.elapsed().as_secs_f64(),
            full,
            partial,
            none,
            rate: (registered - last.1) as f64 / dt,
            failures: stats.failures(),
            p50_ms: Histogram::quantile_ms(&delta, 0.5),
            p99_ms: Histogram::quantile_ms(&delta, 0.99),
        };
        *last = (Instant::now(), registered, hist);
        s
    }

    /// The audio devices softphone `index` lists now (plugged or unplugged); returns what
    /// it would do with a call now (none: not a softphone).
    pub fn set_devices(&self, index: usize, devices: Devices) -> Option<Incoming> {
        let audio = self.inner.phones.get(index)?.audio.as_ref()?;
        let mut a = audio.lock();
        a.devices_changed(devices);
        Some(a.incoming())
    }

    /// Drops every open connection at once, as a network blip or a load balancer losing
    /// its flows would; each phone registers again after [`SimConfig::reconnect_after`]
    /// and a random wait within [`SimConfig::reconnect_spread`]. Returns how many were
    /// dropped.
    pub async fn drop_connections(&self) -> usize {
        let mut dropped = 0;
        for (i, p) in self.inner.phones.iter().enumerate() {
            for (which, leg) in p.regs.iter().enumerate() {
                if let Some(link) = leg.tcp.lock().await.take() {
                    // A link whose reader already ended has had its loss handled.
                    if link.is_alive() {
                        self.inner.flow_lost(i, which);
                        dropped += 1;
                    }
                    link.drop_connection();
                }
            }
        }
        dropped
    }

    /// The power goes at the whole fleet's site: every phone stops at once, sending nothing
    /// (no refresh, no retry) until [`Sim::power_cut`] boots it; a transaction in flight
    /// ends by itself. Phones left on through an outage of their edges would instead all
    /// retry, backed off up to [`SimConfig::retry_most`], and rush the edges together when
    /// they return.
    pub fn power_off(&self) {
        for p in &self.inner.phones {
            p.off.store(true, Relaxed);
            for leg in &p.regs {
                leg.until_ms.store(0, Relaxed);
            }
        }
    }

    /// Power comes back to the whole fleet: every phone boots and registers from scratch
    /// (new Call-IDs, no challenge), one after another spread evenly over `spread`, as
    /// desk phones finishing their boot over a minute or so. Returns at once.
    pub fn power_cut(&self, spread: Duration) {
        let inner = self.inner.clone();
        let n = inner.phones.len().max(1);
        let task = self.inner.rt.spawn(async move {
            let start = tokio::time::Instant::now();
            for i in 0..inner.phones.len() {
                if inner.stopping.load(Relaxed) {
                    return;
                }
                tokio::time::sleep_until(start + spread.mul_f64(i as f64 / n as f64)).await;
                inner.reboot(i);
            }
        });
        self.inner.children.lock().push(task);
    }

    /// The counters now, to measure a wave against ([`Sim::since`]).
    pub fn mark(&self) -> Mark {
        let s = &self.inner.stats;
        Mark {
            registered: s.registered.load(Relaxed),
            failed: s.failed.each_ref().map(|f| f.load(Relaxed)),
            unavailable: s.unavailable.each_ref().map(|f| f.load(Relaxed)),
            latency: s.latency.snapshot(),
            at: Instant::now(),
        }
    }

    /// What happened since `mark`: registrations, their latency quantiles, failures and
    /// 503s.
    pub fn since(&self, mark: &Mark) -> Mark {
        let now = self.mark();
        Mark {
            registered: now.registered - mark.registered,
            failed: std::array::from_fn(|i| now.failed[i] - mark.failed[i]),
            unavailable: std::array::from_fn(|i| now.unavailable[i] - mark.unavailable[i]),
            latency: now
                .latency
                .iter()
                .zip(&mark.latency)
                .map(|(a, b)| a - b)
                .collect(),
            at: mark.at,
        }
    }

    /// Whether phone `index` holds a live registration with registrar `which`.
    pub fn is_registered(&self, index: usize, which: usize) -> bool {
        let p = &self.inner.phones[index];
        p.regs
            .get(which)
            .is_some_and(|l| l.until_ms.load(Relaxed) > self.inner.now_ms())
    }

    /// Stops refreshing; with `unregister`, every live registration is removed first
    /// (Expires: 0), at most `concurrency` at a time.
    pub async fn stop(self, unregister: bool, concurrency: usize) {
        self.inner.stopping.store(true, Relaxed);
        for t in self.inner.children.lock().drain(..) {
            t.abort();
        }
        if unregister {
            let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
            let mut jobs = Vec::new();
            for i in 0..self.inner.phones.len() {
                for r in 0..self.inner.phones[i].spec.registrars.len() {
                    if !self.is_registered(i, r) {
                        continue;
                    }
                    let (inner, sem) = (self.inner.clone(), sem.clone());
                    jobs.push(self.inner.rt.spawn(async move {
                        let _permit = sem.acquire().await;
                        let p = &inner.phones[i];
                        if inner.register(p, r, 0).await.is_ok() {
                            p.regs[r].until_ms.store(0, Relaxed);
                        }
                    }));
                }
            }
            for j in jobs {
                let _ = j.await;
            }
        }
        for p in &self.inner.phones {
            for leg in &p.regs {
                if let Some(link) = leg.tcp.lock().await.take() {
                    link.drop_connection();
                }
            }
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dialtone_sip::parse;

    use super::{granted, retry_after, retry_wait};

    #[test]
    fn a_phone_waits_as_told_or_backs_off_with_jitter() {
        let s = Duration::from_secs;
        // (retry-after, backoff, draw, wait)
        let cases = [
            (Some(s(10)), s(1), 0.0, s(10)),
            (
                Some(s(10)),
                s(1),
                0.999_999,
                Duration::from_secs_f64(14.999_995),
            ),
            (None, s(4), 0.0, s(2)),
            (None, s(4), 0.5, s(3)),
            (None, s(4), 7.0, s(4)),
        ];
        for (told, backoff, draw, want) in cases {
            let got = retry_wait(told, backoff, draw);
            assert!(
                got.abs_diff(want) < Duration::from_millis(1),
                "{told:?} {backoff:?} {draw}: {got:?}, want {want:?}"
            );
        }
    }

    /// A registration's task lives as long as its phone (two a phone, a million phones in
    /// `fleet-bench`) and mostly sleeps; a transaction's state is boxed while it runs.
    /// Unboxed, the task was 2,104 bytes.
    #[tokio::test]
    async fn a_registrations_task_is_small_while_it_sleeps() {
        use super::{PhoneSpec, Sim, SimConfig};
        let spec = PhoneSpec {
            phone_id: "p-1".into(),
            user: "u-1".into(),
            password: "secret".into(),
            domain: String::new(),
            registrars: vec!["127.0.0.1:9".parse().unwrap(); 2],
            managed: None,
        };
        // Its registrars are a port nothing answers on; the fleet is stopped at the end.
        let sim = Sim::start(SimConfig::default(), vec![spec]).await.unwrap();
        let task = sim.inner.clone().keep_registered(0, 0);
        let size = std::mem::size_of_val(&task);
        drop(task);
        sim.stop(false, 1).await;
        assert!(size <= 512, "a registration's task is {size} bytes");
    }

    #[test]
    fn a_503_says_how_long_to_wait() {
        let resp = |extra: &str| {
            parse(format!("SIP/2.0 503 Service Unavailable\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKx\r\n{extra}Content-Length: 0\r\n\r\n").as_bytes()).unwrap()
        };
        let cases = [
            ("Retry-After: 5\r\n", Some(5)),
            (
                "Retry-After: 18000 (a long while);duration=3600\r\n",
                Some(3600),
            ),
            ("Retry-After: soon\r\n", None),
            ("", None),
        ];
        for (extra, want) in cases {
            assert_eq!(
                retry_after(&resp(extra)),
                want.map(Duration::from_secs),
                "{extra:?}"
            );
        }
    }

    #[test]
    fn the_expiry_granted_to_our_contact() {
        let resp = |contacts: &str| {
            parse(format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKx\r\n{contacts}Expires: 90\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap()
        };
        let cases = [
            (
                "Contact: <sip:u-1@10.0.0.1:5060;transport=udp>;expires=60\r\n",
                Some(60),
            ),
            (
                "Contact: <sip:other@10.0.0.2>;expires=30, <sip:u-1@10.0.0.1>;expires=45\r\n",
                Some(45),
            ),
            ("Contact: <sip:other@10.0.0.2>;expires=30\r\n", Some(90)),
            ("Contact: <sip:u-1@10.0.0.1;expires=5>\r\n", Some(90)),
            ("", Some(90)),
        ];
        for (contacts, want) in cases {
            assert_eq!(granted(&resp(contacts), "u-1"), want, "{contacts}");
        }
    }
}
