//! The gRPC clients tests use, each sending a bearer token with every call.

use dialtone_proto::{
    config::v1::config_service_client::ConfigServiceClient,
    provisioning::v1::provisioning_service_client::ProvisioningServiceClient,
    status::v1::status_service_client::StatusServiceClient,
};
use tonic::{
    metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel,
};

/// Adds a bearer token to every call.
#[derive(Clone)]
pub struct BearerAuth(pub MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// A config client with a bearer token.
pub type ConfigClient = ConfigServiceClient<InterceptedService<Channel, BearerAuth>>;
/// A provisioning client with a bearer token.
pub type ProvisioningClient = ProvisioningServiceClient<InterceptedService<Channel, BearerAuth>>;
/// A status client with a bearer token.
pub type StatusClient = StatusServiceClient<InterceptedService<Channel, BearerAuth>>;
/// An edge client with a bearer token.
pub type EdgeClient = dialtone_proto::edge::v1::edge_service_client::EdgeServiceClient<
    InterceptedService<Channel, BearerAuth>,
>;
