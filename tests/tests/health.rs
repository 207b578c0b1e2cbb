//! `grpc.health.v1` on every node, without a token, answering as `/readyz` does: an edge
//! stays SERVING through an etcd outage, a config node does not; a service a node does not
//! serve is NOT_FOUND; Watch sends the status, then each change.

use std::time::{Duration, Instant};

use dialtone_proto::health::v1::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use dialtone_tests::ClusterSandbox;
use tonic::transport::Channel;

async fn client(url: &str) -> HealthClient<Channel> {
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

async fn check(c: &mut HealthClient<Channel>, service: &str) -> Result<ServingStatus, tonic::Code> {
    c.check(HealthCheckRequest {
        service: service.into(),
    })
    .await
    .map(|r| r.into_inner().status())
    .map_err(|s| s.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_answers_health_checks_without_a_token() {
    let mut sb = ClusterSandbox::with_etcd(1, &["config,status", "edge"])
        .await
        .unwrap();
    let mut config = client(&sb.nodes[0].grpc_url).await;
    let mut edge = client(&sb.nodes[1].grpc_url).await;
    // (client, service, answer)
    let cases = [
        (0, "", Ok(ServingStatus::Serving)),
        (
            0,
            "dialtone.config.v1.ConfigService",
            Ok(ServingStatus::Serving),
        ),
        (
            0,
            "dialtone.status.v1.StatusService",
            Ok(ServingStatus::Serving),
        ),
        (
            0,
            "dialtone.edge.v1.EdgeService",
            Err(tonic::Code::NotFound),
        ),
        (1, "", Ok(ServingStatus::Serving)),
        (
            1,
            "dialtone.edge.v1.EdgeService",
            Ok(ServingStatus::Serving),
        ),
        (
            1,
            "dialtone.config.v1.ConfigService",
            Err(tonic::Code::NotFound),
        ),
    ];
    for (node, service, want) in cases {
        let c = if node == 0 { &mut config } else { &mut edge };
        assert_eq!(check(c, service).await, want, "node {node} {service:?}");
    }
    let mut watch = config
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    // etcd goes away: the config node stops serving (and Watch says so), the edge does not.
    sb.etcd.as_mut().unwrap().kill(0);
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a change within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    assert_eq!(check(&mut config, "").await, Ok(ServingStatus::NotServing));
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        assert_eq!(check(&mut edge, "").await, Ok(ServingStatus::Serving));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each certificate a node serves is a gauge of when it expires, by use, read from the
/// files it loaded: what `DialtoneCertificateExpiring` alerts on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_export_when_their_certificates_expire() {
    let tls = tempfile::tempdir().unwrap();
    let (https_cert, https_key) = dialtone_tls::dev_pair(tls.path(), "provisioning").unwrap();
    let (sip_cert, sip_key) = dialtone_tls::dev_pair(&tls.path().join("sip"), "edge").unwrap();
    let args: Vec<String> = vec![
        format!("--provisioning-tls-cert={}", https_cert.display()),
        format!("--provisioning-tls-key={}", https_key.display()),
        format!("--sip-tls-cert={}", sip_cert.display()),
        format!("--sip-tls-key={}", sip_key.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sb = ClusterSandbox::embedded_with(&args).await.unwrap();
    let now = dialtone_common::clock::unix_ms_i64() / 1000;
    for (used, file) in [("https", &https_cert), ("sip", &sip_cert)] {
        let got = sb.nodes[0]
            .metric(
                "dialtone_tls_certificate_expiry_timestamp_seconds",
                &format!("use=\"{used}\""),
            )
            .await;
        let want = dialtone_tls::certificate_expiry(file).unwrap();
        assert_eq!(got, Some(want), "{used}");
        assert!(
            want > now,
            "{used}: a fresh certificate expires in the future"
        );
    }
    // No gRPC certificate: no gRPC series.
    assert_eq!(
        sb.nodes[0]
            .metric(
                "dialtone_tls_certificate_expiry_timestamp_seconds",
                "use=\"grpc\""
            )
            .await,
        None
    );
}

/// `/metrics` of a node running every role: each family has one `# HELP` and one `# TYPE`,
/// before its samples, and every sample belongs to a family so declared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_family_is_described_once() {
    let sb = ClusterSandbox::embedded().await.unwrap();
    let (_, text) = sb.nodes[0].http_get("/metrics").await.unwrap();
    let (mut help, mut kind) = (
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
    );
    let mut problems = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            if help.insert(name.to_owned(), ()).is_some() {
                problems.push(format!("{name}: HELP twice"));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, t) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            if kind.insert(name.to_owned(), t.to_owned()).is_some() {
                problems.push(format!("{name}: TYPE twice"));
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            let sample = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    sample
                        .strip_suffix(s)
                        .filter(|f| kind.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(sample);
            if !kind.contains_key(family) || !help.contains_key(family) {
                problems.push(format!(
                    "{family}: a sample without HELP and TYPE before it"
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        text.contains("dialtone_edge_bindings{"),
        "the edge's families are served"
    );
}

/// `grpc.reflection.v1` lists and describes every service (grpcurl needs no .proto), with
/// a token like every service but health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_describe_their_services_by_reflection() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let sb = ClusterSandbox::embedded().await.unwrap();
    let channel = Channel::from_shared(sb.nodes[0].grpc_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ask = |token: Option<String>, req: MessageRequest| {
        let channel = channel.clone();
        async move {
            let mut c = ServerReflectionClient::new(channel);
            let mut r = tonic::Request::new(tokio_stream::iter([ServerReflectionRequest {
                host: String::new(),
                message_request: Some(req),
            }]));
            if let Some(t) = token {
                r.metadata_mut()
                    .insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            let mut answers = c.server_reflection_info(r).await?.into_inner();
            Ok::<_, tonic::Status>(answers.message().await?.and_then(|a| a.message_response))
        }
    };
    let token = Some(sb.nodes[0].admin_token());
    let Some(MessageResponse::ListServicesResponse(list)) =
        ask(token.clone(), MessageRequest::ListServices(String::new()))
            .await
            .unwrap()
    else {
        panic!("no service list");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "dialtone.config.v1.ConfigService",
        "dialtone.edge.v1.EdgeService",
        "dialtone.status.v1.StatusService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) = ask(
        token,
        MessageRequest::FileContainingSymbol("dialtone.config.v1.ConfigService".into()),
    )
    .await
    .unwrap() else {
        panic!("no descriptor");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    let refused = ask(None, MessageRequest::ListServices(String::new()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}

/// Open stream connections are counted by transport, and counted out when they close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_counted_by_transport() {
    let sb = ClusterSandbox::embedded().await.unwrap();
    let node = &sb.nodes[0];
    let open = |transport: &'static str| async move {
        node.metric(
            "dialtone_edge_connections_open",
            &format!("transport=\"{transport}\""),
        )
        .await
    };
    assert_eq!(open("tcp").await, Some(0));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", node.sip.tcp))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while open("tcp").await != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the connection was never counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open("tls").await, Some(0));
    drop(tcp);
    let deadline = Instant::now() + Duration::from_secs(5);
    while open("tcp").await != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the closed connection is still counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIP transactions are timed by method, from the request's arrival to the edge's final
/// answer: a registration's two REGISTERs (the challenge, then the 200) once each, and an
/// answer resent to a retransmission not again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_transactions_are_timed_by_method() {
    use dialtone_tests::{
        fleet::{add_phone, seed_site},
        sip::{UdpPhone, headers, status},
    };
    let sb = ClusterSandbox::embedded_with(&["--sip-digest-algorithms=sha-256,md5"])
        .await
        .unwrap();
    let node = &sb.nodes[0];
    let token = node.admin_token();
    let mut c = node.config_client(&token).await.unwrap();
    seed_site(&mut c, Default::default()).await.unwrap();
    let mut e = node.edge_client(&token).await.unwrap();
    let p = add_phone(&mut c, &mut e, "timed", "timed").await.unwrap();
    let series = |suffix: &'static str, labels: &'static str| async move {
        node.metric(
            &format!("dialtone_sip_transaction_duration_seconds_{suffix}"),
            labels,
        )
        .await
    };
    assert_eq!(series("count", "method=\"REGISTER\"").await, Some(0));

    let edge = std::net::SocketAddr::from(([127, 0, 0, 1], node.sip.udp));
    let mut phone = UdpPhone::new(edge, &p.sip_user, &p.password).await.unwrap();
    let first = phone.register_text(300, None);
    phone.send(&first).await.unwrap();
    let challenge = phone.recv(Duration::from_secs(3)).await.unwrap();
    assert_eq!(status(&challenge), 401, "{challenge}");
    let www = headers(&challenge, "www-authenticate")
        .into_iter()
        .find(|h| h.contains("MD5"))
        .unwrap()
        .to_owned();
    let second = phone.register_text(300, Some(&www));
    for _ in 0..2 {
        // The second time, a retransmission: answered again from the transaction.
        phone.send(&second).await.unwrap();
        let ok = phone.recv(Duration::from_secs(3)).await.unwrap();
        assert_eq!(status(&ok), 200, "{ok}");
    }
    assert_eq!(series("count", "method=\"REGISTER\"").await, Some(2));
    // Both answered within a second (a loaded CI machine is slow, not that slow), and the
    // buckets add up to the count.
    assert_eq!(
        series("bucket", "method=\"REGISTER\",le=\"1\"").await,
        Some(2)
    );
    assert_eq!(
        series("bucket", "method=\"REGISTER\",le=\"+Inf\"").await,
        Some(2)
    );
    assert_eq!(series("count", "method=\"INVITE\"").await, Some(0));
}
