//! Receiving up to [`BATCH`] datagrams in one system call (`recvmmsg`, Linux), and
//! sending as many in one (`sendmmsg`, see [`super::udp_out`]).
//!
//! Beyond batching a burst, this saves a call on every quiet wake-up: a read with
//! `recvfrom` must be followed by one more that fails with EAGAIN before the loop may
//! sleep, while a batch that comes back short of [`BATCH`] already says the queue is
//! empty (the kernel fills a non-blocking batch until it runs out of datagrams).
//!
//! This module is, with `FlowControl::apply_dscp` and the UDP receive loop's registration
//! with its thread's poller (`transport::udp`), the edge's only `unsafe` code: the calls,
//! the DSCP control message of a send, and handing the addresses the
//! kernel wrote to socket2, which reads them as `SocketAddr`s (and writes the destinations
//! of a send).

use std::{io, net::SocketAddr, os::fd::RawFd};

use socket2::{SockAddr, SockAddrStorage};

/// Datagrams received per call.
pub const BATCH: usize = 8;

/// Room for one datagram: the largest UDP payload. Untouched pages of these buffers are
/// never made resident, so a batch costs a few pages while datagrams are small.
const SLOT: usize = 65_535;

/// Buffers for one batch and what the last call received into them.
pub struct Batch {
    bufs: Vec<Box<[u8]>>,
    got: Vec<(usize, SocketAddr)>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            bufs: (0..BATCH)
                .map(|_| vec![0u8; SLOT].into_boxed_slice())
                .collect(),
            got: Vec::with_capacity(BATCH),
        }
    }
}

impl Batch {
    /// The datagrams of the last [`Batch::recv`], with their sources.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.got
            .iter()
            .zip(&self.bufs)
            .map(|((len, from), buf)| (&buf[..*len], *from))
    }

    /// Receives what is queued on `fd` (non-blocking), up to [`BATCH`] datagrams; returns
    /// how many. EAGAIN is returned as the error it is.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.got.clear();
        let mut names: [SockAddrStorage; BATCH] =
            std::array::from_fn(|_| SockAddrStorage::zeroed());
        let bufs = &mut self.bufs;
        let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
            iov_base: bufs[i].as_mut_ptr().cast(),
            iov_len: bufs[i].len(),
        });
        // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for ((h, iov), name) in hdrs.iter_mut().zip(iovs.iter_mut()).zip(names.iter_mut()) {
            h.msg_hdr.msg_namelen = name.size_of();
            // SAFETY: sockaddr_storage is one of the platform's sockaddr types.
            h.msg_hdr.msg_name =
                std::ptr::from_mut(unsafe { name.view_as::<libc::sockaddr_storage>() }).cast();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live buffer of the length it gives and at a
        // sockaddr_storage; all outlive the call, which writes nothing else.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // Datagrams that cannot be used are skipped; the buffers of the others move to
        // the front, so that `got[i]` describes `bufs[i]`.
        for (i, (h, name)) in hdrs.iter().zip(names).take(n as usize).enumerate() {
            // A datagram longer than its slot cannot be whole; a UDP payload never is.
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                continue;
            }
            // SAFETY: the kernel wrote msg_namelen bytes of an address into `name`.
            let Some(from) = unsafe { SockAddr::new(name, h.msg_hdr.msg_namelen) }.as_socket()
            else {
                continue;
            };
            let kept = self.got.len();
            self.bufs.swap(kept, i);
            self.got.push((h.msg_len as usize, from));
        }
        Ok(n as usize)
    }
}

/// One datagram to send: its destination, bytes and DSCP (0: unmarked, the socket's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
    pub dscp: u8,
}

/// Room for one control message carrying an int (IP_TOS, IPV6_TCLASS), aligned as a
/// `cmsghdr`: CMSG_SPACE(4) is 24 bytes on 64-bit Linux, 16 on 32-bit.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct TosControl([u8; 32]);

/// Puts the traffic class `dscp` (in the upper six bits of the TOS byte) on `hdr`, which
/// must point at `ctl`: IP_TOS for an IPv4 (or IPv4-mapped) destination, IPV6_TCLASS for
/// an IPv6 one.
///
/// # Safety
/// `hdr.msg_control` is set to `ctl`, which must outlive every use of `hdr`.
unsafe fn mark(hdr: &mut libc::msghdr, ctl: &mut TosControl, to: &SocketAddr, dscp: u8) {
    let (level, kind) = match to {
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_none() => {
            (libc::IPPROTO_IPV6, libc::IPV6_TCLASS)
        }
        _ => (libc::IPPROTO_IP, libc::IP_TOS),
    };
    let value = libc::c_int::from(dscp) << 2;
    let size = std::mem::size_of::<libc::c_int>() as u32;
    // SAFETY: `ctl` holds CMSG_SPACE(size) bytes (checked below) aligned for a cmsghdr;
    // CMSG_FIRSTHDR reads msg_control and msg_controllen, which point at it.
    unsafe {
        let space = libc::CMSG_SPACE(size) as usize;
        debug_assert!(space <= std::mem::size_of::<TosControl>());
        hdr.msg_control = ctl.0.as_mut_ptr().cast();
        hdr.msg_controllen = space as _;
        let c = libc::CMSG_FIRSTHDR(hdr);
        (*c).cmsg_level = level;
        (*c).cmsg_type = kind;
        (*c).cmsg_len = libc::CMSG_LEN(size) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), value);
    }
}

/// Sends each datagram to its address on `fd` (non-blocking), in calls of up to [`BATCH`],
/// marked with its DSCP; returns how many were sent. One the kernel refuses (an address of
/// the other family, an error an earlier datagram's ICMP left on the socket) is skipped and
/// the rest still go; when the socket's buffer is full the rest are dropped, as a full
/// socket drops any UDP datagram (the phone retransmits its request).
pub fn send_all(fd: RawFd, datagrams: &[Outgoing]) -> usize {
    let mut sent = 0;
    for chunk in datagrams.chunks(BATCH) {
        let names: [Option<SockAddr>; BATCH] =
            std::array::from_fn(|i| chunk.get(i).map(|d| SockAddr::from(d.to)));
        let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|i| match chunk.get(i) {
            Some(d) => libc::iovec {
                iov_base: d.bytes.as_ptr().cast_mut().cast(),
                iov_len: d.bytes.len(),
            },
            None => libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
        });
        let mut controls = [TosControl([0; 32]); BATCH];
        // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (((h, iov), name), (d, ctl)) in hdrs
            .iter_mut()
            .zip(iovs.iter_mut())
            .zip(names.iter().flatten())
            .zip(chunk.iter().zip(controls.iter_mut()))
        {
            h.msg_hdr.msg_name = name.as_ptr().cast_mut().cast();
            h.msg_hdr.msg_namelen = name.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            if d.dscp != 0 {
                // SAFETY: `controls` outlives the sendmmsg calls below.
                unsafe { mark(&mut h.msg_hdr, ctl, &d.to, d.dscp) };
            }
        }
        let mut at = 0;
        while at < chunk.len() {
            // SAFETY: headers `at..chunk.len()` point at live datagrams (read only, as
            // sendmmsg does) and at addresses of the lengths they give; all outlive the
            // call, which writes only the headers' msg_len.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs[at..].as_mut_ptr(),
                    (chunk.len() - at) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                at += n as usize;
                sent += n as usize;
                continue;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::WouldBlock => return sent,
                io::ErrorKind::Interrupted => {}
                // This datagram cannot go: the next ones still may.
                _ => at += 1,
            }
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn batches_hold_what_was_sent_in_order() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = Batch::default();
        let err = batch.recv(rx.as_raw_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let sent: Vec<Vec<u8>> = (0..BATCH + 3)
            .map(|i| vec![b'a' + i as u8; 1 + i * 700])
            .collect();
        for d in &sent {
            tx.send_to(d, rx.local_addr().unwrap()).unwrap();
        }
        let mut got = Vec::new();
        while got.len() < sent.len() {
            match batch.recv(rx.as_raw_fd()) {
                Ok(n) => {
                    assert!(n <= BATCH);
                    for (d, from) in batch.datagrams() {
                        assert_eq!(from, tx.local_addr().unwrap());
                        got.push(d.to_vec());
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, sent);
        let big = vec![7u8; 65_000];
        tx.send_to(&big, rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 1);
        assert_eq!(batch.datagrams().next().unwrap().0, &big[..]);
        // An IPv6 source reads back whole (the test binds ::1 only where it exists).
        match std::net::UdpSocket::bind("[::1]:0") {
            Ok(rx6) => {
                let tx6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
                tx6.send_to(b"six", rx6.local_addr().unwrap()).unwrap();
                assert_eq!(batch.recv(rx6.as_raw_fd()).unwrap(), 1);
                let (d, from) = batch.datagrams().next().unwrap();
                assert_eq!((d, from), (&b"six"[..], tx6.local_addr().unwrap()));
            }
            Err(e) => eprintln!("no IPv6 loopback here ({e}): the IPv6 source is not checked"),
        }
    }

    #[test]
    fn sends_go_out_in_order_past_a_refused_one() {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // An IPv6 destination cannot be reached from an IPv4 socket: it is skipped.
        let v6: SocketAddr = "[::1]:5060".parse().unwrap();
        let mut out: Vec<Outgoing> = (0..BATCH + 3)
            .map(|i| Outgoing {
                to: if i % 2 == 0 { to_a } else { to_b },
                bytes: vec![b'a' + i as u8; 1 + i * 900],
                dscp: (i % 3) as u8 * 24,
            })
            .collect();
        out.insert(
            2,
            Outgoing {
                to: v6,
                bytes: b"lost".to_vec(),
                dscp: 0,
            },
        );
        assert_eq!(send_all(tx.as_raw_fd(), &out), out.len() - 1);
        let mut batch = Batch::default();
        for (rx, addr) in [(&a, to_a), (&b, to_b)] {
            let want: Vec<Vec<u8>> = out
                .iter()
                .filter(|d| d.to == addr)
                .map(|d| d.bytes.clone())
                .collect();
            let mut got = Vec::new();
            while got.len() < want.len() {
                batch.recv(rx.as_raw_fd()).unwrap();
                got.extend(batch.datagrams().map(|(d, from)| {
                    assert_eq!(from, tx.local_addr().unwrap());
                    d.to_vec()
                }));
            }
            assert_eq!(got, want);
        }
        assert_eq!(send_all(tx.as_raw_fd(), &[]), 0);
    }

    /// The TOS byte a datagram arrived with on `fd` (IP_RECVTOS set), and its bytes.
    fn recv_tos(fd: std::os::fd::RawFd) -> (Vec<u8>, u8) {
        let mut buf = vec![0u8; 2048];
        let mut ctl = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: the header points at live buffers of the lengths it gives; control
        // messages are read only within what the kernel wrote.
        unsafe {
            let mut hdr: libc::msghdr = std::mem::zeroed();
            hdr.msg_iov = &mut iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = ctl.as_mut_ptr().cast();
            hdr.msg_controllen = std::mem::size_of_val(&ctl) as _;
            let n = libc::recvmsg(fd, &mut hdr, 0);
            assert!(n >= 0, "{}", io::Error::last_os_error());
            let mut tos = 0;
            let mut c = libc::CMSG_FIRSTHDR(&hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_TOS {
                    tos = *libc::CMSG_DATA(c);
                }
                c = libc::CMSG_NXTHDR(&hdr, c);
            }
            buf.truncate(n as usize);
            (buf, tos)
        }
    }

    #[test]
    fn marked_datagrams_carry_their_dscp_and_unmarked_ones_none() {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&rx).set_recv_tos_v4(true).unwrap();
        let to = rx.local_addr().unwrap();
        // (DSCP, TOS byte on the wire)
        let cases = [(46u8, 0xb8u8), (0, 0), (26, 0x68), (63, 0xfc)];
        let out: Vec<Outgoing> = cases
            .iter()
            .map(|&(dscp, _)| Outgoing {
                to,
                bytes: vec![dscp],
                dscp,
            })
            .collect();
        assert_eq!(send_all(tx.as_raw_fd(), &out), cases.len());
        for (dscp, tos) in cases {
            assert_eq!(recv_tos(rx.as_raw_fd()), (vec![dscp], tos), "dscp {dscp}");
        }
    }
}
