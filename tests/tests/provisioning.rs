//! Zero-touch provisioning against `dialtone serve`, fetched with curl over real TLS (the
//! dev certificate, trusted through --cacert) and HTTP digest: every file route, with and
//! without credentials, ETag revalidation, a change reaching the files, drift in the API,
//! and the ban of a guessing address.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use dialtone_proto::{config::v1 as pb, provisioning::v1 as ppb};
use dialtone_tests::{ClusterSandbox, ConfigClient, ProvisioningClient};

/// One curl request: (status, headers, body).
struct Fetched {
    status: u16,
    headers: String,
    body: String,
}

fn curl(port: u16, ca: &Path, path: &str, auth: Option<(&str, &str)>, extra: &[&str]) -> Fetched {
    let dir = tempfile::tempdir().unwrap();
    let (head, body) = (dir.path().join("h"), dir.path().join("b"));
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--http1.1", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"]);
    if let Some((u, p)) = auth {
        cmd.arg("--digest").arg("-u").arg(format!("{u}:{p}"));
    }
    cmd.args(extra);
    cmd.arg(format!("https://127.0.0.1:{port}{path}"));
    let out = cmd.output().expect("curl runs");
    let code = String::from_utf8_lossy(&out.stdout);
    Fetched {
        status: code.trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(&head).unwrap_or_default(),
        body: std::fs::read_to_string(&body).unwrap_or_default(),
    }
}

fn header<'a>(f: &'a Fetched, name: &str) -> Option<&'a str> {
    // With --digest curl writes the 401 then the final response: take the last block.
    let last = f
        .headers
        .rsplit("\r\n\r\n")
        .find(|b| !b.trim().is_empty())?;
    last.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

struct Fleet {
    poly: (pb::CreatePhoneResponse, String),
    yealink: (pb::CreatePhoneResponse, String),
    softphone: (pb::CreatePhoneResponse, String),
    audiocodes: (pb::CreatePhoneResponse, String),
}

async fn seed(c: &mut ConfigClient) -> Fleet {
    let edge = |id: &str, n: u8| pb::Edge {
        node_id: id.into(),
        addresses: Some(pb::SipAddresses {
            udp: format!("127.0.0.{n}:5060"),
            tls: format!("127.0.0.{n}:5061"),
            ..Default::default()
        }),
    };
    c.create_edge_group(pb::CreateEdgeGroupRequest {
        edge_group: Some(pb::EdgeGroup {
            id: "eg".into(),
            name: "Edges".into(),
            edges: vec![edge("edge-a", 1), edge("edge-b", 2)],
            version: 0,
        }),
    })
    .await
    .unwrap();
    dialtone_tests::fleet::create_site(c, "hq", "HQ", "eg")
        .await
        .unwrap();
    for (id, meta, settings) in [
        ("vvx", pb::MetaBase::PolyVvx, pb::PhoneSettings::default()),
        ("yea", pb::MetaBase::Yealink, pb::PhoneSettings::default()),
        ("ac", pb::MetaBase::Audiocodes, pb::PhoneSettings::default()),
        (
            "soft",
            pb::MetaBase::DesktopSoftphone,
            pb::PhoneSettings {
                softphone: Some(pb::SoftphoneAudio {
                    use_headset: Some(true),
                    headset_name: vec!["Jabra.*".into()],
                    reject_session_when_headset_na: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    ] {
        dialtone_tests::fleet::create_profile(c, id, id, meta, settings)
            .await
            .unwrap();
    }
    let mut create = async |name: &str, kind: pb::PhoneKind, base: &str, hw: &str, line: &str| {
        let r = c
            .create_phone(pb::CreatePhoneRequest {
                phone: Some(pb::Phone {
                    name: name.into(),
                    kind: kind as i32,
                    site_id: "hq".into(),
                    base_settings_id: base.into(),
                    hardware_id: hw.into(),
                    lines: vec![pb::Line {
                        sip_user: line.into(),
                        display_name: name.into(),
                        credentials: None,
                        password: String::new(),
                    }],
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        let pw = r.device_credentials.as_ref().unwrap().password.clone();
        (r, pw)
    };
    Fleet {
        poly: create(
            "Lobby",
            pb::PhoneKind::Managed,
            "vvx",
            "0004f2aabb01",
            "1001",
        )
        .await,
        yealink: create(
            "Desk",
            pb::PhoneKind::Managed,
            "yea",
            "805ec0aabb02",
            "1002",
        )
        .await,
        softphone: create(
            "Agent",
            pb::PhoneKind::Webrtc,
            "soft",
            "agent-7.example.com",
            "1003",
        )
        .await,
        audiocodes: create("Hall", pb::PhoneKind::Managed, "ac", "00908faabb04", "1004").await,
    }
}

/// A dev-mode node started with `args`, its admin token, a config client and the seeded fleet.
async fn start(args: &[&str]) -> (ClusterSandbox, String, ConfigClient, Fleet) {
    let sb = ClusterSandbox::embedded_with(args).await.unwrap();
    let token = sb.nodes[0].admin_token();
    let mut c = sb.nodes[0].config_client(&token).await.unwrap();
    let fleet = seed(&mut c).await;
    (sb, token, c, fleet)
}

/// Changes profile `vvx` (the Poly phones').
async fn change_vvx(c: &mut ConfigClient, f: impl FnOnce(&mut pb::PhoneSettings)) {
    dialtone_tests::fleet::change_profile(c, "vvx", f)
        .await
        .unwrap();
}

/// Waits up to 5 s until the phone's last fetch is recorded and is what it should run
/// (applied = desired, so no drift).
async fn until_applied(p: &mut ProvisioningClient, id: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = p
            .get_provisioning(ppb::GetProvisioningRequest {
                phone_id: id.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        if !v.drift
            && v.state
                .as_ref()
                .is_some_and(|s| s.applied_version == v.desired_version)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_fetch_their_files_over_https_with_digest() {
    let (sb, token, mut c, fleet) = start(&[
        "--provisioning-ban-source-failures=6",
        "--provisioning-ban-device-failures=4",
    ])
    .await;
    let node = &sb.nodes[0];
    let port = node.https;
    let ca: PathBuf = node.data_dir.join("tls/provisioning-cert.pem");
    let poly_pw = fleet.poly.1.clone();
    let poly = Some(("0004f2aabb01", poly_pw.as_str()));

    // Without credentials: a challenge, SHA-256 first then MD5, and nothing about phones.
    let f = curl(port, &ca, "/0004f2aabb01.cfg", None, &[]);
    assert_eq!(f.status, 401, "{}", f.headers);
    let challenges: Vec<&str> = f
        .headers
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .collect();
    assert_eq!(challenges.len(), 2, "{}", f.headers);
    assert!(challenges[0].contains("algorithm=SHA-256") && challenges[1].contains("algorithm=MD5"));
    assert!(!f.body.contains("0004f2aabb01") && !f.body.contains("Lobby"));

    // Every Poly route with the device credential (curl answers the challenge itself).
    let master = curl(port, &ca, "/000000000000.cfg", poly, &[]);
    assert_eq!(master.status, 200, "{}", master.headers);
    assert!(master.body.contains("[PHONE_MAC_ADDRESS]-registration.cfg"));
    let own = curl(port, &ca, "/0004f2aabb01.cfg", poly, &[]);
    assert_eq!(own.status, 200);
    assert!(
        own.body
            .contains("0004f2aabb01-registration.cfg, 0004f2aabb01-settings.cfg")
    );
    let reg = curl(port, &ca, "/0004f2aabb01-registration.cfg", poly, &[]);
    assert_eq!(reg.status, 200);
    assert_eq!(header(&reg, "content-type"), Some("application/xml"));
    // The line password pushed is the one the API showed at creation: the phone registers.
    let line = &fleet.poly.0.credentials[0];
    assert!(
        reg.body
            .contains(&format!("reg.1.auth.password=\"{}\"", line.password)),
        "{}",
        reg.body
    );
    assert!(
        reg.body
            .contains(&format!("reg.1.auth.userId=\"{}\"", line.sip_user))
    );
    assert!(reg.body.contains("reg.1.server.2.address=\"127.0.0."));
    let settings = curl(port, &ca, "/0004f2aabb01-settings.cfg", poly, &[]);
    assert_eq!(settings.status, 200);
    assert!(settings.body.contains("voice.codecPref.G722=\"1\""));

    // ETag: a phone polling with If-None-Match gets 304 and no body.
    let etag = header(&reg, "etag").unwrap().to_owned();
    let again = curl(
        port,
        &ca,
        "/0004f2aabb01-registration.cfg",
        poly,
        &["-H", &format!("If-None-Match: {etag}")],
    );
    assert_eq!(again.status, 304, "{}", again.headers);
    assert!(again.body.is_empty());

    // Yealink: the common file (any model's name) and its own file; MD5 digest as well.
    let ypw = fleet.yealink.1.clone();
    let yealink = Some(("805ec0aabb02", ypw.as_str()));
    let common = curl(port, &ca, "/y000000000044.cfg", yealink, &[]);
    assert_eq!(common.status, 200, "{}", common.headers);
    assert!(common.body.starts_with("#!version:1.0.0.1"));
    assert!(!common.body.contains("password"));
    let ycfg = curl(port, &ca, "/805ec0aabb02.cfg", yealink, &[]);
    assert_eq!(ycfg.status, 200);
    assert!(ycfg.body.contains(&format!(
        "account.1.password = {}",
        fleet.yealink.0.credentials[0].password
    )));
    // Another phone's file does not exist for it; nor does a Poly file for a Yealink.
    assert_eq!(
        curl(port, &ca, "/0004f2aabb01.cfg", yealink, &[]).status,
        404
    );
    assert_eq!(
        curl(port, &ca, "/805ec0aabb02-registration.cfg", yealink, &[]).status,
        404
    );

    // AudioCodes: its own `key=value` file; it registers to its primary edge and fails over
    // to the other (its redundant proxy), never both at once.
    let apw = fleet.audiocodes.1.clone();
    let ac = curl(
        port,
        &ca,
        "/00908faabb04.cfg",
        Some(("00908faabb04", apw.as_str())),
        &[],
    );
    assert_eq!(ac.status, 200, "{}", ac.headers);
    assert!(
        ac.body.contains(&format!(
            "voip/line/0/auth_password={}\n",
            fleet.audiocodes.0.credentials[0].password
        )),
        "{}",
        ac.body
    );
    let value = |k: &str| {
        ac.body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_owned()
    };
    let (proxy, backup) = (
        value("voip/signalling/sip/proxy_address"),
        value("voip/signalling/sip/redundant_proxy/address"),
    );
    assert!(
        proxy.starts_with("127.0.0.") && backup.starts_with("127.0.0."),
        "{}",
        ac.body
    );
    assert_ne!(proxy, backup);

    // The softphone's JSON document carries its audio-device rules.
    let spw = fleet.softphone.1.clone();
    let soft = curl(
        port,
        &ca,
        "/agent-7.example.com.json",
        Some(("agent-7.example.com", spw.as_str())),
        &[],
    );
    assert_eq!(soft.status, 200, "{}", soft.headers);
    let v: serde_json::Value = serde_json::from_str(&soft.body).unwrap();
    assert_eq!(v["softphone"]["use_headset"], true);
    assert_eq!(v["softphone"]["sip_code_when_headset_na"], 480);
    assert_eq!(v["registration"]["transport"], "tls");
    assert_eq!(v["registration"]["primary"]["port"], 5061);

    // The API shows what the phone fetched against what it should run.
    let mut p = node.provisioning_client(&token).await.unwrap();
    let poly_id = fleet.poly.0.phone.as_ref().unwrap().id.clone();
    let view = |p: &mut ProvisioningClient| {
        let mut p = p.clone();
        let id = poly_id.clone();
        async move {
            p.get_provisioning(ppb::GetProvisioningRequest { phone_id: id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = loop {
        let got = view(&mut p).await;
        if got.state.is_some() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let state = got.state.clone().expect("the fetch was recorded");
    assert_eq!(state.applied_version, got.desired_version);
    assert!(!got.drift);
    assert_eq!(got.files.len(), 4);
    assert!(state.user_agent.starts_with("curl/"), "{state:?}");

    // A change to the phone's profile reaches its files within a second: the old tag no
    // longer matches, the new file says the new thing, and the API shows drift until then.
    change_vvx(&mut c, |s| s.sip_dscp = Some(40)).await;
    let settings_tag = header(&settings, "etag").unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(3);
    let changed = loop {
        let f = curl(
            port,
            &ca,
            "/0004f2aabb01-settings.cfg",
            poly,
            &["-H", &format!("If-None-Match: {settings_tag}")],
        );
        if f.status == 200 || Instant::now() > deadline {
            break f;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(changed.status, 200);
    assert!(changed.body.contains("qos.ip.callControl.dscp=\"40\""));
    let after = view(&mut p).await;
    assert_ne!(after.desired_version, got.desired_version);

    // An unknown MAC and a wrong password get the same challenge; guessing gets banned.
    let unknown = curl(
        port,
        &ca,
        "/0004f2ffff99.cfg",
        Some(("0004f2ffff99", "guess")),
        &[],
    );
    assert_eq!(unknown.status, 401);
    let wrong = curl(
        port,
        &ca,
        "/0004f2aabb01.cfg",
        Some(("0004f2aabb01", "guess")),
        &[],
    );
    assert_eq!(wrong.status, 401);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            curl(
                port,
                &ca,
                "/0004f2aabb01.cfg",
                Some(("0004f2aabb01", "x")),
                &[],
            )
            .status,
        );
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // The banned address is refused even with the right credential.
    assert_eq!(curl(port, &ca, "/0004f2aabb01.cfg", poly, &[]).status, 429);
    let (_, metrics) = node.http_get("/metrics").await.unwrap();
    let count = |result: &str| -> u64 {
        let prefix = format!("dialtone_provisioning_fetches_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(count("not_modified") >= 1, "{metrics}");
    assert!(count("ok") >= 8 && count("unauthorized") >= 4, "{metrics}");
    assert!(count("banned") >= 2, "{metrics}");
}

/// The value of a Poly attribute in a file.
fn poly_attr(body: &str, name: &str) -> String {
    let start = body.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
    body[start..][..body[start..].find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_change_resyncs_registered_phones_through_their_edge() {
    use dialtone_tests::sip::{UdpPhone, headers};
    let (sb, token, mut c, fleet) = start(&["--provisioning-resync-debounce-ms=200"]).await;
    let node = &sb.nodes[0];
    let (port, ca) = (node.https, node.data_dir.join("tls/provisioning-cert.pem"));
    let poly = Some(("0004f2aabb01", fleet.poly.1.as_str()));

    // Zero touch: the phone boots, fetches its files, and registers with what they say.
    for f in ["/0004f2aabb01.cfg", "/0004f2aabb01-settings.cfg"] {
        assert_eq!(curl(port, &ca, f, poly, &[]).status, 200);
    }
    let reg = curl(port, &ca, "/0004f2aabb01-registration.cfg", poly, &[]);
    assert_eq!(reg.status, 200);
    let user = poly_attr(&reg.body, "reg.1.auth.userId");
    let password = poly_attr(&reg.body, "reg.1.auth.password");
    let edge: std::net::SocketAddr = format!("127.0.0.1:{}", node.sip.udp).parse().unwrap();
    let mut phone = UdpPhone::new(edge, &user, &password).await.unwrap();
    let ok = phone.register(3600).await.unwrap();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");

    // Wait until the fetch is recorded (applied = desired).
    let mut p = node.provisioning_client(&token).await.unwrap();
    let id = fleet.poly.0.phone.as_ref().unwrap().id.clone();
    until_applied(&mut p, &id, "the fetch was never recorded").await;

    // The admin changes the phone's profile: the phone gets check-sync;reboot=false from
    // its edge, answers, fetches again and runs the new configuration.
    change_vvx(&mut c, |s| s.media_dscp = Some(34)).await;
    let notify = phone
        .recv(Duration::from_secs(10))
        .await
        .expect("the phone got no NOTIFY after the change");
    assert!(notify.starts_with("NOTIFY "), "{notify}");
    assert!(
        notify.contains("Event: check-sync;reboot=false"),
        "{notify}"
    );
    let mut answer = String::from("SIP/2.0 200 OK\r\n");
    for h in ["via", "from", "to", "call-id", "cseq"] {
        for v in headers(&notify, h) {
            answer.push_str(&format!("{h}: {v}\r\n"));
        }
    }
    answer.push_str("Content-Length: 0\r\n\r\n");
    phone.send(&answer).await.unwrap();
    let settings = curl(port, &ca, "/0004f2aabb01-settings.cfg", poly, &[]);
    assert!(
        settings.body.contains("qos.ip.rtp.dscp=\"34\""),
        "{}",
        settings.body
    );

    // Progress: one resync sent; the Yealink phone never fetched and the softphone's
    // profile did not change, so neither was disturbed.
    let progress = p
        .get_reload_progress(ppb::GetReloadProgressRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(progress.resyncs_sent, 1, "{progress:?}");
    assert_eq!(progress.pending, 0, "{progress:?}");
    until_applied(&mut p, &id, "drift never cleared").await;
    // dialtonectl shows both (it finds the node through the data dir, as an admin would).
    let ctl = |args: &[&str]| {
        let out = Command::new(dialtone_tests::binary("dialtonectl"))
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(args)
            .env_remove("DIALTONE_SERVER")
            .env_remove("DIALTONE_TOKEN")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = ctl(&["provisioning", "reload"]);
    assert!(
        shown.contains("RESYNCS SENT") && shown.contains("50/s"),
        "{shown}"
    );
    let shown = ctl(&["provisioning", "get", &id]);
    assert!(
        shown.contains("in sync") && shown.contains("0004f2aabb01-settings.cfg"),
        "{shown}"
    );

    // The edge reports the phone's answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, metrics) = node.http_get("/metrics").await.unwrap();
        if metrics.contains("dialtone_phone_actions_total{outcome=\"answered\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn handled(p: &ppb::ReloadProgress) -> u64 {
    p.resyncs_sent
        + p.unchanged
        + p.never_fetched
        + p.not_registered
        + p.needs_restart
        + p.other_node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_waves_are_paced() {
    let (sb, token, mut c, _fleet) = start(&[
        "--provisioning-resync-rate=10",
        "--provisioning-resync-debounce-ms=100",
    ])
    .await;
    let node = &sb.nodes[0];
    for i in 0..19 {
        c.create_phone(pb::CreatePhoneRequest {
            phone: Some(pb::Phone {
                name: format!("Room {i}"),
                kind: pb::PhoneKind::Managed as i32,
                site_id: "hq".into(),
                base_settings_id: "vvx".into(),
                hardware_id: format!("0004f2cc00{i:02x}"),
                lines: vec![pb::Line::default()],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
    let mut p = node.provisioning_client(&token).await.unwrap();
    let progress = async |p: &mut dialtone_tests::ProvisioningClient| {
        p.get_reload_progress(ppb::GetReloadProgressRequest {})
            .await
            .unwrap()
            .into_inner()
    };
    // The creations' own waves drain first.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut settled = (0, Instant::now());
    loop {
        let now = progress(&mut p).await;
        if now.pending == 0
            && handled(&now) == settled.0
            && settled.1.elapsed() > Duration::from_millis(500)
        {
            break;
        }
        if handled(&now) != settled.0 {
            settled = (handled(&now), Instant::now());
        }
        assert!(Instant::now() < deadline, "{now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = settled.0;
    // A change of the profile 20 phones use: a wave of 20, at 10 per second.
    change_vvx(&mut c, |s| s.sip_dscp = Some(30)).await;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mid = progress(&mut p).await;
    let done_at_1s = handled(&mid) - before;
    assert!(
        (1..=14).contains(&done_at_1s) && mid.pending > 0,
        "after 1.1 s: {done_at_1s} handled, {mid:?}"
    );
    loop {
        let now = progress(&mut p).await;
        if handled(&now) - before == 20 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(1700),
        "{:?}",
        start.elapsed()
    );
}

/// A device CA, certificates it issued for two phones (the Poly one naming its MAC with
/// colons, as vendors write it), and a look-alike certificate nobody issued.
struct DevicePki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    poly: (PathBuf, PathBuf),
    yealink: (PathBuf, PathBuf),
    rogue: (PathBuf, PathBuf),
}

fn device_pki() -> DevicePki {
    let dir = tempfile::tempdir().unwrap();
    let ca = dialtone_tests::pki::TestCa::new(dir.path(), "Device CA");
    DevicePki {
        poly: ca.issue("poly", "00:04:F2:AA:BB:01", &[], true),
        yealink: ca.issue("yealink", "805ec0aabb02", &[], true),
        rogue: ca.rogue("rogue", "0004f2aabb01", true),
        ca: ca.cert,
        _dir: dir,
    }
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn cert_args(pair: &(PathBuf, PathBuf)) -> Vec<String> {
    vec![
        "--cert".into(),
        pair.0.display().to_string(),
        "--key".into(),
        pair.1.display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_phones_fetch_with_their_device_certificate() {
    let pki = device_pki();
    let ca_arg = pki.ca.display().to_string();
    let (sb, _token, mut c, fleet) = start(&["--provisioning-client-ca", &ca_arg]).await;
    let node = &sb.nodes[0];
    let (port, ca) = (node.https, node.data_dir.join("tls/provisioning-cert.pem"));
    let poly = Some(("0004f2aabb01", fleet.poly.1.as_str()));
    let yealink = Some(("805ec0aabb02", fleet.yealink.1.as_str()));
    let with = |pair: &(PathBuf, PathBuf)| cert_args(pair);
    let poly_cert = with(&pki.poly);

    // Mutual auth off: the digest credential works, and so does the device certificate alone.
    let f = curl(port, &ca, "/0004f2aabb01.cfg", poly, &[]);
    assert_eq!(f.status, 200, "{}", f.headers);
    let f = curl(
        port,
        &ca,
        "/0004f2aabb01-registration.cfg",
        None,
        &args(&poly_cert),
    );
    assert_eq!(f.status, 200, "{}", f.headers);
    assert!(f.body.contains("reg.1.auth.userId"), "{}", f.body);

    // Mutual auth on in the Poly profile: the right password alone is refused exactly as a
    // wrong one is; the certificate still works.
    change_vvx(&mut c, |s| s.mutual_auth = Some(true)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let f = curl(port, &ca, "/0004f2aabb01.cfg", poly, &[]);
        if f.status == 401 {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "mutual auth never applied: {}",
            f.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wrong = curl(
        port,
        &ca,
        "/0004f2aabb01.cfg",
        Some(("0004f2aabb01", "not-the-password")),
        &[],
    );
    assert_eq!(
        (wrong.status, wrong.body.as_str()),
        (401, refused.body.as_str())
    );
    assert_eq!(
        header(&refused, "www-authenticate").is_some(),
        header(&wrong, "www-authenticate").is_some()
    );
    let f = curl(
        port,
        &ca,
        "/0004f2aabb01-settings.cfg",
        None,
        &args(&poly_cert),
    );
    assert_eq!(f.status, 200, "{}", f.headers);
    assert!(header(&f, "etag").is_some());

    // Another device's certificate is that device: the Poly phone's files do not exist for
    // it, its own do (its profile keeps digest too).
    let yea_cert = with(&pki.yealink);
    let f = curl(port, &ca, "/0004f2aabb01.cfg", None, &args(&yea_cert));
    assert_eq!(f.status, 404, "{}", f.headers);
    assert!(!f.body.contains("0004f2aabb01"));
    let f = curl(port, &ca, "/805ec0aabb02.cfg", None, &args(&yea_cert));
    assert_eq!(f.status, 200, "{}", f.headers);
    let f = curl(port, &ca, "/805ec0aabb02.cfg", yealink, &[]);
    assert_eq!(f.status, 200, "{}", f.headers);

    // A certificate the device CA did not issue fails the handshake (curl reports 000).
    let f = curl(
        port,
        &ca,
        "/0004f2aabb01.cfg",
        None,
        &args(&with(&pki.rogue)),
    );
    assert_eq!(f.status, 0, "{}", f.headers);
}
