//! One-time work a config node does on start for data written by an older Dialtone.
//!
//! Site extensions became unique within a site after phones had been created with them:
//! those phones hold no `index/extension/{site}/{extension}` entry, so a new phone could
//! take one of their extensions. [`ConfigCore::backfill_extensions`] gives each its entry
//! (create-if-absent, so replicas running it at once agree), reports the duplicates it
//! finds (the first phone keeps the extension; the admin moves the others), and leaves a
//! marker so later starts skip it.

use dialtone_domain::keys;
use dialtone_proto::config::v1::{Phone, assignment::Mode};
use dialtone_store::Compare;
use prost::Message as _;
use tracing::{info, warn};

use crate::{ConfigCore, error::Result, repo::put_index};

/// Phones read at once.
const PAGE: usize = 500;

/// What a backfill did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backfill {
    /// Index entries written.
    pub written: u64,
    /// Phones whose extension another phone of the site holds: (phone, holder's entry).
    pub duplicates: Vec<(String, String)>,
    /// Whether an earlier start did it already.
    pub skipped: bool,
}

impl ConfigCore {
    /// Gives every site-assigned phone its extension index entry (see the module doc).
    pub async fn backfill_extensions(&self) -> Result<Backfill> {
        let mut report = Backfill::default();
        if self.store.get(keys::EXTENSIONS_BACKFILLED).await?.is_some() {
            report.skipped = true;
            return Ok(report);
        }
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .range(keys::PHONES, after.as_deref(), PAGE)
                .await?;
            for kv in &page.kvs {
                let Ok(p) = Phone::decode(kv.value.as_slice()) else {
                    continue;
                };
                let Some(Mode::Site(s)) = p.assignment.as_ref().and_then(|a| a.mode.as_ref())
                else {
                    continue;
                };
                let key = keys::extension(&p.site_id, &s.extension);
                let owner = keys::extension_owner_phone(&p.id);
                let r = self
                    .store
                    .txn(
                        vec![Compare::Absent(key.clone())],
                        vec![put_index(key.clone(), &owner)],
                    )
                    .await?;
                if r.succeeded {
                    report.written += 1;
                } else if let Some(held) = self.store.get(&key).await?
                    && held.value != owner.as_bytes()
                {
                    let holder = String::from_utf8_lossy(&held.value).into_owned();
                    warn!(
                        phone = %p.id,
                        site = %p.site_id,
                        extension = %s.extension,
                        holder = %holder,
                        "two phones of a site hold one extension; move one of them"
                    );
                    report.duplicates.push((p.id.clone(), holder));
                }
            }
            after = page.kvs.last().map(|kv| kv.key.clone());
            if !page.more || after.is_none() {
                break;
            }
        }
        self.store
            .txn(
                vec![],
                vec![put_index(keys::EXTENSIONS_BACKFILLED.to_owned(), "1")],
            )
            .await?;
        info!(
            written = report.written,
            duplicates = report.duplicates.len(),
            "site extensions indexed"
        );
        Ok(report)
    }
}
