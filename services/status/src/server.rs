//! The status role's gRPC service as the node serves it: the generated server for every
//! method but the watch, which is served here so that its items are [`Wire`]s (the hub's
//! encoded changes written as they are) rather than `StatusChange`s decoded for each
//! watcher. Same name, same paths, same wire format; clients see no difference.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use dialtone_proto::status::v1::{
    WatchPhoneStatusesRequest, status_service_server::StatusServiceServer,
};
use tonic::{
    Request, Response, Status,
    body::Body,
    codegen::{BoxFuture, Service, http},
    server::{Grpc, NamedService, ServerStreamingService},
};
use tonic_prost::ProstCodec;

use crate::{
    api::{StatusApi, WireStream},
    wire::Wire,
};

/// The watch's path, as the generated server routes it.
const WATCH: &str = "/dialtone.status.v1.StatusService/WatchPhoneStatuses";

/// The status service: [`StatusServiceServer`] with its watch served with [`Wire`] items.
/// The watch is served with tonic's defaults (no compression, no size limit on what it
/// sends), as the generated server serves every method here: a limit or compression set
/// on `generated` would have to be set on the watch's `Grpc` too.
#[derive(Clone)]
pub struct StatusServer {
    api: Arc<StatusApi>,
    generated: StatusServiceServer<StatusApi>,
}

impl StatusServer {
    /// The service over `api`.
    pub fn new(api: StatusApi) -> Self {
        let api = Arc::new(api);
        Self {
            generated: StatusServiceServer::from_arc(api.clone()),
            api,
        }
    }
}

impl NamedService for StatusServer {
    const NAME: &'static str = <StatusServiceServer<StatusApi> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for StatusServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != WATCH {
            return Box::pin(self.generated.call(req));
        }
        let watch = Watch(self.api.clone());
        Box::pin(async move {
            let codec = ProstCodec::<Wire, WatchPhoneStatusesRequest>::default();
            Ok(Grpc::new(codec).server_streaming(watch, req).await)
        })
    }
}

/// The watch method, answering with [`Wire`] items.
struct Watch(Arc<StatusApi>);

impl ServerStreamingService<WatchPhoneStatusesRequest> for Watch {
    type Response = Wire;
    type ResponseStream = WireStream;
    type Future = BoxFuture<Response<WireStream>, Status>;

    fn call(&mut self, req: Request<WatchPhoneStatusesRequest>) -> Self::Future {
        let api = self.0.clone();
        Box::pin(async move { api.watch(req).map(Response::new) })
    }
}
