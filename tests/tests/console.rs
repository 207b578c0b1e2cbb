//! The admin console in a real browser: `tests/console/console_check.py` drives Debian's
//! headless Chromium with Playwright for Python against a node serving the console over
//! TLS (a certificate from a test CA), logged in with the tokens file's admin and viewer.
//! The script clicks through the whole flow (edge group, site, base settings, phone, its
//! password once, live status, restart, import, viewer refusals, axe-core on every page,
//! logout); this side registers the phone with the phone simulator when the script asks,
//! and checks that the restart reached the phone; a media server created over gRPC before
//! shows on its page and in the audit log. Screenshots are kept under
//! `target/console-screenshots/`.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail, ensure};
use dialtone_phonesim::{PhoneSpec, Sim, SimConfig};
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, VIEWER_TOKEN, pki::TestCa, test_python, write_test_tokens,
};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_runs_the_fleet_from_the_console() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new(dir.path(), "dialtone console test ca");
    let (cert, key) = ca.issue("api", "localhost", &["localhost", "127.0.0.1"], false);
    let tokens = dir.path().join("tokens.toml");
    write_test_tokens(&tokens)?;
    let flag = |name: &str, p: &Path| format!("--{name}={}", p.display());
    let sb = ClusterSandbox::embedded_with(&[
        &flag("grpc-tls-cert", &cert),
        &flag("grpc-tls-key", &key),
        &flag("api-tokens", &tokens),
        "--sip-min-expires=10",
    ])
    .await?;
    let node = &sb.nodes[0];
    let base = node.api_url();
    ensure!(
        base.starts_with("https://127.0.0.1:"),
        "the console is served over TLS: {base}"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let axe = root.join("browser/node_modules/axe-core/axe.min.js");
    ensure!(
        axe.exists(),
        "{} is missing: run `bash scripts/deps.sh --test`",
        axe.display()
    );
    let shots = root.join("../target/console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots)?;
    let edge_line = format!("{} udp=127.0.0.1:{}", node.node_id, node.sip.udp);
    // A change over gRPC (dialtonectl), which the console's audit log and media servers
    // page must show too.
    let ctl = Command::new(dialtone_tests::binary("dialtonectl"))
        .arg("--data-dir")
        .arg(&node.data_dir)
        .arg(flag("ca", &ca.cert))
        .args(["--tls-name", "localhost", "--token", ADMIN_TOKEN])
        .args(["media-servers", "create", "rtp-east", "--name", "RTP East"])
        .args(["--region", "east", "--ng", "127.0.0.1:22222"])
        .output()?;
    ensure!(
        ctl.status.success(),
        "dialtonectl: {}",
        String::from_utf8_lossy(&ctl.stderr)
    );

    let mut script = Command::new(test_python())
        .arg(root.join("console/console_check.py"))
        .args([base.as_str(), ADMIN_TOKEN, VIEWER_TOKEN, edge_line.as_str()])
        .arg(&axe)
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("the test venv's python (scripts/deps.sh --test makes it)")?;
    let mut to_script = script.stdin.take().context("stdin")?;
    let from_script = BufReader::new(script.stdout.take().context("stdout")?);
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in from_script.lines().map_while(Result::ok) {
            if lines_tx.blocking_send(line).is_err() {
                return;
            }
        }
    });

    let mut phone: Option<PhoneSpec> = None;
    let mut sim: Option<Sim> = None;
    let mut said = Vec::new();
    let done = loop {
        let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(120), lines.recv()).await
        else {
            break None;
        };
        said.push(line.clone());
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match event["event"].as_str() {
            Some("created") => {
                let text = |k: &str| event[k].as_str().unwrap_or_default().to_owned();
                phone = Some(PhoneSpec {
                    phone_id: text("id"),
                    user: text("user"),
                    password: text("password"),
                    domain: "dialtone".into(),
                    registrars: vec![sb.udp(0)],
                    managed: None,
                });
            }
            Some("register") => {
                let spec = phone.clone().context("register before created")?;
                sim = Some(
                    Sim::start(
                        SimConfig {
                            expires: 60,
                            ..SimConfig::default()
                        },
                        vec![spec],
                    )
                    .await?,
                );
                writeln!(to_script, "registered")?;
                to_script.flush()?;
            }
            Some("done") => break Some(event),
            _ => {}
        }
    };
    let status = tokio::task::spawn_blocking(move || script.wait_with_output()).await??;
    let Some(done) = done else {
        bail!(
            "the browser flow did not finish ({}):\n{}\n{}",
            status.status,
            said.join("\n"),
            String::from_utf8_lossy(&status.stderr)
        );
    };
    ensure!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    ensure!(
        done["scanned"].as_u64() >= Some(16),
        "pages scanned: {done}"
    );
    // Both restarts (the bulk one and the phone page's) reached the phone.
    let sim = sim.context("the phone never registered")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sim
        .stats()
        .reboots
        .load(std::sync::atomic::Ordering::Relaxed)
        < 1
    {
        ensure!(
            std::time::Instant::now() < deadline,
            "no restart reached the phone"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim.stop(false, 1).await;
    for page in [
        "phones-desktop.png",
        "phone-created-phone.png",
        "audit-desktop.png",
    ] {
        ensure!(shots.join(page).exists(), "no screenshot {page}");
    }
    Ok(())
}
