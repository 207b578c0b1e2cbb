//! `dialtone serve`: opens the store, takes the node lease, registers the node's roles,
//! serves gRPC and admin HTTP, and on SIGTERM/SIGINT stops serving and revokes the lease.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use dialtone_auth::{Permission, Tokens};
use dialtone_config::{ConfigApi, ConfigCore};
use dialtone_edge::{Edge, Transport};
use dialtone_proto::config::v1::{Member, SipAddresses};
use dialtone_store::{
    EmbeddedStore, EtcdStore, Store, StoreError,
    lifecycle::{NodeLease, Shards},
};
use prost::Message;
use tracing::{error, info, warn};

use crate::{admin, settings::ServeConfig};

/// File in the data dir holding the generated admin token (mode 0600).
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// gRPC streams (calls) one connection may have open at once.
const GRPC_MAX_STREAMS: u32 = 128;

/// File in the data dir holding the gRPC endpoint, for dialtonectl.
pub const ENDPOINT_FILE: &str = "endpoint";
/// The file in the data directory holding the REST API's URL (config role).
pub const API_ENDPOINT_FILE: &str = "api-endpoint";

pub async fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    let held = crate::data_dir::DataDir::open(&cfg.data())?;
    let data = held.path().to_owned();
    // The store client and the lease keeper run on a thread of their own.
    let store_rt = crate::store_runtime::StoreRuntime::start()?;
    let store = if cfg.etcd.is_empty() {
        let dir = data.join("store");
        Store::Embedded(
            store_rt
                .enter(|| EmbeddedStore::open(&dir))
                .context("opening the embedded store")?,
        )
    } else {
        let (endpoints, prefix, secured) = (
            cfg.etcd.clone(),
            cfg.store_prefix.clone(),
            cfg.etcd_secured.clone(),
        );
        Store::Etcd(
            store_rt
                .run(async move { EtcdStore::connect_with(&endpoints, &prefix, &secured).await })
                .await?
                .with_context(|| format!("connecting to etcd {}", cfg.etcd.join(",")))?,
        )
    };
    let tokens = Arc::new(load_tokens(&cfg, &data)?);
    if let Some(path) = &cfg.api_tokens {
        crate::grpc_auth::reload_on_change(tokens.clone(), path.clone(), Duration::from_secs(2));
    }
    // An edge takes over the lease of the process it replaces (same node id, within the
    // TTL), with the bindings on it; see `NodeLease::resume` and `dialtone_edge::takeover`.
    let runs_edge = cfg.roles.iter().any(|r| r == "edge");
    let (lease_store, node, ttl) = (store.clone(), cfg.node().to_owned(), cfg.lease_ttl);
    let (lease, left_on_lease) = store_rt
        .run(async move {
            if runs_edge {
                let key = dialtone_domain::keys::member("edge", &node);
                let shards = Shards {
                    count: cfg.binding_leases as usize,
                    key: &dialtone_domain::keys::node_leases(&node),
                };
                let claim = dialtone_domain::keys::claim(&node);
                NodeLease::resume(lease_store, &node, ttl, &key, shards, &claim).await
            } else {
                Ok((NodeLease::start(lease_store, &node, ttl).await?, Vec::new()))
            }
        })
        .await?
        .context("granting the node lease")?;

    let grpc = dialtone_common::listen::tcp(cfg.listen_grpc)
        .with_context(|| format!("binding --listen-grpc {}", cfg.listen_grpc))?;
    let admin_listener = dialtone_common::listen::tcp(cfg.listen_admin)
        .with_context(|| format!("binding --listen-admin {}", cfg.listen_admin))?;
    let grpc_addr = grpc.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let api_listener = if cfg.roles.iter().any(|r| r == "config") {
        Some(
            dialtone_common::listen::tcp(cfg.listen_api)
                .with_context(|| format!("binding --listen-api {}", cfg.listen_api))?,
        )
    } else {
        None
    };

    let lease = Arc::new(lease);
    let edge = if runs_edge {
        let settings = cfg
            .edge
            .settings(cfg.node(), &cfg.sip_realm, &data, cfg.etcd.is_empty())?;
        Some(Arc::new(
            Edge::start(
                settings,
                store.clone(),
                lease.clone(),
                &left_on_lease,
                &data,
            )
            .await
            .context("starting the sip edge")?,
        ))
    } else {
        None
    };

    // Read once: the config and provisioning roles derive passwords from the same key.
    let credentials_key = if cfg
        .roles
        .iter()
        .any(|r| r == "config" || r == "provisioning")
    {
        Some(cfg.credentials_key()?)
    } else {
        None
    };
    let provisioning = if cfg.roles.iter().any(|r| r == "provisioning") {
        let settings =
            cfg.provisioning
                .settings(cfg.node(), &cfg.sip_realm, cfg.etcd.is_empty())?;
        Some(Arc::new(
            dialtone_provisioning::Provisioning::start(
                settings,
                store.clone(),
                credentials_key
                    .clone()
                    .expect("read for the provisioning role"),
                &data,
            )
            .await
            .context("starting the provisioning server")?,
        ))
    } else {
        None
    };

    let status = if cfg.roles.iter().any(|r| r == "status") {
        Some(Arc::new(
            dialtone_status::StatusRole::start(store.clone(), &cfg.sip_realm)
                .await
                .context("loading the status view")?,
        ))
    } else {
        None
    };

    let started = dialtone_common::clock::now();
    let started_ms = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    for role in &cfg.roles {
        let member = Member {
            node_id: cfg.node().to_owned(),
            role: role.clone(),
            grpc_address: grpc_addr.to_string(),
            admin_address: admin_addr.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at_ms: started_ms,
            sip_addresses: (role == "edge")
                .then(|| edge.as_ref().map(|e| sip_addresses(e)))
                .flatten(),
            https_address: match (role.as_str(), &provisioning) {
                ("provisioning", Some(p)) => p.local_addr().to_string(),
                _ => String::new(),
            },
        };
        lease
            .put_owned(
                &dialtone_domain::keys::member(role, cfg.node()),
                member.encode_to_vec(),
            )
            .await
            .context("registering membership")?;
    }

    {
        let grpc_metrics = Arc::new(crate::grpc_metrics::GrpcMetrics::default());
        let health = admin::Health {
            store: store.clone(),
            lease: lease.clone(),
            node: cfg.node().to_owned(),
            roles: cfg.roles.clone(),
            started,
            edge: edge.clone(),
            provisioning: provisioning.clone(),
            status: status.clone(),
            grpc: grpc_metrics.clone(),
            certificates: served_certificates(&cfg)?,
        };
        let metrics_export = {
            let h = health.clone();
            crate::otlp_metrics::MetricsExport::start(
                &crate::telemetry::resource(cfg.node()),
                Box::new(move || {
                    let h = h.clone();
                    Box::pin(async move { admin::render(&h).await })
                }),
            )
        };
        let mut router = tonic::service::Routes::builder();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(crate::tls_reload::run(
            Duration::from_secs(cfg.tls_reload_interval),
            stop_rx.clone(),
        ));
        let mut api_task = None;
        let mut audit = None;
        if cfg.roles.iter().any(|r| r == "config") {
            let core = ConfigCore::new(
                store.clone(),
                &cfg.sip_realm,
                credentials_key.clone().expect("read for the config role"),
            );
            audit = Some(core.audit().clone());
            // Data an older Dialtone wrote: in the background, the API serves meanwhile.
            let upgrading = core.clone();
            tokio::spawn(async move {
                if let Err(e) = upgrading.backfill_extensions().await {
                    tracing::warn!(error = %e, "indexing site extensions failed; retried at the next start");
                }
                if let Err(e) = upgrading.backfill_phone_names().await {
                    tracing::warn!(error = %e, "indexing phone names failed; retried at the next start");
                }
            });
            if let Some(listener) = api_listener {
                let tls = match &cfg.grpc_security.grpc_tls_cert {
                    Some(cert) => {
                        let key = cfg
                            .grpc_security
                            .grpc_tls_key
                            .as_ref()
                            .context("--grpc-tls-key")?;
                        // Mutual TLS when gRPC asks for it: the same clients, the same rule.
                        let acceptor = match &cfg.grpc_security.grpc_client_ca {
                            Some(ca) => dialtone_tls::acceptor_requiring_client_ca(cert, key, ca),
                            None => dialtone_tls::acceptor(cert, key),
                        };
                        Some(acceptor.context(
                            "the REST API's TLS (--grpc-tls-cert, --grpc-tls-key, --grpc-client-ca)",
                        )?)
                    }
                    None => None,
                };
                let addr = listener.local_addr()?;
                write_url(&data.join(API_ENDPOINT_FILE), addr, tls.is_some());
                let rest = dialtone_config::rest::RestApi::new(core.clone(), tokens.clone());
                // The console's pages at `/`, the REST API under `/api/v2`.
                let console = dialtone_config::console::Console::new(rest);
                api_task = Some(dialtone_config::rest::serve(
                    listener,
                    tls,
                    console.router(),
                    stop_rx.clone(),
                ));
            }
            let api = ConfigApi::new(core, tokens.clone());
            router.add_service(api.into_server());
        }
        if let Some(e) = &edge {
            router.add_service(e.api(tokens.clone()));
        }
        if let Some(p) = &provisioning {
            router.add_service(p.api(tokens.clone()));
        }
        if let Some(s) = &status {
            router.add_service(s.api(tokens.clone()));
        }
        router.add_service(crate::grpc_health::HealthService::server(health.clone()));
        // grpcurl, Postman and the like list and describe the services without a .proto
        // (grpc.reflection.v1; with a token, like every service but health).
        router.add_service(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(dialtone_proto::FILE_DESCRIPTOR_SET)
                .build_v1()
                .context("building the gRPC reflection service")?,
        );
        let routes = router.routes();
        // Written before the admin port serves: once /readyz can say 200, dialtonectl and
        // scripts find the endpoint (written after it, a test that saw the node ready
        // found no file).
        write_endpoint(&data, grpc_addr, cfg.grpc_tls.is_some());
        let admin_task = {
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                axum::serve(admin_listener, admin::router(health))
                    .with_graceful_shutdown(async move {
                        let _ = stop.changed().await;
                    })
                    .await
            })
        };
        print_banner(
            &cfg,
            &data,
            grpc_addr,
            admin_addr,
            store.backend(),
            edge.as_deref(),
            provisioning.as_deref(),
        );
        let mut stop = stop_rx.clone();
        let router = tonic::transport::Server::builder()
            // Bounded work per client: streams per connection, calls in progress per
            // connection, and dead peers found by keep-alives.
            .max_concurrent_streams(Some(GRPC_MAX_STREAMS))
            .concurrency_limit_per_connection(GRPC_MAX_STREAMS as usize)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .tcp_keepalive(Some(Duration::from_secs(60)))
            .trace_fn(crate::telemetry::grpc_span)
            .layer(crate::grpc_metrics::GrpcMetricsLayer(grpc_metrics))
            .layer(crate::grpc_auth::TokenGateLayer(tokens.clone()))
            .layer(crate::grpc_audit::GrpcAuditLayer {
                log: audit,
                tokens: tokens.clone(),
            })
            .add_routes(routes);
        let stopped = async move {
            let _ = stop.changed().await;
        };
        let grpc_task = match &cfg.grpc_tls {
            Some(t) => tokio::spawn(router.serve_with_incoming_shutdown(
                crate::grpc_incoming::tls_incoming(grpc, t.config.clone()),
                stopped,
            )),
            None => tokio::spawn(
                router.serve_with_incoming_shutdown(tokio_stream_listener(grpc), stopped),
            ),
        };
        // A newer process claimed this node id (an edge started again elsewhere while this
        // one was cut off): this one writes nothing more (`dialtone_store`'s
        // `lifecycle/claim.rs`) and stops, without touching the leases, now the newer one's.
        let mut fenced = lease.fenced();
        let taken_over = tokio::select! {
            () = shutdown_signal() => false,
            _ = fenced.wait_for(|f| *f) => true,
        };
        if taken_over {
            error!(node = %cfg.node(), "a newer process claimed this node id: stopping");
        } else {
            info!(node = %cfg.node(), "shutting down: draining");
        }
        let _ = stop_tx.send(true);
        if let Some(e) = &edge {
            e.shutdown();
        }
        if let Some(p) = &provisioning {
            p.shutdown();
        }
        if let Some(s) = &status {
            s.shutdown();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), grpc_task).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
        if let Some(t) = api_task {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        if let Some(m) = metrics_export {
            m.finish().await;
        }
        match &edge {
            // Fenced, it neither revokes nor leaves the leases: they are the newer
            // process's (`shutdown` of a fenced lease only stops its keeper).
            Some(e) if !taken_over => {
                // The bindings stay for the next process with this node id (a restart, a
                // rollout); if none comes within the TTL they expire as after a crash.
                // What the phones were last told is written first.
                e.published(Duration::from_secs(cfg.lease_ttl.max(2) as u64 / 2))
                    .await;
                lease.leave().await;
            }
            _ => lease.shutdown().await,
        }
        // Also when told to stop before it noticed the claim: releasing it, it found out.
        if *lease.fenced().borrow() {
            return Err(StoreError::Fenced(cfg.node().to_owned()).into());
        }
    }
    info!("stopped");
    Ok(())
}

/// The certificate files this node serves, by use (for the expiry gauge and its alert),
/// each checked readable at start. A dev-mode certificate generated in the data dir is left
/// out.
fn served_certificates(
    cfg: &ServeConfig,
) -> anyhow::Result<Vec<(&'static str, std::path::PathBuf)>> {
    let runs = |role: &str| cfg.roles.iter().any(|r| r == role);
    let files = [
        (
            "sip",
            cfg.edge.sip_tls_cert.as_ref().filter(|_| {
                runs("edge") && (cfg.edge.sip_tls != "off" || cfg.edge.sip_wss != "off")
            }),
        ),
        (
            "https",
            cfg.provisioning
                .provisioning_tls_cert
                .as_ref()
                .filter(|_| runs("provisioning")),
        ),
        ("grpc", cfg.grpc_security.grpc_tls_cert.as_ref()),
    ];
    let mut out = Vec::new();
    for (used, file) in files {
        if let Some(file) = file {
            dialtone_tls::certificate_expiry(file)
                .with_context(|| format!("reading the {used} certificate's expiry"))?;
            out.push((used, file.clone()));
        }
    }
    Ok(out)
}

fn tokio_stream_listener(l: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true))
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Tokens from --api-tokens, or (embedded dev mode) the admin token generated once into
/// the data dir.
fn load_tokens(cfg: &ServeConfig, data: &Path) -> anyhow::Result<Tokens> {
    if let Some(path) = &cfg.api_tokens {
        let t = Tokens::load(path)
            .with_context(|| format!("invalid value '{}' for '--api-tokens'", path.display()))?;
        info!(tokens = t.len(), "api tokens loaded");
        return Ok(t);
    }
    let path = data.join(ADMIN_TOKEN_FILE);
    let token = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().to_owned(),
        Err(_) => {
            let t = dialtone_auth::generate_token();
            write_private(&path, &t).with_context(|| format!("writing {}", path.display()))?;
            info!(path = %path.display(), "admin token generated");
            t
        }
    };
    let mut tokens = Tokens::default();
    tokens.insert("admin", &token, &[Permission::All]);
    Ok(tokens)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut f, format!("{text}\n").as_bytes())
}

fn write_endpoint(data: &Path, addr: std::net::SocketAddr, tls: bool) {
    write_url(&data.join(ENDPOINT_FILE), addr, tls);
}

/// Writes the URL of a listener on `addr` to `path` (for dialtonectl and scripts).
fn write_url(path: &Path, addr: std::net::SocketAddr, tls: bool) {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let scheme = if tls { "https" } else { "http" };
    let url = format!("{scheme}://{host}:{}\n", addr.port());
    if let Err(e) = std::fs::write(path, url) {
        warn!(error = %e, path = %path.display(), "could not write an endpoint file");
    }
}

/// The edge's listening addresses, as published in its member record.
fn sip_addresses(e: &Edge) -> SipAddresses {
    let a = |t: Transport| {
        e.addresses()
            .get(&t)
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    SipAddresses {
        udp: a(Transport::Udp),
        tcp: a(Transport::Tcp),
        tls: a(Transport::Tls),
        ws: a(Transport::Ws),
        wss: a(Transport::Wss),
    }
}

fn print_banner(
    cfg: &ServeConfig,
    data: &Path,
    grpc: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    backend: &str,
    edge: Option<&Edge>,
    provisioning: Option<&dialtone_provisioning::Provisioning>,
) {
    let (sip, edge_arg) = match edge {
        Some(e) => {
            let s = sip_addresses(e);
            let list = [
                ("udp", &s.udp),
                ("tcp", &s.tcp),
                ("tls", &s.tls),
                ("ws", &s.ws),
                ("wss", &s.wss),
            ]
            .iter()
            .filter(|(_, a)| !a.is_empty())
            .map(|(t, a)| format!("{t}://{a}"))
            .collect::<Vec<_>>();
            (
                format!("\n  sip   {}", list.join(" ")),
                format!("{}={}", cfg.node(), list.join(",")),
            )
        }
        None => (String::new(), "edge-1=udp://127.0.0.1:5060".to_string()),
    };
    let https = match provisioning {
        Some(p) => format!(
            "\n  https https://{} (phones created with --hardware-id fetch their files here with the device credential printed then)",
            p.local_addr()
        ),
        None => String::new(),
    };
    let token_hint = if cfg.api_tokens.is_some() {
        "tokens from --api-tokens".to_string()
    } else {
        format!("admin token in {}", data.join(ADMIN_TOKEN_FILE).display())
    };
    let ctl = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("dialtonectl")))
        .filter(|p| p.exists())
        .map_or_else(|| "dialtonectl".to_string(), |p| p.display().to_string());
    let api = std::fs::read_to_string(data.join(API_ENDPOINT_FILE))
        .ok()
        .filter(|_| cfg.roles.iter().any(|r| r == "config"))
        .map(|u| {
            format!(
                "\n  web   {0}/ (the console: log in with an API token)\n  api   {0}/api/v2/telephony/providers/edges/phones (REST, Genesys Cloud's shapes; /api/v2/openapi.json)",
                u.trim()
            )
        })
        .unwrap_or_default();
    println!(
        "dialtone ready: node {node} roles [{roles}] store {backend}\n  grpc  {grpc_scheme}://{grpc}{api}\n  admin http://{admin} (/healthz /readyz /metrics){sip}{https}\n  {token_hint}\n\
         to give a phone its SIP credentials (dialtonectl finds this server and token by itself):\n\
         \x20 {ctl} edge-groups create main --edge {edge_arg}\n\
         \x20 {ctl} sites create hq --edge-group main\n\
         \x20 {ctl} base-settings create desk --meta-base generic-sip\n\
         \x20 {ctl} phones create --name 'Desk 1' --kind unmanaged --site hq --base-settings desk --line 1001\n\
         \x20 (prints the SIP user, realm and password once; register the phone to the sip addresses above)",
        node = cfg.node(),
        roles = cfg.roles.join(","),
        grpc_scheme = if cfg.grpc_tls.is_some() {
            "https"
        } else {
            "http"
        },
    );
}
