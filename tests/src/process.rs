//! The workspace's binaries and the other programs tests run: finding them, running them
//! to completion, stopping them.

use std::{
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use anyhow::bail;

/// Runs the real `dialtonectl` against the dev-mode node whose data dir is `data_dir` (it
/// finds the server and the admin token there): whether it succeeded, its stdout, its
/// stderr.
pub fn dialtonectl(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(binary("dialtonectl"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("DIALTONE_SERVER")
        .env_remove("DIALTONE_TOKEN")
        .env_remove("DIALTONE_CONTEXT")
        // No contexts file: the machine's own must not steer the tests.
        .env("DIALTONE_CONTEXTS_FILE", data_dir.join("no-contexts.toml"))
        .output()
        .expect("dialtonectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A built binary of this workspace (`cargo build --bins` must have run: the test script does).
pub fn binary(name: &str) -> PathBuf {
    // Tests live in target/PROFILE/deps, binaries (like the benchmarks) in target/PROFILE.
    let exe = std::env::current_exe().expect("current exe");
    let dirs = [exe.parent(), exe.parent().and_then(Path::parent)];
    let found = dirs
        .into_iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "{name} is missing next to {}: run `cargo build --bins` first",
            exe.display()
        )
    })
}

/// Runs `dialtone serve ARGS`, which must stop by itself (within 30 s) with a failure;
/// returns what it printed on stderr.
pub fn serve_refused(args: &[String], what: &str) -> String {
    use std::io::Read;
    let mut child = std::process::Command::new(binary("dialtone"))
        .arg("serve")
        // Never the default REST API port, which another test's node may hold.
        .arg("--listen-api=127.0.0.1:0")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dialtone");
    let status = wait_or_kill(&mut child, Duration::from_secs(30), what)
        .unwrap_or_else(|e| panic!("{what}: the node kept running: {e}"));
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(!status.success(), "{what}: exit {status}");
    err
}

/// Runs a sipvicious tool (`svwar`, `svcrack`) for at most 60 s; returns what it printed.
pub fn sipvicious(tool: &str, args: &[String]) -> String {
    let out = std::process::Command::new("timeout")
        .arg("60")
        .arg(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sipvicious (apt install sipvicious)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Kills a child with SIGKILL and reaps it.
pub(crate) fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits up to `within` for a child that was asked to stop (or must stop by itself);
/// SIGKILLs it after that.
pub fn wait_or_kill(
    child: &mut Child,
    within: Duration,
    what: &str,
) -> anyhow::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if Instant::now() > deadline {
            kill9(child);
            bail!("{what} did not stop within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
