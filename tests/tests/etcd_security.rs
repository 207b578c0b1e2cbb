//! A node on a secured etcd, for real: one member serving TLS only, requiring client
//! certificates (`--client-cert-auth`) and with etcd authentication enabled. With the CA,
//! the client certificate and the user's password, a config node starts and serves; without
//! the client certificate, or with a wrong password, it refuses to start, naming etcd.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use dialtone_proto::config::v1 as cpb;
use dialtone_tests::pki::TestCa;
use dialtone_tests::{ADMIN_TOKEN, Node, NodeSpec, fleet::seed_site, free_port};

struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
fn pki(dir: &Path) -> Pki {
    let ca = TestCa::new(dir, "dialtone test ca");
    let names = ["127.0.0.1", "localhost"];
    Pki {
        server: ca.issue("server", "etcd", &names, false),
        client: ca.issue("client", "dialtone-client", &names, false),
        ca: ca.cert,
    }
}

/// An etcd member stopped when dropped.
struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_etcd(dir: &Path, pki: &Pki) -> (Etcd, String) {
    let client = format!("https://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let child = Command::new("etcd")
        .args(["--name", "m0", "--data-dir"])
        .arg(dir.join("etcd"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("m0={peer}")])
        .arg("--cert-file")
        .arg(&pki.server.0)
        .arg("--key-file")
        .arg(&pki.server.1)
        .arg("--trusted-ca-file")
        .arg(&pki.ca)
        .arg("--client-cert-auth")
        .args(["--logger", "zap", "--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd (scripts/deps.sh --test installs it)");
    (Etcd(child), client)
}

/// Connects as etcd's root over mutual TLS, creates the `dialtone` user with its password
/// and read-write access to everything, and enables authentication.
async fn enable_auth(endpoint: &str, pki: &Pki) {
    let tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(
            std::fs::read(&pki.ca).unwrap(),
        ))
        .identity(etcd_client::Identity::from_pem(
            std::fs::read(&pki.client.0).unwrap(),
            std::fs::read(&pki.client.1).unwrap(),
        ));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = loop {
        let opts = etcd_client::ConnectOptions::new().with_tls(tls.clone());
        if let Ok(mut c) = etcd_client::Client::connect([endpoint], Some(opts)).await
            && c.status().await.is_ok()
        {
            break c;
        }
        assert!(Instant::now() < deadline, "the TLS etcd never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    c.user_add("root", "root-secret", None).await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.user_add("dialtone", "s3cret-dialtone", None)
        .await
        .unwrap();
    c.role_add("dialtone-rw").await.unwrap();
    c.role_grant_permission(
        "dialtone-rw",
        etcd_client::Permission::read_write("\0").with_from_key(),
    )
    .await
    .unwrap();
    c.user_grant_role("dialtone", "dialtone-rw").await.unwrap();
    c.auth_enable().await.unwrap();
}

/// `dialtone serve` with these flags must exit with an error naming etcd.
fn refuses_to_start(args: &[String], what: &str) {
    let err = dialtone_tests::serve_refused(args, what);
    assert!(err.contains("etcd"), "{what}: {err}");
    assert!(
        !err.contains("s3cret"),
        "{what}: the password was printed: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_on_etcd_with_tls_client_certificates_and_a_user() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (_etcd, endpoint) = start_etcd(dir.path(), &pki);
    enable_auth(&endpoint, &pki).await;
    let password = dir.path().join("etcd-password");
    std::fs::write(&password, "s3cret-dialtone\n").unwrap();
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "guess\n").unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[token]]\nname = \"admin\"\ntoken = \"{ADMIN_TOKEN}\"\npermissions = [\"telephony:plugin:all\"]\n"
        ),
    )
    .unwrap();
    let flag = |name: &str, p: &Path| format!("--{name}={}", p.display());
    let secure = vec![
        flag("etcd-ca-file", &pki.ca),
        flag("etcd-cert-file", &pki.client.0),
        flag("etcd-key-file", &pki.client.1),
        "--etcd-user=dialtone".to_owned(),
        flag("etcd-password-file", &password),
    ];
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    let spec = NodeSpec {
        node_id: "secure-0".into(),
        roles: "config".into(),
        etcd: vec![endpoint.clone()],
        store_prefix: "/dialtone-tls/".into(),
        tokens_file: Some(tokens.clone()),
        lease_ttl: 3,
        key_file: Some(key_file.clone()),
        extra_args: secure.clone(),
        env: vec![],
        binary: None,
    };
    let node = Node::start(&spec, dir.path().join("node")).await.unwrap();
    let mut c = node.config_client(ADMIN_TOKEN).await.unwrap();
    seed_site(&mut c, cpb::PhoneSettings::default())
        .await
        .unwrap();
    let sites = c
        .list_sites(cpb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        sites.sites.iter().any(|s| s.id == "hq"),
        "written and read back over TLS"
    );

    let base = |extra: &[String]| {
        let mut a = vec![
            "--roles=config".to_owned(),
            format!("--etcd={endpoint}"),
            format!("--api-tokens={}", tokens.display()),
            format!("--data-dir={}", dir.path().join("refused").display()),
            format!("--listen-grpc=127.0.0.1:{}", free_port()),
            format!("--listen-admin=127.0.0.1:{}", free_port()),
        ];
        a.extend_from_slice(extra);
        a
    };
    // No client certificate: the TLS handshake is refused.
    refuses_to_start(
        &base(&[
            flag("etcd-ca-file", &pki.ca),
            "--etcd-user=dialtone".to_owned(),
            flag("etcd-password-file", &password),
        ]),
        "without a client certificate",
    );
    // A wrong password: etcd refuses the user.
    let mut wrong_pw = secure.clone();
    wrong_pw[4] = flag("etcd-password-file", &wrong);
    refuses_to_start(&base(&wrong_pw), "with a wrong password");
}
