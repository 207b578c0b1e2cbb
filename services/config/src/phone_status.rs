//! One phone's live status as the config role reads it for the REST API: its placement
//! (site, edge group, secondary registration from its effective settings) and the bindings
//! the edges hold in the store, reduced by the status role's own reducer
//! (`dialtone_domain::status_model`), so both roles say the same of a phone: a binding
//! counts only while its edge has a membership record, as in the status role.

use dialtone_domain::{
    keys, placement, settings,
    status_model::{self, Expected},
};
use std::collections::{HashMap, HashSet};

use dialtone_proto::{
    config::v1::{BaseSettings, EdgeGroup, Phone, PhoneKind},
    edge::v1::Binding,
    status::v1::{EdgeRole, OperationalStatus},
};
use prost::Message;

use crate::{ConfigCore, error::ConfigError, error::Result};

/// What the REST API shows of a phone's registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneStatusView {
    /// The phone's status.
    pub status: OperationalStatus,
    /// Each edge: node id, role, lines registered there (primary, secondary, then
    /// unexpected ones).
    pub edges: Vec<(String, EdgeRole, u32)>,
    /// Each line: the edges holding a contact of it.
    pub lines: Vec<Vec<String>>,
}

/// The profiles and edge groups phones refer to, each read once for a request about many
/// phones.
#[derive(Default)]
pub struct StatusLookups {
    bases: HashMap<String, Option<BaseSettings>>,
    groups: HashMap<String, Option<EdgeGroup>>,
    /// The edges up ([`ConfigCore::edges_up`]), read with the first phone.
    edges_up: Option<HashSet<String>>,
}

impl ConfigCore {
    /// What phone `id` last fetched from the provisioning role (none: never), as that role
    /// records it in the store.
    pub async fn provision_state(
        &self,
        id: &str,
    ) -> Result<Option<dialtone_proto::provisioning::v1::ProvisionState>> {
        let kv = self.store().get(&keys::provision(id)).await?;
        kv.map(|kv| crate::repo::decode(&kv, "provision state"))
            .transpose()
    }

    /// The edges that are up: those whose membership record the store holds (it goes
    /// with an edge's lease, before its bindings do).
    pub async fn edges_up(&self) -> Result<HashSet<String>> {
        let page = self.store().range(keys::EDGE_MEMBERS, None, 10_000).await?;
        Ok(page
            .kvs
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(keys::EDGE_MEMBERS).map(str::to_owned))
            .collect())
    }

    /// Phone `p`'s status now.
    pub async fn phone_status(&self, p: &Phone) -> Result<PhoneStatusView> {
        self.phone_status_with(p, &mut StatusLookups::default())
            .await
    }

    /// Phone `p`'s status now, reading its profile and edge group through `lookups`.
    pub async fn phone_status_with(
        &self,
        p: &Phone,
        lookups: &mut StatusLookups,
    ) -> Result<PhoneStatusView> {
        let mut views = self
            .phone_statuses(std::slice::from_ref(p), lookups)
            .await?;
        Ok(views.pop().unwrap_or(PhoneStatusView {
            status: OperationalStatus::Offline,
            edges: Vec::new(),
            lines: Vec::new(),
        }))
    }

    /// The status of each of `phones` now, in their order: their profiles and edge groups
    /// read through `lookups`, and every phone's bindings in one read of the store (a
    /// page of phones costs one request, not one per phone).
    pub async fn phone_statuses(
        &self,
        phones: &[Phone],
        lookups: &mut StatusLookups,
    ) -> Result<Vec<PhoneStatusView>> {
        for p in phones {
            self.look_up(p, lookups).await?;
        }
        if lookups.edges_up.is_none() && !phones.is_empty() {
            lookups.edges_up = Some(self.edges_up().await?);
        }
        // A phone's bindings are its lines times the edges holding them: a few, and at most
        // MAX_LINES x the edges of a group, far below this bound.
        let prefixes: Vec<String> = phones.iter().map(|p| keys::phone_bindings(&p.id)).collect();
        let bindings = self.store.range_many(&prefixes, 1024).await?;
        // One list per prefix is the store's contract (its contract test checks it).
        debug_assert_eq!(bindings.len(), phones.len());
        Ok(phones
            .iter()
            .zip(&bindings)
            .map(|(p, kvs)| view_of(p, lookups, kvs))
            .collect())
    }

    /// Reads what `p`'s status depends on (its profile, its site's edge group) into
    /// `lookups`, each once.
    async fn look_up(&self, p: &Phone, lookups: &mut StatusLookups) -> Result<()> {
        if !lookups.bases.contains_key(&p.base_settings_id) {
            let base = if p.base_settings_id.is_empty() {
                None
            } else {
                match self.get_base_settings(&p.base_settings_id).await {
                    Ok(b) => Some(b),
                    Err(ConfigError::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                }
            };
            lookups.bases.insert(p.base_settings_id.clone(), base);
        }
        if !lookups.groups.contains_key(&p.site_id) {
            let group = match self.get_site(&p.site_id).await {
                Ok(site) => match self.get_edge_group(&site.edge_group_id).await {
                    Ok(g) => Some(g),
                    Err(ConfigError::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                },
                Err(ConfigError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            lookups.groups.insert(p.site_id.clone(), group);
        }
        Ok(())
    }
}

/// Phone `p`'s status from its bindings `kvs`, with its profile and group in `lookups`.
fn view_of(
    p: &Phone,
    lookups: &StatusLookups,
    kvs: &[dialtone_store::KeyValue],
) -> PhoneStatusView {
    let remote = p.kind == PhoneKind::Remote as i32;
    let base = lookups
        .bases
        .get(&p.base_settings_id)
        .and_then(Option::as_ref);
    let (_, effective) = settings::of_phone(base, p.overrides.as_ref());
    let dual = effective.secondary_registration.unwrap_or(true);
    let group = lookups
        .groups
        .get(&p.site_id)
        .and_then(Option::as_ref)
        .filter(|_| !remote);
    let placed = group.and_then(|g| placement::place(&p.id, &g.edges, dual));
    let up = |node: &str| lookups.edges_up.as_ref().is_some_and(|u| u.contains(node));
    let registered: Vec<(u32, String)> = kvs
        .iter()
        .filter(|kv| Binding::decode(kv.value.as_slice()).is_ok_and(|b| !b.contacts.is_empty()))
        .filter_map(|kv| keys::parse_binding(&kv.key))
        .filter(|(_, _, n)| up(n))
        .map(|(_, l, n)| (l, n.to_owned()))
        .collect();
    let pairs: Vec<(u32, &str)> = registered.iter().map(|(l, n)| (*l, n.as_str())).collect();
    let expected = Expected::placed(p.lines.len() as u32, placed, remote, p.disabled);
    let reduced = status_model::reduce(&expected, &pairs);
    PhoneStatusView {
        status: reduced.status,
        edges: reduced
            .edges
            .iter()
            .map(|e| (e.node_id.to_owned(), e.role, e.lines_registered))
            .collect(),
        lines: (0..p.lines.len() as u32)
            .map(|i| {
                pairs
                    .iter()
                    .filter(|(l, _)| *l == i)
                    .map(|(_, n)| (*n).to_owned())
                    .collect()
            })
            .collect(),
    }
}
