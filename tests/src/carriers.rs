//! Carriers played by SIPp for the trunk tests: a carrier serving a scenario at an address
//! of its own, a carrier placing one call, and what a carrier's message log holds.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use dialtone_proto::config::v1 as pb;

use crate::free_port;

/// A scenario of `tests/sipp`.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("sipp/{name}.xml"))
}

/// A carrier: SIPp serving `name` at `ip`:`port` (OPTIONS answered out of call), every
/// message logged to `dir/{name}.log`.
pub fn carrier(dir: &Path, name: &str, ip: &str, port: u16) -> Child {
    carrier_over(dir, name, ip, port, "u1")
}

/// [`carrier`] over SIPp transport `transport` (`u1`: UDP, `t1`: TCP).
pub fn carrier_over(dir: &Path, name: &str, ip: &str, port: u16, transport: &str) -> Child {
    Command::new("sipp")
        .current_dir(dir)
        .arg("-sf")
        .arg(scenario(name))
        .args(["-t", transport])
        .args(["-i", ip, "-p", &port.to_string(), "-aa", "-nostdin"])
        .arg("-trace_msg")
        .arg("-message_file")
        .arg(dir.join(format!("{name}.log")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp (apt install sip-tester)")
}

/// A carrier placing one call with `name` for `number` to `edge`, from `ip`, with SIPp
/// `-key` values `keys`; whether SIPp's scenario completed (what it saw is printed when
/// not).
pub fn carrier_call(
    dir: &Path,
    name: &str,
    ip: &str,
    number: &str,
    edge: SocketAddr,
    keys: &[(&str, &str)],
) -> bool {
    let log = dir.join(format!("{name}-{number}.log"));
    let mut sipp = Command::new("timeout");
    sipp.current_dir(dir)
        .args(["30", "sipp", &edge.to_string(), "-sf"])
        .arg(scenario(name));
    for (k, v) in keys {
        sipp.args(["-key", k, v]);
    }
    let ok = sipp
        .args(["-i", ip, "-p", &free_port().to_string(), "-s", number])
        .args(["-m", "1", "-timeout", "15", "-timeout_error", "-nostdin"])
        .args(["-trace_msg", "-message_file"])
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp")
        .success();
    if !ok {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    ok
}

/// The INVITEs a carrier's log holds.
pub fn invites(dir: &Path, name: &str) -> Vec<String> {
    received(dir, name, "INVITE")
}

/// The `method` requests a carrier's log holds, in order.
pub fn received(dir: &Path, name: &str, method: &str) -> Vec<String> {
    let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let start = format!("\n{method} ");
    log.split("----------------------------------------------- ")
        .filter(|m| m.contains("message received") && m.contains(&start))
        .map(str::to_owned)
        .collect()
}

/// The INVITE a carrier's log holds for `uri` (its Request-URI start), waiting up to 3 s
/// for SIPp to write it (its log lags the call).
pub async fn invite_for(dir: &Path, name: &str, uri: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let found = invites(dir, name)
            .into_iter()
            .rev()
            .find(|m| m.contains(&format!("INVITE {uri}")));
        if let Some(m) = found {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never logged an INVITE for {uri}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TLS front for a carrier (socat, as an SBC terminating TLS would): TLS at `listen`
/// with `cert` and `key`, each connection passed on over TCP to `to`.
pub fn tls_front(cert: &Path, key: &Path, listen: SocketAddr, to: SocketAddr) -> Child {
    let accept = format!(
        "OPENSSL-LISTEN:{},bind={},reuseaddr,fork,verify=0,cert={},key={}",
        listen.port(),
        listen.ip(),
        cert.display(),
        key.display()
    );
    Command::new("socat")
        .arg(accept)
        .arg(format!("TCP:{to}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat (apt install socat)")
}

/// Stops a carrier.
pub fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// A trusted peer at `ip` (a carrier's signalling address).
pub fn peer(id: &str, ip: &str) -> pb::Peer {
    pb::Peer {
        id: id.into(),
        name: id.into(),
        addresses: vec![ip.into()],
        ..Default::default()
    }
}

/// A trunk to one UDP `target`, keep-alives every second.
pub fn trunk(id: &str, peer: &str, target: SocketAddr, dids: Vec<pb::Did>) -> pb::Trunk {
    pb::Trunk {
        id: id.into(),
        name: id.into(),
        peer_id: peer.into(),
        targets: vec![pb::TrunkTarget {
            address: target.to_string(),
            transport: "udp".into(),
            tls_name: String::new(),
        }],
        options_interval_s: 1,
        dids,
        ..Default::default()
    }
}
