//! The gRPC port over TLS and mutual TLS with generated certificates, through a real
//! `dialtone serve` and real `dialtonectl`; and the refusal to serve plaintext gRPC on a
//! non-loopback address.

use std::process::Command;

use dialtone_proto::config::v1::{self as cpb, config_service_client::ConfigServiceClient};
use dialtone_tests::{ClusterSandbox, binary, free_port, pki::TestCa};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A config client over TLS to `url`, trusting `ca`, presenting `client` if given.
async fn client(
    url: &str,
    ca: &std::path::Path,
    client: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<ConfigServiceClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("localhost");
    if let Some((c, k)) = client {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(c).unwrap(),
            std::fs::read(k).unwrap(),
        ));
    }
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(ConfigServiceClient::new(channel))
}

fn bearer<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_mutual_tls_with_dialtonectl() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "dialtone test ca");
    let server = ca.issue("grpc", "localhost", &["localhost", "127.0.0.1"], false);
    let ctl = ca.issue("ctl", "dialtonectl", &[], true);
    let rogue = ca.rogue("rogue", "dialtonectl", true);
    let flag = |name: &str, p: &std::path::Path| format!("--{name}={}", p.display());
    let sb = ClusterSandbox::embedded_with(&[
        &flag("grpc-tls-cert", &server.0),
        &flag("grpc-tls-key", &server.1),
        &flag("grpc-client-ca", &ca.cert),
    ])
    .await
    .unwrap();
    let node = &sb.nodes[0];
    let token = node.admin_token();
    let url = node.grpc_url.replace("http://", "https://");

    // With a certificate the CA issued: served.
    let mut c = client(&url, &ca.cert, Some(&ctl)).await.unwrap();
    c.list_sites(bearer(&token, cpb::ListRequest::default()))
        .await
        .unwrap();
    // Without one, or with one nobody issued: the handshake or the call fails.
    for who in [None, Some(&rogue)] {
        let refused = match client(&url, &ca.cert, who).await {
            Err(_) => true,
            Ok(mut c) => c
                .list_sites(bearer(&token, cpb::ListRequest::default()))
                .await
                .is_err(),
        };
        assert!(refused, "served without a valid client certificate");
    }
    // Plaintext to a TLS port: refused.
    let plain = Channel::from_shared(node.grpc_url.clone())
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        let r = ConfigServiceClient::new(ch)
            .list_sites(bearer(&token, cpb::ListRequest::default()))
            .await;
        assert!(r.is_err(), "a plaintext call was served");
    }

    // dialtonectl finds the https endpoint in the data dir and verifies it with --ca.
    let out = Command::new(binary("dialtonectl"))
        .arg("--data-dir")
        .arg(&node.data_dir)
        .args([
            flag("ca", &ca.cert),
            flag("cert", &ctl.0),
            flag("key", &ctl.1),
        ])
        .args(["--tls-name", "localhost", "sites", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(binary("dialtonectl"))
        .arg("--data-dir")
        .arg(&node.data_dir)
        .args(["sites", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--ca"), "{err}");

    // The REST API takes the same certificate and the same client rule.
    let api = node.api_url();
    assert!(api.starts_with("https://127.0.0.1:"), "{api}");
    let addr = api.trim_start_matches("https://");
    let sites = "/api/v2/telephony/providers/edges/sites";
    assert_eq!(
        https_get(addr, &ca.cert, Some(&ctl), sites, &token)
            .await
            .unwrap(),
        200
    );
    for who in [None, Some(&rogue)] {
        let r = https_get(addr, &ca.cert, who, sites, &token).await;
        assert!(
            r.is_err(),
            "the REST API served without a valid client certificate: {r:?}"
        );
    }
}

/// A TLS client trusting only `ca`, presenting `client` if given.
fn client_config(
    ca: &std::path::Path,
    client: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match client {
        Some((c, k)) => builder.with_client_auth_cert(
            CertificateDer::pem_file_iter(c)?.collect::<Result<_, _>>()?,
            PrivateKeyDer::from_pem_file(k)?,
        )?,
        None => builder.with_no_client_auth(),
    })
}

/// The status of `GET path` over TLS to `addr`, trusting `ca`, presenting `client` if
/// given; an error when the handshake or the exchange fails.
async fn https_get(
    addr: &str,
    ca: &std::path::Path,
    client: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    path: &str,
    token: &str,
) -> anyhow::Result<u16> {
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config(ca, client)?));
    let mut tls = connector
        .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
        .await?;
    tls.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut buf)).await??;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no HTTP answer: {head}"))
}

#[test]
fn plaintext_grpc_on_a_non_loopback_address_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let err = dialtone_tests::serve_refused(
        &[
            format!("--data-dir={}", dir.path().display()),
            format!("--listen-grpc=0.0.0.0:{}", free_port()),
            format!("--listen-admin=127.0.0.1:{}", free_port()),
        ],
        "plaintext on 0.0.0.0",
    );
    assert!(
        err.contains("'--listen-grpc'") && err.contains("--insecure-grpc"),
        "{err}"
    );
}

/// Whether a TLS handshake with `addr` succeeds trusting only `ca` (as `localhost`).
async fn handshake(addr: std::net::SocketAddr, ca: &std::path::Path) -> anyhow::Result<()> {
    use rustls::pki_types::ServerName;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config(ca, None)?));
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        connector.connect(ServerName::try_from("localhost")?.to_owned(), tcp),
    )
    .await??;
    Ok(())
}

/// A renewed certificate is served without a restart on every TLS port (gRPC, REST, SIP
/// over TLS and WSS, provisioning HTTPS); a connection open keeps working; files that do
/// not load leave the renewed certificate serving, and are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_are_served_without_a_restart() {
    use std::{
        net::SocketAddr,
        time::{Duration, Instant},
    };
    let dir = tempfile::tempdir().unwrap();
    let old_dir = dir.path().join("old");
    let new_dir = dir.path().join("new");
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::create_dir_all(&new_dir).unwrap();
    let old_ca = TestCa::new(&old_dir, "old ca");
    let new_ca = TestCa::new(&new_dir, "renewing ca");
    let (cert, key) = old_ca.issue("server", "localhost", &["localhost", "127.0.0.1"], false);
    let flag = |name: &str, p: &std::path::Path| format!("--{name}={}", p.display());
    let sb = ClusterSandbox::embedded_with(&[
        &flag("grpc-tls-cert", &cert),
        &flag("grpc-tls-key", &key),
        &flag("sip-tls-cert", &cert),
        &flag("sip-tls-key", &key),
        &flag("provisioning-tls-cert", &cert),
        &flag("provisioning-tls-key", &key),
        "--tls-reload-interval=1",
    ])
    .await
    .unwrap();
    let node = &sb.nodes[0];
    let token = node.admin_token();
    let url = node.grpc_url.replace("http://", "https://");
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let api: SocketAddr = node
        .api_url()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let grpc: SocketAddr = url.trim_start_matches("https://").parse().unwrap();
    let ports = [
        ("grpc", grpc),
        ("rest", api),
        ("sip tls", local(node.sip.tls)),
        ("sip wss", local(node.sip.wss)),
        ("provisioning", local(node.https)),
    ];
    for (what, addr) in ports {
        handshake(addr, &old_ca.cert)
            .await
            .unwrap_or_else(|e| panic!("{what} serves the first certificate: {e:#}"));
    }
    let mut open = client(&url, &old_ca.cert, None).await.unwrap();
    open.list_sites(bearer(&token, cpb::ListRequest::default()))
        .await
        .unwrap();

    // Renewed as a Secret volume is: new files renamed over the old ones, the key last.
    let (new_cert, new_key) =
        new_ca.issue("server", "localhost", &["localhost", "127.0.0.1"], false);
    let swap = |from: &std::path::Path, to: &std::path::Path| {
        let tmp = to.with_extension("swap");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    };
    swap(&new_cert, &cert);
    swap(&new_key, &key);
    let deadline = Instant::now() + Duration::from_secs(15);
    for (what, addr) in ports {
        while let Err(e) = handshake(addr, &new_ca.cert).await {
            assert!(
                Instant::now() < deadline,
                "{what} never served the renewed certificate: {e:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            handshake(addr, &old_ca.cert).await.is_err(),
            "{what} still serves the old certificate"
        );
    }
    // The connection made before the renewal still works; new ones verify with the new CA.
    open.list_sites(bearer(&token, cpb::ListRequest::default()))
        .await
        .unwrap();
    let mut renewed = client(&url, &new_ca.cert, None).await.unwrap();
    renewed
        .list_sites(bearer(&token, cpb::ListRequest::default()))
        .await
        .unwrap();
    assert!(
        node.metric("dialtone_tls_certificate_reloads_total", "result=\"ok\"")
            .await
            .unwrap_or(0)
            >= 1
    );

    // A certificate file that does not parse: the renewed pair keeps serving; counted.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while node
        .metric(
            "dialtone_tls_certificate_reloads_total",
            "result=\"failed\"",
        )
        .await
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "the broken file was never seen");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (what, addr) in ports {
        handshake(addr, &new_ca.cert)
            .await
            .unwrap_or_else(|e| panic!("{what} stopped serving: {e:#}"));
    }
    assert!(
        node.log_text()
            .contains("tls certificate files changed but do not load")
    );
}
