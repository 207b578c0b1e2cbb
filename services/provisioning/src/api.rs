//! gRPC `dialtone.provisioning.v1`: a phone's desired and applied configuration.

use std::sync::Arc;

use dialtone_auth::{Permission, Tokens};
use dialtone_config::keys;
use dialtone_proto::provisioning::v1::{
    self as pb, ProvisionState, provisioning_service_server::ProvisioningService,
};
use tonic::{Request, Response, Status};

use crate::{
    catalog::{Catalog, load},
    error::ProvisioningError,
};

/// The service.
pub struct ProvisioningApi {
    catalog: Arc<Catalog>,
    reloader: Arc<crate::reload::Reloader>,
    store: dialtone_store::Store,
    tokens: Arc<Tokens>,
}

impl ProvisioningApi {
    /// A service over the role's catalog.
    pub fn new(
        catalog: Arc<Catalog>,
        reloader: Arc<crate::reload::Reloader>,
        store: dialtone_store::Store,
        tokens: Arc<Tokens>,
    ) -> Self {
        Self {
            catalog,
            reloader,
            store,
            tokens,
        }
    }

    async fn get(&self, phone_id: &str) -> Result<pb::Provisioning, ProvisioningError> {
        if phone_id.is_empty() {
            return Err(ProvisioningError::Invalid {
                field: "phone_id",
                reason: "required".into(),
            });
        }
        let entry = self
            .catalog
            .load_phone(phone_id)
            .await?
            .ok_or_else(|| ProvisioningError::NotFound(phone_id.to_owned()))?;
        let state: Option<ProvisionState> = load(&self.store, &keys::provision(phone_id)).await?;
        let edge = |e: &Option<crate::document::EdgeAddress>| {
            e.as_ref()
                .map(|e| format!("{} {}", e.node_id, e.host_port()))
                .unwrap_or_default()
        };
        Ok(pb::Provisioning {
            phone_id: entry.phone_id.clone(),
            hardware_id: entry.hardware_id.clone(),
            desired_version: entry.rendered.version.clone(),
            drift: state
                .as_ref()
                .is_some_and(|s| s.applied_version != entry.rendered.version),
            state,
            files: entry
                .rendered
                .files
                .iter()
                .map(|f| f.name.clone())
                .collect(),
            primary_edge: edge(&entry.primary),
            secondary_edge: edge(&entry.secondary),
        })
    }
}

#[tonic::async_trait]
impl ProvisioningService for ProvisioningApi {
    async fn get_provisioning(
        &self,
        req: Request<pb::GetProvisioningRequest>,
    ) -> Result<Response<pb::Provisioning>, Status> {
        self.tokens
            .authorize(&req, Permission::View)
            .map_err(ProvisioningError::from)?;
        Ok(Response::new(self.get(&req.get_ref().phone_id).await?))
    }

    async fn get_reload_progress(
        &self,
        req: Request<pb::GetReloadProgressRequest>,
    ) -> Result<Response<pb::ReloadProgress>, Status> {
        self.tokens
            .authorize(&req, Permission::View)
            .map_err(ProvisioningError::from)?;
        let r = &self.reloader;
        Ok(Response::new(r.progress.snapshot(r.settings.rate_per_s)))
    }
}
