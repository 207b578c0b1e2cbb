//! The gRPC service: authorises each call, then delegates to [`ConfigCore`].

use std::{pin::Pin, sync::Arc};

use dialtone_auth::{Permission, Tokens};
use dialtone_domain::{actions::Act, keys};
use dialtone_proto::config::v1::{self as pb, config_service_server::ConfigService};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::{
    ConfigCore, csv_format, error::ConfigError, list, phones::redact, repo::decode, settings,
};

/// Largest CSV accepted by ImportPhones.
pub const MAX_IMPORT_BYTES: usize = 64 << 20;

type Stream2<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The `dialtone.config.v1.ConfigService` implementation.
#[derive(Clone)]
pub struct ConfigApi {
    core: ConfigCore,
    tokens: Arc<Tokens>,
}

impl ConfigApi {
    /// A service over `core`, accepting `tokens`.
    pub fn new(core: ConfigCore, tokens: Arc<Tokens>) -> Self {
        ConfigApi { core, tokens }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::config_service_server::ConfigServiceServer<Self> {
        pb::config_service_server::ConfigServiceServer::new(self)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(64 << 20)
    }

    fn auth<T>(&self, req: &Request<T>, needed: Permission) -> Result<String, Status> {
        self.tokens
            .authorize(req, needed)
            .map_err(|e| Status::from(ConfigError::from(e)))
    }
}

impl ConfigApi {
    async fn act(
        &self,
        req: Request<pb::PhoneActionRequest>,
        act: Act,
    ) -> Result<Response<pb::PhoneActionResponse>, Status> {
        let who = self.auth(&req, Permission::Edit)?;
        let r = req.into_inner();
        if r.id.is_empty() {
            return Err(ConfigError::invalid("id", "is required").into());
        }
        let timeout = crate::actions::timeout_of(r.timeout_ms)?;
        ok(self
            .core
            .act_on_phone(&r.id, act, timeout, &format!("config/{who}"))
            .await)
    }
}

fn field<T>(v: Option<T>, name: &str) -> Result<T, Status> {
    v.ok_or_else(|| ConfigError::invalid(name, "is required").into())
}

fn ok<T>(r: Result<T, ConfigError>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl ConfigService for ConfigApi {
    // A peer reaches every phone without digest: creating, changing or deleting one takes
    // the `telephony:plugin:all` permission, not just add or edit.
    async fn create_peer(
        &self,
        req: Request<pb::CreatePeerRequest>,
    ) -> Result<Response<pb::Peer>, Status> {
        self.auth(&req, Permission::All)?;
        let p = field(req.into_inner().peer, "peer")?;
        ok(self.core.create_peer(p).await)
    }
    async fn get_peer(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Peer>, Status> {
        self.auth(&req, Permission::View)?;
        ok(self.core.get_peer(&req.get_ref().id).await)
    }
    async fn update_peer(
        &self,
        req: Request<pb::UpdatePeerRequest>,
    ) -> Result<Response<pb::Peer>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.into_inner();
        let p = field(r.peer, "peer")?;
        ok(self
            .core
            .update_masked(p, &r.update_mask, |p| self.core.update_peer(p))
            .await)
    }
    async fn delete_peer(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.get_ref();
        ok(self
            .core
            .delete_peer(&r.id, r.version)
            .await
            .map(|revision| pb::DeleteResponse { revision }))
    }
    async fn list_peers(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListPeersResponse>, Status> {
        self.auth(&req, Permission::View)?;
        let r = req.get_ref();
        ok(self.core.list_peers(r.page_size, &r.page_token).await.map(
            |(peers, next_page_token)| pb::ListPeersResponse {
                peers,
                next_page_token,
            },
        ))
    }
    async fn create_media_server(
        &self,
        req: Request<pb::CreateMediaServerRequest>,
    ) -> Result<Response<pb::MediaServer>, Status> {
        self.auth(&req, Permission::All)?;
        let m = field(req.into_inner().media_server, "media_server")?;
        ok(self.core.create_media_server(m).await)
    }
    async fn get_media_server(
        &self,
        req: Request<pb::GetRequest>,
    ) -> Result<Response<pb::MediaServer>, Status> {
        self.auth(&req, Permission::View)?;
        ok(self.core.get_media_server(&req.get_ref().id).await)
    }
    async fn update_media_server(
        &self,
        req: Request<pb::UpdateMediaServerRequest>,
    ) -> Result<Response<pb::MediaServer>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.into_inner();
        let m = field(r.media_server, "media_server")?;
        ok(self
            .core
            .update_masked(m, &r.update_mask, |m| self.core.update_media_server(m))
            .await)
    }
    async fn delete_media_server(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.get_ref();
        ok(self
            .core
            .delete_media_server(&r.id, r.version)
            .await
            .map(|revision| pb::DeleteResponse { revision }))
    }
    async fn list_media_servers(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListMediaServersResponse>, Status> {
        self.auth(&req, Permission::View)?;
        let r = req.get_ref();
        ok(self
            .core
            .list_media_servers(r.page_size, &r.page_token)
            .await
            .map(
                |(media_servers, next_page_token)| pb::ListMediaServersResponse {
                    media_servers,
                    next_page_token,
                },
            ))
    }
    // A trunk's peer reaches phones by DID: creating, changing or deleting one takes the
    // `telephony:plugin:all` permission, as a peer does.
    async fn create_trunk(
        &self,
        req: Request<pb::CreateTrunkRequest>,
    ) -> Result<Response<pb::Trunk>, Status> {
        self.auth(&req, Permission::All)?;
        let t = field(req.into_inner().trunk, "trunk")?;
        ok(self.core.create_trunk(t).await)
    }
    async fn get_trunk(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Trunk>, Status> {
        self.auth(&req, Permission::View)?;
        ok(self.core.get_trunk(&req.get_ref().id).await)
    }
    async fn update_trunk(
        &self,
        req: Request<pb::UpdateTrunkRequest>,
    ) -> Result<Response<pb::Trunk>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.into_inner();
        let t = field(r.trunk, "trunk")?;
        ok(self
            .core
            .update_masked(t, &r.update_mask, |t| self.core.update_trunk(t))
            .await)
    }
    async fn delete_trunk(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.get_ref();
        ok(self
            .core
            .delete_trunk(&r.id, r.version)
            .await
            .map(|revision| pb::DeleteResponse { revision }))
    }
    async fn list_trunks(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListTrunksResponse>, Status> {
        self.auth(&req, Permission::View)?;
        let r = req.get_ref();
        ok(self.core.list_trunks(r.page_size, &r.page_token).await.map(
            |(trunks, next_page_token)| pb::ListTrunksResponse {
                trunks,
                next_page_token,
            },
        ))
    }
    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        self.auth(&req, Permission::All)?;
        let u = field(req.into_inner().user, "user")?;
        ok(self.core.create_user(u).await)
    }
    async fn get_user(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::User>, Status> {
        self.auth(&req, Permission::View)?;
        ok(self.core.get_user(&req.get_ref().id).await)
    }
    async fn update_user(
        &self,
        req: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.into_inner();
        let u = field(r.user, "user")?;
        ok(self
            .core
            .update_masked(u, &r.update_mask, |u| self.core.update_user(u))
            .await)
    }
    async fn delete_user(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.get_ref();
        ok(self
            .core
            .delete_user(&r.id, r.version)
            .await
            .map(|revision| pb::DeleteResponse { revision }))
    }
    async fn list_users(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        self.auth(&req, Permission::View)?;
        let r = req.get_ref();
        ok(self.core.list_users(r.page_size, &r.page_token).await.map(
            |(users, next_page_token)| pb::ListUsersResponse {
                users,
                next_page_token,
            },
        ))
    }
    async fn create_edge_group(
        &self,
        req: Request<pb::CreateEdgeGroupRequest>,
    ) -> Result<Response<pb::EdgeGroup>, Status> {
        self.auth(&req, Permission::All)?;
        let g = field(req.into_inner().edge_group, "edge_group")?;
        ok(self.core.create_edge_group(g).await)
    }
    async fn get_edge_group(
        &self,
        req: Request<pb::GetRequest>,
    ) -> Result<Response<pb::EdgeGroup>, Status> {
        self.auth(&req, Permission::View)?;
        ok(self.core.get_edge_group(&req.get_ref().id).await)
    }
    async fn update_edge_group(
        &self,
        req: Request<pb::UpdateEdgeGroupRequest>,
    ) -> Result<Response<pb::EdgeGroup>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.into_inner();
        let g = field(r.edge_group, "edge_group")?;
        ok(self
            .core
            .update_masked(g, &r.update_mask, |g| self.core.update_edge_group(g))
            .await)
    }
    async fn delete_edge_group(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.get_ref();
        ok(self
            .core
            .delete_edge_group(&r.id, r.version)
            .await
            .map(|revision| pb::DeleteResponse { revision }))
    }
    async fn list_edge_groups(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListEdgeGroupsResponse>, Status> {
        self.auth(&req, Permission::View)?;
        let r = req.get_ref();
        ok(self
            .core
            .list_edge_groups(r.page_size, &r.page_token)
            .await
            .map(
                |(edge_groups, next_page_token)| pb::ListEdgeGroupsResponse {
                    edge_groups,
                    next_page_token,
                },
            ))
    }

    async fn create_site(
        &self,
        req: Request<pb::CreateSiteRequest>,
    ) -> Result<Response<pb::Site>, Status> {
        self.auth(&req, Permission::All)?;
        let s = field(req.into_inner().site, "site")?;
        ok(self.core.create_site(s).await)
    }
    async fn get_site(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Site>, Status> {
        self.auth(&req, Permission::View)?;
        ok(self.core.get_site(&req.get_ref().id).await)
    }
    async fn update_site(
        &self,
        req: Request<pb::UpdateSiteRequest>,
    ) -> Result<Response<pb::Site>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.into_inner();
        let s = field(r.site, "site")?;
        ok(self
            .core
            .update_masked(s, &r.update_mask, |s| self.core.update_site(s))
            .await)
    }
    async fn delete_site(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.get_ref();
        ok(self
            .core
            .delete_site(&r.id, r.version)
            .await
            .map(|revision| pb::DeleteResponse { revision }))
    }
    async fn list_sites(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListSitesResponse>, Status> {
        self.auth(&req, Permission::View)?;
        let r = req.get_ref();
        ok(self.core.list_sites(r.page_size, &r.page_token).await.map(
            |(sites, next_page_token)| pb::ListSitesResponse {
                sites,
                next_page_token,
            },
        ))
    }

    async fn get_templates(
        &self,
        req: Request<pb::GetTemplatesRequest>,
    ) -> Result<Response<pb::GetTemplatesResponse>, Status> {
        self.auth(&req, Permission::View)?;
        let templates = settings::META_BASES
            .iter()
            .map(|m| pb::Template {
                meta_base: *m as i32,
                defaults: Some(settings::template(*m)),
            })
            .collect();
        Ok(Response::new(pb::GetTemplatesResponse { templates }))
    }
    async fn create_base_settings(
        &self,
        req: Request<pb::CreateBaseSettingsRequest>,
    ) -> Result<Response<pb::BaseSettings>, Status> {
        self.auth(&req, Permission::All)?;
        let b = field(req.into_inner().base_settings, "base_settings")?;
        ok(self.core.create_base_settings(b).await)
    }
    async fn get_base_settings(
        &self,
        req: Request<pb::GetRequest>,
    ) -> Result<Response<pb::BaseSettings>, Status> {
        self.auth(&req, Permission::View)?;
        ok(self.core.get_base_settings(&req.get_ref().id).await)
    }
    async fn update_base_settings(
        &self,
        req: Request<pb::UpdateBaseSettingsRequest>,
    ) -> Result<Response<pb::BaseSettings>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.into_inner();
        let b = field(r.base_settings, "base_settings")?;
        ok(self
            .core
            .update_masked(b, &r.update_mask, |b| self.core.update_base_settings(b))
            .await)
    }
    async fn delete_base_settings(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.auth(&req, Permission::All)?;
        let r = req.get_ref();
        ok(self
            .core
            .delete_base_settings(&r.id, r.version)
            .await
            .map(|revision| pb::DeleteResponse { revision }))
    }
    async fn list_base_settings(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListBaseSettingsResponse>, Status> {
        self.auth(&req, Permission::View)?;
        let r = req.get_ref();
        ok(self
            .core
            .list_base_settings(r.page_size, &r.page_token)
            .await
            .map(
                |(base_settings, next_page_token)| pb::ListBaseSettingsResponse {
                    base_settings,
                    next_page_token,
                },
            ))
    }
    async fn migrate_base_settings(
        &self,
        req: Request<pb::MigrateBaseSettingsRequest>,
    ) -> Result<Response<pb::MigrateBaseSettingsResponse>, Status> {
        let who = self.auth(&req, Permission::Edit)?;
        let r = req.into_inner();
        let (to, dry_run) = (r.to_base_settings_id.clone(), r.dry_run);
        let res = self.core.migrate_base_settings(r).await;
        if let Ok(m) = &res {
            info!(token_name = %who, to = %to, dry_run, phones = m.phones.len(), "base settings migration");
        }
        ok(res)
    }

    async fn create_phone(
        &self,
        req: Request<pb::CreatePhoneRequest>,
    ) -> Result<Response<pb::CreatePhoneResponse>, Status> {
        self.auth(&req, Permission::Add)?;
        let p = field(req.into_inner().phone, "phone")?;
        ok(self
            .core
            .create_phone(p)
            .await
            .map(|w| pb::CreatePhoneResponse {
                phone: Some(w.phone),
                credentials: w.lines,
                device_credentials: w.device,
            }))
    }
    async fn get_phone(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Phone>, Status> {
        self.auth(&req, Permission::View)?;
        ok(self.core.get_phone(&req.get_ref().id).await)
    }
    async fn update_phone(
        &self,
        req: Request<pb::UpdatePhoneRequest>,
    ) -> Result<Response<pb::UpdatePhoneResponse>, Status> {
        self.auth(&req, Permission::Edit)?;
        let r = req.into_inner();
        let p = field(r.phone, "phone")?;
        ok(self
            .core
            .update_masked(p, &r.update_mask, |p| self.core.update_phone(p))
            .await
            .map(|w| pb::UpdatePhoneResponse {
                phone: Some(w.phone),
                credentials: w.lines,
                device_credentials: w.device,
            }))
    }
    async fn delete_phone(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.auth(&req, Permission::Delete)?;
        let r = req.get_ref();
        ok(self
            .core
            .delete_phone(&r.id, r.version)
            .await
            .map(|revision| pb::DeleteResponse { revision }))
    }
    async fn list_phones(
        &self,
        req: Request<pb::ListPhonesRequest>,
    ) -> Result<Response<pb::ListPhonesResponse>, Status> {
        self.auth(&req, Permission::View)?;
        let r = req.into_inner();
        ok(self
            .core
            .list_phones(r.filter.unwrap_or_default(), r.page_size, &r.page_token)
            .await
            .map(|(phones, next_page_token)| pb::ListPhonesResponse {
                phones: phones.into_iter().map(redact).collect(),
                next_page_token,
            }))
    }
    async fn reset_line_password(
        &self,
        req: Request<pb::ResetLinePasswordRequest>,
    ) -> Result<Response<pb::LineCredentials>, Status> {
        let who = self.auth(&req, Permission::Edit)?;
        let r = req.into_inner();
        let res = self
            .core
            .reset_line_password(&r.phone_id, r.line_index, r.version)
            .await;
        if res.is_ok() {
            info!(token_name = %who, phone_id = %r.phone_id, line = r.line_index, "line password reset");
        }
        ok(res)
    }

    async fn reset_device_password(
        &self,
        req: Request<pb::ResetDevicePasswordRequest>,
    ) -> Result<Response<pb::DeviceCredentials>, Status> {
        let who = self.auth(&req, Permission::Edit)?;
        let r = req.into_inner();
        let res = self
            .core
            .reset_device_password(&r.phone_id, r.version)
            .await;
        if res.is_ok() {
            info!(token_name = %who, phone_id = %r.phone_id, "device password reset");
        }
        ok(res)
    }

    type ImportPhonesStream = Stream2<pb::ImportPhonesResponse>;
    async fn import_phones(
        &self,
        req: Request<Streaming<pb::ImportPhonesRequest>>,
    ) -> Result<Response<Self::ImportPhonesStream>, Status> {
        let who = self.auth(&req, Permission::Add)?;
        let mut incoming = req.into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = incoming.message().await? {
            bytes.extend_from_slice(&chunk.chunk);
            if bytes.len() > MAX_IMPORT_BYTES {
                return Err(ConfigError::invalid(
                    "chunk",
                    format!("the file exceeds {MAX_IMPORT_BYTES} bytes"),
                )
                .into());
            }
        }
        // A bad header fails the call before anything is written.
        csv_format::parse(
            &bytes[..bytes.len().min(
                bytes
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(bytes.len(), |i| i + 1),
            )],
        )
        .map_err(Status::from)?;
        let (tx, rx) = mpsc::channel(1024);
        let (out_tx, out_rx) = mpsc::channel::<Result<pb::ImportPhonesResponse, Status>>(1024);
        let core = self.core.clone();
        tokio::spawn(async move {
            let forward = async {
                let mut rx = rx;
                while let Some(r) = rx.recv().await {
                    if out_tx.send(Ok(r)).await.is_err() {
                        break;
                    }
                }
            };
            let (res, ()) = tokio::join!(core.import_phones(bytes, tx), forward);
            match res {
                Ok(()) => info!(token_name = %who, "phone import finished"),
                Err(e) => {
                    warn!(token_name = %who, error = %e, "phone import failed");
                    let _ = out_tx.send(Err(e.into())).await;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    type ActOnPhonesStream = Stream2<pb::ActOnPhonesProgress>;
    async fn act_on_phones(
        &self,
        req: Request<pb::ActOnPhonesRequest>,
    ) -> Result<Response<Self::ActOnPhonesStream>, Status> {
        let who = self.auth(&req, Permission::Edit)?;
        let wave = crate::bulk::Wave::of(req.into_inner()).map_err(Status::from)?;
        let phones = match &wave.selector {
            crate::bulk::Selector::Site(id) => format!("site {id}"),
            crate::bulk::Selector::Profile(id) => format!("profile {id}"),
            crate::bulk::Selector::Phones(ids) => format!("{} listed", ids.len()),
        };
        info!(who = %who, act = ?wave.act, phones = %phones, rate = wave.rate_per_s, "bulk phone action");
        let (tx, rx) = mpsc::channel(4);
        let core = self.core.clone();
        tokio::spawn(async move {
            core.act_on_phones(wave, &format!("config/{who}"), tx).await;
        });
        let progress =
            futures::StreamExt::map(ReceiverStream::new(rx), |r| r.map_err(Status::from));
        Ok(Response::new(Box::pin(progress)))
    }

    type CreateBackupStream = Stream2<pb::BackupChunk>;
    async fn create_backup(
        &self,
        req: Request<pb::CreateBackupRequest>,
    ) -> Result<Response<Self::CreateBackupStream>, Status> {
        let who = self.auth(&req, Permission::All)?;
        let _slot = crate::backup::begin()?;
        let chunks = self.core.create_backup().await.map_err(Status::from)?;
        let entries: usize = chunks.iter().map(|c| c.entries.len()).sum();
        info!(token_name = %who, entries, revision = chunks[0].revision, "backup created");
        Ok(Response::new(Box::pin(tokio_stream::iter(
            chunks.into_iter().map(Ok),
        ))))
    }

    async fn restore_backup(
        &self,
        req: Request<Streaming<pb::RestoreBackupRequest>>,
    ) -> Result<Response<pb::RestoreBackupResponse>, Status> {
        use prost::Message as _;
        let who = self.auth(&req, Permission::All)?;
        // Before the upload is read: a second restore waits holding nothing.
        let _slot = crate::backup::begin()?;
        let mut incoming = req.into_inner();
        let (mut chunks, mut dry_run, mut bytes) = (Vec::new(), None, 0);
        while let Some(m) = incoming.message().await? {
            dry_run.get_or_insert(m.dry_run);
            if let Some(c) = m.chunk {
                bytes += c.encoded_len();
                if bytes > crate::backup::MAX_RESTORE_BYTES {
                    return Err(ConfigError::invalid(
                        "chunk",
                        format!(
                            "the backup exceeds {} bytes",
                            crate::backup::MAX_RESTORE_BYTES
                        ),
                    )
                    .into());
                }
                chunks.push(c);
            }
        }
        let dry_run = dry_run.unwrap_or(false);
        let r = self.core.restore_backup(chunks, dry_run).await;
        match &r {
            Ok(r) => {
                info!(token_name = %who, dry_run, written = r.written, unchanged = r.unchanged, revision = r.backup_revision, "backup restored")
            }
            Err(e) => warn!(token_name = %who, dry_run, error = %e, "backup not restored"),
        }
        ok(r)
    }

    type ExportPhonesStream = Stream2<pb::ExportPhonesResponse>;
    async fn export_phones(
        &self,
        req: Request<pb::ListPhonesRequest>,
    ) -> Result<Response<Self::ExportPhonesStream>, Status> {
        self.auth(&req, Permission::View)?;
        let filter =
            list::normalise(req.into_inner().filter.unwrap_or_default()).map_err(Status::from)?;
        let (tx, mut chunks) = mpsc::channel(16);
        let (out, rx) = mpsc::channel(16);
        let core = self.core.clone();
        tokio::spawn(async move { core.export_csv(filter, tx).await });
        tokio::spawn(async move {
            while let Some(c) = chunks.recv().await {
                let item = c
                    .map(|chunk| pb::ExportPhonesResponse { chunk })
                    .map_err(Status::from);
                if out.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn rebalance_site(
        &self,
        req: Request<pb::RebalanceSiteRequest>,
    ) -> Result<Response<pb::RebalanceSiteResponse>, Status> {
        let who = self.auth(&req, Permission::Edit)?;
        let r = req.into_inner();
        if r.site_id.is_empty() {
            return Err(ConfigError::invalid("site_id", "is required").into());
        }
        ok(self
            .core
            .rebalance_site(&r.site_id, !r.dry_run, &format!("config/{who}"))
            .await)
    }

    async fn restart_phone(
        &self,
        req: Request<pb::PhoneActionRequest>,
    ) -> Result<Response<pb::PhoneActionResponse>, Status> {
        self.act(req, Act::Restart).await
    }

    async fn resync_phone(
        &self,
        req: Request<pb::PhoneActionRequest>,
    ) -> Result<Response<pb::PhoneActionResponse>, Status> {
        self.act(req, Act::Resync).await
    }

    async fn log_out_phone(
        &self,
        req: Request<pb::PhoneActionRequest>,
    ) -> Result<Response<pb::PhoneActionResponse>, Status> {
        self.act(req, Act::LogOut).await
    }

    async fn list_members(
        &self,
        req: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.auth(&req, Permission::View)?;
        let role = &req.get_ref().role;
        let prefix = if role.is_empty() {
            keys::MEMBERS.to_owned()
        } else {
            keys::role_members(role)
        };
        let page = self
            .core
            .store()
            .range(&prefix, None, 10_000)
            .await
            .map_err(|e| Status::from(ConfigError::from(e)))?;
        let members = page
            .kvs
            .iter()
            .map(|kv| decode(kv, "member"))
            .collect::<Result<Vec<pb::Member>, _>>()?;
        Ok(Response::new(pb::ListMembersResponse { members }))
    }
}
