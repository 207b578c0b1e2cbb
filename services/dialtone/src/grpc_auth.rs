//! The gRPC server's front door: a call whose bearer token is unknown is refused
//! (UNAUTHENTICATED) before its body is read, so nobody without a token can make the server
//! buffer and decode a large request; each service still checks the token's permission for
//! its method. And the token file is read again when it changes (checked every few
//! seconds) or on SIGHUP: a revoked token stops working without a restart, open watches
//! included.

use std::{
    path::PathBuf,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use dialtone_auth::Tokens;
use tracing::{info, warn};

/// The tower layer refusing unknown tokens.
#[derive(Clone)]
pub struct TokenGateLayer(pub Arc<Tokens>);

impl<S> tower::Layer<S> for TokenGateLayer {
    type Service = TokenGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenGate {
            inner,
            tokens: self.0.clone(),
        }
    }
}

/// See [`TokenGateLayer`].
#[derive(Clone)]
pub struct TokenGate<S> {
    inner: S,
    tokens: Arc<Tokens>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for TokenGate<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Health checks carry no token (load balancers, grpc_health_probe) and tell only
        // whether the node is ready.
        if req.uri().path().starts_with(crate::grpc_health::PATH) {
            return Box::pin(self.inner.call(req));
        }
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !self.tokens.knows(header) {
            let refused = tonic::Status::unauthenticated("missing or unknown bearer token");
            return Box::pin(async move { Ok(refused.into_http()) });
        }
        Box::pin(self.inner.call(req))
    }
}

/// Reads `path` again whenever its modification time or size changes (looked at every
/// `every`) and on SIGHUP, and puts its tokens in place; a file that does not parse is
/// logged and the tokens in force are kept. `admin` (the generated admin token, in dev
/// mode) is added to every set read.
pub fn reload_on_change(tokens: Arc<Tokens>, path: PathBuf, every: Duration) {
    tokio::spawn(async move {
        let stamp = |p: &PathBuf| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        let mut seen = stamp(&path);
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let by_signal = tokio::select! {
                _ = tokio::time::sleep(every) => false,
                _ = async {
                    match hup.as_mut() {
                        Some(h) => { h.recv().await; }
                        None => std::future::pending().await,
                    }
                } => true,
            };
            let now = stamp(&path);
            if !by_signal && now == seen {
                continue;
            }
            seen = now;
            match Tokens::load(&path) {
                Ok(fresh) => {
                    let n = fresh.len();
                    tokens.replace(fresh);
                    info!(tokens = n, path = %path.display(), "api tokens reloaded");
                }
                Err(e) => {
                    warn!(error = %e, path = %path.display(), "api tokens not reloaded; the ones in force stay");
                }
            }
        }
    });
}
