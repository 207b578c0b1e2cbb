//! gRPC `dialtone.status.v1`: get, list, per-site summaries and a resumable watch, all
//! read from the hub's view.

use std::{pin::Pin, sync::Arc};

use dialtone_auth::{Permission, Tokens};
use dialtone_proto::status::v1::{
    self as pb, OperationalStatus, StatusChange, status_service_server::StatusService,
};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt as _, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use crate::{error::StatusError, hub::Hub, watch, wire::Wire};

type ChangeStream = Pin<Box<dyn Stream<Item = Result<StatusChange, Status>> + Send + 'static>>;
/// A watch's changes as they go on the wire ([`Wire`]).
pub(crate) type WireStream = Pin<Box<dyn Stream<Item = Result<Wire, Status>> + Send + 'static>>;

/// Default and largest page sizes of a listing.
const PAGE_DEFAULT: usize = 100;
const PAGE_MAX: usize = 1000;

/// The service.
pub struct StatusApi {
    hub: Arc<Hub>,
    tokens: Arc<Tokens>,
}

impl StatusApi {
    /// A service over the hub's view.
    pub fn new(hub: Arc<Hub>, tokens: Arc<Tokens>) -> Self {
        Self { hub, tokens }
    }

    fn authorize<T>(&self, req: &Request<T>) -> Result<(), StatusError> {
        self.tokens.authorize(req, Permission::View)?;
        if !self.hub.ready() {
            return Err(StatusError::Loading);
        }
        Ok(())
    }

    fn list(
        &self,
        r: &pb::ListPhoneStatusesRequest,
    ) -> Result<pb::ListPhoneStatusesResponse, StatusError> {
        let size = match r.page_size as usize {
            0 => PAGE_DEFAULT,
            n if n > PAGE_MAX => {
                return Err(StatusError::Invalid {
                    field: "page_size",
                    reason: format!("at most {PAGE_MAX}"),
                });
            }
            n => n,
        };
        let want = OperationalStatus::try_from(r.status).map_err(|_| StatusError::Invalid {
            field: "status",
            reason: format!("unknown status {}", r.status),
        })?;
        if r.phone_ids.len() > PAGE_MAX {
            return Err(StatusError::Invalid {
                field: "phone_ids",
                reason: format!("at most {PAGE_MAX}"),
            });
        }
        // Asked-for ids in id order, the same order (and page tokens) as the whole fleet's.
        let mut asked: Vec<&str> = r.phone_ids.iter().map(String::as_str).collect();
        asked.sort_unstable();
        asked.dedup();
        let st = self.hub.state.read();
        let fleet = &st.fleet;
        let candidates: Box<dyn Iterator<Item = &str>> = if asked.is_empty() {
            Box::new(fleet.ids_after(&r.page_token))
        } else {
            let token = r.page_token.as_str();
            Box::new(asked.into_iter().filter(move |id| *id > token))
        };
        let mut statuses = Vec::new();
        let mut next_page_token = String::new();
        for id in candidates {
            let Some((site, status, _)) = fleet.published(id) else {
                continue;
            };
            let Some((name, base)) = fleet.identity(id) else {
                continue;
            };
            if (!r.site_id.is_empty() && site != r.site_id)
                || (want != OperationalStatus::Unspecified && status != want)
                || (!r.base_settings_id.is_empty() && base != r.base_settings_id)
                || !name.starts_with(&r.name_prefix)
            {
                continue;
            }
            let Some(s) = fleet.get(id) else { continue };
            if !r.edge_node_id.is_empty() && !s.edges.iter().any(|e| e.node_id == r.edge_node_id) {
                continue;
            }
            if statuses.len() == size {
                next_page_token = statuses
                    .last()
                    .map(|s: &pb::PhoneStatus| s.phone_id.clone())
                    .unwrap_or_default();
                break;
            }
            statuses.push(s);
        }
        Ok(pb::ListPhoneStatusesResponse {
            statuses,
            next_page_token,
            revision: fleet.revision(),
        })
    }
}

#[tonic::async_trait]
impl StatusService for StatusApi {
    async fn get_phone_status(
        &self,
        req: Request<pb::GetPhoneStatusRequest>,
    ) -> Result<Response<pb::PhoneStatus>, Status> {
        self.authorize(&req)?;
        let id = &req.get_ref().phone_id;
        if id.is_empty() {
            return Err(StatusError::Invalid {
                field: "phone_id",
                reason: "required".into(),
            }
            .into());
        }
        let st = self.hub.state.read().fleet.get(id);
        Ok(Response::new(
            st.ok_or_else(|| StatusError::NotFound(id.clone()))?,
        ))
    }

    async fn list_phone_statuses(
        &self,
        req: Request<pb::ListPhoneStatusesRequest>,
    ) -> Result<Response<pb::ListPhoneStatusesResponse>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.list(req.get_ref())?))
    }

    async fn list_trunk_statuses(
        &self,
        req: Request<pb::ListTrunkStatusesRequest>,
    ) -> Result<Response<pb::ListTrunkStatusesResponse>, Status> {
        self.authorize(&req)?;
        let trunks = self.hub.state.read().fleet.trunk_statuses();
        Ok(Response::new(pb::ListTrunkStatusesResponse { trunks }))
    }

    async fn list_media_server_statuses(
        &self,
        req: Request<pb::ListMediaServerStatusesRequest>,
    ) -> Result<Response<pb::ListMediaServerStatusesResponse>, Status> {
        self.authorize(&req)?;
        let media_servers = self.hub.state.read().fleet.media_server_statuses();
        Ok(Response::new(pb::ListMediaServerStatusesResponse {
            media_servers,
        }))
    }

    async fn get_site_summaries(
        &self,
        req: Request<pb::GetSiteSummariesRequest>,
    ) -> Result<Response<pb::GetSiteSummariesResponse>, Status> {
        self.authorize(&req)?;
        let want = &req.get_ref().site_id;
        let st = self.hub.state.read();
        let sites = st
            .fleet
            .counts()
            .iter()
            .filter(|(site, _)| want.is_empty() || *site == want)
            .map(|(site, c)| pb::SiteSummary {
                site_id: site.clone(),
                total: c.iter().sum(),
                operational: c[0],
                degraded: c[1],
                offline: c[2],
                not_applicable: c[3],
            })
            .collect();
        Ok(Response::new(pb::GetSiteSummariesResponse {
            sites,
            revision: st.fleet.revision(),
        }))
    }

    type WatchPhoneStatusesStream = ChangeStream;

    /// Served by the node's `StatusServer` (`server.rs`) from [`StatusApi::watch`], which writes
    /// the hub's encoded changes as they are; this decodes them, for a `StatusServiceServer`
    /// built on the API directly.
    async fn watch_phone_statuses(
        &self,
        req: Request<pb::WatchPhoneStatusesRequest>,
    ) -> Result<Response<ChangeStream>, Status> {
        let wires = self.watch(req)?;
        let changes = wires.map(|w| {
            w?.into_message()
                .map_err(|e| Status::internal(format!("a status change did not decode: {e}")))
        });
        Ok(Response::new(Box::pin(changes)))
    }
}

impl StatusApi {
    /// A watch: its start, then live changes ([`watch::serve`]).
    pub(crate) fn watch(
        &self,
        req: Request<pb::WatchPhoneStatusesRequest>,
    ) -> Result<WireStream, Status> {
        // A watch outlives its first check: it ends when its token stops granting View
        // (changes subscribed to before the check, so none falls between).
        let token_changes = self.tokens.changes();
        self.authorize(&req)?;
        let token = dialtone_auth::bearer(&req).unwrap_or_default();
        let pb::WatchPhoneStatusesRequest {
            after_revision,
            site_id,
        } = req.into_inner();
        let (tx, out) = mpsc::channel(256);
        tokio::spawn(watch::serve(
            self.hub.clone(),
            self.tokens.clone(),
            (token, token_changes),
            after_revision,
            site_id,
            tx,
        ));
        Ok(Box::pin(ReceiverStream::new(out)))
    }
}
