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
