//! gRPC server call duration by method and status code, as the OpenTelemetry RPC semantic
//! conventions (v1.26) name it: `rpc.server.call.duration` in seconds, with `rpc.system`,
//! `rpc.service`, `rpc.method` and `rpc.grpc.status_code`; rendered on `/metrics` as the
//! Prometheus histogram `rpc_server_call_duration_seconds`.
//!
//! The duration runs until the response headers. The status is the `grpc-status` header of a
//! trailers-only answer (every error tonic returns from a handler) and OK otherwise, which is
//! exact for the unary calls this API has.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use dialtone_metrics::{Histogram, escape, header};
use parking_lot::Mutex;

/// Upper bounds of the buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Distinct (method, code) series kept; later ones count as method `other`, so clients
/// calling made-up paths cannot grow the registry without bound.
const MAX_SERIES: usize = 512;

const NAME: &str = "rpc_server_call_duration_seconds";

/// The registry: one histogram per (path, status code).
#[derive(Default)]
pub struct GrpcMetrics {
    series: Mutex<HashMap<(String, i32), Histogram>>,
}

impl GrpcMetrics {
    fn observe(&self, path: &str, code: i32, took: Duration) {
        let mut series = self.series.lock();
        let key = (path.to_owned(), code);
        let key = if series.len() < MAX_SERIES || series.contains_key(&key) {
            key
        } else {
            ("/other/other".to_owned(), code)
        };
        series
            .entry(key)
            .or_insert_with(|| Histogram::new(BUCKETS))
            .observe(took.as_secs_f64());
    }

    /// Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut o = String::new();
        header(
            &mut o,
            NAME,
            "histogram",
            "Duration of gRPC calls served (OpenTelemetry rpc.server.call.duration).",
        );
        let series = self.series.lock();
        let mut keys: Vec<_> = series.keys().collect();
        keys.sort();
        for key in keys {
            let (service, method) = rpc_parts(&key.0);
            let labels = format!(
                "rpc_system=\"grpc\",rpc_service=\"{}\",rpc_method=\"{}\",rpc_grpc_status_code=\"{}\"",
                escape(service),
                escape(method),
                key.1
            );
            series[key].render(NAME, &labels, &mut o);
        }
        o
    }
}

/// The service and method of a gRPC path (`/pkg.Service/Method`).
pub fn rpc_parts(path: &str) -> (&str, &str) {
    path.trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", path))
}

/// The tower layer timing every call into a [`GrpcMetrics`].
#[derive(Clone)]
pub struct GrpcMetricsLayer(pub Arc<GrpcMetrics>);

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let started = Instant::now();
        let call = self.inner.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let res = call.await;
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                // The transport failed the call: UNKNOWN.
                Err(_) => 2,
            };
            metrics.observe(&path, code, started.elapsed());
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_per_method_and_code() {
        let m = GrpcMetrics::default();
        let p = "/dialtone.config.v1.ConfigService/GetPhone";
        m.observe(p, 0, Duration::from_millis(3));
        m.observe(p, 0, Duration::from_millis(30));
        m.observe(p, 5, Duration::from_secs(7));
        let text = m.render();
        let l = "rpc_system=\"grpc\",rpc_service=\"dialtone.config.v1.ConfigService\",rpc_method=\"GetPhone\"";
        for (line, want) in [
            (
                format!("{l},rpc_grpc_status_code=\"0\",le=\"0.001\"}}"),
                "0",
            ),
            (
                format!("{l},rpc_grpc_status_code=\"0\",le=\"0.005\"}}"),
                "1",
            ),
            (format!("{l},rpc_grpc_status_code=\"0\",le=\"0.05\"}}"), "2"),
            (format!("{l},rpc_grpc_status_code=\"0\",le=\"+Inf\"}}"), "2"),
            (format!("{l},rpc_grpc_status_code=\"5\",le=\"5\"}}"), "0"),
            (format!("{l},rpc_grpc_status_code=\"5\",le=\"+Inf\"}}"), "1"),
        ] {
            let full = format!("rpc_server_call_duration_seconds_bucket{{{line} {want}\n");
            assert!(text.contains(&full), "{full} in\n{text}");
        }
        assert!(text.contains(&format!(
            "rpc_server_call_duration_seconds_count{{{l},rpc_grpc_status_code=\"0\"}} 2\n"
        )));
    }

    #[test]
    fn made_up_paths_cannot_grow_the_registry_without_bound() {
        let m = GrpcMetrics::default();
        for i in 0..MAX_SERIES + 100 {
            m.observe(&format!("/x.Svc/M{i}"), 12, Duration::from_millis(1));
        }
        assert_eq!(m.series.lock().len(), MAX_SERIES + 1);
        assert!(m.render().contains("rpc_method=\"other\""));
    }
}
