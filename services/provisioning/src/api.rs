//! gRPC `dialtone.provisioning.v1`: a phone's desired and applied configuration.

use std::sync::Arc;

use dialtone_auth::{Permission, Tokens};
use dialtone_domain::keys;
use dialtone_proto::config::v1::PhoneKind;
use dialtone_proto::provisioning::v1::{
    self as pb, ProvisionState, provisioning_service_server::ProvisioningService,
};
use tonic::{Request, Response, Status};

use crate::{
    catalog::{Catalog, load},
    document::{Document, EdgeAddress},
    error::ProvisioningError,
};

/// The service.
pub struct ProvisioningApi {
    catalog: Arc<Catalog>,
    reloader: Arc<crate::reload::Reloader>,
    store: dialtone_store::Store,
    tokens: Arc<Tokens>,
    turn: Option<crate::ice::Turn>,
}

impl ProvisioningApi {
    /// A service over the role's catalog.
    pub fn new(
        catalog: Arc<Catalog>,
        reloader: Arc<crate::reload::Reloader>,
        store: dialtone_store::Store,
        tokens: Arc<Tokens>,
        turn: Option<crate::ice::Turn>,
    ) -> Self {
        Self {
            catalog,
            reloader,
            store,
            tokens,
            turn,
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

    async fn how_to_register(
        &self,
        phone_id: &str,
    ) -> Result<pb::HowToRegister, ProvisioningError> {
        if phone_id.is_empty() {
            return Err(ProvisioningError::Invalid {
                field: "phone_id",
                reason: "required".into(),
            });
        }
        let (phone, doc) = self
            .catalog
            .load_document(phone_id)
            .await?
            .ok_or_else(|| ProvisioningError::NotFound(phone_id.to_owned()))?;
        if phone.kind == PhoneKind::Remote as i32 {
            return Err(ProvisioningError::NotRegistering(phone_id.to_owned()));
        }
        Ok(how_to_register(
            &doc,
            self.turn.as_ref(),
            dialtone_common::clock::unix_secs(),
        ))
    }
}

/// The registration view of a phone's document (never its SIP passwords; a WebRTC
/// phone's TURN credential of the moment `now_s`, which expires by itself).
pub fn how_to_register(
    doc: &Document,
    turn: Option<&crate::ice::Turn>,
    now_s: u64,
) -> pb::HowToRegister {
    let registrar = |e: &Option<EdgeAddress>| {
        e.as_ref().map(|e| pb::Registrar {
            node_id: e.node_id.clone(),
            host: e.host.clone(),
            port: u32::from(e.port),
            transport: e.transport as i32,
            uri: format!(
                "sip:{};transport={}",
                e.host_port(),
                e.transport
                    .as_str_name()
                    .trim_start_matches("TRANSPORT_")
                    .to_ascii_lowercase()
            ),
        })
    };
    let mut problems = doc.problems.clone();
    if doc.has_turn() && turn.is_none() {
        problems.push(
            "its site's media servers list TURN servers, but this provisioning node has no \
             --turn-secret-file: no TURN credential"
                .to_owned(),
        );
    }
    pb::HowToRegister {
        phone_id: doc.phone_id.clone(),
        domain: doc.realm.clone(),
        lines: doc
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| pb::LineRegistration {
                line_index: i as u32,
                sip_user: l.sip_user.clone(),
                aor: format!("sip:{}@{}", l.sip_user, doc.realm),
                display_name: l.display_name.clone(),
            })
            .collect(),
        primary: registrar(&doc.primary),
        secondary: registrar(&doc.secondary),
        registration_period_s: doc.settings.registration_period_s.unwrap_or_default(),
        problems,
        ice_servers: crate::ice::servers(&doc.ice_servers, &doc.phone_id, turn, now_s),
        ice_transport_policy: if crate::document::uses_ice(doc.meta) {
            crate::ice::transport_policy(doc.relay).to_owned()
        } else {
            String::new()
        },
    }
}

#[tonic::async_trait]
impl ProvisioningService for ProvisioningApi {
    async fn get_how_to_register(
        &self,
        req: Request<pb::GetHowToRegisterRequest>,
    ) -> Result<Response<pb::HowToRegister>, Status> {
        self.tokens
            .authorize(&req, Permission::View)
            .map_err(ProvisioningError::from)?;
        Ok(Response::new(
            self.how_to_register(&req.get_ref().phone_id).await?,
        ))
    }

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

#[cfg(test)]
mod tests {
    use dialtone_proto::config::v1::{MetaBase, Transport};

    use super::how_to_register;
    use crate::document::{self, tests::document};

    #[test]
    fn how_to_register_names_registrars_and_lines_never_passwords() {
        let mut d = document(MetaBase::PolyVvx, "0004f2aabb01");
        let h = how_to_register(&d, None, 0);
        let p = h.primary.as_ref().unwrap();
        assert_eq!(p.port, 5060);
        assert_eq!(p.transport, Transport::Udp as i32);
        assert_eq!(p.uri, format!("sip:{}:5060;transport=udp", p.host));
        assert_ne!(h.secondary.as_ref().unwrap().node_id, p.node_id);
        assert_eq!(h.domain, "dialtone");
        assert_eq!(h.lines.len(), 2);
        assert_eq!(h.lines[1].aor, "sip:k7q2x-1002@dialtone");
        let text = format!("{h:?}");
        for l in &d.lines {
            assert!(
                !text.contains(l.password.as_deref().unwrap()),
                "no password leaks"
            );
        }

        // IPv6 hosts are bracketed in the URI, not in `host`.
        d.primary = Some(document::EdgeAddress {
            node_id: "edge-9".into(),
            host: "2001:db8::9".into(),
            port: 7443,
            transport: Transport::Wss,
        });
        d.secondary = None;
        let h = how_to_register(&d, None, 0);
        let p = h.primary.unwrap();
        assert_eq!(p.host, "2001:db8::9");
        assert_eq!(p.uri, "sip:[2001:db8::9]:7443;transport=wss");
        assert!(h.secondary.is_none());
    }
    #[test]
    fn how_to_register_gives_a_webrtc_phone_its_turn_credential() {
        let mut d = document(MetaBase::Webrtc, "desk.example.com");
        d.ice_servers = vec![
            vec!["turn:203.0.113.5:3478?transport=udp".into()],
            vec!["stun:203.0.113.6:3478".into()],
        ];
        let turn = crate::ice::Turn {
            secret: dialtone_media::turn::TurnSecret::from_text("north-wind-blows-cold").unwrap(),
            ttl_s: 600,
        };
        let h = how_to_register(&d, Some(&turn), 1_700_000_000);
        assert_eq!(h.ice_transport_policy, "all");
        let s = &h.ice_servers[0];
        assert_eq!(s.username, format!("1700000640:{}", d.phone_id));
        assert_eq!(s.expires_at, 1_700_000_640);
        assert!(!s.credential.is_empty());
        assert!(
            h.ice_servers[1].username.is_empty(),
            "no credential for STUN"
        );
        assert!(h.problems.is_empty(), "{:?}", h.problems);
        // Without the secret: the URLs, and a problem saying why there is no credential.
        let h = how_to_register(&d, None, 1_700_000_000);
        assert!(h.ice_servers.iter().all(|s| s.credential.is_empty()));
        assert!(
            h.problems[0].contains("--turn-secret-file"),
            "{:?}",
            h.problems
        );
        // A desk phone: no ICE at all.
        let h = how_to_register(&document(MetaBase::PolyVvx, "0004f2aabb01"), Some(&turn), 0);
        assert!(h.ice_servers.is_empty() && h.ice_transport_policy.is_empty());
    }
}
