//! `grpc.health.v1` on every node, answered from the same conditions as `/readyz`
//! (`admin::readiness`): the node as a whole (service ""), or one of the services its
//! roles serve. It needs no token (the token gate lets its path through): a load
//! balancer's health check carries none, and the answer tells nothing but ready or not.

use std::{pin::Pin, time::Duration};

use dialtone_proto::health::v1::{
    HealthCheckRequest, HealthCheckResponse,
    health_check_response::ServingStatus,
    health_server::{Health as HealthRpc, HealthServer},
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::admin::{Health, readiness};

/// The gRPC path prefix the token gate lets through.
pub const PATH: &str = "/grpc.health.v1.Health/";

/// How often Watch looks again.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The gRPC services a node of `roles` serves, by their full names.
pub fn services(roles: &[String]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for r in roles {
        out.push(match r.as_str() {
            "config" => "dialtone.config.v1.ConfigService",
            "edge" => "dialtone.edge.v1.EdgeService",
            "provisioning" => "dialtone.provisioning.v1.ProvisioningService",
            "status" => "dialtone.status.v1.StatusService",
            _ => continue,
        });
    }
    out
}

/// The health service over a node's [`Health`].
pub struct HealthService {
    health: Health,
}

impl HealthService {
    pub fn server(health: Health) -> HealthServer<Self> {
        HealthServer::new(HealthService { health })
    }

    async fn status(&self, service: &str) -> Option<ServingStatus> {
        if !service.is_empty() && !services(&self.health.roles).contains(&service) {
            return None;
        }
        Some(match readiness(&self.health).await {
            Ok(()) => ServingStatus::Serving,
            Err(_) => ServingStatus::NotServing,
        })
    }
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

type Changes = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl HealthRpc for HealthService {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &req.get_ref().service;
        match self.status(service).await {
            Some(s) => Ok(Response::new(answer(s))),
            None => Err(Status::not_found(format!("unknown service '{service}'"))),
        }
    }

    type WatchStream = Changes;

    async fn watch(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = req.into_inner().service;
        let me = HealthService {
            health: self.health.clone(),
        };
        // A bounded queue: a watcher that does not read holds at most a few answers, and
        // the task ends when it goes away.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let now = me
                    .status(&service)
                    .await
                    .unwrap_or(ServingStatus::ServiceUnknown);
                if last != Some(now) {
                    if tx.send(Ok(answer(now))).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_EVERY) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
