//! Traces leave a running node over OTLP/gRPC: a real OTLP trace receiver (a tonic server on
//! the OpenTelemetry protos) gets a span per gRPC call, named by the method, continuing the
//! caller's W3C trace context, with the node's resource attributes and no credentials; what
//! is still buffered is flushed when the node stops.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dialtone_proto::config::v1 as cpb;
use dialtone_tests::{
    ClusterSandbox,
    fleet::{add_phone, seed_site},
    sip::UdpPhone,
};
use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{Metric, metric::Data, number_data_point},
};
use parking_lot::Mutex;

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[derive(Clone, Default)]
struct MetricsReceiver(Arc<Mutex<Vec<(Instant, ExportMetricsServiceRequest)>>>);

#[tonic::async_trait]
impl MetricsService for MetricsReceiver {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().push((Instant::now(), req.into_inner()));
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl MetricsReceiver {
    /// The metric named `name` in the latest export that has it.
    fn latest(&self, name: &str) -> Option<Metric> {
        self.0.lock().iter().rev().find_map(|(_, r)| {
            r.resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|s| &s.metrics)
                .find(|m| m.name == name)
                .cloned()
        })
    }
}

/// Serves an OTLP receiver on a free loopback port; returns its endpoint and task.
async fn serve(routes: tonic::service::Routes) -> (String, tokio::task::JoinHandle<()>) {
    let listener = dialtone_common::listen::tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    (endpoint, server)
}

fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref() {
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            }) => Some(s.clone()),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_traced_over_otlp_continuing_the_callers_trace() {
    let receiver = Receiver::default();
    let (endpoint, server) = serve(tonic::service::Routes::new(TraceServiceServer::new(
        receiver.clone(),
    )))
    .await;
    // A long batch delay: spans reach the receiver only through the flush at shutdown.
    let mut sb = ClusterSandbox::embedded_with_env(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ],
    )
    .await
    .unwrap();
    let token = sb.nodes[0].admin_token();
    let mut c = sb.nodes[0].config_client(&token).await.unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let mut req = tonic::Request::new(cpb::ListRequest::default());
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent}-01").parse().unwrap(),
    );
    c.list_sites(req).await.unwrap();
    // A SIP registration: its transactions are spans too, with the phone and the edge.
    seed_site(&mut c, cpb::PhoneSettings::default())
        .await
        .unwrap();
    let mut e = sb.nodes[0].edge_client(&token).await.unwrap();
    let p = add_phone(&mut c, &mut e, "desk-1", "1001").await.unwrap();
    let edge_sip = std::net::SocketAddr::from(([127, 0, 0, 1], sb.nodes[0].sip.udp));
    let mut phone = UdpPhone::new(edge_sip, &p.sip_user, &p.password)
        .await
        .unwrap();
    assert!(
        phone
            .register(600)
            .await
            .unwrap()
            .starts_with("SIP/2.0 200")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.0.lock().is_empty(),
        "spans were exported before the batch delay or the flush"
    );

    let status = sb.nodes[0].terminate().unwrap();
    assert!(status.success(), "node exit: {status}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let (resource, span) = loop {
        let found = receiver.0.lock().iter().find_map(|r| {
            r.resource_spans.iter().find_map(|rs| {
                rs.scope_spans
                    .iter()
                    .flat_map(|s| &s.spans)
                    .find(|s| s.name.ends_with("ConfigService/ListSites"))
                    .map(|s| (rs.resource.clone().unwrap_or_default(), s.clone()))
            })
        });
        if let Some(f) = found {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no ListSites span flushed at shutdown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(hex::encode(&span.trace_id), trace_id, "the caller's trace");
    assert_eq!(
        hex::encode(&span.parent_span_id),
        parent,
        "the caller's span"
    );
    for (attrs, key, want) in [
        (&span.attributes, "rpc.system", "grpc"),
        (&span.attributes, "rpc.method", "ListSites"),
        (&resource.attributes, "service.name", "dialtone"),
        (&resource.attributes, "service.instance.id", "solo"),
        (&resource.attributes, "deployment.environment", "test"),
    ] {
        assert_eq!(text(attrs, key).as_deref(), Some(want), "{key}");
    }
    let sip: Vec<_> = receiver
        .0
        .lock()
        .iter()
        .flat_map(|r| r.resource_spans.iter())
        .flat_map(|rs| rs.scope_spans.iter())
        .flat_map(|s| s.spans.clone())
        .filter(|s| s.name == "REGISTER")
        .collect();
    assert_eq!(
        sip.len(),
        2,
        "a span per REGISTER transaction (challenge, then 200)"
    );
    assert!(
        sip.iter()
            .any(|s| text(&s.attributes, "phone.id").as_deref() == Some(p.phone_id.as_str())),
        "the authenticated REGISTER names its phone"
    );
    assert!(
        sip.iter()
            .all(|s| text(&s.attributes, "edge").as_deref() == Some("solo")
                && text(&s.attributes, "network.transport").as_deref() == Some("udp"))
    );
    let everything = format!("{:?}", receiver.0.lock());
    assert!(
        !everything.contains(&token),
        "a credential reached the traces"
    );
    assert!(
        !everything.contains(&p.password),
        "a password reached the traces"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exported_over_otlp_as_the_scrape_shows_them() {
    let receiver = MetricsReceiver::default();
    let (endpoint, server) = serve(tonic::service::Routes::new(MetricsServiceServer::new(
        receiver.clone(),
    )))
    .await;
    let mut sb = ClusterSandbox::embedded_with_env(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint.as_str()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ],
    )
    .await
    .unwrap();
    let token = sb.nodes[0].admin_token();
    let mut c = sb.nodes[0].config_client(&token).await.unwrap();
    for _ in 0..3 {
        c.list_sites(cpb::ListRequest::default()).await.unwrap();
    }
    let list_sites_calls = |m: &Metric| -> u64 {
        let Some(Data::Histogram(h)) = &m.data else {
            return 0;
        };
        h.data_points
            .iter()
            .filter(|p| text(&p.attributes, "rpc_method").as_deref() == Some("ListSites"))
            .map(|p| p.count)
            .sum()
    };
    // Periodic exports, while the node runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rpc = loop {
        if let Some(m) = receiver
            .latest("rpc_server_call_duration_seconds")
            .filter(|m| list_sites_calls(m) >= 3)
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no export with the 3 ListSites calls"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let Some(Data::Histogram(h)) = &rpc.data else {
        panic!("not a histogram: {rpc:?}")
    };
    let p = &h.data_points[0];
    assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
    assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
    assert_eq!(rpc.unit, "s");

    // The store's calls are a monotonic cumulative sum whose values match a scrape.
    let store = receiver.latest("dialtone_store_requests_total").unwrap();
    let Some(Data::Sum(sum)) = &store.data else {
        panic!("not a sum: {store:?}")
    };
    assert!(sum.is_monotonic);
    assert!(sum.data_points.iter().any(|p| {
        text(&p.attributes, "op").as_deref() == Some("txn")
            || text(&p.attributes, "op").as_deref() == Some("range")
    }));
    let up = receiver.latest("dialtone_store_up").unwrap();
    let Some(Data::Gauge(g)) = &up.data else {
        panic!("not a gauge: {up:?}")
    };
    assert_eq!(
        g.data_points[0].value,
        Some(number_data_point::Value::AsDouble(1.0))
    );
    assert!(
        sb.nodes[0]
            .metric("dialtone_store_requests_total", "op=\"range\"")
            .await
            .is_some_and(|n| n > 0),
        "the scrape shows the same family"
    );

    // The resource is the node's, as on its spans.
    let resource = receiver.0.lock()[0].1.resource_metrics[0]
        .resource
        .clone()
        .unwrap();
    assert_eq!(
        text(&resource.attributes, "service.instance.id").as_deref(),
        Some("solo")
    );
    assert_eq!(
        text(&resource.attributes, "service.name").as_deref(),
        Some("dialtone")
    );

    // A last export at shutdown.
    let before = receiver.0.lock().len();
    let stopped = Instant::now();
    assert!(sb.nodes[0].terminate().unwrap().success());
    let exports = receiver.0.lock();
    assert!(
        exports.len() > before && exports.last().unwrap().0 >= stopped,
        "no export at shutdown"
    );
    drop(exports);
    server.abort();
}

/// `--log-format json`: one JSON object per line, and a line logged while serving a call
/// carries the call's trace id (the caller's, continued), so a log line leads to its trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_trace_of_the_call_they_belong_to() {
    let receiver = Receiver::default();
    let (endpoint, _server) = serve(tonic::service::Routes::new(TraceServiceServer::new(
        receiver.clone(),
    )))
    .await;
    let sb = ClusterSandbox::embedded_with_env(
        &["--log-format=json"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    )
    .await
    .unwrap();
    let token = sb.nodes[0].admin_token();
    let mut c = sb.nodes[0].config_client(&token).await.unwrap();
    let trace_id = "5cf92f3577b34da6a3ce929d0e0e4737";
    let mut req = tonic::Request::new(cpb::CreateEdgeGroupRequest {
        edge_group: Some(cpb::EdgeGroup {
            id: "traced".into(),
            name: "Traced".into(),
            edges: vec![cpb::Edge {
                node_id: "e1".into(),
                addresses: Some(cpb::SipAddresses {
                    udp: "127.0.0.1:5060".into(),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }),
    });
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    c.create_edge_group(req).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = sb.nodes[0].log_text();
        let lines: Vec<serde_json::Value> = log
            .lines()
            // Whole lines only: the node may be writing the last one.
            .filter(|l| l.starts_with('{') && l.ends_with('}'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert!(
            lines
                .iter()
                .all(|l| l["level"].is_string() && l["timestamp"].is_string()),
            "{log}"
        );
        if let Some(l) = lines.iter().find(|l| l["trace_id"] == trace_id) {
            assert!(l["span_id"].as_str().is_some_and(|s| s.len() == 16), "{l}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no log line of the call carries its trace id:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One export a collector saw: its signal, and its `authorization` and `x-tenant` headers.
type Export = (&'static str, Option<String>, Option<String>);

/// What a collector over TLS saw of each export.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Export>>>);

impl Seen {
    fn record<T>(&self, signal: &'static str, req: &tonic::Request<T>) {
        let header = |name: &str| {
            req.metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        self.0
            .lock()
            .push((signal, header("authorization"), header("x-tenant")));
    }
}

#[tonic::async_trait]
impl TraceService for Seen {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.record("traces", &req);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Seen {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.record("metrics", &req);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Both exporters reach a collector over TLS that requires a client certificate, verified
/// with the named CA, carrying the headers OTEL_EXPORTER_OTLP_HEADERS gives (which the
/// node never logs); a header that does not parse stops the node at start, naming the
/// variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_goes_over_tls_with_headers() {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let dir = tempfile::tempdir().unwrap();
    let ca = dialtone_tests::pki::TestCa::new(dir.path(), "collector ca");
    let (cert, key) = ca.issue("collector", "localhost", &["localhost", "127.0.0.1"], false);
    let (client_cert, client_key) = ca.issue("node", "dialtone", &[], true);
    let seen = Seen::default();
    let listener = dialtone_common::listen::tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let endpoint = format!("https://{}", listener.local_addr().unwrap());
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            std::fs::read(&cert).unwrap(),
            std::fs::read(&key).unwrap(),
        ))
        .client_ca_root(Certificate::from_pem(std::fs::read(&ca.cert).unwrap()));
    let routes = tonic::service::Routes::new(TraceServiceServer::new(seen.clone()))
        .add_service(MetricsServiceServer::new(seen.clone()));
    let _server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_routes(routes)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (ca_file, cert_file, key_file) = (path(&ca.cert), path(&client_cert), path(&client_key));
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file.as_str()),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert_file.as_str()),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key_file.as_str()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20s3cret-otlp,x-tenant=acme",
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let sb = ClusterSandbox::embedded_with_env(&[], &env).await.unwrap();
    let token = sb.nodes[0].admin_token();
    let mut c = sb.nodes[0].config_client(&token).await.unwrap();
    c.list_sites(cpb::ListRequest::default()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    for signal in ["metrics", "traces"] {
        loop {
            let got = seen.0.lock().iter().find(|(s, ..)| *s == signal).cloned();
            if let Some((_, auth, tenant)) = got {
                assert_eq!(auth.as_deref(), Some("Bearer s3cret-otlp"), "{signal}");
                assert_eq!(tenant.as_deref(), Some("acme"), "{signal}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no {signal} export reached the collector over TLS:\n{}",
                sb.nodes[0].log_text()
            );
            c.list_sites(cpb::ListRequest::default()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(!sb.nodes[0].log_text().contains("s3cret-otlp"));
    drop(sb);

    // A header that does not parse: the node does not start, and says which variable.
    let bad = ClusterSandbox::embedded_with_env(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization"),
        ],
    )
    .await;
    let e = format!("{:#}", bad.err().expect("a node started with a bad header"));
    assert!(e.contains("invalid OTEL_EXPORTER_OTLP_HEADERS"), "{e}");
}
