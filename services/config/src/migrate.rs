//! Moving phones to another base-settings profile (of another meta-base too: see
//! [`crate::migration_plan`]), with a dry-run diff of effective settings.

use std::collections::HashMap;

use dialtone_domain::keys;
use dialtone_proto::config::v1::{
    BaseSettings, MetaBase, MigrateBaseSettingsRequest, MigrateBaseSettingsResponse,
    MigrationOutcome, Phone, PhoneKind, PhoneMigration,
};
use dialtone_store::{Compare, Op};

use crate::{
    ConfigCore,
    error::{ConfigError, Result},
    list, migration_plan,
    repo::{self, load, must_load, put_index},
};

/// Most phones one migration may touch.
const MAX_PHONES: usize = 200_000;

impl ConfigCore {
    pub async fn migrate_base_settings(
        &self,
        req: MigrateBaseSettingsRequest,
    ) -> Result<MigrateBaseSettingsResponse> {
        let to_id = req.to_base_settings_id.clone();
        let (target, target_revision): (BaseSettings, i64) =
            load(&self.store, &keys::base_settings(&to_id), "base settings")
                .await?
                .ok_or_else(|| ConfigError::MissingReference {
                    field: "to_base_settings_id".into(),
                    kind: "base settings",
                    id: to_id.clone(),
                })?;
        let mut phones = if !req.phone_ids.is_empty() {
            let mut v = Vec::with_capacity(req.phone_ids.len());
            for id in &req.phone_ids {
                let (mut p, ver): (Phone, i64) =
                    must_load(&self.store, &keys::phone(id), "phone", id).await?;
                p.version = ver;
                v.push(p);
            }
            v
        } else {
            let filter = list::normalise(req.filter.clone().unwrap_or_default())?;
            if list::is_empty(&filter) {
                return Err(ConfigError::invalid(
                    "filter",
                    "give phone_ids or a non-empty filter",
                ));
            }
            self.all_phones(filter, MAX_PHONES).await?
        };
        phones.sort_by(|a, b| a.id.cmp(&b.id));
        let mut profiles: HashMap<String, Option<BaseSettings>> = HashMap::new();
        let mut out = Vec::with_capacity(phones.len());
        for p in phones {
            if !profiles.contains_key(&p.base_settings_id) {
                let b = load(
                    &self.store,
                    &keys::base_settings(&p.base_settings_id),
                    "base settings",
                )
                .await?
                .map(|(b, _)| b);
                profiles.insert(p.base_settings_id.clone(), b);
            }
            let from = profiles[&p.base_settings_id].as_ref();
            out.push(
                self.migrate_one(p, from, (&target, target_revision), req.dry_run)
                    .await?,
            );
        }
        Ok(MigrateBaseSettingsResponse {
            phones: out,
            dry_run: req.dry_run,
        })
    }

    async fn migrate_one(
        &self,
        mut p: Phone,
        from: Option<&BaseSettings>,
        (to, to_revision): (&BaseSettings, i64),
        dry_run: bool,
    ) -> Result<PhoneMigration> {
        let mut m = PhoneMigration {
            phone_id: p.id.clone(),
            phone_name: p.name.clone(),
            from_base_settings_id: p.base_settings_id.clone(),
            ..Default::default()
        };
        let fail = |mut m: PhoneMigration, reason: String| {
            m.outcome = MigrationOutcome::Failed as i32;
            m.reason = reason;
            Ok(m)
        };
        if p.base_settings_id == to.id {
            m.outcome = MigrationOutcome::Unchanged as i32;
            return Ok(m);
        }
        let Some(from) = from else {
            return fail(
                m,
                "phone has no base settings (REMOTE phones cannot be migrated)".into(),
            );
        };
        let name = |v: i32| {
            MetaBase::try_from(v)
                .map(|m| m.as_str_name())
                .unwrap_or("?")
        };
        let kind = PhoneKind::try_from(p.kind).unwrap_or(PhoneKind::Unspecified);
        let to_meta = MetaBase::try_from(to.meta_base).unwrap_or(MetaBase::Unspecified);
        if !crate::phones::kind_allows(kind, to_meta) {
            return fail(
                m,
                format!(
                    "a {} phone cannot use a {} profile",
                    kind.as_str_name(),
                    name(to.meta_base)
                ),
            );
        }
        let plan = match migration_plan::plan(from, to, p.overrides.as_ref()) {
            Ok(plan) => plan,
            Err(e) => return fail(m, format!("settings would be invalid: {e}")),
        };
        m.changes = plan.changes;
        m.outcome = MigrationOutcome::Moved as i32;
        if dry_run {
            return Ok(m);
        }
        let key = keys::phone(&p.id);
        let version = p.version;
        let old_idx = format!("{}{}", keys::base_phones(&p.base_settings_id), p.id);
        p.base_settings_id = to.id.clone();
        p.overrides = plan.overrides;
        p.version = 0;
        p.updated_at_ms = repo::now_ms();
        // Kept from the version the migration was planned on (the write is guarded by it).
        let unknown = repo::unknown_at::<Phone>(&self.store, &key).await?;
        let ops = vec![
            repo::put_keeping(key.clone(), &p, &unknown),
            Op::Delete(old_idx),
            put_index(format!("{}{}", keys::base_phones(&to.id), p.id), ""),
        ];
        let compares = vec![
            Compare::ModRevision {
                key,
                revision: version,
            },
            // The target as planned with: a change to it meanwhile fails the write.
            Compare::ModRevision {
                key: keys::base_settings(&to.id),
                revision: to_revision,
            },
        ];
        if !self.store.txn(compares, ops).await?.succeeded {
            return fail(
                m,
                "phone or profile changed during the migration; run it again (it is idempotent)"
                    .into(),
            );
        }
        Ok(m)
    }
}
