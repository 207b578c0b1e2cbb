//! The admin HTTP port: `/healthz` (the process runs), `/readyz` (it can serve: for an edge,
//! its listeners are up and its credentials cache loaded, whatever the store does; for the
//! other roles, the store answers and the node's lease is alive too), `/metrics`
//! (Prometheus text).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use dialtone_store::{Store, lifecycle::NodeLease};

/// What the admin endpoints report on.
#[derive(Clone)]
pub struct Health {
    pub store: Store,
    pub lease: Arc<NodeLease>,
    pub node: String,
    pub roles: Vec<String>,
    pub started: SystemTime,
    /// The edge role, when this node runs it.
    pub edge: Option<Arc<dialtone_edge::Edge>>,
    /// The provisioning role, when this node runs it.
    pub provisioning: Option<Arc<dialtone_provisioning::Provisioning>>,
    /// The status role, when this node runs it.
    pub status: Option<Arc<dialtone_status::StatusRole>>,
    /// Durations of the gRPC calls this node served.
    pub grpc: Arc<crate::grpc_metrics::GrpcMetrics>,
    /// The certificate files this node serves (`sip`, `https`, `grpc`); their expiry is
    /// that of the certificate served now (`dialtone_tls::reload`).
    pub certificates: Vec<(&'static str, std::path::PathBuf)>,
}

impl Health {
    async fn store_ok(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(1), self.store.revision()).await,
            Ok(Ok(_))
        )
    }
}

/// The admin router.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

/// Whether the node can serve, or why not (what `/readyz` and `grpc.health.v1` answer).
pub async fn readiness(h: &Health) -> Result<(), Vec<&'static str>> {
    // An edge serves phones from its cache while the store is away: an etcd outage must not
    // take every edge out of its Service. The other roles cannot serve without the store.
    let needs_store = h.roles.iter().any(|r| r != "edge");
    let store = !needs_store || h.store_ok().await;
    let lease = !needs_store || h.lease.is_alive();
    let edge = h.edge.as_ref().is_none_or(|e| e.ready());
    let status = h.status.as_ref().is_none_or(|s| s.ready());
    let why: Vec<&str> = [
        (!store).then_some("store unreachable"),
        (!lease).then_some("node lease lost"),
        (!edge).then_some("sip edge stopping"),
        (!status).then_some("status view re-listing"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if why.is_empty() { Ok(()) } else { Err(why) }
}

async fn readyz(State(h): State<Health>) -> (StatusCode, String) {
    match readiness(&h).await {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join(", ")),
        ),
    }
}

async fn metrics(
    State(h): State<Health>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        render(&h).await,
    )
}

/// The node's metrics as Prometheus text: what `/metrics` serves and the OTLP exporter sends.
pub async fn render(h: &Health) -> String {
    let store = h.store_ok().await;
    let started = h
        .started
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut out = String::new();
    let roles = h.roles.join(",");
    out.push_str("# HELP dialtone_build_info Build and node information.\n# TYPE dialtone_build_info gauge\n");
    out.push_str(&format!(
        "dialtone_build_info{{version=\"{}\",node=\"{}\",roles=\"{roles}\",store=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        h.node,
        h.store.backend()
    ));
    if !h.certificates.is_empty() {
        out.push_str("# HELP dialtone_tls_certificate_expiry_timestamp_seconds When each TLS certificate the node serves expires (notAfter), Unix seconds, by use: sip (TLS and WSS), https (provisioning), grpc.\n# TYPE dialtone_tls_certificate_expiry_timestamp_seconds gauge\n");
        for (used, file) in &h.certificates {
            // The certificate served now (reloaded when its files change), else the file's.
            let Some(at) = dialtone_tls::reload::served_expiry(file)
                .or_else(|| dialtone_tls::certificate_expiry(file).ok())
            else {
                continue;
            };
            out.push_str(&format!(
                "dialtone_tls_certificate_expiry_timestamp_seconds{{node=\"{}\",use=\"{used}\"}} {at}\n",
                h.node
            ));
        }
    }
    let (reloaded, failed) = dialtone_tls::reload::reloads();
    out.push_str(&format!(
        "# HELP dialtone_tls_certificate_reloads_total Certificate files that changed and were served from then on (ok), or did not load and left the previous certificate serving (failed).\n# TYPE dialtone_tls_certificate_reloads_total counter\ndialtone_tls_certificate_reloads_total{{node=\"{node}\",result=\"ok\"}} {reloaded}\ndialtone_tls_certificate_reloads_total{{node=\"{node}\",result=\"failed\"}} {failed}\n",
        node = h.node
    ));
    out.push_str("# HELP dialtone_store_up Whether the store answered a read within 1 s.\n# TYPE dialtone_store_up gauge\n");
    out.push_str(&format!("dialtone_store_up {}\n", u8::from(store)));
    out.push_str("# HELP dialtone_lease_alive Whether the node's lease is alive.\n# TYPE dialtone_lease_alive gauge\n");
    out.push_str(&format!(
        "dialtone_lease_alive {}\n",
        u8::from(h.lease.is_alive())
    ));
    out.push_str(
        "# HELP dialtone_lease_reregistrations_total Times the node re-registered on a new lease.\n# TYPE dialtone_lease_reregistrations_total counter\n",
    );
    out.push_str(&format!(
        "dialtone_lease_reregistrations_total {}\n",
        *h.lease.generation().borrow()
    ));
    out.push_str("# HELP process_start_time_seconds Start time of the process.\n# TYPE process_start_time_seconds gauge\n");
    out.push_str(&format!("process_start_time_seconds {started}\n"));
    crate::process_metrics::render(&mut out);
    out.push_str(&h.grpc.render());
    out.push_str(&dialtone_store::metrics::render());
    if let Some(p) = &h.provisioning {
        out.push_str(&p.metrics());
    }
    if let Some(e) = &h.edge {
        out.push_str("# HELP dialtone_edge_credentials_current Whether the edge's credentials cache is as current as the store's watch (0 while it is listed again; the edge serves from the last listing meanwhile).\n# TYPE dialtone_edge_credentials_current gauge\n");
        out.push_str(&format!(
            "dialtone_edge_credentials_current {}\n",
            u8::from(e.credentials_current())
        ));
        out.push_str(&e.metrics());
    }
    if let Some(s) = &h.status {
        out.push_str(&s.metrics());
    }
    out
}
