//! One initialisation of logs and traces for every role: `tracing` to stderr, plus an
//! OpenTelemetry layer exporting spans over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. The standard variables are honoured by the
//! SDK: `OTEL_SERVICE_NAME` (default `dialtone`), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`; `OTEL_TRACES_EXPORTER=none`
//! turns trace export off. Metrics are exported by [`crate::otlp_metrics`]. Without an endpoint nothing
//! is exported and no OpenTelemetry layer is installed, so spans cost what plain `tracing`
//! spans cost. Headers and TLS for the collector: [`crate::otlp_env`]. Incoming gRPC calls continue the caller's W3C trace context (`traceparent`).

use opentelemetry::{KeyValue, global, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

/// Whether the environment asks for trace export.
fn export_requested() -> bool {
    if std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim() == "none") {
        return false;
    }
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

/// How log lines look (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line ([`crate::json_logs`]).
    Json,
}

/// What must be flushed on shutdown.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber. Call inside the Tokio runtime (the OTLP channel's
    /// background task lives there).
    pub fn init(log_filter: &str, format: LogFormat, node_id: &str) -> Self {
        let filter = EnvFilter::try_new(log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
        let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let logs = match format {
            LogFormat::Text => layer.boxed(),
            LogFormat::Json => layer.event_format(crate::json_logs::JsonLines).boxed(),
        }
        .with_filter(filter);
        let tracer = export_requested()
            .then(|| tracer_provider(node_id))
            .flatten();
        let otel = tracer.as_ref().map(|p| {
            // gRPC spans (info) and SIP transaction spans (debug, in the edge) are exported
            // whatever the log filter shows; OTEL_TRACES_SAMPLER_ARG sets how many.
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer("dialtone"))
                .with_filter(EnvFilter::new("info,dialtone_edge=debug"))
        });
        tracing_subscriber::registry().with(logs).with(otel).init();
        if tracer.is_some() {
            global::set_text_map_propagator(TraceContextPropagator::new());
            tracing::info!(node = node_id, "exporting traces over otlp");
        }
        Telemetry { tracer }
    }

    /// Exports what is still buffered (called once, at shutdown).
    pub fn shutdown(self) {
        if let Some(p) = self.tracer
            && let Err(e) = p.shutdown()
        {
            eprintln!("dialtone: flushing traces failed: {e}");
        }
    }
}

fn tracer_provider(node_id: &str) -> Option<SdkTracerProvider> {
    use opentelemetry_otlp::WithTonicConfig as _;
    // Headers (OTEL_EXPORTER_OTLP_[TRACES_]HEADERS) the SDK reads itself; TLS files it
    // does not: an https:// collector is verified with OTEL_EXPORTER_OTLP_CERTIFICATE (or
    // the system's CA bundle), with a client certificate when one is named (`otlp_env`).
    let var = |v: &str| std::env::var(v).ok();
    let endpoint = crate::otlp_env::endpoint(crate::otlp_env::Signal::Traces, &var);
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if endpoint.is_some_and(|e| e.starts_with("https://")) {
        let tls = crate::otlp_env::tls_files(crate::otlp_env::Signal::Traces, &var)
            .and_then(|f| crate::otlp_env::client_tls(&f));
        match tls {
            Ok(tls) => builder = builder.with_tls_config(tls),
            Err(e) => {
                eprintln!("dialtone: otlp exporter not started: {e:#}");
                return None;
            }
        }
    }
    let exporter = match builder.build() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("dialtone: otlp exporter not started: {e}");
            return None;
        }
    };
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(node_id))
            .build(),
    )
}

/// The node's OpenTelemetry resource, shared by its spans and its metrics: the SDK reads
/// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; the service name defaults to
/// `dialtone` and `service.instance.id` to the node id.
pub fn resource(node_id: &str) -> Resource {
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("dialtone");
    }
    let explicit_instance =
        std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.instance.id="));
    if !explicit_instance {
        resource =
            resource.with_attribute(KeyValue::new("service.instance.id", node_id.to_owned()));
    }
    resource = resource.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    resource.build()
}

/// The span of one incoming gRPC call (OpenTelemetry RPC semantic conventions), continuing
/// the caller's trace when the request carries `traceparent`. Credentials never become
/// attributes: only the path is read.
pub fn grpc_span(req: &http::Request<()>) -> tracing::Span {
    let path = req.uri().path();
    let (service, method) = crate::grpc_metrics::rpc_parts(path);
    let span = tracing::info_span!(
        "grpc",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
    );
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(req.headers())));
    let _ = span.set_parent(parent);
    span
}

/// W3C trace context from HTTP/2 headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
