//! A small SIP user agent for tests that need to look at bytes SIPp cannot check (exact
//! challenges, retransmissions, bans, NOTIFY answers). Digest is computed here from RFC
//! 2617/7616 directly (MD5, qop=auth), independent of the edge's code.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use md5::{Digest, Md5};
use tokio::net::UdpSocket;

/// The status code of a response.
pub fn status(msg: &str) -> u16 {
    msg.strip_prefix("SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Every value of a header (by its full name, case-insensitive).
pub fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// A parameter of a challenge (`nonce`, `realm`, ...).
pub fn challenge_param(ch: &str, name: &str) -> Option<String> {
    let i = ch.find(&format!("{name}="))? + name.len() + 1;
    let rest = &ch[i..];
    Some(if let Some(r) = rest.strip_prefix('"') {
        r[..r.find('"')?].to_owned()
    } else {
        rest.split([',', ' ']).next()?.to_owned()
    })
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// An Authorization value answering an MD5 `challenge`.
pub fn authorization(
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    challenge: &str,
    nc: u32,
) -> String {
    let realm = challenge_param(challenge, "realm").unwrap_or_default();
    let nonce = challenge_param(challenge, "nonce").unwrap_or_default();
    let cnonce = format!("{:08x}", rand::random::<u32>());
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    )
}

/// A REGISTER for `user` at `server`, sent from `local` over `transport` (UDP, TCP, WS...).
pub struct RegisterSpec<'a> {
    pub user: &'a str,
    pub server: &'a str,
    pub local: &'a str,
    pub transport: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    pub branch: &'a str,
    pub expires: u32,
    pub contact: &'a str,
    pub authorization: Option<&'a str>,
}

impl RegisterSpec<'_> {
    pub fn text(&self) -> String {
        let auth = self
            .authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{server}>;tag=t{cseq}\r\nTo: <sip:{user}@{server}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\nExpires: {exp}\r\n{auth}Content-Length: 0\r\n\r\n",
            server = self.server,
            t = self.transport,
            local = self.local,
            branch = self.branch,
            user = self.user,
            cseq = self.cseq,
            cid = self.call_id,
            contact = self.contact,
            exp = self.expires,
        )
    }
}

/// A phone over UDP.
pub struct UdpPhone {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub user: String,
    pub password: String,
    pub call_id: String,
    pub cseq: u32,
}

impl UdpPhone {
    pub async fn new(server: SocketAddr, user: &str, password: &str) -> anyhow::Result<Self> {
        Self::new_at("127.0.0.1", server, user, password).await
    }

    /// A phone on another loopback address (127.0.0.x), to tell sources apart.
    pub async fn new_at(
        ip: &str,
        server: SocketAddr,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        Ok(UdpPhone {
            sock: UdpSocket::bind((ip, 0)).await?,
            server,
            user: user.into(),
            password: password.into(),
            call_id: format!("{:016x}@test", rand::random::<u64>()),
            cseq: 0,
        })
    }

    pub fn local(&self) -> SocketAddr {
        self.sock.local_addr().expect("bound")
    }

    /// A REGISTER (next CSeq, new branch), with an answer to `challenge` if given.
    pub fn register_text(&mut self, expires: u32, challenge: Option<&str>) -> String {
        self.cseq += 1;
        let server = self.server.to_string();
        let local = self.local().to_string();
        let auth = challenge.map(|c| {
            authorization(
                &self.user,
                &self.password,
                "REGISTER",
                &format!("sip:{server}"),
                c,
                1,
            )
        });
        let contact = format!("<sip:{}@{local}>", self.user);
        RegisterSpec {
            user: &self.user,
            server: &server,
            local: &local,
            transport: "UDP",
            call_id: &self.call_id,
            cseq: self.cseq,
            branch: &format!("z9hG4bK{:016x}", rand::random::<u64>()),
            expires,
            contact: &contact,
            authorization: auth.as_deref(),
        }
        .text()
    }

    pub async fn send(&self, text: &str) -> anyhow::Result<()> {
        self.sock.send_to(text.as_bytes(), self.server).await?;
        Ok(())
    }

    /// The next message, or None after `wait`.
    pub async fn recv(&self, wait: Duration) -> Option<String> {
        let mut buf = vec![0u8; 65535];
        match tokio::time::timeout(wait, self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    /// REGISTER, answer the challenge, return the final response.
    pub async fn register(&mut self, expires: u32) -> anyhow::Result<String> {
        let first = self.register_text(expires, None);
        self.send(&first).await?;
        let ch = self
            .recv(Duration::from_secs(3))
            .await
            .ok_or_else(|| anyhow::anyhow!("no answer to REGISTER"))?;
        if status(&ch) != 401 {
            return Ok(ch);
        }
        let www = headers(&ch, "www-authenticate")
            .into_iter()
            .find(|h| h.contains("MD5"))
            .ok_or_else(|| anyhow::anyhow!("no MD5 challenge in {ch}"))?
            .to_owned();
        let second = self.register_text(expires, Some(&www));
        self.send(&second).await?;
        self.recv(Duration::from_secs(3))
            .await
            .ok_or_else(|| anyhow::anyhow!("no answer to the authenticated REGISTER"))
    }
}

/// Sends OPTIONS for every (SIP user, domain, edge) in `to` at once, each through its edge,
/// from the line `from` (SIP user, password), which proves itself to each edge first (one
/// 407 per edge, then `Proxy-Authorization` on every request); retransmits unanswered ones
/// as a UDP client does (every 500 ms, doubling to 4 s); returns how many got a final 200
/// within `within` (the others were lost).
pub async fn options_answered(
    from: (&str, &str),
    to: &[(&str, &str, SocketAddr)],
    within: Duration,
) -> usize {
    requests_answered("OPTIONS", from, to, within).await
}

/// As [`options_answered`], with MESSAGE (a short text body) or OPTIONS.
pub async fn requests_answered(
    method: &str,
    from: (&str, &str),
    to: &[(&str, &str, SocketAddr)],
    within: Duration,
) -> usize {
    requests_answered_at("127.0.0.1", method, from, to, within).await
}

/// As [`requests_answered`], sent from loopback address `ip` (127.0.0.x). An edge lets one
/// source have at most 500 deliveries under way (`docs/security.md`): more at once are
/// sent from several addresses.
pub async fn requests_answered_at(
    ip: &str,
    method: &str,
    from: (&str, &str),
    to: &[(&str, &str, SocketAddr)],
    within: Duration,
) -> usize {
    let (from_user, password) = from;
    let body = match method {
        "MESSAGE" => "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        _ => "Content-Length: 0\r\n\r\n",
    };
    // A line's caller: one challenge per edge, then each request its own nonce count.
    let caller = Caller::line_at(ip, from_user, password).await.unwrap();
    let sock = &caller.sock;
    let local = sock.local_addr().unwrap();
    let mut requests: Vec<(String, SocketAddr)> = Vec::with_capacity(to.len());
    for (i, (user, domain, edge)) in to.iter().enumerate() {
        let text = format!(
            "{method} sip:{user}@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKf{i}x{r:08x}\r\nMax-Forwards: 70\r\nFrom: <sip:{from_user}@{domain}>;tag=p{i}\r\nTo: <sip:{user}@{domain}>\r\nCall-ID: probe-{i}-{port}\r\nCSeq: 1 {method}\r\n{body}",
            r = rand::random::<u32>(),
            port = local.port(),
        );
        requests.push((caller.authorized(&text, *edge).await, *edge));
    }
    let mut buf = vec![0u8; 65535];
    let mut answered = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut interval = Duration::from_millis(500);
    let mut resend = tokio::time::Instant::now();
    while answered.len() < to.len() {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        if now >= resend {
            for (i, (text, edge)) in requests.iter().enumerate() {
                if !answered.contains(&format!("probe-{i}-{}", local.port())) {
                    let _ = sock.send_to(text.as_bytes(), edge).await;
                }
            }
            resend = now + interval;
            interval = (interval * 2).min(Duration::from_secs(4));
        }
        let Ok(Ok((n, _))) =
            tokio::time::timeout_at(resend.min(deadline), sock.recv_from(&mut buf)).await
        else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if status(&msg) == 200
            && let Some(id) = headers(&msg, "call-id").first()
        {
            answered.insert(id.to_string());
        }
    }
    answered.len()
}

/// A caller on 127.0.0.1 sending requests for phones to an edge, as another phone would:
/// one of our lines, answering the edge's proxy challenge (407) with its password. A request
/// whose From is no line it holds credentials for goes out as written (an outsider's).
pub struct Caller {
    sock: UdpSocket,
    /// The From of [`Caller::text`] (`user@host`).
    from: String,
    /// Lines it can prove: (SIP user, password).
    lines: parking_lot::Mutex<Vec<(String, String)>>,
    /// The last proxy challenge of each edge (nonces are bound to the edge and the source),
    /// and the nonce count used with it last (each count is good once).
    challenges: tokio::sync::Mutex<std::collections::HashMap<SocketAddr, (String, u32)>>,
}

impl Caller {
    /// An outsider on a port the OS picks: its requests carry no credentials.
    pub async fn new() -> anyhow::Result<Self> {
        Self::new_at("127.0.0.1").await
    }

    /// An outsider on another loopback address (127.0.0.x), to tell sources apart.
    pub async fn new_at(ip: &str) -> anyhow::Result<Self> {
        Ok(Caller {
            sock: UdpSocket::bind((ip, 0)).await?,
            from: "caller@example.com".into(),
            lines: Default::default(),
            challenges: Default::default(),
        })
    }

    /// One of our lines (`user`, `password`), calling from a port the OS picks.
    pub async fn line(user: &str, password: &str) -> anyhow::Result<Self> {
        Self::line_at("127.0.0.1", user, password).await
    }

    /// [`Caller::line`] on another loopback address (127.0.0.x).
    pub async fn line_at(ip: &str, user: &str, password: &str) -> anyhow::Result<Self> {
        let mut c = Self::new_at(ip).await?;
        c.from = format!("{user}@dialtone");
        c.add_line(user, password);
        Ok(c)
    }

    /// Lets requests From `user@...` prove that line too.
    pub fn add_line(&self, user: &str, password: &str) {
        self.lines
            .lock()
            .push((user.to_owned(), password.to_owned()));
    }

    /// A `method` request for `user@dialtone` in a new transaction `branch`.
    pub fn text(&self, method: &str, user: &str, branch: &str, cseq_method: &str) -> String {
        self.text_from(&self.from, method, user, branch, cseq_method)
    }

    /// Like [`Caller::text`], from `from` (`user@host`), as a phone's own request would be.
    pub fn text_from(
        &self,
        from: &str,
        method: &str,
        user: &str,
        branch: &str,
        cseq_method: &str,
    ) -> String {
        let local = self.sock.local_addr().unwrap();
        format!(
            "{method} sip:{user}@dialtone SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{from}>;tag=c-{branch}\r\n\
             To: <sip:{user}@dialtone>\r\n\
             Call-ID: {branch}@caller\r\n\
             CSeq: 1 {cseq_method}\r\n\
             Contact: <sip:caller@{local}>\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    /// `text` with a `Proxy-Authorization` for its From line, when this caller holds that
    /// line's password (CANCEL and ACK are never challenged, RFC 3261 §22.1).
    pub async fn authorized(&self, text: &str, to: SocketAddr) -> String {
        let first = text.lines().next().unwrap_or("");
        let mut words = first.split(' ');
        let (Some(method), Some(uri)) = (words.next(), words.next()) else {
            return text.to_owned();
        };
        let from_user = headers(text, "from")
            .first()
            .and_then(|f| f.split("sip:").nth(1))
            .and_then(|f| f.split('@').next())
            .unwrap_or("")
            .to_owned();
        let password = self
            .lines
            .lock()
            .iter()
            .find(|(u, _)| *u == from_user)
            .map(|(_, p)| p.clone());
        let Some(password) = password else {
            return text.to_owned();
        };
        if matches!(method, "CANCEL" | "ACK") {
            return text.to_owned();
        }
        let mut challenges = self.challenges.lock().await;
        if let std::collections::hash_map::Entry::Vacant(slot) = challenges.entry(to) {
            // Ask once: an OPTIONS for ourselves, answered with the edge's 407.
            let probe = self.text("OPTIONS", &from_user, &branch(), "OPTIONS");
            self.sock.send_to(probe.as_bytes(), to).await.unwrap();
            let r = self.responses("OPTIONS", Duration::from_secs(3)).await;
            let ch = r
                .iter()
                .flat_map(|m| headers(m, "proxy-authenticate"))
                .find(|c| c.contains("MD5"))
                .map(str::to_owned)
                .expect("the edge challenges a line's request with 407 (MD5 offered)");
            slot.insert((ch, 0));
        }
        let (ch, nc) = challenges.get_mut(&to).expect("asked above");
        *nc += 1;
        let auth = authorization(&from_user, &password, method, uri, ch, *nc);
        text.replacen(
            "Content-Length:",
            &format!("Proxy-Authorization: {auth}\r\nContent-Length:"),
            1,
        )
    }

    /// Sends `text` to `to` (with the credentials of its From line, when held).
    pub async fn send(&self, text: &str, to: SocketAddr) {
        let text = self.authorized(text, to).await;
        self.sock.send_to(text.as_bytes(), to).await.unwrap();
    }

    /// Sends `text` to `to` exactly as written.
    pub async fn send_raw(&self, text: &str, to: SocketAddr) {
        self.sock.send_to(text.as_bytes(), to).await.unwrap();
    }

    /// Responses until a final one for `cseq_method` (or `within` passes): their codes.
    pub async fn codes(&self, cseq_method: &str, within: Duration) -> Vec<u16> {
        self.responses(cseq_method, within)
            .await
            .iter()
            .map(|m| status(m))
            .collect()
    }

    /// Responses until a final one for `cseq_method` (or `within` passes), whole.
    pub async fn responses(&self, cseq_method: &str, within: Duration) -> Vec<String> {
        self.responses_in(None, cseq_method, within).await
    }

    /// Like [`Caller::responses`], of call `call_id` only: a late answer to an earlier call
    /// on this socket is passed over.
    pub async fn call_responses(
        &self,
        call_id: &str,
        cseq_method: &str,
        within: Duration,
    ) -> Vec<String> {
        self.responses_in(Some(call_id), cseq_method, within).await
    }

    async fn responses_in(
        &self,
        call_id: Option<&str>,
        cseq_method: &str,
        within: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65535];
        while let Ok(Ok((n, _))) = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            self.sock.recv_from(&mut buf),
        )
        .await
        {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !headers(&msg, "cseq")
                .iter()
                .any(|c| c.ends_with(cseq_method))
                || call_id.is_some_and(|id| !headers(&msg, "call-id").contains(&id))
            {
                continue;
            }
            let done = status(&msg) >= 200;
            out.push(msg);
            if done {
                break;
            }
        }
        out
    }
}

/// `text`, a request or response without a body, carrying `sdp`.
pub fn with_sdp(text: &str, sdp: &str) -> String {
    text.replacen(
        "Content-Length: 0\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n",
            sdp.len()
        ),
        1,
    ) + sdp
}

/// The URI of the first Contact of `msg`.
pub fn contact_uri(msg: &str) -> String {
    headers(msg, "contact")
        .first()
        .map(|c| c.trim_start_matches('<').split('>').next().unwrap_or(c))
        .unwrap_or_default()
        .to_owned()
}

/// A new RFC 3261 branch.
pub fn branch() -> String {
    format!("z9hG4bK{:016x}", rand::random::<u64>())
}

/// An INVITE for `dialled` through `edge`: the request as written and every response.
pub async fn call(caller: &Caller, dialled: &str, edge: SocketAddr) -> (String, Vec<String>) {
    let invite = caller.text("INVITE", dialled, &branch(), "INVITE");
    caller.send(&invite, edge).await;
    (
        invite,
        caller.responses("INVITE", Duration::from_secs(5)).await,
    )
}

/// A request of the dialog that `ok`, a 2xx answer to `invite`, set up: along the caller's
/// route set (the Record-Route reversed, RFC 3261 §12.1.2), to `target`. The text and where
/// it is sent (the first Route's address).
pub fn in_dialog(
    invite: &str,
    ok: &str,
    method: &str,
    cseq: u32,
    target: &str,
) -> (String, SocketAddr) {
    let header =
        |text: &str, name: &str| headers(text, name).first().map(|v| v.to_string()).unwrap();
    // One Record-Route header may hold several entries, comma-separated.
    let mut route: Vec<&str> = headers(ok, "record-route")
        .into_iter()
        .flat_map(|h| h.split(">,").map(|e| e.trim()))
        .collect();
    let closed: Vec<String> = route
        .iter()
        .map(|e| {
            if e.ends_with('>') {
                e.to_string()
            } else {
                format!("{e}>")
            }
        })
        .collect();
    route = closed.iter().map(String::as_str).collect();
    route.reverse();
    let hop = route[0]
        .split('@')
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|a| a.parse().ok())
        .expect("the route names an address");
    let via = header(invite, "via");
    let sent_by = via.split(';').next().unwrap();
    let routes: String = route.iter().map(|r| format!("Route: {r}\r\n")).collect();
    let text = format!(
        "{method} {target} SIP/2.0\r\nVia: {sent_by};branch={}\r\nMax-Forwards: 70\r\n{routes}From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        branch(),
        header(invite, "from"),
        header(ok, "to"),
        header(invite, "call-id"),
    );
    (text, hop)
}

/// Makes `sock` report each datagram's IP TOS byte (IP_RECVTOS), for [`recv_marked`].
pub fn report_tos(sock: &UdpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and an int option of the right size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_RECVTOS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The next datagram on `sock` (see [`report_tos`]) and the DSCP it was marked with (the
/// TOS byte's upper six bits), or None after `wait`.
pub async fn recv_marked(sock: &UdpSocket, wait: Duration) -> Option<(String, u8)> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let read = sock.async_io(tokio::io::Interest::READABLE, || {
        let mut buf = vec![0u8; 65535];
        let mut ctl = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid; it points at live buffers of the lengths it
        // gives, and the control messages are read only within what the kernel wrote.
        unsafe {
            let mut hdr: libc::msghdr = std::mem::zeroed();
            hdr.msg_iov = &mut iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = ctl.as_mut_ptr().cast();
            hdr.msg_controllen = std::mem::size_of_val(&ctl) as _;
            let n = libc::recvmsg(fd, &mut hdr, libc::MSG_DONTWAIT);
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut tos = 0u8;
            let mut c = libc::CMSG_FIRSTHDR(&hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_TOS {
                    tos = *libc::CMSG_DATA(c);
                }
                c = libc::CMSG_NXTHDR(&hdr, c);
            }
            Ok((
                String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
                tos >> 2,
            ))
        }
    });
    tokio::time::timeout(wait, read).await.ok()?.ok()
}

/// A phone's answer to `req`: `code`, with `extra` header lines, its To tagged.
pub fn answer_to(req: &str, code: u16, extra: &str) -> String {
    let copy = |name: &str| {
        headers(req, name)
            .iter()
            .map(|v| format!("{}: {v}\r\n", name))
            .collect::<String>()
    };
    let to = headers(req, "to")[0];
    let to = if to.contains(";tag=") {
        to.to_owned()
    } else {
        format!("{to};tag=phone")
    };
    format!(
        "SIP/2.0 {code} X\r\n{}{}To: {to}\r\n{}{}{extra}Content-Length: 0\r\n\r\n",
        copy("Via"),
        copy("From"),
        copy("Call-ID"),
        copy("CSeq"),
    )
}
