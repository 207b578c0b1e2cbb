//! Edge groups, sites and base-settings profiles: validation and transactional CRUD.
//! References are checked inside the write transaction (the referenced key must exist; an
//! object still referenced cannot be deleted: its reverse index prefix must be empty).

use dialtone_domain::{
    credentials,
    dialplan::{Permit, templates},
    keys,
};
use dialtone_proto::config::v1::{
    BaseSettings, EdgeGroup, MediaAnchoring, MediaRelay, MetaBase, Peer, Site,
};
use dialtone_store::{Compare, Op};

use crate::{
    ConfigCore,
    error::{ConfigError, Result, check},
    field_mask::Stored,
    peers::validate_peer,
    repo::{
        self, Users, explain_guard, must_load, must_load_at, must_load_keeping, put, put_index,
        put_keeping, version_guard,
    },
    settings,
    trunks::{route_deletes, route_writes},
    validate,
};

/// Validates an edge group.
pub fn validate_edge_group(g: &EdgeGroup) -> Result<()> {
    check("edge_group.id", validate::slug(&g.id))?;
    check("edge_group.name", validate::name(&g.name, 0, 200))?;
    if g.edges.is_empty() || g.edges.len() > 32 {
        return Err(ConfigError::invalid(
            "edge_group.edges",
            "must list 1-32 edges",
        ));
    }
    for (i, e) in g.edges.iter().enumerate() {
        let f = format!("edge_group.edges[{i}]");
        check(format!("{f}.node_id"), validate::slug(&e.node_id))?;
        if g.edges[..i].iter().any(|o| o.node_id == e.node_id) {
            return Err(ConfigError::invalid(
                format!("{f}.node_id"),
                format!("'{}' is listed twice", e.node_id),
            ));
        }
        let a = e.addresses.clone().unwrap_or_default();
        let all = [
            ("udp", &a.udp),
            ("tcp", &a.tcp),
            ("tls", &a.tls),
            ("ws", &a.ws),
            ("wss", &a.wss),
        ];
        if all.iter().all(|(_, v)| v.is_empty()) {
            return Err(ConfigError::invalid(
                format!("{f}.addresses"),
                "at least one transport address is required",
            ));
        }
        for (t, v) in all {
            if !v.is_empty() {
                check(format!("{f}.addresses.{t}"), validate::host_port(v))?;
            }
        }
    }
    Ok(())
}

/// Validates a site's editable fields.
pub fn validate_site(s: &Site) -> Result<()> {
    check("site.id", validate::slug(&s.id))?;
    check("site.name", validate::name(&s.name, 0, 200))?;
    check("site.edge_group_id", validate::slug(&s.edge_group_id))?;
    if s.media_regions.len() > 16 {
        return Err(ConfigError::invalid(
            "site.media_regions",
            "at most 16 regions",
        ));
    }
    for (i, r) in s.media_regions.iter().enumerate() {
        check(format!("site.media_regions[{i}]"), validate::slug(r))?;
    }
    if MediaRelay::try_from(s.media_relay).is_err() {
        return Err(ConfigError::invalid(
            "site.media_relay",
            "must be AUTO, ALWAYS or NEVER",
        ));
    }
    if MediaAnchoring::try_from(s.media_anchoring).is_err() {
        return Err(ConfigError::invalid(
            "site.media_anchoring",
            "must be WHEN_NEEDED, ALWAYS or NEVER",
        ));
    }
    if !s.default_outbound_caller_id.is_empty() {
        check(
            "site.default_outbound_caller_id",
            validate::e164(&s.default_outbound_caller_id),
        )?;
    }
    if !s.site_code.is_empty()
        && (s.site_code.len() > 6 || !s.site_code.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ConfigError::invalid(
            "site.site_code",
            format!("'{}' is not 1-6 digits", s.site_code),
        ));
    }
    validate_calling(s)?;
    crate::trunks::validate_routes(s)
}

/// A site's number plan and call patterns: a known template, and patterns that are kinds
/// or rules of that plan.
fn validate_calling(s: &Site) -> Result<()> {
    validate_call_patterns(s, &s.call_patterns, "site.call_patterns")
}

/// `patterns` of site `s` or one of its phones (`field` names them): at most 64, each a
/// kind or a rule of the site's number plan.
pub(crate) fn validate_call_patterns(s: &Site, patterns: &[String], field: &str) -> Result<()> {
    let plan = if s.number_plan.is_empty() {
        None
    } else {
        let plan = templates::by_name(&s.number_plan).ok_or_else(|| {
            ConfigError::invalid(
                "site.number_plan",
                format!(
                    "'{}' is not a number plan: use {} or leave it empty",
                    s.number_plan,
                    templates::NAMES.join(", ")
                ),
            )
        })?;
        Some(plan)
    };
    if patterns.len() > 64 {
        return Err(ConfigError::invalid(field, "at most 64 patterns"));
    }
    for (i, entry) in patterns.iter().enumerate() {
        let known = match Permit::parse(entry) {
            Permit::Kind(_) => true,
            Permit::Rule(name) => plan
                .as_ref()
                .is_some_and(|p| p.rules().iter().any(|r| r.name == name)),
        };
        if !known {
            return Err(ConfigError::invalid(
                format!("{field}[{i}]"),
                format!(
                    "'{entry}' is neither a kind (extension, national, international, emergency, premium, custom) nor a rule of the site's number plan"
                ),
            ));
        }
    }
    Ok(())
}

/// Validates a profile.
pub fn validate_base_settings(b: &BaseSettings) -> Result<()> {
    check("base_settings.id", validate::slug(&b.id))?;
    check("base_settings.name", validate::name(&b.name, 0, 200))?;
    let meta = MetaBase::try_from(b.meta_base).unwrap_or(MetaBase::Unspecified);
    if meta == MetaBase::Unspecified {
        return Err(ConfigError::invalid(
            "base_settings.meta_base",
            "must be one of the meta-bases (see GetTemplates)",
        ));
    }
    let s = b.settings.clone().unwrap_or_default();
    settings::validate_fields(&s, meta, "base_settings.settings")?;
    settings::validate_effective(
        &settings::effective(meta, &s, None),
        "base_settings.settings",
    )
}

impl ConfigCore {
    // ----- peers -----

    pub async fn create_peer(&self, mut p: Peer) -> Result<Peer> {
        validate_peer(&p)?;
        p.version = 0;
        p.version = self
            .create_absent(&keys::peer(&p.id), &p, ("peer", "peer id"), &p.id)
            .await?;
        Ok(p)
    }

    pub async fn get_peer(&self, id: &str) -> Result<Peer> {
        let (mut p, v): (Peer, i64) = must_load(&self.store, &keys::peer(id), "peer", id).await?;
        p.version = v;
        Ok(p)
    }

    pub async fn update_peer(&self, mut p: Peer) -> Result<Peer> {
        validate_peer(&p)?;
        let version = std::mem::take(&mut p.version);
        p.version = self
            .put_guarded(&keys::peer(&p.id), version, &p, "peer", &p.id)
            .await?;
        Ok(p)
    }

    /// Deletes a peer no trunk names (its requests are simply challenged again).
    pub async fn delete_peer(&self, id: &str, version: i64) -> Result<i64> {
        let users = Users {
            prefix: keys::peer_trunks(id),
            what: "trunks",
        };
        self.delete_unused(
            &keys::peer(id),
            version,
            (vec![], vec![]),
            &[users],
            "peer",
            id,
        )
        .await
    }

    pub async fn list_peers(&self, size: i32, token: &str) -> Result<(Vec<Peer>, String)> {
        repo::list_page(
            &self.store,
            keys::PEERS,
            "peer",
            size,
            token,
            |m: &mut Peer, v| m.version = v,
        )
        .await
    }

    // ----- edge groups -----

    pub async fn create_edge_group(&self, mut g: EdgeGroup) -> Result<EdgeGroup> {
        validate_edge_group(&g)?;
        g.version = 0;
        g.version = self
            .create_absent(
                &keys::edge_group(&g.id),
                &g,
                ("edge group", "edge group id"),
                &g.id,
            )
            .await?;
        Ok(g)
    }

    pub async fn get_edge_group(&self, id: &str) -> Result<EdgeGroup> {
        let (mut g, v): (EdgeGroup, i64) =
            must_load(&self.store, &keys::edge_group(id), "edge group", id).await?;
        g.version = v;
        Ok(g)
    }

    pub async fn update_edge_group(&self, mut g: EdgeGroup) -> Result<EdgeGroup> {
        validate_edge_group(&g)?;
        let version = std::mem::take(&mut g.version);
        g.version = self
            .put_guarded(&keys::edge_group(&g.id), version, &g, "edge group", &g.id)
            .await?;
        Ok(g)
    }

    pub async fn delete_edge_group(&self, id: &str, version: i64) -> Result<i64> {
        let users = Users {
            prefix: keys::group_sites(id),
            what: "sites",
        };
        self.delete_unused(
            &keys::edge_group(id),
            version,
            (vec![], vec![]),
            &[users],
            "edge group",
            id,
        )
        .await
    }

    // ----- sites -----

    pub async fn create_site(&self, mut s: Site) -> Result<Site> {
        validate_site(&s)?;
        let key = keys::site(&s.id);
        s.version = 0;
        s.sip_user_prefix = credentials::generate_prefix();
        let group = keys::edge_group(&s.edge_group_id);
        let mut ops = vec![
            put(key.clone(), &s),
            put_index(
                format!("{}{}", keys::group_sites(&s.edge_group_id), s.id),
                "",
            ),
        ];
        let mut compares = vec![Compare::Absent(key.clone()), Compare::Exists(group.clone())];
        if !s.site_code.is_empty() {
            compares.push(Compare::Absent(keys::site_code(&s.site_code)));
            ops.push(put_index(keys::site_code(&s.site_code), &s.id));
        }
        let (route_compares, route_ops) = route_writes(&s, None);
        compares.extend(route_compares);
        ops.extend(route_ops);
        let r = self.store.txn(compares, ops).await?;
        if !r.succeeded {
            self.explain_site_code(&s).await?;
            self.explain_routes(&s).await?;
            if self.store.get(&key).await?.is_some() {
                return Err(ConfigError::AlreadyExists {
                    what: "site id",
                    value: s.id,
                    owner: "another site".into(),
                });
            }
            return Err(ConfigError::missing(
                "site.edge_group_id",
                "edge group",
                &s.edge_group_id,
            ));
        }
        s.version = r.revision;
        Ok(s)
    }

    pub async fn get_site(&self, id: &str) -> Result<Site> {
        let (mut s, v): (Site, i64) = must_load(&self.store, &keys::site(id), "site", id).await?;
        s.version = v;
        Ok(s)
    }

    pub async fn update_site(&self, mut s: Site) -> Result<Site> {
        validate_site(&s)?;
        let key = keys::site(&s.id);
        let (current, current_version, unknown): (Site, i64, _) =
            must_load_keeping(&self.store, &key, "site", &s.id).await?;
        let version = if s.version > 0 {
            s.version
        } else {
            current_version
        };
        s.sip_user_prefix = current.sip_user_prefix.clone();
        s.version = 0;
        let mut compares = vec![
            version_guard(&key, version),
            Compare::Exists(keys::edge_group(&s.edge_group_id)),
        ];
        let mut ops = vec![put_keeping(key.clone(), &s, &unknown)];
        if current.site_code != s.site_code {
            if !current.site_code.is_empty() {
                ops.push(Op::Delete(keys::site_code(&current.site_code)));
            }
            if !s.site_code.is_empty() {
                compares.push(Compare::Absent(keys::site_code(&s.site_code)));
                ops.push(put_index(keys::site_code(&s.site_code), &s.id));
            }
        }
        if current.edge_group_id != s.edge_group_id {
            ops.push(Op::Delete(format!(
                "{}{}",
                keys::group_sites(&current.edge_group_id),
                s.id
            )));
            ops.push(put_index(
                format!("{}{}", keys::group_sites(&s.edge_group_id), s.id),
                "",
            ));
        } else {
            compares.retain(|c| *c != Compare::Exists(keys::edge_group(&s.edge_group_id)));
        }
        let (route_compares, route_ops) = route_writes(&s, Some(&current));
        compares.extend(route_compares);
        ops.extend(route_ops);
        let r = self.store.txn(compares, ops).await?;
        if !r.succeeded {
            explain_guard(&self.store, &key, version, "site", &s.id).await?;
            if current.site_code != s.site_code {
                self.explain_site_code(&s).await?;
            }
            self.explain_routes(&s).await?;
            if self
                .store
                .get(&keys::edge_group(&s.edge_group_id))
                .await?
                .is_none()
            {
                return Err(ConfigError::missing(
                    "site.edge_group_id",
                    "edge group",
                    &s.edge_group_id,
                ));
            }
            return Err(ConfigError::Contended {
                kind: "site",
                id: s.id,
            });
        }
        s.version = r.revision;
        Ok(s)
    }

    pub async fn delete_site(&self, id: &str, version: i64) -> Result<i64> {
        let key = keys::site(id);
        // Guard on the version read, so the group index entry removed is the right one.
        let (site, version): (Site, i64) =
            must_load_at(&self.store, &key, "site", id, version).await?;
        let mut extra = vec![Op::Delete(format!(
            "{}{}",
            keys::group_sites(&site.edge_group_id),
            id
        ))];
        if !site.site_code.is_empty() {
            extra.push(Op::Delete(keys::site_code(&site.site_code)));
        }
        extra.extend(route_deletes(&site));
        let users = [
            Users {
                prefix: keys::site_phones(id),
                what: "phones",
            },
            Users {
                prefix: keys::site_users(id),
                what: "users",
            },
        ];
        self.delete_unused(&key, version, (vec![], extra), &users, "site", id)
            .await
    }

    /// The error of a site write that failed because its code is another site's.
    async fn explain_site_code(&self, s: &Site) -> Result<()> {
        if s.site_code.is_empty() {
            return Ok(());
        }
        match self.store.get(&keys::site_code(&s.site_code)).await? {
            Some(kv) if kv.value != s.id.as_bytes() => Err(ConfigError::AlreadyExists {
                what: "site code",
                value: s.site_code.clone(),
                owner: format!("site {}", String::from_utf8_lossy(&kv.value)),
            }),
            _ => Ok(()),
        }
    }

    // ----- base settings -----

    pub async fn create_base_settings(&self, mut b: BaseSettings) -> Result<BaseSettings> {
        validate_base_settings(&b)?;
        let key = keys::base_settings(&b.id);
        b.version = 0;
        let r = self
            .store
            .txn(vec![Compare::Absent(key.clone())], vec![put(key, &b)])
            .await?;
        if !r.succeeded {
            return Err(ConfigError::AlreadyExists {
                what: "base settings id",
                value: b.id,
                owner: "another profile".into(),
            });
        }
        b.version = r.revision;
        Ok(b)
    }

    pub async fn get_base_settings(&self, id: &str) -> Result<BaseSettings> {
        let (mut b, v): (BaseSettings, i64) =
            must_load(&self.store, &keys::base_settings(id), "base settings", id).await?;
        b.version = v;
        Ok(b)
    }

    pub async fn update_base_settings(&self, mut b: BaseSettings) -> Result<BaseSettings> {
        validate_base_settings(&b)?;
        let key = keys::base_settings(&b.id);
        let (current, _): (BaseSettings, i64) =
            must_load(&self.store, &key, "base settings", &b.id).await?;
        if current.meta_base != b.meta_base {
            return Err(ConfigError::invalid(
                "base_settings.meta_base",
                "cannot change; create a new profile and migrate the phones to it",
            ));
        }
        let version = std::mem::take(&mut b.version);
        b.version = self
            .put_guarded(&key, version, &b, "base settings", &b.id)
            .await?;
        Ok(b)
    }

    /// Writes a new object of `kind` at `key` unless one is there (AlreadyExists on `what`,
    /// its unique id); returns its version. For objects without indexes (edge groups, peers).
    pub(crate) async fn create_absent<M: prost::Message>(
        &self,
        key: &str,
        msg: &M,
        (kind, what): (&'static str, &'static str),
        id: &str,
    ) -> Result<i64> {
        let r = self
            .store
            .txn(
                vec![Compare::Absent(key.to_owned())],
                vec![put(key.to_owned(), msg)],
            )
            .await?;
        if !r.succeeded {
            return Err(ConfigError::AlreadyExists {
                what,
                value: id.to_owned(),
                owner: format!("another {kind}"),
            });
        }
        Ok(r.revision)
    }

    /// Replaces an object at `version` (0: any), keeping the stored fields this binary
    /// does not know; returns the new version.
    pub(crate) async fn put_guarded<M: Stored>(
        &self,
        key: &str,
        version: i64,
        msg: &M,
        kind: &'static str,
        id: &str,
    ) -> Result<i64> {
        // Gone: nothing to keep, and the guarded write says so.
        let unknown = repo::unknown_at::<M>(&self.store, key).await?;
        self.write_guarded(
            key,
            version,
            put_keeping(key.to_owned(), msg, &unknown),
            kind,
            id,
        )
        .await
    }

    /// Applies `op` to the object at `key` if it is at `version` (0: any); returns the
    /// new revision, or why not (gone, stale version, contended).
    pub(crate) async fn write_guarded(
        &self,
        key: &str,
        version: i64,
        op: Op,
        kind: &'static str,
        id: &str,
    ) -> Result<i64> {
        let r = self
            .store
            .txn(vec![version_guard(key, version)], vec![op])
            .await?;
        if !r.succeeded {
            explain_guard(&self.store, key, version, kind, id).await?;
            return Err(ConfigError::Contended {
                kind,
                id: id.to_owned(),
            });
        }
        Ok(r.revision)
    }

    /// Deletes `key` at `version` (0: any), with `extra` compares and ops, only while no
    /// key is under any of `users`' prefixes (its reverse indexes): the checks and the
    /// delete are one transaction.
    pub(crate) async fn delete_unused(
        &self,
        key: &str,
        version: i64,
        (extra_compares, extra): (Vec<Compare>, Vec<Op>),
        users: &[Users],
        kind: &'static str,
        id: &str,
    ) -> Result<i64> {
        let mut ops = vec![Op::Delete(key.to_owned())];
        ops.extend(extra);
        let mut compares = vec![version_guard(key, version)];
        compares.extend(users.iter().map(|u| Compare::PrefixEmpty(u.prefix.clone())));
        compares.extend(extra_compares);
        let r = self.store.txn(compares, ops).await?;
        if r.succeeded {
            return Ok(r.revision);
        }
        explain_guard(&self.store, key, version, kind, id).await?;
        for u in users {
            let count = self.store.count(&u.prefix).await?;
            if count > 0 {
                return Err(ConfigError::InUse {
                    kind,
                    id: id.to_owned(),
                    count,
                    users: u.what,
                });
            }
        }
        Err(ConfigError::Contended {
            kind,
            id: id.to_owned(),
        })
    }

    pub async fn delete_base_settings(&self, id: &str, version: i64) -> Result<i64> {
        let users = Users {
            prefix: keys::base_phones(id),
            what: "phones",
        };
        self.delete_unused(
            &keys::base_settings(id),
            version,
            (vec![], vec![]),
            &[users],
            "base settings",
            id,
        )
        .await
    }

    pub async fn list_edge_groups(
        &self,
        size: i32,
        token: &str,
    ) -> Result<(Vec<EdgeGroup>, String)> {
        repo::list_page(
            &self.store,
            keys::EDGE_GROUPS,
            "edge group",
            size,
            token,
            |m: &mut EdgeGroup, v| m.version = v,
        )
        .await
    }

    pub async fn list_sites(&self, size: i32, token: &str) -> Result<(Vec<Site>, String)> {
        repo::list_page(
            &self.store,
            keys::SITES,
            "site",
            size,
            token,
            |m: &mut Site, v| m.version = v,
        )
        .await
    }

    pub async fn list_base_settings(
        &self,
        size: i32,
        token: &str,
    ) -> Result<(Vec<BaseSettings>, String)> {
        repo::list_page(
            &self.store,
            keys::BASE_SETTINGS,
            "base settings",
            size,
            token,
            |m: &mut BaseSettings, v| m.version = v,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sites_number_plan_and_call_patterns_are_checked() {
        let site = |plan: &str, patterns: &[&str]| Site {
            id: "hq".into(),
            edge_group_id: "eg".into(),
            number_plan: plan.into(),
            call_patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
            ..Default::default()
        };
        // (site, the field refused, if any)
        let cases = [
            (site("", &[]), None),
            (
                site("nanp", &["national", "emergency", "premium-900"]),
                None,
            ),
            (site("international", &["international-e164"]), None),
            (site("", &["custom"]), None),
            (site("NANP", &[]), Some("site.number_plan")),
            (site("e164", &[]), Some("site.number_plan")),
            (
                site("nanp", &["national", "premium-1900"]),
                Some("site.call_patterns[1]"),
            ),
            (site("", &["premium-900"]), Some("site.call_patterns[0]")),
        ];
        let coded = |code: &str| Site {
            site_code: code.into(),
            ..site("", &[])
        };
        let cases = cases.into_iter().chain([
            (coded("81"), None),
            (coded("123456"), None),
            (coded("1234567"), Some("site.site_code")),
            (coded("8a"), Some("site.site_code")),
        ]);
        for (s, want) in cases {
            let got = validate_site(&s).err().map(|e| match e {
                ConfigError::InvalidArgument { field, .. } => field,
                other => panic!("{other:?}"),
            });
            assert_eq!(
                got.as_deref(),
                want,
                "{} {:?}",
                s.number_plan,
                s.call_patterns
            );
        }
    }
}
