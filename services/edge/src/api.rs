//! gRPC `dialtone.edge.v1.EdgeService`: a phone's bindings on this edge, log-out, and
//! NOTIFY check-sync with the phone's answers.

use std::sync::Arc;

use dialtone_auth::{Permission, Tokens};
use dialtone_proto::edge::v1::{self as pb, edge_service_server::EdgeService};
use dialtone_sip::StartLine;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::{
    delivery::calls::{ActiveCall, Party},
    dispatch::Dispatcher,
    error::EdgeError,
    replies::{OutRequest, new_branch},
};

/// The service.
pub struct EdgeApi {
    handler: Arc<Dispatcher>,
    tokens: Arc<Tokens>,
}

impl EdgeApi {
    pub(crate) fn new(handler: Arc<Dispatcher>, tokens: Arc<Tokens>) -> Self {
        EdgeApi { handler, tokens }
    }

    pub fn into_server(self) -> pb::edge_service_server::EdgeServiceServer<Self> {
        pb::edge_service_server::EdgeServiceServer::new(self)
    }

    fn auth<T>(&self, req: &Request<T>, needed: Permission) -> Result<(), EdgeError> {
        self.tokens.authorize(req, needed)?;
        Ok(())
    }

    fn phone_id(&self, id: &str) -> Result<(), EdgeError> {
        if id.is_empty() {
            return Err(EdgeError::InvalidArgument {
                field: "phone_id",
                reason: "is required",
            });
        }
        if !self.handler.cache.read().has_phone(id) && !self.handler.directory.has(id) {
            return Err(EdgeError::PhoneNotFound(id.to_owned()));
        }
        Ok(())
    }

    async fn list(&self, id: &str) -> Result<Vec<pb::Binding>, EdgeError> {
        Ok(self.handler.directory.bindings(id))
    }
}

/// Sends `check-sync` (with `reboot`) to every contact of a phone on this edge and collects
/// what each answered; used by the API and by the actions the store hands the edge.
pub(crate) async fn check_sync(
    h: &Dispatcher,
    id: &str,
    reboot: bool,
) -> Result<pb::CheckSyncResponse, EdgeError> {
    let contacts = h.directory.contacts(id);
    if contacts.is_empty() {
        return Err(EdgeError::NotRegistered(id.to_owned()));
    }
    let realm = &h.settings.realm;
    // A phone that challenges the NOTIFY (asking for qop=auth: see `delivery/client.rs`)
    // is answered with its profile's Digest Authentication credentials, once.
    let (auth, dscp) = {
        let cache = h.cache.read();
        (cache.phone_auth(id), cache.phone_sip_dscp(id))
    };
    let auth = auth.as_deref();
    let sends = contacts.into_iter().map(|c| async move {
        let Some((t, replier)) = h.flows.replier(c.source) else {
            return pb::NotifyResult {
                contact: c.uri,
                status_code: 430,
                reason: "Flow Failed".into(),
            };
        };
        let replier = replier.marked(dscp);
        let Some(local) = h.local.of(t) else {
            return pb::NotifyResult {
                contact: c.uri,
                status_code: 503,
                reason: "No listener for the flow's transport".into(),
            };
        };
        let via = local.via();
        let from = format!("<sip:dialtone@{realm}>;tag={:08x}", rand::random::<u32>());
        let to = format!("<sip:{}@{realm}>", c.sip_user);
        let call_id = format!("{:016x}@dialtone", rand::random::<u64>());
        let contact = local.contact(Some("dialtone"));
        let mut answer: Option<(&str, String)> = None;
        let mut cseq = 1;
        let (code, reason) = loop {
            let branch = new_branch();
            let mut extra = vec![
                ("Event", format!("check-sync;reboot={reboot}")),
                ("Subscription-State", "terminated".into()),
                ("Contact", contact.clone()),
            ];
            extra.extend(answer.take());
            let req = OutRequest {
                method: "NOTIFY",
                uri: &c.uri,
                via: &via,
                branch: &branch,
                from: &from,
                to: &to,
                call_id: &call_id,
                cseq,
                extra,
                body: b"",
            };
            let timeout = h.settings.notify_timeout;
            let got = h
                .uac
                .exchange(req.to_bytes(), branch, t, replier.clone(), timeout)
                .await;
            let Some(resp) = got else {
                break (408, "Request Timeout".to_owned());
            };
            let StartLine::Response { code, reason, .. } = &resp.start else {
                break (408, "Request Timeout".to_owned());
            };
            answer = auth
                .filter(|_| matches!(code, 401 | 407) && cseq == 1)
                .and_then(|a| a.answer(&resp, "NOTIFY", &c.uri));
            if answer.is_none() {
                break (*code, reason.clone());
            }
            debug!(
                phone = id,
                code, "answering a phone's challenge to check-sync"
            );
            cseq += 1;
        };
        pb::NotifyResult {
            contact: c.uri,
            status_code: u32::from(code),
            reason,
        }
    });
    Ok(pb::CheckSyncResponse {
        results: futures::future::join_all(sends).await,
    })
}

/// Drops every binding of a phone on this edge; returns how many contacts went. Used by
/// the API and by the actions the store hands the edge.
pub(crate) async fn log_out(h: &Dispatcher, id: &str) -> Result<u32, EdgeError> {
    Ok(h.directory.forget(id, None, None).unwrap_or(0))
}

#[tonic::async_trait]
impl EdgeService for EdgeApi {
    async fn list_bindings(
        &self,
        req: Request<pb::ListBindingsRequest>,
    ) -> Result<Response<pb::ListBindingsResponse>, Status> {
        self.auth(&req, Permission::View)?;
        let id = &req.get_ref().phone_id;
        self.phone_id(id)?;
        Ok(Response::new(pb::ListBindingsResponse {
            bindings: self.list(id).await?,
        }))
    }

    async fn drop_bindings(
        &self,
        req: Request<pb::DropBindingsRequest>,
    ) -> Result<Response<pb::DropBindingsResponse>, Status> {
        self.auth(&req, Permission::Edit)?;
        let id = &req.get_ref().phone_id;
        self.phone_id(id)?;
        Ok(Response::new(pb::DropBindingsResponse {
            contacts_dropped: log_out(&self.handler, id).await?,
        }))
    }

    async fn check_sync(
        &self,
        req: Request<pb::CheckSyncRequest>,
    ) -> Result<Response<pb::CheckSyncResponse>, Status> {
        self.auth(&req, Permission::Edit)?;
        let r = req.get_ref();
        self.phone_id(&r.phone_id)?;
        Ok(Response::new(
            check_sync(&self.handler, &r.phone_id, r.reboot).await?,
        ))
    }

    async fn list_calls(
        &self,
        req: Request<pb::ListCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        self.auth(&req, Permission::View)?;
        let r = req.get_ref();
        let phone = (!r.phone_id.is_empty()).then_some(r.phone_id.as_str());
        if let Some(id) = phone {
            self.phone_id(id)?;
        }
        let size = match r.page_size {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let (calls, total) = self.handler.delivery.calls.list(phone, size);
        let node = &self.handler.settings.node_id;
        Ok(Response::new(pb::ListCallsResponse {
            calls: calls.into_iter().map(|c| call_view(c, node)).collect(),
            total: u32::try_from(total).unwrap_or(u32::MAX),
        }))
    }
}

/// A recorded call as the API shows it.
fn call_view(c: ActiveCall, node: &str) -> pb::Call {
    pb::Call {
        call_id: c.call_id.into(),
        answered_at_ms: i64::try_from(c.answered_at_ms).unwrap_or(i64::MAX),
        caller: Some(party_view(c.caller)),
        callee: Some(party_view(c.callee)),
        site_id: c.site.as_deref().unwrap_or_default().to_owned(),
        dialled: c.dialled.into(),
        node_id: node.to_owned(),
    }
}

fn party_view(p: Party) -> pb::CallParty {
    use pb::call_party::Party as P;
    let party = match p {
        Party::Phone(id) => Some(P::PhoneId(id.to_string())),
        Party::Trunk(id) => Some(P::TrunkId(id.to_string())),
        Party::Peer(id) => Some(P::PeerId(id.to_string())),
        Party::Edge => Some(P::OtherEdge(true)),
        Party::Unknown => None,
    };
    pb::CallParty { party }
}
