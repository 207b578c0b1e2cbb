//! Users: validation and transactional CRUD. A user may belong to a site, hold an
//! extension of that site (in the same uniqueness index as site-assigned phones, so a
//! dialled extension always names one holder) and have companion phones; a phone names its
//! user, never the other way round (`index/user-phones/{user}/{phone}` is the reverse
//! index that keeps a user with phones from being deleted or leaving its site).

use dialtone_domain::keys;
use dialtone_proto::config::v1::{Phone, Site, User, assignment::Mode};
use dialtone_store::{Compare, Op};

use crate::{
    ConfigCore,
    error::{ConfigError, Result, check},
    objects::validate_call_patterns,
    repo::{
        self, Users, explain_guard, load, must_load, must_load_at, must_load_at_keeping, put,
        put_index, put_keeping, release_owned, version_guard,
    },
    validate,
};

/// Checks a user's own fields (its call patterns are checked against its site's plan by
/// [`ConfigCore::user_site`]).
pub fn validate_user(u: &User) -> Result<()> {
    check("user.id", validate::user_id(&u.id))?;
    check("user.name", validate::name(&u.name, 0, 200))?;
    let needs_site = |field: &str| {
        ConfigError::invalid(field, "needs a site: set user.site_id or leave this empty")
    };
    if u.site_id.is_empty() {
        if !u.extension.is_empty() {
            return Err(needs_site("user.extension"));
        }
        if !u.call_patterns.is_empty() {
            return Err(needs_site("user.call_patterns"));
        }
    } else {
        check("user.site_id", validate::slug(&u.site_id))?;
    }
    if !u.extension.is_empty() {
        check("user.extension", validate::digits(&u.extension, 2, 10))?;
    }
    if !u.outbound_caller_id.is_empty() {
        check(
            "user.outbound_caller_id",
            validate::e164(&u.outbound_caller_id),
        )?;
    }
    Ok(())
}

/// The key of the site extension a user holds, if any.
fn extension_key(u: &User) -> Option<String> {
    (!u.site_id.is_empty() && !u.extension.is_empty())
        .then(|| keys::extension(&u.site_id, &u.extension))
}

/// The key of a user's entry in its site's reverse index, if it has a site.
fn site_entry(u: &User) -> Option<String> {
    (!u.site_id.is_empty()).then(|| format!("{}{}", keys::site_users(&u.site_id), u.id))
}

/// The user a companion phone names, if it is one.
pub fn companion_of(p: &Phone) -> Option<&str> {
    match p.assignment.as_ref().and_then(|a| a.mode.as_ref()) {
        Some(Mode::User(u)) => Some(&u.user_id),
        _ => None,
    }
}

/// The compare a write of companion `phone_user`'s phone carries: the user is still in
/// `site` (its site index entry exists), so it cannot leave its site, or go, between the
/// read that checked it and the write.
pub fn companion_guard(phone_user: &str, site: &str) -> Compare {
    Compare::Exists(format!("{}{phone_user}", keys::site_users(site)))
}

/// A companion phone's entry in its user's reverse index.
pub fn companion_entry(phone: &Phone) -> Option<String> {
    companion_of(phone).map(|u| format!("{}{}", keys::user_phones(u), phone.id))
}

impl ConfigCore {
    /// The site of the user companion phone `p` names: the user must exist and have one.
    pub(crate) async fn companion_site(&self, p: &Phone) -> Result<Option<String>> {
        let Some(user_id) = companion_of(p) else {
            return Ok(None);
        };
        let field = "phone.assignment.user.user_id";
        let (user, _): (User, i64) = load(&self.store, &keys::user(user_id), "user")
            .await?
            .ok_or_else(|| ConfigError::missing(field, "user", user_id))?;
        if user.site_id.is_empty() {
            return Err(ConfigError::Unusable {
                field: field.to_owned(),
                reason: format!("user '{user_id}' has no site; give it one first"),
            });
        }
        Ok(Some(user.site_id))
    }

    /// Loads a user's site (it must exist) and checks the user's patterns against its plan.
    async fn user_site(&self, u: &User) -> Result<Option<Site>> {
        if u.site_id.is_empty() {
            return Ok(None);
        }
        let (site, _): (Site, i64) = load(&self.store, &keys::site(&u.site_id), "site")
            .await?
            .ok_or_else(|| ConfigError::missing("user.site_id", "site", &u.site_id))?;
        validate_call_patterns(&site, &u.call_patterns, "user.call_patterns")?;
        Ok(Some(site))
    }

    /// Why a write holding `u`'s extension failed, when that is why: the holder.
    async fn explain_extension(&self, u: &User) -> Result<()> {
        if let Some(k) = extension_key(u)
            && let Some(kv) = self.store.get(&k).await?
            && kv.value != keys::extension_owner_user(&u.id).as_bytes()
        {
            return Err(ConfigError::AlreadyExists {
                what: "extension",
                value: format!("{} in site {}", u.extension, u.site_id),
                owner: String::from_utf8_lossy(&kv.value).replacen('/', " ", 1),
            });
        }
        Ok(())
    }

    pub async fn create_user(&self, mut u: User) -> Result<User> {
        validate_user(&u)?;
        self.user_site(&u).await?;
        u.version = 0;
        let key = keys::user(&u.id);
        let mut compares = vec![Compare::Absent(key.clone())];
        let mut ops = vec![put(key.clone(), &u)];
        if let Some(entry) = site_entry(&u) {
            compares.push(Compare::Exists(keys::site(&u.site_id)));
            ops.push(put_index(entry, ""));
        }
        if let Some(k) = extension_key(&u) {
            compares.push(Compare::Absent(k.clone()));
            ops.push(put_index(k, &keys::extension_owner_user(&u.id)));
        }
        let r = self.store.txn(compares, ops).await?;
        if !r.succeeded {
            if self.store.get(&key).await?.is_some() {
                return Err(ConfigError::AlreadyExists {
                    what: "user id",
                    value: u.id.clone(),
                    owner: "another user".into(),
                });
            }
            self.user_site(&u).await?;
            self.explain_extension(&u).await?;
            return Err(ConfigError::Contended {
                kind: "user",
                id: u.id,
            });
        }
        u.version = r.revision;
        Ok(u)
    }

    pub async fn get_user(&self, id: &str) -> Result<User> {
        let (mut u, v): (User, i64) = must_load(&self.store, &keys::user(id), "user", id).await?;
        u.version = v;
        Ok(u)
    }

    /// Replaces a user: its site index entry and extension move with it; it cannot leave
    /// its site for none while phones are assigned to it (they need a site to call from).
    pub async fn update_user(&self, mut u: User) -> Result<User> {
        validate_user(&u)?;
        let key = keys::user(&u.id);
        let version = std::mem::take(&mut u.version);
        let (current, version, unknown): (User, i64, _) =
            must_load_at_keeping(&self.store, &key, "user", &u.id, version).await?;
        self.user_site(&u).await?;
        let mut compares = vec![version_guard(&key, version)];
        let mut ops = vec![put_keeping(key.clone(), &u, &unknown)];
        if !u.site_id.is_empty() {
            compares.push(Compare::Exists(keys::site(&u.site_id)));
        }
        let (old_entry, new_entry) = (site_entry(&current), site_entry(&u));
        if old_entry != new_entry {
            ops.extend(old_entry.map(Op::Delete));
            ops.extend(new_entry.map(|e| put_index(e, "")));
            if u.site_id.is_empty() {
                compares.push(Compare::PrefixEmpty(keys::user_phones(&u.id)));
            }
        }
        let (old_ext, new_ext) = (extension_key(&current), extension_key(&u));
        if old_ext != new_ext {
            if let Some(k) = old_ext {
                let owner = keys::extension_owner_user(&u.id);
                if let Some((compare, delete)) = release_owned(&self.store, k, &owner).await? {
                    compares.push(compare);
                    ops.push(delete);
                }
            }
            if let Some(k) = new_ext {
                compares.push(Compare::Absent(k.clone()));
                ops.push(put_index(k, &keys::extension_owner_user(&u.id)));
            }
        }
        let r = self.store.txn(compares, ops).await?;
        if !r.succeeded {
            explain_guard(&self.store, &key, version, "user", &u.id).await?;
            self.user_site(&u).await?;
            self.explain_extension(&u).await?;
            let count = self.store.count(&keys::user_phones(&u.id)).await?;
            if u.site_id.is_empty() && count > 0 {
                return Err(ConfigError::InUse {
                    kind: "user",
                    id: u.id,
                    count,
                    users: "phones (a companion phone's user needs a site)",
                });
            }
            return Err(ConfigError::Contended {
                kind: "user",
                id: u.id,
            });
        }
        u.version = r.revision;
        Ok(u)
    }

    /// Deletes a user that no phone names; its extension and site entry go with it.
    pub async fn delete_user(&self, id: &str, version: i64) -> Result<i64> {
        let key = keys::user(id);
        let (current, version): (User, i64) =
            must_load_at(&self.store, &key, "user", id, version).await?;
        let (mut compares, mut ops) = (Vec::new(), Vec::new());
        ops.extend(site_entry(&current).map(Op::Delete));
        if let Some(k) = extension_key(&current)
            && let Some((compare, delete)) =
                release_owned(&self.store, k, &keys::extension_owner_user(id)).await?
        {
            compares.push(compare);
            ops.push(delete);
        }
        let users = Users {
            prefix: keys::user_phones(id),
            what: "phones",
        };
        self.delete_unused(&key, version, (compares, ops), &[users], "user", id)
            .await
    }

    pub async fn list_users(&self, size: i32, token: &str) -> Result<(Vec<User>, String)> {
        repo::list_page(
            &self.store,
            keys::USERS,
            "user",
            size,
            token,
            |m: &mut User, v| m.version = v,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::error::invalid_field as field;

    #[test]
    fn users_validate_naming_the_bad_field() {
        let ok = User {
            id: "alice@example.com".into(),
            name: "Alice".into(),
            site_id: "hq".into(),
            extension: "2001".into(),
            outbound_caller_id: "+15551230000".into(),
            ..Default::default()
        };
        validate_user(&ok).unwrap();
        validate_user(&User {
            id: "bob".into(),
            ..Default::default()
        })
        .unwrap();
        let cases = [
            (
                User {
                    id: "".into(),
                    ..ok.clone()
                },
                "user.id",
            ),
            (
                User {
                    id: "a/b".into(),
                    ..ok.clone()
                },
                "user.id",
            ),
            (
                User {
                    id: "x".repeat(129),
                    ..ok.clone()
                },
                "user.id",
            ),
            (
                User {
                    name: "a\nb".into(),
                    ..ok.clone()
                },
                "user.name",
            ),
            (
                User {
                    site_id: "HQ".into(),
                    ..ok.clone()
                },
                "user.site_id",
            ),
            (
                User {
                    extension: "1".into(),
                    ..ok.clone()
                },
                "user.extension",
            ),
            (
                User {
                    extension: "20a".into(),
                    ..ok.clone()
                },
                "user.extension",
            ),
            (
                User {
                    site_id: "".into(),
                    ..ok.clone()
                },
                "user.extension",
            ),
            (
                User {
                    site_id: "".into(),
                    extension: "".into(),
                    call_patterns: vec!["national".into()],
                    ..ok.clone()
                },
                "user.call_patterns",
            ),
            (
                User {
                    outbound_caller_id: "555".into(),
                    ..ok.clone()
                },
                "user.outbound_caller_id",
            ),
        ];
        for (u, want) in cases {
            assert_eq!(field(validate_user(&u)), want, "{u:?}");
        }
    }
}
