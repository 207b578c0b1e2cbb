//! One-time work a config node does on start for data written by an older Dialtone.
//!
//! Site extensions became unique within a site, and phone names in the organisation, after
//! phones had been created: those phones hold no `index/extension/{site}/{extension}` or
//! `index/unique-phone-name/{name}` entry, so a new phone could take one of their
//! extensions or names. [`ConfigCore::backfill_extensions`] and
//! [`ConfigCore::backfill_phone_names`] give each its entry (create-if-absent, so replicas
//! running it at once agree), report the duplicates they find (the first phone keeps the
//! extension or name; the admin changes the others), and leave a marker so later starts
//! skip them.

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
    /// Phones whose entry another phone holds: (phone, holder's entry).
    pub duplicates: Vec<(String, String)>,
    /// Whether an earlier start did it already.
    pub skipped: bool,
}

/// One unique index a backfill fills: its marker, each phone's entry (key, owner) and what
/// the logs call it.
struct Index {
    marker: &'static str,
    entry: fn(&Phone) -> Option<(String, String)>,
    what: &'static str,
}

impl ConfigCore {
    /// Gives every site-assigned phone its extension index entry (see the module doc).
    pub async fn backfill_extensions(&self) -> Result<Backfill> {
        self.backfill(Index {
            marker: keys::EXTENSIONS_BACKFILLED,
            entry: |p| match p.assignment.as_ref().and_then(|a| a.mode.as_ref()) {
                Some(Mode::Site(s)) => Some((
                    keys::extension(&p.site_id, &s.extension),
                    keys::extension_owner_phone(&p.id),
                )),
                _ => None,
            },
            what: "site extension",
        })
        .await
    }

    /// Gives every phone its unique-name entry (see the module doc).
    pub async fn backfill_phone_names(&self) -> Result<Backfill> {
        self.backfill(Index {
            marker: keys::PHONE_NAMES_BACKFILLED,
            entry: |p| Some((keys::unique_phone_name(&p.name), p.id.clone())),
            what: "phone name",
        })
        .await
    }

    async fn backfill(&self, index: Index) -> Result<Backfill> {
        let mut report = Backfill::default();
        if self.store.get(index.marker).await?.is_some() {
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
                self.backfill_one(&index, kv.clone(), &mut report).await?;
            }
            after = page.kvs.last().map(|kv| kv.key.clone());
            if !page.more || after.is_none() {
                break;
            }
        }
        self.store
            .txn(vec![], vec![put_index(index.marker.to_owned(), "1")])
            .await?;
        info!(
            index = index.what,
            written = report.written,
            duplicates = report.duplicates.len(),
            "index backfilled"
        );
        Ok(report)
    }

    /// Indexes one phone as read in `kv`. The API serves meanwhile: the entry is written
    /// only while the phone is still as read (a phone renamed or deleted since would
    /// otherwise hold a name it no longer has, for ever); a phone changed since is read
    /// again.
    async fn backfill_one(
        &self,
        index: &Index,
        mut kv: dialtone_store::KeyValue,
        report: &mut Backfill,
    ) -> Result<()> {
        for _ in 0..3 {
            let Ok(p) = Phone::decode(kv.value.as_slice()) else {
                return Ok(());
            };
            let Some((key, owner)) = (index.entry)(&p) else {
                return Ok(());
            };
            let r = self
                .store
                .txn(
                    vec![
                        Compare::Absent(key.clone()),
                        Compare::ModRevision {
                            key: kv.key.clone(),
                            revision: kv.mod_revision,
                        },
                    ],
                    vec![put_index(key.clone(), &owner)],
                )
                .await?;
            if r.succeeded {
                report.written += 1;
                return Ok(());
            }
            if let Some(held) = self.store.get(&key).await? {
                if held.value != owner.as_bytes() {
                    let holder = String::from_utf8_lossy(&held.value).into_owned();
                    warn!(
                        phone = %p.id,
                        index = index.what,
                        key = %key,
                        holder = %holder,
                        "two phones hold one unique value; change one of them"
                    );
                    report.duplicates.push((p.id.clone(), holder));
                }
                return Ok(());
            }
            // The phone changed since it was read: read it again (gone: nothing to do).
            match self.store.get(&kv.key).await? {
                Some(now) => kv = now,
                None => return Ok(()),
            }
        }
        Ok(())
    }
}
