//! Where the cache's phones are and who may reach them without a line: trusted peers,
//! sites (their edge group, code, calling rules and what REMOTE phones need of them) and
//! edge groups, and from them a phone's placement.

use std::sync::Arc;

use dialtone_domain::{peers::TrustedPeer, placement};
use dialtone_proto::config::v1::{EdgeGroup, Peer, Site};

use super::{CredentialCache, calling::SiteCalling};

impl CredentialCache {
    /// A trusted peer was created or changed.
    pub fn put_peer(&mut self, peer: &Peer) {
        let t = TrustedPeer::new(peer);
        match self.peers.binary_search_by(|p| p.id.cmp(&t.id)) {
            Ok(i) => self.peers[i] = t,
            Err(i) => self.peers.insert(i, t),
        }
    }

    /// A trusted peer was deleted.
    pub fn remove_peer(&mut self, id: &str) {
        self.peers.retain(|p| p.id != id);
    }

    /// The trusted peer a request from `from` over `transport` (on a connection whose
    /// verified client certificate has `cert_names`) comes from, if any.
    pub fn trusted_peer(
        &self,
        from: std::net::SocketAddr,
        transport: &str,
        cert_names: &[String],
    ) -> Option<&str> {
        self.peers
            .iter()
            .find(|p| p.matches(from, transport, cert_names))
            .map(|p| p.id.as_str())
    }

    /// A site was created or changed.
    pub fn put_site(&mut self, site: &Site) {
        self.sites
            .insert(site.id.clone(), site.edge_group_id.clone());
        self.forget_site_code(&site.id);
        if !site.site_code.is_empty() {
            self.site_codes
                .insert(site.site_code.clone(), site.id.clone());
        }
        self.calling
            .insert(site.id.clone(), Arc::new(SiteCalling::of(site)));
        self.remote.put_site(site);
    }

    /// A site was deleted.
    pub fn remove_site(&mut self, id: &str) {
        self.sites.remove(id);
        self.forget_site_code(id);
        self.calling.remove(id);
        self.remote.remove_site(id);
    }

    /// Drops the code site `id` held (unless another site took it meanwhile).
    fn forget_site_code(&mut self, id: &str) {
        if let Some(old) = self.calling.get(id)
            && self.site_codes.get(&old.code).is_some_and(|s| s == id)
        {
            self.site_codes.remove(&old.code);
        }
    }

    /// An edge group was created or changed.
    pub fn put_group(&mut self, group: &EdgeGroup) {
        self.groups.insert(group.id.clone(), group.edges.clone());
    }

    /// An edge group was deleted.
    pub fn remove_group(&mut self, id: &str) {
        self.groups.remove(id);
    }

    /// A registering phone's primary and secondary edge (node ids), from its site's edge
    /// group; empty when the phone, its site or its group is unknown here.
    pub fn placement(&self, phone_id: &str) -> Vec<String> {
        let Some(group) = self
            .phones
            .get(phone_id)
            .and_then(|p| self.sites.get(&p.site))
            .and_then(|g| self.groups.get(g))
        else {
            return Vec::new();
        };
        placement::node_ids(phone_id, group, true)
    }
}
