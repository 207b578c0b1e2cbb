//! Real SIP user agents driven from tests: baresip (libre's digest, MD5) and linphonec
//! (belle-sip's digest, MD5 or SHA-256). Each runs headless in its own directory, listens
//! on 127.0.0.1 only, registers through the edge given as its outbound proxy, refreshes on
//! its own timer and de-registers when stopped with SIGTERM or `quit`. Both place and
//! answer calls: baresip through its `ctrl_tcp` control socket (and answers by itself),
//! linphonec through its console (`autoanswer enable`, `call`, `terminate`).

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
    /// baresip's control port (`ctrl_tcp`: netstring JSON commands).
    ctrl: Option<u16>,
    /// Where the client writes its log (shown when a test fails).
    pub log: PathBuf,
}

impl Softphone {
    /// baresip registering `p` at `edge` (`ip:port`) over UDP every `regint` seconds. It
    /// answers calls by itself and takes [`Softphone::dial`] and [`Softphone::hang_up`]
    /// over its control port; no sound card: a 440 Hz sine is its microphone (`ausine`
    /// only makes 48 kHz stereo), nothing plays what it hears.
    pub fn baresip(dir: &Path, edge: &str, p: &Seeded, regint: u32) -> anyhow::Result<Self> {
        Self::baresip_with(dir, edge, p, regint, "udp", "")
    }

    /// [`Softphone::baresip`] registering over `transport` (`udp`, `tcp`, `tls`: `edge` is
    /// then the edge's address for it), with `params` added to its account (e.g.
    /// `;mediaenc=srtp-mand`: SRTP keyed by SDES, required).
    pub fn baresip_with(
        dir: &Path,
        edge: &str,
        p: &Seeded,
        regint: u32,
        transport: &str,
        params: &str,
    ) -> anyhow::Result<Self> {
        let dir = dir.join(format!("baresip-{}", p.sip_user));
        std::fs::create_dir_all(&dir)?;
        // SIP on `port` (UDP and TCP, TLS on `port + 1`), the control socket on another.
        let port = free_port_pair();
        let ctrl = free_port_pair();
        std::fs::write(
            dir.join("config"),
            format!(
                "module_path /usr/lib/baresip/modules\nsip_listen 127.0.0.1:{port}\n\
                 module_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n\
                 ctrl_tcp_listen 127.0.0.1:{ctrl}\nmodule g711.so\nmodule ausine.so\n\
                 module srtp.so\n\
                 audio_player nil\naudio_alert nil\naudio_source ausine,440\n\
                 ausrc_srate 48000\nausrc_channels 2\n"
            ),
        )?;
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{u}@127.0.0.1{aor}>;auth_pass={pw};outbound=\"sip:{edge};transport={transport}\";regint={regint};answermode=auto{params}\n",
                u = p.sip_user,
                pw = p.password,
                aor = if transport == "udp" {
                    String::new()
                } else {
                    format!(";transport={transport}")
                },
            ),
        )?;
        let log = dir.join("baresip.log");
        // Line-buffered: its log is read while it runs (a fully buffered file would hold
        // back the last state changes).
        let child = Command::new("stdbuf")
            .args(["-oL", "baresip"])
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
            ctrl: Some(ctrl),
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
            ctrl: None,
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

    /// Answers calls by itself from now on (baresip always does).
    pub fn auto_answer(&mut self) -> anyhow::Result<()> {
        self.console("autoanswer enable")
    }

    /// Calls `uri`.
    pub fn dial(&mut self, uri: &str) -> anyhow::Result<()> {
        match self.ctrl {
            Some(port) => baresip_command(port, "dial", uri),
            None => self.console(&format!("call {uri}")),
        }
    }

    /// A baresip menu command on the current call (`hold`, `resume`).
    pub fn call_command(&mut self, command: &str) -> anyhow::Result<()> {
        match self.ctrl {
            Some(port) => baresip_command(port, command, ""),
            None => anyhow::bail!("only baresip takes {command} here"),
        }
    }

    /// Hangs up the call in progress.
    pub fn hang_up(&mut self) -> anyhow::Result<()> {
        match self.ctrl {
            Some(port) => baresip_command(port, "hangup", ""),
            None => self.console("terminate"),
        }
    }

    /// A line typed at linphonec's console.
    fn console(&mut self, line: &str) -> anyhow::Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Ok(());
        };
        stdin.write_all(format!("{line}\n").as_bytes())?;
        Ok(stdin.flush()?)
    }

    /// How often `needle` occurs in the client's log.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }

    /// Waits up to `within` for `needle` to occur `n` times in the log.
    pub async fn wait_log(&self, needle: &str, n: usize, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while self.log_count(needle) < n {
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    /// The client's log, for assertion messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One command to baresip's `ctrl_tcp`: a netstring holding `{"command", "params",
/// "token"}`; its answer says whether it was carried out.
fn baresip_command(port: u16, command: &str, params: &str) -> anyhow::Result<()> {
    use std::io::Read;
    let json = serde_json::json!({"command": command, "params": params, "token": "t"}).to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{}:{json},", json.len()).as_bytes())?;
    // Events may come first; the response carries `"response":true`.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf)?;
        anyhow::ensure!(n > 0, "baresip closed its control socket");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if text.contains("\"response\":true") {
            anyhow::ensure!(
                text.contains("\"ok\":true"),
                "baresip refused {command}: {text}"
            );
            return Ok(());
        }
    }
}

impl Drop for Softphone {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
    }
}
