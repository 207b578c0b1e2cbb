//! Carrier trunks as the edge follows them (`config/trunks/*`): each trunk's targets and
//! caller-id presentation, and its DIDs by the peer its carrier sends from. A call out
//! takes the targets of the trunks its site's route names ([`CredentialCache::trunk_plan`]);
//! a call in from a trunk's peer reaches only the lines its DID names
//! ([`CredentialCache::did_lines`]), never a number outside the fleet.

use std::{net::SocketAddr, sync::Arc};

use dialtone_sip::{
    Message,
    digest::{authorize, authorize_with_qop},
    transport::{FlowSource, Transport},
};

use dialtone_domain::{
    dialplan::Kind,
    trunks::{Dids, Numbers, route_for},
};
use dialtone_proto::config::v1::{Trunk, did::Target};

use tracing::warn;

use super::{CredentialCache, LineEntry, extensions::Holder};

/// Who answers a DID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DidTarget {
    Phone(Arc<str>),
    User(Arc<str>),
    Extension { site: String, extension: String },
}

/// Digest credentials the edge answers a challenge with: a trunk's, when its carrier
/// challenges the trunk's requests; a phone profile's (`digest_auth_user`/`_password`),
/// when a phone challenges what the edge sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestAuth {
    pub username: String,
    pub password: String,
    /// The only realm they answer; none: any.
    pub realm: Option<String>,
    /// Only a challenge asking for qop=auth is answered, so the answer mixes in the edge's
    /// cnonce: a phone profile's, which whoever holds a line could otherwise collect
    /// answers of its own choosing for (`authorize_with_qop`).
    pub qop_only: bool,
}

impl DigestAuth {
    /// The header answering `resp`'s challenge to the edge's `method` request for `uri`
    /// with these credentials and a fresh cnonce; none when no challenge qualifies.
    pub fn answer(
        &self,
        resp: &Message,
        method: &str,
        uri: &str,
    ) -> Option<(&'static str, String)> {
        let cnonce = format!("{:016x}", rand::random::<u64>());
        let (user, password) = (&self.username, &self.password);
        if self.qop_only {
            authorize_with_qop(resp, user, password, method, uri, &cnonce)
        } else {
            let realm = self.realm.as_deref();
            authorize(resp, user, password, realm, method, uri, &cnonce)
        }
    }
}

impl std::fmt::Debug for DigestAuth {
    // Never the password, whatever prints a plan or a hop.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestAuth")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// How the edges register a trunk at its carrier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationPlan {
    /// The address-of-record's user and domain.
    pub user: String,
    pub domain: String,
    /// Where the REGISTERs go.
    pub registrar: SocketAddr,
    /// Seconds asked for.
    pub expires_s: u32,
    pub auth: Option<Arc<DigestAuth>>,
}

/// One target of a trunk: where, over what, and (TLS) the name its certificate carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRec {
    pub flow: FlowSource,
    pub tls_name: Option<Arc<str>>,
}

/// What the edge keeps of a trunk.
pub struct TrunkRec {
    pub peer: String,
    pub targets: Vec<TargetRec>,
    pub privacy: bool,
    /// Calls through it are anchored at a media server.
    pub anchor_media: bool,
    /// Seconds between OPTIONS keep-alives.
    pub options_interval_s: u32,
    pub auth: Option<Arc<DigestAuth>>,
    pub registration: Option<RegistrationPlan>,
    dids: Dids<DidTarget>,
}

impl TrunkRec {
    fn of(t: &Trunk) -> Self {
        let dids = t
            .dids
            .iter()
            .filter_map(|d| {
                let numbers = Numbers::parse(&d.numbers)
                    .inspect_err(|e| warn!(trunk = %t.id, error = %e, "ignoring a DID entry"))
                    .ok()?;
                let target = match d.target.as_ref()? {
                    Target::PhoneId(p) => DidTarget::Phone(p.as_str().into()),
                    Target::UserId(u) => DidTarget::User(u.as_str().into()),
                    Target::Extension(e) => {
                        let (site, extension) = e.split_once('/')?;
                        DidTarget::Extension {
                            site: site.into(),
                            extension: extension.into(),
                        }
                    }
                };
                Some((numbers, target))
            })
            .collect();
        let auth = t.credentials.as_ref().map(|c| {
            Arc::new(DigestAuth {
                username: c.username.clone(),
                password: c.password.clone(),
                realm: (!c.realm.is_empty()).then(|| c.realm.clone()),
                qop_only: false,
            })
        });
        let targets: Vec<TargetRec> = t
            .targets
            .iter()
            .filter_map(|x| {
                let addr = x
                    .address
                    .parse()
                    .inspect_err(|_| warn!(trunk = %t.id, target = %x.address, "ignoring a trunk target that is not IP:PORT"))
                    .ok()?;
                let transport = match x.transport.as_str() {
                    "" | "udp" => Transport::Udp,
                    "tcp" => Transport::Tcp,
                    "tls" => Transport::Tls,
                    other => {
                        warn!(trunk = %t.id, transport = other, "ignoring a trunk target of an unknown transport");
                        return None;
                    }
                };
                Some(TargetRec {
                    flow: FlowSource { transport, addr },
                    tls_name: (!x.tls_name.is_empty()).then(|| x.tls_name.as_str().into()),
                })
            })
            .collect();
        let registration = t.registration.as_ref().and_then(|r| {
            // REGISTERs go over UDP: the default registrar is the first target, if UDP.
            let registrar = match r.registrar.parse() {
                Ok(a) => a,
                Err(_) => {
                    targets
                        .first()
                        .filter(|x| x.flow.transport == Transport::Udp)?
                        .flow
                        .addr
                }
            };
            let user = match (&r.user, &auth) {
                (u, _) if !u.is_empty() => u.clone(),
                (_, Some(a)) => a.username.clone(),
                _ => return None,
            };
            Some(RegistrationPlan {
                user,
                domain: if r.domain.is_empty() {
                    registrar.to_string()
                } else {
                    r.domain.clone()
                },
                registrar,
                expires_s: if r.expires_s == 0 { 3600 } else { r.expires_s },
                auth: auth.clone(),
            })
        });
        TrunkRec {
            peer: t.peer_id.clone(),
            targets,
            auth,
            registration,
            privacy: t.privacy,
            anchor_media: t.anchor_media,
            options_interval_s: if t.options_interval_s == 0 {
                30
            } else {
                t.options_interval_s
            },
            dids: Dids::new(dids),
        }
    }
}

/// One target a call out may try, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkHop {
    pub trunk: Arc<str>,
    pub addr: SocketAddr,
    /// How the target is reached (UDP, or a connection the edge opens).
    pub transport: Transport,
    pub tls_name: Option<Arc<str>>,
    pub privacy: bool,
    /// What answers the carrier's challenges.
    pub auth: Option<Arc<DigestAuth>>,
    /// The trunk wants the call's media anchored (one fixed media address).
    pub anchor_media: bool,
}

/// Where a call out goes: the targets in order, how long each may ring, and the caller id
/// the carrier is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkPlan {
    pub hops: Vec<TrunkHop>,
    pub no_answer_s: Option<u32>,
    pub caller_id: Option<String>,
    /// Where the caller is, by reference (an emergency call from a phone whose settings
    /// turn E911 on: its Location Information Server, RFC 6442 `Geolocation`).
    pub location: Option<String>,
    /// An emergency call: targets that are DOWN are tried last rather than skipped.
    pub emergency: bool,
    /// The caller's site (for the calls-per-site gauge).
    pub site: Option<Arc<str>>,
    /// The calling phone's id (for the record of calls).
    pub caller: Arc<str>,
}

impl CredentialCache {
    /// A trunk was created or changed.
    pub fn put_trunk(&mut self, t: &Trunk) {
        self.trunks.insert(t.id.as_str().into(), TrunkRec::of(t));
    }

    /// A trunk was deleted.
    pub fn remove_trunk(&mut self, id: &str) {
        self.trunks.remove(id);
    }

    /// Every trunk's targets and keep-alive interval (for the keep-alive task).
    pub fn trunk_targets(&self) -> Vec<(Arc<str>, TargetRec, u32)> {
        self.trunks
            .iter()
            .flat_map(|(id, t)| {
                t.targets
                    .iter()
                    .map(move |x| (id.clone(), x.clone(), t.options_interval_s))
            })
            .collect()
    }

    /// The target of some trunk at `flow`'s address and transport (to reach it again
    /// within a dialog).
    pub fn trunk_target_at(&self, flow: FlowSource) -> Option<TargetRec> {
        self.trunks
            .values()
            .flat_map(|t| t.targets.iter())
            .find(|x| x.flow == flow)
            .cloned()
    }

    /// Where a call of `kind` from phone `caller` goes: the route its calling site has for
    /// that kind, with the targets of each of its trunks this edge knows, in order. None
    /// when no route takes it.
    pub fn trunk_plan(&self, caller: &str, kind: Kind) -> Option<TrunkPlan> {
        self.plan_via(None, kind, caller)
    }

    /// Where a call from `caller` for REMOTE phone number `number` of `site` goes: the
    /// route `site` has for the number's kind (REMOTE phones follow their site's plan and
    /// routes), under the caller's id. None when the site's plan or routes take it not.
    pub fn remote_plan(&self, site: &str, number: &str, caller: &str) -> Option<TrunkPlan> {
        let kind = self.calling.get(site)?.classify(number)?;
        self.plan_via(Some(site), kind, caller)
    }

    /// The plan of a call of `kind` from `caller` by the routes of `site` (none: the
    /// caller's own calling site).
    fn plan_via(&self, site: Option<&str>, kind: Kind, caller: &str) -> Option<TrunkPlan> {
        let (caller, phone) = self.phones.get_key_value(caller)?;
        let caller_site = self.calling.get(self.calling_site(phone));
        let site = match site {
            Some(id) => self.calling.get(id)?,
            None => caller_site?,
        };
        let route = route_for(&site.routes, kind)?;
        let hops: Vec<TrunkHop> = route
            .trunks
            .iter()
            .filter_map(|id| self.trunks.get_key_value(id.as_str()))
            .flat_map(|(id, t)| {
                t.targets.iter().map(|x| TrunkHop {
                    trunk: id.clone(),
                    addr: x.flow.addr,
                    transport: x.flow.transport,
                    tls_name: x.tls_name.clone(),
                    privacy: t.privacy,
                    auth: t.auth.clone(),
                    anchor_media: t.anchor_media,
                })
            })
            .collect();
        if hops.is_empty() {
            return None;
        }
        let own = self
            .user_of(phone.user.as_deref())
            .and_then(|u| u.calling.as_ref())
            .or(phone.calling.as_ref())
            .and_then(|c| c.caller_id.clone());
        Some(TrunkPlan {
            hops,
            no_answer_s: route.no_answer_s,
            caller_id: own.or_else(|| caller_site.and_then(|s| s.caller_id.clone())),
            location: (kind == Kind::Emergency)
                .then(|| self.emergency_location(caller))
                .flatten(),
            emergency: kind == Kind::Emergency,
            site: Some(self.calling_site(phone))
                .filter(|s| !s.is_empty())
                .map(Arc::from),
            caller: caller.clone(),
        })
    }

    /// The Location Information Server of a phone whose effective settings turn E911 on
    /// (its profile's, with its own overrides).
    fn emergency_location(&self, phone_id: &str) -> Option<String> {
        let s = self.effective_settings(phone_id)?;
        let url = s.e911_lis_url.filter(|u| !u.is_empty())?;
        s.e911_enabled.unwrap_or(false).then_some(url)
    }

    /// The credentials of the trunk a target at `addr` belongs to (for a carrier's
    /// challenge within a dialog, which names no trunk). None when trunks with different
    /// credentials share the address: which account the dialog is under is not known, and
    /// no answer beats another account's.
    pub fn trunk_auth_at(&self, addr: SocketAddr) -> Option<Arc<DigestAuth>> {
        let mut found = self
            .trunks
            .values()
            .filter(|t| t.targets.iter().any(|x| x.flow.addr == addr))
            .filter_map(|t| t.auth.clone());
        let first = found.next()?;
        found.all(|a| a == first).then_some(first)
    }

    /// Every trunk that registers at its carrier, with how (for the registration task).
    pub fn trunk_registrations(&self) -> Vec<(Arc<str>, RegistrationPlan)> {
        self.trunks
            .iter()
            .filter_map(|(id, t)| Some((id.clone(), t.registration.clone()?)))
            .collect()
    }

    /// Whether `peer` is a trunk's carrier (its requests are calls for DIDs only).
    pub fn is_trunk_peer(&self, peer: &str) -> bool {
        self.trunks.values().any(|t| t.peer == peer)
    }

    /// Whether a trunk of `peer` (a carrier) wants its calls' media anchored: its calls
    /// in are then anchored like its calls out.
    pub fn peer_anchors_media(&self, peer: &str) -> bool {
        self.trunks
            .values()
            .any(|t| t.peer == peer && t.anchor_media)
    }

    /// The lines a call from `peer` (a trunk's carrier) for `user` rings: those the DID
    /// names on one of the peer's trunks; empty when no DID of theirs matches, or what it
    /// names is gone. A call for the user a trunk registers as (the carrier calls the
    /// registered contact) is for the number in its To header, `to_user`.
    pub fn did_lines(&self, peer: &str, user: &str, to_user: Option<&str>) -> Vec<Arc<LineEntry>> {
        let carrier = || self.trunks.values().filter(|t| t.peer == peer);
        let registered_as = |t: &TrunkRec| t.registration.as_ref().is_some_and(|r| r.user == user);
        let number = match to_user {
            Some(to) if carrier().any(registered_as) => to,
            _ => user,
        };
        // In trunk id order (the map is ordered), so every edge answers a number two trunks
        // of one carrier both list alike.
        let target = carrier().find_map(|t| t.dids.find(number));
        match target {
            None => Vec::new(),
            Some(DidTarget::Phone(p)) => self.holder_lines(&Holder::Phone(p.clone())),
            Some(DidTarget::User(u)) => self.holder_lines(&Holder::User(u.clone())),
            Some(DidTarget::Extension { site, extension }) => self
                .extensions
                .get(site, extension)
                .map(|h| self.holder_lines(h))
                .unwrap_or_default(),
        }
    }
}
