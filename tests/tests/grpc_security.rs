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
