//! A network namespace of the test's own (`ip netns`), for what must not touch this
//! machine's network: firewall rules the product installs run there, on a private
//! address. Deleted, with everything in it, when dropped.

use std::{
    fs::File,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    process::{Command, Output},
};

use anyhow::{Context, ensure};

/// A named network namespace whose loopback interface also holds [`NetNs::ADDRESS`] (a
/// container's kernel may have no dummy or veth devices).
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// The namespace's own address (not loopback, as a node's address is not).
    pub const ADDRESS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 99, 0, 1));

    /// Creates it, named after `label` and this process; needs root (CAP_SYS_ADMIN).
    pub fn create(label: &str) -> anyhow::Result<Self> {
        let ns = NetNs {
            name: format!("dt-{label}-{}", std::process::id()),
        };
        ip(&["netns", "add", &ns.name])?;
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "10.99.0.1/32", "dev", "lo"],
        ] {
            let mut all = vec!["-n", ns.name.as_str()];
            all.extend_from_slice(args);
            ip(&all)?;
        }
        Ok(ns)
    }

    /// `program` with `args`, to run inside the namespace.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }

    /// A UDP socket bound to `port` (0: any) on the namespace's address. It stays in the
    /// namespace whichever thread uses it.
    pub fn udp_socket(&self, port: u16) -> anyhow::Result<UdpSocket> {
        let path = format!("/run/netns/{}", self.name);
        // setns changes the calling thread only, so a thread of its own enters, binds and
        // ends.
        std::thread::spawn(move || -> anyhow::Result<UdpSocket> {
            let ns = File::open(&path).with_context(|| path.clone())?;
            // SAFETY: setns takes a valid namespace descriptor (held open here) and moves
            // only this short-lived thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            ensure!(rc == 0, "setns {path}: {}", std::io::Error::last_os_error());
            Ok(UdpSocket::bind(SocketAddr::new(Self::ADDRESS, port))?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the setns thread panicked"))?
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("ip (apt install iproute2)")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out)
}
