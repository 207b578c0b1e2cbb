//! The ng guard (`deploy/media/ng-guard.sh`, which the Helm chart's media pods run): a
//! browser holding a TURN credential must not reach rtpengine's unauthenticated ng port
//! through coturn's relay, while relaying to everything else and the edges' own ng
//! commands keep working. Real rtpengine, real coturn configured as the chart starts them
//! (relaying over UDP to the node's own address only), real nftables, all inside a network
//! namespace of the test's own so this machine's firewall is never touched.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, ensure};
use dialtone_media::turn::{TurnSecret, credential};
use dialtone_tests::{netns::NetNs, turn::TurnRelay};

const NG_PORT: u16 = 2223;
const RELAY_PORTS: (u16, u16) = (10_000, 10_099);
const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A process in the namespace, killed when dropped (before the namespace goes).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(ns: &NetNs, program: &str, args: &[&str], log: &Path) -> anyhow::Result<Running> {
    Ok(Running(
        ns.command(program, args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log)?)
            .stderr(std::fs::File::create(log.with_extension("err"))?)
            .spawn()
            .with_context(|| program.to_string())?,
    ))
}

/// Whether an ng `ping` sent with `send` is answered `pong` within `wait` by `receive`.
fn pongs(
    send: impl Fn(&[u8]) -> anyhow::Result<()>,
    receive: impl Fn(Duration) -> Option<Vec<u8>>,
    wait: Duration,
) -> anyhow::Result<bool> {
    let cookie = format!("{:016x}", rand::random::<u64>());
    send(format!("{cookie} d7:command4:pinge").as_bytes())?;
    Ok(receive(wait).is_some_and(|r| r == format!("{cookie} d6:result4:ponge").as_bytes()))
}

#[test]
fn a_turn_relay_cannot_reach_the_ng_port_once_guarded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ns = NetNs::create("ngguard")?;
    let addr = NetNs::ADDRESS.to_string();
    let ng = SocketAddr::new(NetNs::ADDRESS, NG_PORT);

    // rtpengine and coturn as the chart's media pod runs them (the node's address being
    // the namespace's).
    let _rtpengine = start(
        &ns,
        "rtpengine",
        &[
            "--config-file=none",
            "--foreground",
            "--log-stderr",
            "--table=-1",
            &format!("--interface={addr}"),
            &format!("--listen-ng={ng}"),
            "--port-min=20000",
            "--port-max=20099",
            "--delete-delay=0",
        ],
        &dir.path().join("rtpengine.log"),
    )?;
    let conf = dir.path().join("turn.conf");
    std::fs::write(
        &conf,
        format!("use-auth-secret\nstatic-auth-secret={SECRET}\n"),
    )?;
    let _coturn = start(
        &ns,
        "turnserver",
        &[
            "-c",
            conf.to_str().context("path")?,
            "--realm=dialtone",
            "--fingerprint",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--simple-log",
            "--log-file=stdout",
            &format!("--listening-ip={addr}"),
            &format!("--relay-ip={addr}"),
            "--listening-port=3478",
            &format!("--min-port={}", RELAY_PORTS.0),
            &format!("--max-port={}", RELAY_PORTS.1),
            "--no-tcp-relay",
            "--denied-peer-ip=0.0.0.0-255.255.255.255",
            &format!("--allowed-peer-ip={addr}"),
        ],
        &dir.path().join("coturn.log"),
    )?;

    // An edge's ng client: a socket on an ephemeral port.
    let edge = ns.udp_socket(0)?;
    edge.set_read_timeout(Some(Duration::from_millis(100)))?;
    let edge_pongs = |wait| {
        pongs(
            |b| Ok(edge.send_to(b, ng).map(drop)?),
            |wait| {
                let mut buf = [0u8; 512];
                let deadline = std::time::Instant::now() + wait;
                while std::time::Instant::now() < deadline {
                    if let Ok((n, _)) = edge.recv_from(&mut buf) {
                        return Some(buf[..n].to_vec());
                    }
                }
                None
            },
            wait,
        )
    };
    let mut up = false;
    for _ in 0..50 {
        if edge_pongs(Duration::from_millis(200))? {
            up = true;
            break;
        }
    }
    ensure!(up, "rtpengine never answered its ng port");

    // A browser's TURN credential, as the provisioning role hands it out.
    let secret = TurnSecret::from_text(SECRET).context("secret")?;
    let now = std::time::UNIX_EPOCH.elapsed()?.as_secs();
    let cred = credential(&secret, "browser-phone", now, 3600);
    let mut relay = None;
    for _ in 0..50 {
        match TurnRelay::allocate(
            ns.udp_socket(0)?,
            SocketAddr::new(NetNs::ADDRESS, 3478),
            (&cred.username, &cred.password),
        ) {
            Ok(r) => {
                relay = Some(r);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let relay = relay.context("coturn never allocated a relay")?;
    ensure!(
        (RELAY_PORTS.0..=RELAY_PORTS.1).contains(&relay.relayed.port()),
        "relayed address {} outside the relay range",
        relay.relayed
    );
    relay.permit(ng)?;
    let via_relay = |wait| {
        pongs(
            |b| relay.send(ng, b),
            |wait| relay.receive_from(ng, wait),
            wait,
        )
    };

    // Unguarded, the relay reaches the ng port: the hole the guard closes.
    ensure!(
        via_relay(Duration::from_secs(2))?,
        "without the guard, an ng ping through the relay went unanswered (the test proves nothing)"
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/media/ng-guard.sh");
    let guard = |ports: [u16; 3]| {
        ns.command(
            "sh",
            &[
                script.to_str().expect("utf-8 path"),
                &ports[0].to_string(),
                &ports[1].to_string(),
                &ports[2].to_string(),
            ],
        )
        .output()
    };
    let out = guard([NG_PORT, RELAY_PORTS.0, RELAY_PORTS.1])?;
    ensure!(
        out.status.success(),
        "ng-guard failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Run again, as a restarted pod does: the table is replaced, not doubled.
    let out = guard([NG_PORT, RELAY_PORTS.0, RELAY_PORTS.1])?;
    let listed = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && listed.matches("drop").count() == 1,
        "a second run did not leave one rule: {listed}"
    );
    // Bad arguments are refused with a reason, and change nothing.
    let bad = guard([10_050, RELAY_PORTS.0, RELAY_PORTS.1])?;
    ensure!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("inside the relay range"),
        "an ng port inside the relay range was accepted"
    );

    // Guarded: the relay no longer reaches the ng port (twice, as a retransmitting client
    // would try) ...
    for _ in 0..2 {
        ensure!(
            !via_relay(Duration::from_secs(1))?,
            "an ng ping through the TURN relay was answered with the guard on"
        );
    }
    // ... the edges' own commands still do ...
    ensure!(
        edge_pongs(Duration::from_secs(2))?,
        "the guard blocked an edge's ng ping"
    );
    // ... and the relay still carries media to the node's other ports, both ways.
    let media = ns.udp_socket(21_000)?;
    media.set_read_timeout(Some(Duration::from_secs(2)))?;
    relay.permit(media.local_addr()?)?;
    relay.send(media.local_addr()?, b"rtp")?;
    let mut buf = [0u8; 64];
    let (n, from) = media
        .recv_from(&mut buf)
        .context("relayed media never arrived")?;
    ensure!(&buf[..n] == b"rtp" && from == relay.relayed);
    media.send_to(b"back", from)?;
    ensure!(
        relay.receive_from(media.local_addr()?, Duration::from_secs(2)) == Some(b"back".to_vec()),
        "media from the peer never came back through the relay"
    );
    Ok(())
}

#[test]
fn the_guard_refuses_bad_arguments() -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/media/ng-guard.sh");
    for (args, says) in [
        (&["2223", "10000"][..], "usage"),
        (&["ng", "10000", "10099"], "'ng' is not a port number"),
        (&["2223", "0", "10099"], "0 is not in 1-65535"),
        (&["2223", "10099", "10000"], "is above RELAY_PORT_MAX"),
        (&["10000", "10000", "10099"], "inside the relay range"),
        (&["2223", "40000", "40099"], "overlaps the ephemeral ports"),
    ] {
        // Refused before nft is ever run, so this needs no namespace.
        let out = Command::new("sh").arg(&script).args(args).output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2) && err.contains(says),
            "{args:?}: expected exit 2 saying {says:?}, got {:?} {err}",
            out.status.code()
        );
    }
    Ok(())
}
