//! Carriers played by SIPp for the trunk tests: a carrier serving a scenario at an address
//! of its own, a carrier placing one call, and what a carrier's message log holds.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use dialtone_phonesim::{Sim, SimConfig};
use dialtone_proto::{config::v1 as pb, status::v1 as spb};

use crate::{
    ClusterSandbox, ConfigClient, StatusClient,
    fleet::seed_site_on,
    free_port,
    sip::{Caller, call, status},
};

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
    carrier_with(dir, name, ip, port, &["-t", transport])
}

/// [`carrier`] whose media port (at `ip`, chosen free) sends every RTP packet back where
/// it came from (SIPp's `-rtp_echo`), for a scenario whose SDP names `[media_port]`.
pub fn carrier_echoing(dir: &Path, name: &str, ip: &str, port: u16) -> Child {
    let mut args = vec!["-t".to_owned(), "u1".to_owned()];
    args.extend(echoing_media(ip));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    carrier_with(dir, name, ip, port, &args)
}

/// SIPp's flags for a media port at `ip` (chosen free) that sends every RTP packet back
/// where it came from.
fn echoing_media(ip: &str) -> [String; 5] {
    let media = free_port().to_string();
    ["-mi", ip, "-mp", &media, "-rtp_echo"].map(str::to_owned)
}

fn carrier_with(dir: &Path, name: &str, ip: &str, port: u16, args: &[&str]) -> Child {
    Command::new("sipp")
        .current_dir(dir)
        .arg("-sf")
        .arg(scenario(name))
        .args(args)
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
    carrier_call_with(dir, name, ip, number, edge, keys, &[])
}

/// [`carrier_call`] whose media port (at `ip`, chosen free) sends every RTP packet back
/// where it came from (SIPp's `-rtp_echo`), for a scenario whose SDP names
/// `[media_port]`.
pub fn carrier_call_echoing(
    dir: &Path,
    name: &str,
    ip: &str,
    number: &str,
    edge: SocketAddr,
) -> bool {
    let args = echoing_media(ip);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    carrier_call_with(dir, name, ip, number, edge, &[], &args)
}

fn carrier_call_with(
    dir: &Path,
    name: &str,
    ip: &str,
    number: &str,
    edge: SocketAddr,
    keys: &[(&str, &str)],
    args: &[&str],
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
        .args(args)
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

/// An all-in-one node (with `extra` flags) whose site `hq` is placed on its edge, a config
/// client, and a directory for the carriers' logs.
pub async fn carrier_bed(extra: &[&str]) -> (ClusterSandbox, ConfigClient, PathBuf) {
    let mut args = vec!["--sip-min-expires=10"];
    args.extend_from_slice(extra);
    let sb = ClusterSandbox::embedded_with(&args).await.unwrap();
    let token = sb.nodes[0].admin_token();
    let mut cfg = sb.nodes[0].config_client(&token).await.unwrap();
    seed_site_on(&mut cfg, pb::PhoneSettings::default(), &sb.udp_edges(&[0]))
        .await
        .unwrap();
    let dir = sb.dir().join("carriers");
    std::fs::create_dir_all(&dir).unwrap();
    (sb, cfg, dir)
}

/// An outbound route: calls of `kinds` to `trunks`, in order.
pub fn route(kinds: &[&str], trunks: &[&str]) -> pb::OutboundRoute {
    pb::OutboundRoute {
        kinds: kinds.iter().map(|k| (*k).into()).collect(),
        trunk_ids: trunks.iter().map(|t| (*t).into()).collect(),
        no_answer_timeout_s: 0,
    }
}

/// Site `hq` dials by the NANP plan under caller id +15550001000, may call national
/// numbers (and international ones when `international`), and sends them out by `routes`.
pub async fn route_out(c: &mut ConfigClient, international: bool, routes: Vec<pb::OutboundRoute>) {
    let mut hq = c
        .get_site(pb::GetRequest { id: "hq".into() })
        .await
        .unwrap()
        .into_inner();
    hq.number_plan = "nanp".into();
    hq.default_outbound_caller_id = "+15550001000".into();
    hq.call_restrictions = Some(pb::CallRestrictions {
        allow_external: true,
        allow_international: international,
        ..Default::default()
    });
    hq.outbound_routes = routes;
    c.update_site(pb::UpdateSiteRequest {
        update_mask: crate::whole(),
        site: Some(hq),
    })
    .await
    .unwrap();
}

/// `caller`'s call to `dialled` through `edge`, placed again until it is answered (the
/// edge learns the trunks and routes a moment after they are written): the INVITE and
/// the answers to the one that was.
pub async fn answered_call(
    caller: &Caller,
    dialled: &str,
    edge: SocketAddr,
) -> (String, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (invite, responses) = call(caller, dialled, edge).await;
        if responses.last().is_some_and(|r| status(r) == 200) {
            return (invite, responses);
        }
        assert!(
            Instant::now() < deadline,
            "{dialled} never answered: {:?}",
            responses.iter().map(|r| status(r)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The trunk statuses once `ready` holds for them (within 15 s).
pub async fn trunks_when(
    st: &mut StatusClient,
    ready: impl Fn(&[spb::TrunkStatus]) -> bool,
) -> Vec<spb::TrunkStatus> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let trunks = st
            .list_trunk_statuses(spb::ListTrunkStatusesRequest {})
            .await
            .unwrap()
            .into_inner()
            .trunks;
        if ready(&trunks) {
            return trunks;
        }
        assert!(Instant::now() < deadline, "trunk status: {trunks:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The state of trunk `id` among `trunks`.
pub fn state_of(trunks: &[spb::TrunkStatus], id: &str) -> Option<spb::TrunkState> {
    trunks.iter().find(|t| t.trunk_id == id).map(|t| t.state())
}

/// `phone` simulated on the sandbox's first edge, once it is registered.
pub async fn registered_callee(sb: &ClusterSandbox, phone: &(String, String, String)) -> Sim {
    let spec = sb.dual_registered(&[0], phone);
    let config = SimConfig {
        expires: 30,
        sockets: 1,
        ..SimConfig::default()
    };
    let sim = Sim::start(config, vec![spec]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.stats().registered.load(Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the phone never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim
}
