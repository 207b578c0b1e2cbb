//! Every configuration change asked over gRPC, in the config role's audit log with the
//! name of the token that asked (`dialtone_config::audit`), beside the console's and the
//! REST API's. The outcome is the `grpc-status` of a trailers-only answer (every error
//! tonic returns from a handler), else `ok`: exact for unary calls; a streamed import or
//! bulk action that fails midway is recorded as accepted.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use dialtone_auth::Tokens;
use dialtone_config::audit::{AuditEntry, AuditLog, grpc_change};

/// The tower layer recording changes into an [`AuditLog`].
#[derive(Clone)]
pub struct GrpcAuditLayer {
    /// The config role's log (none: the node runs no config role).
    pub log: Option<Arc<AuditLog>>,
    /// The node's tokens (to name who asked).
    pub tokens: Arc<Tokens>,
}

impl<S> tower::Layer<S> for GrpcAuditLayer {
    type Service = GrpcAuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuditService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`GrpcAuditLayer`].
#[derive(Clone)]
pub struct GrpcAuditService<S> {
    inner: S,
    layer: GrpcAuditLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for GrpcAuditService<S>
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
        let log = self.layer.log.clone();
        let change = log
            .as_ref()
            .and_then(|_| grpc_change(req.uri().path()))
            .map(str::to_owned)
            .and_then(|method| {
                let header = req
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                // A call without a known token is refused by the token gate: nothing to record.
                self.layer.tokens.name_of(header).map(|who| (who, method))
            });
        let call = self.inner.call(req);
        Box::pin(async move {
            let res = call.await;
            if let (Some(log), Some((who, method))) = (log, change) {
                let outcome = match &res {
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|s| s.parse::<i32>().ok())
                        .filter(|c| *c != 0)
                        .map_or_else(
                            || "ok".to_owned(),
                            |c| format!("{:?}", tonic::Code::from_i32(c)),
                        ),
                    Err(_) => "transport error".to_owned(),
                };
                log.record(AuditEntry {
                    at_ms: dialtone_common::clock::unix_ms_i64(),
                    who,
                    via: "grpc",
                    action: method,
                    object: String::new(),
                    outcome,
                });
            }
            res
        })
    }
}
