//! OpenTelemetry metrics over OTLP/gRPC: every `OTEL_METRIC_EXPORT_INTERVAL` the node renders
//! the same exposition `/metrics` serves, reads it back ([`crate::prom_text`]) and pushes it
//! as OTLP metrics (counters as cumulative monotonic sums, gauges as gauges, histograms as
//! cumulative explicit-bucket histograms) with the node's resource, the same one its spans
//! carry. One source of truth: a scrape and an export of the same moment agree. A last
//! export runs at shutdown.
//!
//! Enabled by `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (`http://`, or `https://` with the TLS and headers of [`crate::otlp_env`], like the trace
//! exporter), disabled by `OTEL_METRICS_EXPORTER=none`.

use std::{future::Future, pin::Pin, time::Duration};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient,
    },
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
    },
    resource::v1::Resource,
};
use tokio::{sync::oneshot, task::JoinHandle};
use tracing::{info, warn};

use crate::prom_text::{Family, Kind, Labels, Samples};

/// Renders the exposition to export (the admin port's `/metrics` text).
pub type Render = Box<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// Where and how often to export, from the standard variables.
#[derive(Debug, PartialEq)]
pub struct ExportConfig {
    pub endpoint: String,
    pub interval: Duration,
    pub timeout: Duration,
}

impl ExportConfig {
    /// Reads the OTEL_* variables through `var`; `None` when metrics are not to be exported.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_METRICS_EXPORTER").is_some_and(|v| v.trim() == "none") {
            return None;
        }
        let endpoint = crate::otlp_env::endpoint(crate::otlp_env::Signal::Metrics, &var)?;
        let millis = |name: &str, default: u64| {
            set(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map_or(Duration::from_millis(default), Duration::from_millis)
        };
        Some(ExportConfig {
            endpoint,
            interval: millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000),
            timeout: millis("OTEL_METRIC_EXPORT_TIMEOUT", 30_000),
        })
    }
}

/// A running exporter; [`MetricsExport::finish`] makes the last export.
pub struct MetricsExport {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl MetricsExport {
    /// Starts exporting when the environment asks for it.
    pub fn start(resource: &opentelemetry_sdk::Resource, render: Render) -> Option<Self> {
        let var = |v: &str| std::env::var(v).ok();
        let cfg = ExportConfig::from_vars(var)?;
        let channel = match channel(&cfg, &var) {
            Ok(c) => c,
            Err(e) => {
                warn!(endpoint = %cfg.endpoint, error = %format!("{e:#}"), "otlp metrics exporter not started");
                return None;
            }
        };
        let headers = match crate::otlp_env::headers(crate::otlp_env::Signal::Metrics, &var)
            .and_then(|h| metadata(&h))
        {
            Ok(h) => h,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "otlp metrics exporter not started");
                return None;
            }
        };
        let resource = proto_resource(resource);
        let (stop, mut stopped) = oneshot::channel();
        info!(endpoint = %cfg.endpoint, interval_ms = cfg.interval.as_millis() as u64, "exporting metrics over otlp");
        let task = tokio::spawn(async move {
            let mut client = MetricsServiceClient::with_interceptor(
                channel,
                move |mut req: tonic::Request<()>| {
                    // The collector's headers (an authorization, a tenant) on every export.
                    for (k, v) in &headers {
                        req.metadata_mut().insert(k.clone(), v.clone());
                    }
                    Ok(req)
                },
            );
            let start_ns = now_ns();
            let mut tick = tokio::time::interval(cfg.interval);
            tick.tick().await;
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut stopped => true,
                };
                let families = crate::prom_text::parse(&render().await);
                let req = request(resource.clone(), &families, start_ns, now_ns());
                match tokio::time::timeout(cfg.timeout, client.export(req)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(error = %e.message(), "otlp metrics export failed"),
                    Err(_) => warn!("otlp metrics export timed out"),
                }
                if last {
                    return;
                }
            }
        });
        Some(MetricsExport { stop, task })
    }

    /// Exports once more (what changed since the last interval) and stops.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// The channel to the collector: TLS for an `https://` endpoint.
fn channel(
    cfg: &ExportConfig,
    var: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<tonic::transport::Channel> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(cfg.endpoint.clone())?;
    if cfg.endpoint.starts_with("https://") {
        let files = crate::otlp_env::tls_files(crate::otlp_env::Signal::Metrics, var)?;
        endpoint = endpoint.tls_config(crate::otlp_env::client_tls(&files)?)?;
    }
    Ok(endpoint.timeout(cfg.timeout).connect_lazy())
}

type Metadata = Vec<(
    tonic::metadata::MetadataKey<tonic::metadata::Ascii>,
    tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
)>;

/// The headers as gRPC metadata (the names and values `otlp_env` checked).
fn metadata(headers: &[(String, String)]) -> anyhow::Result<Metadata> {
    headers
        .iter()
        .map(|(k, v)| {
            let key = k
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid header name '{k}'"))?;
            let value = v
                .parse()
                .map_err(|_| anyhow::anyhow!("the value of header '{k}' is not ASCII"))?;
            Ok((key, value))
        })
        .collect()
}

fn now_ns() -> u64 {
    dialtone_common::clock::unix_ns()
}

fn string_value(s: String) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    })
}

fn proto_resource(r: &opentelemetry_sdk::Resource) -> Resource {
    use opentelemetry::Value;
    Resource {
        attributes: r
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: Some(AnyValue {
                    value: Some(match v {
                        Value::Bool(b) => any_value::Value::BoolValue(*b),
                        Value::I64(i) => any_value::Value::IntValue(*i),
                        Value::F64(f) => any_value::Value::DoubleValue(*f),
                        other => any_value::Value::StringValue(other.to_string()),
                    }),
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The export request for one moment: every family, with the process's start as the start
/// of every cumulative series.
pub fn request(
    resource: Resource,
    families: &[Family],
    start_ns: u64,
    now_ns: u64,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "dialtone".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics: families
                    .iter()
                    .map(|f| metric(f, start_ns, now_ns))
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn attributes(labels: &Labels) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: string_value(v.clone()),
            ..Default::default()
        })
        .collect()
}

/// The unit UCUM names for a Prometheus name's conventional suffix.
fn unit(name: &str) -> &'static str {
    let base = name.strip_suffix("_total").unwrap_or(name);
    if base.ends_with("_seconds") {
        "s"
    } else if base.ends_with("_bytes") {
        "By"
    } else {
        ""
    }
}

/// One family as an OTLP metric.
pub fn metric(f: &Family, start_ns: u64, now_ns: u64) -> Metric {
    let points = |values: &[(Labels, f64)]| -> Vec<NumberDataPoint> {
        values
            .iter()
            .map(|(labels, v)| NumberDataPoint {
                attributes: attributes(labels),
                start_time_unix_nano: if f.kind == Kind::Counter { start_ns } else { 0 },
                time_unix_nano: now_ns,
                value: Some(number_data_point::Value::AsDouble(*v)),
                ..Default::default()
            })
            .collect()
    };
    let data = match (&f.kind, &f.samples) {
        (Kind::Counter, Samples::Values(v)) => Data::Sum(Sum {
            data_points: points(v),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        (_, Samples::Values(v)) => Data::Gauge(Gauge {
            data_points: points(v),
        }),
        (_, Samples::Histograms(series)) => Data::Histogram(Histogram {
            data_points: series
                .iter()
                .map(|s| {
                    // Prometheus buckets are cumulative; OTLP's are per bucket, plus one
                    // for everything above the last bound.
                    let mut counts = Vec::with_capacity(s.buckets.len() + 1);
                    let mut below = 0;
                    for (_, cumulative) in &s.buckets {
                        counts.push(cumulative.saturating_sub(below));
                        below = (*cumulative).max(below);
                    }
                    counts.push(s.count.saturating_sub(below));
                    HistogramDataPoint {
                        attributes: attributes(&s.labels),
                        start_time_unix_nano: start_ns,
                        time_unix_nano: now_ns,
                        count: s.count,
                        sum: Some(s.sum),
                        bucket_counts: counts,
                        explicit_bounds: s.buckets.iter().map(|b| b.0).collect(),
                        ..Default::default()
                    }
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
    };
    Metric {
        name: f.name.clone(),
        description: f.help.clone(),
        unit: unit(&f.name).into(),
        data: Some(data),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom_text::parse;

    #[test]
    fn the_standard_variables_choose_endpoint_interval_and_off() {
        let cfg = |vars: &[(&str, &str)]| {
            ExportConfig::from_vars(|n| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            })
        };
        assert_eq!(cfg(&[]), None);
        assert_eq!(
            cfg(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]),
            Some(ExportConfig {
                endpoint: "http://c:4317".into(),
                interval: Duration::from_secs(60),
                timeout: Duration::from_secs(30),
            })
        );
        let both = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4317"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
            ("OTEL_METRIC_EXPORT_TIMEOUT", "junk"),
        ])
        .unwrap();
        assert_eq!(both.endpoint, "http://m:4317");
        assert_eq!(both.interval, Duration::from_millis(1500));
        assert_eq!(
            both.timeout,
            Duration::from_secs(30),
            "junk keeps the default"
        );
        assert_eq!(
            cfg(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_METRICS_EXPORTER", "none")
            ]),
            None
        );
    }

    #[test]
    fn families_become_sums_gauges_and_histograms() {
        let mut text = String::from(
            "# HELP r_total Requests.\n# TYPE r_total counter\nr_total{m=\"REGISTER\"} 7\n\
             # HELP up_now Up.\n# TYPE up_now gauge\nup_now 1\n\
             # HELP d_seconds Latency.\n# TYPE d_seconds histogram\n",
        );
        let h = dialtone_metrics::Histogram::new(&[0.01, 0.1]);
        for s in [0.001, 0.002, 0.05, 4.0] {
            h.observe(s);
        }
        h.render("d_seconds", "", &mut text);
        let families = parse(&text);
        let m: Vec<Metric> = families.iter().map(|f| metric(f, 10, 20)).collect();
        let Some(Data::Sum(sum)) = &m[0].data else {
            panic!("{:?}", m[0])
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(sum.data_points[0].start_time_unix_nano, 10);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsDouble(7.0))
        );
        assert_eq!(sum.data_points[0].attributes[0].key, "m");
        assert!(matches!(&m[1].data, Some(Data::Gauge(g)) if g.data_points.len() == 1));
        let Some(Data::Histogram(hist)) = &m[2].data else {
            panic!("{:?}", m[2])
        };
        let p = &hist.data_points[0];
        assert_eq!(p.explicit_bounds, vec![0.01, 0.1]);
        assert_eq!(
            p.bucket_counts,
            vec![2, 1, 1],
            "per bucket, plus the overflow"
        );
        assert_eq!(p.count, 4);
        assert_eq!(m[2].unit, "s");
        assert_eq!(m[2].description, "Latency.");
    }
}
