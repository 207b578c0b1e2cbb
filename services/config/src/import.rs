//! CSV import: rows are validated one by one, then created in batched transactions (each
//! within the store's operation limit). A batch that fails its compares falls back to one
//! transaction per phone, so one bad or duplicate row never blocks the others and nothing
//! is half-written. A row whose hardware id (or, without one, whose first SIP user) already
//! exists is EXISTING: re-running a file changes nothing.

use std::collections::{HashMap, HashSet};

use dialtone_domain::keys;
use dialtone_proto::config::v1::{
    BaseSettings, ImportOutcome, ImportPhonesResponse, LineCredentials, Phone, Site,
};
use dialtone_store::{Compare, MAX_TXN_OPS};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::{
    ConfigCore,
    csv_format::{self, Row},
    error::{ConfigError, Result},
    phones::{create_txn, device_credentials},
    repo::load,
    validate,
};

/// Phones checked for existence together.
const GROUP: usize = 64;
/// Groups in flight at once.
const PARALLEL: usize = 4;

struct Prepared {
    row: u64,
    phone: Phone,
    creds: Vec<LineCredentials>,
    /// The site of the user a companion phone names.
    user_site: Option<String>,
}

fn result(row: u64, total: u64, outcome: ImportOutcome) -> ImportPhonesResponse {
    ImportPhonesResponse {
        row,
        total_rows: total,
        outcome: outcome as i32,
        ..Default::default()
    }
}

fn failed(row: u64, total: u64, reason: String) -> ImportPhonesResponse {
    ImportPhonesResponse {
        reason,
        ..result(row, total, ImportOutcome::Failed)
    }
}

fn existing(row: u64, total: u64, phone_id: String) -> ImportPhonesResponse {
    ImportPhonesResponse {
        phone_id,
        ..result(row, total, ImportOutcome::Existing)
    }
}

impl ConfigCore {
    /// Imports a CSV file, sending one result per row to `out`. Fails as a whole only for
    /// a bad header (nothing written then).
    pub async fn import_phones(
        &self,
        bytes: Vec<u8>,
        out: mpsc::Sender<ImportPhonesResponse>,
    ) -> Result<()> {
        let rows = csv_format::parse(&bytes)?;
        let total = rows.len() as u64;
        let mut sites: HashMap<String, Option<Site>> = HashMap::new();
        let mut bases: HashMap<String, Option<BaseSettings>> = HashMap::new();
        let mut prepared = Vec::with_capacity(rows.len());
        for Row { row, phone } in rows {
            match self.prepare_row(phone, &mut sites, &mut bases).await? {
                Ok((phone, creds, user_site)) => prepared.push(Prepared {
                    row,
                    phone,
                    creds,
                    user_site,
                }),
                Err(reason) => {
                    if out.send(failed(row, total, reason)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        let mut groups = Vec::new();
        let mut it = prepared.into_iter().peekable();
        while it.peek().is_some() {
            groups.push(it.by_ref().take(GROUP).collect::<Vec<_>>());
        }
        let mut results =
            futures::stream::iter(groups.into_iter().map(|g| self.import_group(g, total)))
                .buffer_unordered(PARALLEL);
        while let Some(batch) = results.next().await {
            for r in batch? {
                if out.send(r).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Validates one row; the outer error is a store failure, the inner one the row's reason.
    async fn prepare_row(
        &self,
        phone: std::result::Result<Phone, String>,
        sites: &mut HashMap<String, Option<Site>>,
        bases: &mut HashMap<String, Option<BaseSettings>>,
    ) -> Result<std::result::Result<(Phone, Vec<LineCredentials>, Option<String>), String>> {
        let phone = match phone {
            Ok(p) => p,
            Err(reason) => return Ok(Err(reason)),
        };
        if validate::slug(&phone.site_id).is_err() {
            return Ok(Err(format!(
                "site_id: '{}' is not a valid id",
                phone.site_id
            )));
        }
        if !sites.contains_key(&phone.site_id) {
            let s = load::<Site>(&self.store, &keys::site(&phone.site_id), "site")
                .await?
                .map(|(s, _)| s);
            sites.insert(phone.site_id.clone(), s);
        }
        let Some(site) = sites[&phone.site_id].clone() else {
            return Ok(Err(format!(
                "site_id: site '{}' does not exist",
                phone.site_id
            )));
        };
        let base = if phone.base_settings_id.is_empty() {
            None
        } else {
            if !bases.contains_key(&phone.base_settings_id) {
                let b = load::<BaseSettings>(
                    &self.store,
                    &keys::base_settings(&phone.base_settings_id),
                    "base settings",
                )
                .await?
                .map(|(b, _)| b);
                bases.insert(phone.base_settings_id.clone(), b);
            }
            match bases[&phone.base_settings_id].clone() {
                Some(b) => Some(b),
                None => {
                    return Ok(Err(format!(
                        "base_settings_id: base settings '{}' does not exist",
                        phone.base_settings_id
                    )));
                }
            }
        };
        let (phone, creds) = match self.prepare_new(phone, &site, base.as_ref()) {
            Ok(p) => p,
            Err(e) => return Ok(Err(column_reason(e))),
        };
        match self.companion_site(&phone).await {
            Ok(user_site) => Ok(Ok((phone, creds, user_site))),
            Err(e @ ConfigError::Store(_)) => Err(e),
            Err(e) => Ok(Err(column_reason(e))),
        }
    }

    /// Creates one group: drops rows that exist, then batched transactions.
    async fn import_group(
        &self,
        group: Vec<Prepared>,
        total: u64,
    ) -> Result<Vec<ImportPhonesResponse>> {
        let mut out = Vec::with_capacity(group.len());
        // Existence by hardware id, else by first SIP user.
        let probe: Vec<String> = group
            .iter()
            .map(|p| match (&p.phone.hardware_id, p.phone.lines.first()) {
                (hw, _) if !hw.is_empty() => keys::hardware(hw),
                (_, Some(l)) => keys::sip_user(&l.sip_user),
                _ => keys::phone(&p.phone.id),
            })
            .collect();
        let found = self.store.get_many(&probe).await?;
        let mut fresh = Vec::with_capacity(group.len());
        for (p, f) in group.into_iter().zip(found) {
            match f {
                Some(kv) => out.push(existing(
                    p.row,
                    total,
                    String::from_utf8_lossy(&kv.value).into_owned(),
                )),
                None => fresh.push(p),
            }
        }
        // Greedy batches within the op limit, never touching a key twice.
        let mut batch: Vec<Prepared> = Vec::new();
        let (mut compares, mut ops, mut seen) = (Vec::new(), Vec::new(), HashSet::new());
        for p in fresh {
            let (c, o) = create_txn(&p.phone, p.user_site.as_deref());
            let new_c: Vec<Compare> = c.into_iter().filter(|c| !compares.contains(c)).collect();
            let clash = o.iter().any(|op| seen.contains(op.key()));
            if clash
                || compares.len() + new_c.len() > MAX_TXN_OPS
                || ops.len() + o.len() > MAX_TXN_OPS
            {
                out.extend(
                    self.commit_batch(
                        std::mem::take(&mut batch),
                        std::mem::take(&mut compares),
                        std::mem::take(&mut ops),
                        total,
                    )
                    .await?,
                );
                seen.clear();
                let (c, o) = create_txn(&p.phone, p.user_site.as_deref());
                seen.extend(o.iter().map(|op| op.key().to_owned()));
                compares = c;
                ops = o;
            } else {
                seen.extend(o.iter().map(|op| op.key().to_owned()));
                compares.extend(new_c);
                ops.extend(o);
            }
            batch.push(p);
        }
        out.extend(self.commit_batch(batch, compares, ops, total).await?);
        Ok(out)
    }

    async fn commit_batch(
        &self,
        batch: Vec<Prepared>,
        compares: Vec<Compare>,
        ops: Vec<dialtone_store::Op>,
        total: u64,
    ) -> Result<Vec<ImportPhonesResponse>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let created = |p: Prepared| ImportPhonesResponse {
            phone_id: p.phone.id.clone(),
            device_credentials: device_credentials(&self.key, &p.phone, &self.realm),
            credentials: p.creds,
            ..result(p.row, total, ImportOutcome::Created)
        };
        if self.store.txn(compares, ops).await?.succeeded {
            return Ok(batch.into_iter().map(created).collect());
        }
        let mut out = Vec::with_capacity(batch.len());
        for p in batch {
            let (c, o) = create_txn(&p.phone, p.user_site.as_deref());
            if self.store.txn(c, o).await?.succeeded {
                out.push(created(p));
                continue;
            }
            out.push(match self.explain_create(&p.phone).await {
                Ok(ConfigError::AlreadyExists {
                    what: "hardware id",
                    owner,
                    ..
                }) => existing(p.row, total, owner.trim_start_matches("phone ").to_owned()),
                Ok(e) | Err(e) => failed(p.row, total, column_reason(e)),
            });
        }
        Ok(out)
    }
}

/// A validation error as a CSV reason: `phone.lines[0].sip_user: …` becomes `lines: …`.
fn column_reason(e: ConfigError) -> String {
    match e {
        ConfigError::InvalidArgument { field, reason } => {
            let column = field
                .trim_start_matches("phone.")
                .split(['.', '['])
                .next()
                .unwrap_or("")
                .to_owned();
            format!("{column}: {reason}")
        }
        other => other.to_string(),
    }
}
