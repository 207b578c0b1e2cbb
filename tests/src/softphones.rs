//! Real SIP user agents driven from tests: baresip (libre's digest, MD5) and linphonec
//! (belle-sip's digest, MD5 or SHA-256). Each runs headless in its own directory, listens
//! on 127.0.0.1 only, registers through the edge given as its outbound proxy, refreshes on
//! its own timer and de-registers when stopped with SIGTERM or `quit`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

use anyhow::Context;

use crate::{fleet::Seeded, free_port_pair, kill9, wait_or_kill};

/// A phone process; killed with SIGKILL if dropped without `stop`.
pub struct Softphone {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// Where the client writes its log (shown when a test fails).
    pub log: PathBuf,
}

impl Softphone {
    /// baresip registering `p` at `edge` (`ip:port`) over UDP every `regint` seconds.
    pub fn baresip(dir: &Path, edge: &str, p: &Seeded, regint: u32) -> anyhow::Result<Self> {
        let dir = dir.join(format!("baresip-{}", p.sip_user));
        std::fs::create_dir_all(&dir)?;
        let port = free_port_pair();
        // Only the account module: no audio, no video, no console.
        std::fs::write(
            dir.join("config"),
            format!(
                "module_path /usr/lib/baresip/modules\nsip_listen 127.0.0.1:{port}\n\
                 module_app account.so\naudio_player nil\naudio_source nil\n"
            ),
        )?;
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{u}@127.0.0.1>;auth_pass={pw};outbound=\"sip:{edge};transport=udp\";regint={regint}\n",
                u = p.sip_user,
                pw = p.password
            ),
        )?;
        let log = dir.join("baresip.log");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .arg("-v")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::inherit())
            .spawn()
            .context("baresip (apt install baresip-core)")?;
        Ok(Softphone {
            child: Some(child),
            stdin: None,
            log,
        })
    }

    /// linphonec registering `p` at `edge` over UDP with `algorithm` (`MD5` or `SHA-256`)
    /// for `expires` seconds (it refreshes at 90 %).
    pub fn linphonec(
        dir: &Path,
        edge: &str,
        p: &Seeded,
        algorithm: &str,
        expires: u32,
    ) -> anyhow::Result<Self> {
        let dir = dir.join(format!("linphonec-{}", p.sip_user));
        // liblinphone keeps a database under $HOME and will not start transports without it.
        std::fs::create_dir_all(dir.join(".local/share/linphone"))?;
        let rc = dir.join("linphonerc");
        std::fs::write(
            &rc,
            format!(
                "[sip]\nsip_port=-1\nsip_tcp_port=0\nsip_tls_port=0\nbind_address=127.0.0.1\n\
                 [proxy_0]\nreg_proxy=<sip:{edge};transport=udp>\n\
                 reg_identity=<sip:{u}@127.0.0.1>\nreg_expires={expires}\nreg_sendregister=1\n\
                 [auth_info_0]\nusername={u}\npasswd={pw}\nalgorithm={algorithm}\n",
                u = p.sip_user,
                pw = p.password
            ),
        )?;
        let log = dir.join("linphonec.log");
        let mut child = Command::new("linphonec")
            .arg("-c")
            .arg(&rc)
            .args(["-d", "5", "-l"])
            .arg(&log)
            .env("HOME", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("linphonec (apt install linphone-cli)")?;
        let stdin = child.stdin.take();
        Ok(Softphone {
            child: Some(child),
            stdin,
            log,
        })
    }

    /// Stops the phone the way a user would (linphonec: `quit`; baresip: SIGTERM), which
    /// de-registers, and waits up to 10 s for it to exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let mut c = self.child.take().context("not running")?;
        match self.stdin.take() {
            Some(mut stdin) => {
                let _ = stdin.write_all(b"quit\n");
            }
            // SAFETY: kill(2) with a pid we own; no memory is touched.
            None => unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            },
        }
        wait_or_kill(&mut c, Duration::from_secs(10), "softphone").map(|_| ())
    }

    /// The client's log, for assertion messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Softphone {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
    }
}
