//! Carrier trunks and the sites' outbound routes that name them: validation and
//! transactional CRUD. A trunk names its carrier's trusted peer (`index/peer-trunks` keeps
//! that peer from going while the trunk is there); a site's routes name trunks
//! (`index/trunk-sites` keeps a trunk from going while a site routes calls to it). What
//! DIDs and routes mean is `dialtone_domain::trunks`.

use std::{collections::BTreeSet, net::SocketAddr};

use dialtone_domain::{
    dialplan::Kind,
    keys,
    trunks::{Numbers, first_overlap},
};
use dialtone_proto::config::v1::{Did, Site, Trunk, did::Target};
use dialtone_store::{Compare, Op};

use crate::{
    ConfigCore,
    error::{ConfigError, Result, check},
    repo::{
        self, Users, explain_guard, must_load, must_load_at, must_load_at_keeping, put, put_index,
        put_keeping, version_guard,
    },
    validate,
};

/// Most DID entries of one trunk, and most routes of one site.
const MAX_DIDS: usize = 1000;
const MAX_ROUTES: usize = 16;
/// Most different trunks a site's routes name in all. A site write compares each exists
/// and moves each one's index entry in one store transaction (at most `MAX_TXN_OPS`
/// compares and ops): an update replacing every trunk deletes and adds 2 × 32 entries
/// beside the site's own 5 at most.
const MAX_ROUTED_TRUNKS: usize = 32;
/// Most compares of a trunk write's references (its peer and its DIDs' targets) in its
/// transaction, beside the trunk's own guard.
const REFERENCE_COMPARES: usize = dialtone_store::MAX_TXN_OPS - 1;

/// What a DID's target names: its key, the DID's field naming it, its kind and its id.
fn did_target(d: &Did) -> Option<(String, &'static str, &'static str, &str)> {
    match &d.target {
        Some(Target::PhoneId(p)) => Some((keys::phone(p), "phone_id", "phone", p.as_str())),
        Some(Target::UserId(u)) => Some((keys::user(u), "user_id", "user", u.as_str())),
        Some(Target::Extension(e)) => site_extension(e)
            .ok()
            .map(|(site, _)| (keys::site(site), "extension", "site", site)),
        None => None,
    }
}

/// The keys of the phones, users and sites `t`'s DIDs name, each once, in DID order.
fn did_target_keys(t: &Trunk) -> Vec<String> {
    let mut seen = BTreeSet::new();
    t.dids
        .iter()
        .filter_map(|d| did_target(d).map(|(key, ..)| key))
        .filter(|k| seen.insert(k.clone()))
        .collect()
}

/// Checks a trunk: id, name, peer, 1-8 UDP, TCP or TLS targets, keep-alive interval, DIDs (each one
/// number or range, one target each, none overlapping).
pub fn validate_trunk(t: &Trunk) -> Result<()> {
    check("trunk.id", validate::slug(&t.id))?;
    check("trunk.name", validate::name(&t.name, 0, 200))?;
    check("trunk.peer_id", validate::slug(&t.peer_id))?;
    if t.targets.is_empty() || t.targets.len() > 8 {
        return Err(ConfigError::invalid(
            "trunk.targets",
            "must list 1-8 targets",
        ));
    }
    for (i, target) in t.targets.iter().enumerate() {
        if target.address.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                format!("trunk.targets[{i}].address"),
                format!("'{}' is not IP:PORT", target.address),
            ));
        }
        if !matches!(target.transport.as_str(), "" | "udp" | "tcp" | "tls") {
            return Err(ConfigError::invalid(
                format!("trunk.targets[{i}].transport"),
                format!("'{}' is not udp, tcp or tls", target.transport),
            ));
        }
        if !target.tls_name.is_empty() {
            let host_chars = |c: char| c.is_ascii_alphanumeric() || ".-".contains(c);
            let reason = if target.transport != "tls" {
                Some("is for tls targets only")
            } else if target.tls_name.len() > 253 || !target.tls_name.chars().all(host_chars) {
                Some("is not a host name")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(ConfigError::invalid(
                    format!("trunk.targets[{i}].tls_name"),
                    format!("'{}' {reason}", target.tls_name),
                ));
            }
        }
    }
    if t.options_interval_s != 0 {
        check(
            "trunk.options_interval_s",
            validate::range(t.options_interval_s, 1, 3600),
        )?;
    }
    if t.dids.len() > MAX_DIDS {
        return Err(ConfigError::invalid(
            "trunk.dids",
            format!("at most {MAX_DIDS} entries"),
        ));
    }
    let mut numbers = Vec::with_capacity(t.dids.len());
    for (i, d) in t.dids.iter().enumerate() {
        let f = format!("trunk.dids[{i}]");
        numbers.push(
            Numbers::parse(&d.numbers)
                .map_err(|e| ConfigError::invalid(format!("{f}.numbers"), e.to_string()))?,
        );
        match &d.target {
            None => {
                return Err(ConfigError::invalid(
                    f,
                    "needs a phone, a user or an extension",
                ));
            }
            Some(Target::PhoneId(p)) => check(format!("{f}.phone_id"), nonempty(p))?,
            Some(Target::UserId(u)) => check(format!("{f}.user_id"), validate::user_id(u))?,
            Some(Target::Extension(e)) => {
                check(format!("{f}.extension"), site_extension(e).map(|_| ()))?
            }
        }
    }
    if let Some((a, b)) = first_overlap(&numbers) {
        return Err(ConfigError::invalid(
            format!("trunk.dids[{b}].numbers"),
            format!("overlaps trunk.dids[{a}].numbers"),
        ));
    }
    if let Some(c) = &t.credentials {
        check("trunk.credentials.username", digest_token(&c.username, 128))?;
        if c.password.chars().count() > 256 || c.password.chars().any(char::is_control) {
            return Err(ConfigError::invalid(
                "trunk.credentials.password",
                "must be 1-256 characters, none of them control characters",
            ));
        }
        if !c.realm.is_empty() {
            check("trunk.credentials.realm", digest_token(&c.realm, 128))?;
        }
    }
    if let Some(r) = &t.registration {
        if r.user.is_empty() && t.credentials.is_none() {
            return Err(ConfigError::invalid(
                "trunk.registration.user",
                "is needed when the trunk has no credentials",
            ));
        }
        if !r.user.is_empty() {
            check("trunk.registration.user", digest_token(&r.user, 128))?;
        }
        if !r.domain.is_empty() {
            let host_chars = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
            if r.domain.len() > 253 || !r.domain.chars().all(host_chars) {
                return Err(ConfigError::invalid(
                    "trunk.registration.domain",
                    format!("'{}' is not a host name or address", r.domain),
                ));
            }
        }
        let first_udp = t
            .targets
            .first()
            .is_some_and(|x| matches!(x.transport.as_str(), "" | "udp"));
        if r.registrar.is_empty() && !first_udp {
            return Err(ConfigError::invalid(
                "trunk.registration.registrar",
                "REGISTERs go over UDP: name the registrar when the first target is tcp or tls",
            ));
        }
        if !r.registrar.is_empty() && r.registrar.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "trunk.registration.registrar",
                format!("'{}' is not IP:PORT", r.registrar),
            ));
        }
        if r.expires_s != 0 {
            check(
                "trunk.registration.expires_s",
                validate::range(r.expires_s, 60, 86_400),
            )?;
        }
    }
    Ok(())
}

/// A user name or realm as digest quotes it: 1-`max` printable ASCII characters, without
/// the quote, backslash or space that would break out of its quoted string.
fn digest_token(s: &str, max: usize) -> std::result::Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1-{max} printable characters without quote, backslash or space"
        ))
    }
}

/// `t` as the API shows it: the password of its credentials left out (`has_password`
/// says whether one is stored).
pub fn redacted(mut t: Trunk) -> Trunk {
    if let Some(c) = &mut t.credentials {
        c.has_password = !c.password.is_empty();
        c.password.clear();
    }
    t
}

/// `t`, written over `current`: credentials given without a password keep the stored one
/// (reads never show it, so a read-modify-write must not erase it), as long as the
/// password would answer the same account at the same places: a new user name or realm,
/// or other targets or registrar, need the password given again, so no one who may edit
/// a trunk but not read its password can point the edges at a server of their own and
/// collect answers computed with it. An error when credentials would end up with no
/// password.
fn keep_password(t: &mut Trunk, current: Option<&Trunk>) -> Result<()> {
    let same_places = |old: &Trunk| {
        let addresses = |x: &Trunk| -> Vec<(String, String)> {
            x.targets
                .iter()
                .map(|t| (t.address.clone(), t.tls_name.clone()))
                .collect()
        };
        let registrar = |x: &Trunk| x.registration.as_ref().map(|r| r.registrar.clone());
        addresses(old) == addresses(t) && registrar(old) == registrar(t)
    };
    let places = current.is_some_and(same_places);
    let Some(c) = &mut t.credentials else {
        return Ok(());
    };
    c.has_password = false;
    if c.password.is_empty()
        && places
        && let Some(old) = current.and_then(|o| o.credentials.as_ref())
        && old.username == c.username
        && old.realm == c.realm
    {
        c.password = old.password.clone();
    }
    if c.password.is_empty() {
        return Err(ConfigError::invalid(
            "trunk.credentials.password",
            "must be given with new credentials, a new user name or realm, or new targets or registrar",
        ));
    }
    Ok(())
}

fn nonempty(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() || s.contains('/') {
        Err("must be a phone id".into())
    } else {
        Ok(())
    }
}

/// `SITE/EXTENSION` of a DID target: the site and the extension.
pub fn site_extension(e: &str) -> std::result::Result<(&str, &str), String> {
    let (site, ext) = e
        .split_once('/')
        .ok_or_else(|| format!("'{e}' is not SITE/EXTENSION"))?;
    validate::slug(site)?;
    validate::digits(ext, 2, 10)?;
    Ok((site, ext))
}

/// Checks a site's outbound routes: at most 16, each with 1-5 distinct kinds and 1-8
/// distinct trunk ids, and a no-answer timeout of 0 or 5-300 s; at most
/// [`MAX_ROUTED_TRUNKS`] trunks in all.
pub fn validate_routes(s: &Site) -> Result<()> {
    if s.outbound_routes.len() > MAX_ROUTES {
        return Err(ConfigError::invalid(
            "site.outbound_routes",
            format!("at most {MAX_ROUTES} routes"),
        ));
    }
    for (i, r) in s.outbound_routes.iter().enumerate() {
        let f = format!("site.outbound_routes[{i}]");
        if r.kinds.is_empty() || r.kinds.len() > 5 {
            return Err(ConfigError::invalid(
                format!("{f}.kinds"),
                "must list 1-5 kinds",
            ));
        }
        for (j, k) in r.kinds.iter().enumerate() {
            if Kind::from_name(k).is_none_or(|k| k == Kind::Extension) {
                return Err(ConfigError::invalid(
                    format!("{f}.kinds[{j}]"),
                    format!("'{k}' is not national, international, emergency, premium or custom"),
                ));
            }
            if r.kinds[..j].contains(k) {
                return Err(ConfigError::invalid(
                    format!("{f}.kinds[{j}]"),
                    format!("'{k}' is listed twice"),
                ));
            }
        }
        if r.trunk_ids.is_empty() || r.trunk_ids.len() > 8 {
            return Err(ConfigError::invalid(
                format!("{f}.trunk_ids"),
                "must list 1-8 trunks",
            ));
        }
        for (j, t) in r.trunk_ids.iter().enumerate() {
            check(format!("{f}.trunk_ids[{j}]"), validate::slug(t))?;
            if r.trunk_ids[..j].contains(t) {
                return Err(ConfigError::invalid(
                    format!("{f}.trunk_ids[{j}]"),
                    format!("'{t}' is listed twice"),
                ));
            }
        }
        if r.no_answer_timeout_s != 0 {
            check(
                format!("{f}.no_answer_timeout_s"),
                validate::range(r.no_answer_timeout_s, 5, 300),
            )?;
        }
    }
    if routed_trunks(s).len() > MAX_ROUTED_TRUNKS {
        return Err(ConfigError::invalid(
            "site.outbound_routes",
            format!("name at most {MAX_ROUTED_TRUNKS} different trunks in all"),
        ));
    }
    Ok(())
}

/// The trunks a site's routes name, each once.
fn routed_trunks(s: &Site) -> BTreeSet<&str> {
    s.outbound_routes
        .iter()
        .flat_map(|r| r.trunk_ids.iter().map(String::as_str))
        .collect()
}

/// The compares and ops a write of site `s` (replacing `current`, if any) carries for its
/// routes: every trunk it names exists, and the trunks' reverse index follows.
pub(crate) fn route_writes(s: &Site, current: Option<&Site>) -> (Vec<Compare>, Vec<Op>) {
    let entry = |t: &str| format!("{}{}", keys::trunk_sites(t), s.id);
    let new = routed_trunks(s);
    let old = current.map(routed_trunks).unwrap_or_default();
    let compares = new
        .iter()
        .map(|t| Compare::Exists(keys::trunk(t)))
        .collect();
    let mut ops: Vec<Op> = old.difference(&new).map(|t| Op::Delete(entry(t))).collect();
    ops.extend(new.difference(&old).map(|t| put_index(entry(t), "")));
    (compares, ops)
}

/// The deletes of a site's entries in its trunks' reverse index.
pub(crate) fn route_deletes(s: &Site) -> Vec<Op> {
    routed_trunks(s)
        .into_iter()
        .map(|t| Op::Delete(format!("{}{}", keys::trunk_sites(t), s.id)))
        .collect()
}

impl ConfigCore {
    /// Why a site write failed when a trunk its routes name is missing.
    pub(crate) async fn explain_routes(&self, s: &Site) -> Result<()> {
        for (i, r) in s.outbound_routes.iter().enumerate() {
            for (j, t) in r.trunk_ids.iter().enumerate() {
                if self.store.get(&keys::trunk(t)).await?.is_none() {
                    return Err(ConfigError::missing(
                        &format!("site.outbound_routes[{i}].trunk_ids[{j}]"),
                        "trunk",
                        t,
                    ));
                }
            }
        }
        Ok(())
    }

    /// The compares a trunk write carries: its peer exists, and its DIDs' phones, users
    /// and sites do. A trunk may name up to 1,000 of those, more than one transaction
    /// takes: past [`REFERENCE_COMPARES`] they are read now instead (a missing one named),
    /// and only the peer is compared at the write. A target deleted in between is then as one deleted right
    /// after the write, which a DID allows (its calls get 404).
    async fn trunk_references(&self, t: &Trunk) -> Result<Vec<Compare>> {
        let peer = Compare::Exists(keys::peer(&t.peer_id));
        let targets = did_target_keys(t);
        if targets.len() < REFERENCE_COMPARES {
            return Ok(std::iter::once(peer)
                .chain(targets.into_iter().map(Compare::Exists))
                .collect());
        }
        self.explain_trunk_references(t).await?;
        Ok(vec![peer])
    }

    /// Which reference of `t` is missing (its peer first, then its DIDs' targets in
    /// order), all read at once: after a write failed, or before one whose targets are too
    /// many to compare.
    async fn explain_trunk_references(&self, t: &Trunk) -> Result<()> {
        let peer = keys::peer(&t.peer_id);
        let mut wanted = vec![peer.clone()];
        wanted.extend(did_target_keys(t));
        let found = self.store.get_many(&wanted).await?;
        let missing: BTreeSet<&str> = wanted
            .iter()
            .zip(&found)
            .filter(|(_, kv)| kv.is_none())
            .map(|(k, _)| k.as_str())
            .collect();
        if missing.contains(peer.as_str()) {
            return Err(ConfigError::missing("trunk.peer_id", "peer", &t.peer_id));
        }
        for (i, d) in t.dids.iter().enumerate() {
            if let Some((key, field, kind, id)) = did_target(d)
                && missing.contains(key.as_str())
            {
                return Err(ConfigError::missing(
                    &format!("trunk.dids[{i}].{field}"),
                    kind,
                    id,
                ));
            }
        }
        Ok(())
    }

    pub async fn create_trunk(&self, mut t: Trunk) -> Result<Trunk> {
        validate_trunk(&t)?;
        keep_password(&mut t, None)?;
        t.version = 0;
        let key = keys::trunk(&t.id);
        let mut compares = vec![Compare::Absent(key.clone())];
        compares.extend(self.trunk_references(&t).await?);
        let ops = vec![
            put(key.clone(), &t),
            put_index(format!("{}{}", keys::peer_trunks(&t.peer_id), t.id), ""),
        ];
        let r = self.store.txn(compares, ops).await?;
        if !r.succeeded {
            if self.store.get(&key).await?.is_some() {
                return Err(ConfigError::AlreadyExists {
                    what: "trunk id",
                    value: t.id,
                    owner: "another trunk".into(),
                });
            }
            self.explain_trunk_references(&t).await?;
            return Err(ConfigError::Contended {
                kind: "trunk",
                id: t.id,
            });
        }
        t.version = r.revision;
        Ok(redacted(t))
    }

    pub async fn get_trunk(&self, id: &str) -> Result<Trunk> {
        let (mut t, v): (Trunk, i64) =
            must_load(&self.store, &keys::trunk(id), "trunk", id).await?;
        t.version = v;
        Ok(redacted(t))
    }

    pub async fn update_trunk(&self, mut t: Trunk) -> Result<Trunk> {
        validate_trunk(&t)?;
        let key = keys::trunk(&t.id);
        let version = std::mem::take(&mut t.version);
        let (current, version, unknown): (Trunk, i64, _) =
            must_load_at_keeping(&self.store, &key, "trunk", &t.id, version).await?;
        keep_password(&mut t, Some(&current))?;
        let mut compares = vec![version_guard(&key, version)];
        compares.extend(self.trunk_references(&t).await?);
        let mut ops = vec![put_keeping(key.clone(), &t, &unknown)];
        if current.peer_id != t.peer_id {
            ops.push(Op::Delete(format!(
                "{}{}",
                keys::peer_trunks(&current.peer_id),
                t.id
            )));
            ops.push(put_index(
                format!("{}{}", keys::peer_trunks(&t.peer_id), t.id),
                "",
            ));
        }
        let r = self.store.txn(compares, ops).await?;
        if !r.succeeded {
            explain_guard(&self.store, &key, version, "trunk", &t.id).await?;
            self.explain_trunk_references(&t).await?;
            return Err(ConfigError::Contended {
                kind: "trunk",
                id: t.id,
            });
        }
        t.version = r.revision;
        Ok(redacted(t))
    }

    /// Deletes a trunk no site routes calls to.
    pub async fn delete_trunk(&self, id: &str, version: i64) -> Result<i64> {
        let key = keys::trunk(id);
        let (current, version): (Trunk, i64) =
            must_load_at(&self.store, &key, "trunk", id, version).await?;
        let ops = vec![Op::Delete(format!(
            "{}{}",
            keys::peer_trunks(&current.peer_id),
            id
        ))];
        let users = Users {
            prefix: keys::trunk_sites(id),
            what: "sites",
        };
        self.delete_unused(&key, version, (vec![], ops), &[users], "trunk", id)
            .await
    }

    pub async fn list_trunks(&self, size: i32, token: &str) -> Result<(Vec<Trunk>, String)> {
        repo::list_page(
            &self.store,
            keys::TRUNKS,
            "trunk",
            size,
            token,
            |m: &mut Trunk, v| {
                *m = redacted(std::mem::take(m));
                m.version = v;
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use dialtone_proto::config::v1::{
        Did, OutboundRoute, TrunkCredentials, TrunkRegistration, TrunkTarget,
    };

    use super::*;

    use crate::error::invalid_field as field;

    fn trunk() -> Trunk {
        Trunk {
            id: "carrier".into(),
            name: "Carrier".into(),
            peer_id: "carrier-sbc".into(),
            targets: vec![TrunkTarget {
                address: "192.0.2.10:5060".into(),
                transport: "udp".into(),
                tls_name: String::new(),
            }],
            dids: vec![
                Did {
                    numbers: "+15551230000-+15551230099".into(),
                    target: Some(Target::Extension("hq/201".into())),
                },
                Did {
                    numbers: "+15551239999".into(),
                    target: Some(Target::UserId("carol".into())),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn trunks_validate_naming_the_bad_field() {
        validate_trunk(&trunk()).unwrap();
        let with = |f: fn(&mut Trunk)| {
            let mut t = trunk();
            f(&mut t);
            t
        };
        let cases: Vec<(Trunk, &str)> = vec![
            (with(|t| t.id = "Carrier".into()), "trunk.id"),
            (with(|t| t.peer_id.clear()), "trunk.peer_id"),
            (with(|t| t.targets.clear()), "trunk.targets"),
            (
                with(|t| t.targets[0].address = "sbc.example.com:5060".into()),
                "trunk.targets[0].address",
            ),
            (
                with(|t| t.targets[0].transport = "sctp".into()),
                "trunk.targets[0].transport",
            ),
            (
                with(|t| t.targets[0].tls_name = "sbc.example.com".into()),
                "trunk.targets[0].tls_name",
            ),
            (
                with(|t| {
                    t.targets[0].transport = "tls".into();
                    t.targets[0].tls_name = "bad name".into();
                }),
                "trunk.targets[0].tls_name",
            ),
            (
                with(|t| t.options_interval_s = 3601),
                "trunk.options_interval_s",
            ),
            (
                with(|t| t.dids[0].numbers = "555".into()),
                "trunk.dids[0].numbers",
            ),
            (with(|t| t.dids[1].target = None), "trunk.dids[1]"),
            (
                with(|t| t.dids[0].target = Some(Target::Extension("201".into()))),
                "trunk.dids[0].extension",
            ),
            (
                with(|t| t.dids[1].numbers = "+15551230042".into()),
                "trunk.dids[1].numbers",
            ),
            (
                with(|t| creds(t).username = "bad\"name".into()),
                "trunk.credentials.username",
            ),
            (
                with(|t| creds(t).username.clear()),
                "trunk.credentials.username",
            ),
            (
                with(|t| creds(t).password = "a\r\nVia: x".into()),
                "trunk.credentials.password",
            ),
            (
                with(|t| creds(t).realm = "two words".into()),
                "trunk.credentials.realm",
            ),
            (
                with(|t| {
                    t.credentials = None;
                    t.registration = Some(TrunkRegistration::default());
                }),
                "trunk.registration.user",
            ),
            (
                with(|t| reg(t).registrar = "sbc.example.com".into()),
                "trunk.registration.registrar",
            ),
            (
                with(|t| reg(t).domain = "bad domain".into()),
                "trunk.registration.domain",
            ),
            (
                with(|t| reg(t).expires_s = 30),
                "trunk.registration.expires_s",
            ),
            (
                with(|t| {
                    reg(t);
                    t.targets[0].transport = "tcp".into();
                }),
                "trunk.registration.registrar",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(field(validate_trunk(&t)), want, "{t:?}");
        }
    }

    fn creds(t: &mut Trunk) -> &mut TrunkCredentials {
        t.credentials.get_or_insert_with(|| TrunkCredentials {
            username: "acct-1".into(),
            password: "s3cret".into(),
            ..Default::default()
        })
    }

    fn reg(t: &mut Trunk) -> &mut TrunkRegistration {
        creds(t);
        t.registration
            .get_or_insert_with(TrunkRegistration::default)
    }

    #[test]
    fn a_trunk_password_is_write_only_and_kept_by_updates_that_omit_it() {
        let mut stored = trunk();
        creds(&mut stored);
        reg(&mut stored);
        validate_trunk(&stored).unwrap();
        // Nothing that prints a trunk prints its password.
        assert!(!format!("{stored:?}").contains("s3cret"));
        let shown = redacted(stored.clone());
        let c = shown.credentials.as_ref().unwrap();
        assert!(c.password.is_empty() && c.has_password, "{c:?}");
        // What a read shows, written back, keeps the password.
        let mut again = shown.clone();
        keep_password(&mut again, Some(&stored)).unwrap();
        assert_eq!(again.credentials.unwrap().password, "s3cret");
        // A new password replaces it; `has_password` is the server's to set.
        let mut changed = shown.clone();
        changed.credentials.as_mut().unwrap().password = "n3w".into();
        keep_password(&mut changed, Some(&stored)).unwrap();
        let c = changed.credentials.unwrap();
        assert_eq!((c.password.as_str(), c.has_password), ("n3w", false));
        // New credentials need a password, and so do credentials that would answer at
        // other places or as another account.
        let mut fresh = shown.clone();
        let err = keep_password(&mut fresh, None);
        assert_eq!(field(err), "trunk.credentials.password");
        let moved: [fn(&mut Trunk); 4] = [
            |t| t.targets[0].address = "203.0.113.66:5060".into(),
            |t| reg(t).registrar = "203.0.113.66:5060".into(),
            |t| creds(t).username = "acct-2".into(),
            |t| creds(t).realm = "elsewhere".into(),
        ];
        for change in moved {
            let mut t = shown.clone();
            change(&mut t);
            let err = keep_password(&mut t, Some(&stored));
            assert_eq!(field(err), "trunk.credentials.password", "{t:?}");
        }
    }

    #[test]
    fn routes_validate_and_keep_their_trunks_index() {
        let route = |kinds: &[&str], trunks: &[&str]| OutboundRoute {
            kinds: kinds.iter().map(|k| (*k).into()).collect(),
            trunk_ids: trunks.iter().map(|t| (*t).into()).collect(),
            no_answer_timeout_s: 0,
        };
        let site = |routes: Vec<OutboundRoute>| Site {
            id: "hq".into(),
            outbound_routes: routes,
            ..Default::default()
        };
        let ok = site(vec![
            route(&["emergency"], &["e911", "carrier"]),
            route(&["national", "international"], &["carrier"]),
        ]);
        validate_routes(&ok).unwrap();
        // Routes of 8 trunks each, `n` different trunks in all.
        let many_trunks = |n: usize| -> Vec<OutboundRoute> {
            let ids: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
            ids.chunks(8)
                .map(|c| OutboundRoute {
                    kinds: vec!["national".into()],
                    trunk_ids: c.to_vec(),
                    no_answer_timeout_s: 0,
                })
                .collect()
        };
        validate_routes(&site(many_trunks(32))).unwrap();
        // Replacing 32 trunks by 32 others fits one transaction.
        let others = site(many_trunks(64)[4..].to_vec());
        let (compares, ops) = route_writes(&site(many_trunks(32)), Some(&others));
        assert_eq!((compares.len(), ops.len()), (32, 64));
        let cases = [
            (
                site(vec![route(&[], &["a"])]),
                "site.outbound_routes[0].kinds",
            ),
            (
                site(vec![route(&["extension"], &["a"])]),
                "site.outbound_routes[0].kinds[0]",
            ),
            (
                site(vec![route(&["national", "national"], &["a"])]),
                "site.outbound_routes[0].kinds[1]",
            ),
            (
                site(vec![route(&["national"], &["a", "a"])]),
                "site.outbound_routes[0].trunk_ids[1]",
            ),
            (
                site(vec![OutboundRoute {
                    no_answer_timeout_s: 1,
                    ..route(&["national"], &["a"])
                }]),
                "site.outbound_routes[0].no_answer_timeout_s",
            ),
            (site(many_trunks(33)), "site.outbound_routes"),
        ];
        for (s, want) in cases {
            assert_eq!(field(validate_routes(&s)), want, "{s:?}");
        }
        // Each trunk is indexed once; a change moves only what changed.
        let (compares, ops) = route_writes(&ok, None);
        assert_eq!(compares.len(), 2);
        assert_eq!(ops.len(), 2);
        let moved = site(vec![route(&["national"], &["carrier", "backup"])]);
        let (_, ops) = route_writes(&moved, Some(&ok));
        let keys: Vec<(&str, bool)> = ops
            .iter()
            .map(|o| (o.key(), matches!(o, Op::Delete(_))))
            .collect();
        assert_eq!(
            keys,
            [
                ("index/trunk-sites/e911/hq", true),
                ("index/trunk-sites/backup/hq", false)
            ]
        );
    }
}
