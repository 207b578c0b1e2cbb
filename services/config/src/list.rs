//! Listing phones with filters, in a stable order, page by page.
//!
//! The most selective filter picks the index walked (hardware id, then site, then profile,
//! then name prefix, else the phones themselves in id order); the other filters are applied
//! to what it yields. A page examines at most `MAX_SCAN` entries, so a page may hold fewer
//! phones than asked while `next_page_token` is non-empty.

use dialtone_domain::keys;
use dialtone_proto::config::v1::{Phone, PhoneFilter, PhoneKind};

use crate::{
    ConfigCore,
    error::{ConfigError, Result},
    repo::{self, decode},
    validate,
};

const MAX_SCAN: usize = 10_000;
/// How long "every phone is named in the index" is trusted before it is counted again.
const COVER_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);
/// How soon it is counted again after it did not hold.
const COVER_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// A filter with its hardware id normalised.
pub fn normalise(mut f: PhoneFilter) -> Result<PhoneFilter> {
    if !f.hardware_id.is_empty() {
        f.hardware_id = validate::hardware_id(&f.hardware_id)
            .map_err(|r| ConfigError::invalid("filter.hardware_id", r))?;
    }
    if PhoneKind::try_from(f.kind).is_err() {
        return Err(ConfigError::invalid("filter.kind", "unknown phone kind"));
    }
    Ok(f)
}

/// Whether a phone passes every filter.
pub fn matches(f: &PhoneFilter, p: &Phone) -> bool {
    (f.site_id.is_empty() || p.site_id == f.site_id)
        && (f.base_settings_id.is_empty() || p.base_settings_id == f.base_settings_id)
        && (f.kind == 0 || p.kind == f.kind)
        && (f.name_prefix.is_empty() || p.name.starts_with(&f.name_prefix))
        && (f.hardware_id.is_empty() || p.hardware_id == f.hardware_id)
        && (f.sip_user.is_empty() || p.lines.iter().any(|l| l.sip_user == f.sip_user))
}

/// Whether the filter selects anything narrower than "every phone".
pub fn is_empty(f: &PhoneFilter) -> bool {
    f.site_id.is_empty()
        && f.base_settings_id.is_empty()
        && f.kind == 0
        && f.name_prefix.is_empty()
        && f.hardware_id.is_empty()
        && f.sip_user.is_empty()
}

/// The prefix to walk for a filter, and whether its entries are the phones themselves.
fn walk_prefix(f: &PhoneFilter) -> (String, bool) {
    if !f.site_id.is_empty() {
        (keys::site_phones(&f.site_id), false)
    } else if !f.base_settings_id.is_empty() {
        (keys::base_phones(&f.base_settings_id), false)
    } else if !f.name_prefix.is_empty() {
        (format!("{}{}", keys::PHONE_NAMES, f.name_prefix), false)
    } else {
        (keys::PHONES.to_owned(), true)
    }
}

/// The end of the window of `width` buckets holding the cursor, where bucket `b` is the
/// keys whose id starts with the two hex digits of `b`. None: walk the rest of the prefix
/// (the last window, or a cursor that is not a hex id).
fn window_end(prefix: &str, after: Option<&str>, width: u32) -> Option<String> {
    let suffix = after.and_then(|a| a.strip_prefix(prefix)).unwrap_or("");
    let bucket = if suffix.is_empty() {
        0
    } else {
        u32::from(dialtone_store::window_of(suffix)?)
    };
    let hi = bucket + width;
    (hi < 256).then(|| format!("{prefix}{hi:02x}"))
}

fn phone_id_of(index_key: &str) -> &str {
    index_key
        .rsplit(['/', keys::NAME_SEP])
        .next()
        .unwrap_or(index_key)
}

impl ConfigCore {
    /// One page of phones (credentials redacted by the caller).
    pub async fn list_phones(
        &self,
        filter: PhoneFilter,
        page_size: i32,
        token: &str,
    ) -> Result<(Vec<Phone>, String)> {
        let filter = normalise(filter)?;
        let limit = repo::page_size(page_size)?;
        if !filter.hardware_id.is_empty() {
            return self
                .list_by_index(&filter, &keys::hardware(&filter.hardware_id))
                .await;
        }
        if !filter.sip_user.is_empty() {
            return self
                .list_by_index(&filter, &keys::sip_user(&filter.sip_user))
                .await;
        }
        let (prefix, direct) = walk_prefix(&filter);
        // Every index but the name index ends in the phone id (a UUID: uniform hex).
        let windowed = filter.name_prefix.is_empty()
            || !filter.site_id.is_empty()
            || !filter.base_settings_id.is_empty();
        let mut after = (!token.is_empty()).then(|| format!("{prefix}{token}"));
        let mut out = Vec::with_capacity(limit);
        let mut scanned = 0;
        let mut width = 1;
        loop {
            let chunk = (limit - out.len()).clamp(64, 1000);
            let end = if windowed {
                window_end(&prefix, after.as_deref(), width)
            } else {
                None
            };
            let page = match &end {
                Some(e) => {
                    self.store
                        .range_until(&prefix, after.as_deref(), e, chunk)
                        .await?
                }
                None => self.store.range(&prefix, after.as_deref(), chunk).await?,
            };
            let phones: Vec<Option<(Phone, i64)>> = if direct {
                page.kvs
                    .iter()
                    .map(|kv| Ok(Some((decode(kv, "phone")?, kv.mod_revision))))
                    .collect::<Result<_>>()?
            } else {
                let ids: Vec<String> = page
                    .kvs
                    .iter()
                    .map(|kv| keys::phone(phone_id_of(&kv.key)))
                    .collect();
                let kvs = self.store.get_many(&ids).await?;
                kvs.iter()
                    .map(|kv| {
                        kv.as_ref()
                            .map(|kv| Ok((decode(kv, "phone")?, kv.mod_revision)))
                            .transpose()
                    })
                    .collect::<Result<_>>()?
            };
            for (i, (kv, phone)) in page.kvs.iter().zip(phones).enumerate() {
                if let Some((mut p, v)) = phone.filter(|(p, _)| matches(&filter, p)) {
                    p.version = v;
                    out.push(p);
                }
                let last_of_prefix = end.is_none() && !page.more && i + 1 == page.kvs.len();
                if out.len() == limit && !last_of_prefix {
                    return Ok((out, kv.key[prefix.len()..].to_owned()));
                }
            }
            scanned += page.kvs.len();
            if page.more {
                // More in this window (or, unwindowed, in the prefix).
                after = page.kvs.last().map(|kv| kv.key.clone());
            } else if let Some(e) = end {
                // Window done: the next starts at its end (no key equals a window bound,
                // so "after the bound" loses nothing). Short windows double the next one.
                if page.kvs.len() < chunk {
                    width = (width * 2).min(256);
                }
                after = Some(e);
            } else {
                return Ok((out, String::new()));
            }
            if scanned >= MAX_SCAN {
                let cursor = after.as_deref().unwrap_or(&prefix);
                return Ok((out, cursor[prefix.len()..].to_owned()));
            }
        }
    }

    /// The one phone a unique index entry (`index`: its hardware id's or SIP user's) names,
    /// if it passes the rest of the filter.
    async fn list_by_index(
        &self,
        filter: &PhoneFilter,
        index: &str,
    ) -> Result<(Vec<Phone>, String)> {
        let Some(idx) = self.store.get(index).await? else {
            return Ok((Vec::new(), String::new()));
        };
        let id = String::from_utf8_lossy(&idx.value).into_owned();
        let found = repo::load::<Phone>(&self.store, &keys::phone(&id), "phone").await?;
        Ok((
            found
                .filter(|(p, _)| matches(filter, p))
                .map(|(mut p, v)| {
                    p.version = v;
                    p
                })
                .into_iter()
                .collect(),
            String::new(),
        ))
    }

    /// The phones in name order (case-folded: names are unique so folded), `limit` of them
    /// after the first `offset`, and how many phones there are, through the unique-name
    /// index: from the node's in-memory view of it ([`crate::name_order`]) once listed,
    /// from the store until then. None while an upgrade is still filling that index: the
    /// caller then reads and sorts the phones itself.
    pub async fn phones_by_name(
        &self,
        offset: u64,
        limit: usize,
    ) -> Result<Option<(Vec<Phone>, u64)>> {
        if !self.names_cover_every_phone().await? {
            return Ok(None);
        }
        self.names.start_once(&self.store);
        let (ids, total) = match self.names.page(offset, limit) {
            Some(page) => page,
            None => self.names_from_store(offset, limit).await?,
        };
        let keys: Vec<String> = ids.iter().map(|id| keys::phone(id)).collect();
        let mut out = Vec::with_capacity(keys.len());
        // A phone deleted between the index and its read is left out of the page.
        for kv in self.store.get_many(&keys).await?.into_iter().flatten() {
            let mut p: Phone = decode(&kv, "phone")?;
            p.version = kv.mod_revision;
            out.push(p);
        }
        Ok(Some((out, total)))
    }

    /// Whether every phone has its unique-name entry: not while an upgrade fills the
    /// index, nor while phones from before names were unique still share a name (the
    /// upgrade indexes one of them and reports the others). Counted both ways (each
    /// count costs O(phones) on etcd) at most every [`COVER_RECHECK`], or
    /// [`COVER_RETRY`] after they differed (a create between the two counts can do it).
    async fn names_cover_every_phone(&self) -> Result<bool> {
        use std::time::Instant;
        if let Some((at, covered)) = *self.names_cover.lock() {
            let fresh = if covered { COVER_RECHECK } else { COVER_RETRY };
            if at.elapsed() < fresh {
                return Ok(covered);
            }
        }
        let covered = self
            .store
            .get(keys::PHONE_NAMES_BACKFILLED)
            .await?
            .is_some()
            && self.store.count(keys::PHONES).await?
                == self.store.count(&keys::unique_phone_name("")).await?;
        *self.names_cover.lock() = Some((Instant::now(), covered));
        Ok(covered)
    }

    /// [`ConfigCore::phones_by_name`]'s ids and total read from the store's index (each
    /// read costs O(phones) on etcd: only until the in-memory view is listed).
    async fn names_from_store(&self, offset: u64, limit: usize) -> Result<(Vec<String>, u64)> {
        let names = keys::unique_phone_name("");
        let total = self.store.count(&names).await?;
        // Skipping walks the index's small entries, never the phones.
        let mut after: Option<String> = None;
        let mut skip = offset;
        while skip > 0 {
            let n = usize::try_from(skip.min(1000)).unwrap_or(1000);
            let page = self.store.range(&names, after.as_deref(), n).await?;
            skip = skip.saturating_sub(page.kvs.len() as u64);
            after = page.kvs.last().map(|kv| kv.key.clone());
            if !page.more || page.kvs.is_empty() {
                return Ok((Vec::new(), total));
            }
        }
        let page = self.store.range(&names, after.as_deref(), limit).await?;
        let ids = page
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .collect();
        Ok((ids, total))
    }

    /// Every phone matching a filter (for export and migration), at most `cap`.
    pub async fn all_phones(&self, filter: PhoneFilter, cap: usize) -> Result<Vec<Phone>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let (page, next) = self.list_phones(filter.clone(), 1000, &token).await?;
            out.extend(page);
            if out.len() > cap {
                return Err(ConfigError::invalid(
                    "filter",
                    format!("selects more than {cap} phones; narrow it"),
                ));
            }
            if next.is_empty() {
                return Ok(out);
            }
            token = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_tile_the_id_space() {
        let p = "config/phones/";
        let cases: &[(Option<&str>, u32, Option<&str>)] = &[
            (None, 1, Some("config/phones/01")),
            (Some("config/phones/"), 4, Some("config/phones/04")),
            (Some("config/phones/ab"), 1, Some("config/phones/ac")),
            (Some("config/phones/ab12-uuid"), 2, Some("config/phones/ad")),
            (Some("config/phones/f0"), 16, None),
            (Some("config/phones/ff"), 1, None),
            (Some("config/phones/AB"), 1, None),
            (Some("config/phones/z"), 1, None),
        ];
        for (after, width, want) in cases {
            assert_eq!(
                window_end(p, *after, *width).as_deref(),
                *want,
                "{after:?} {width}"
            );
        }
    }

    #[test]
    fn index_keys_yield_phone_ids() {
        assert_eq!(phone_id_of("index/site-phones/hq/abc-1"), "abc-1");
        assert_eq!(
            phone_id_of(&keys::phone_name("Lobby / east", "abc-2")),
            "abc-2"
        );
    }

    #[test]
    fn filters_combine_with_and() {
        let p = Phone {
            name: "Lobby 1".into(),
            site_id: "hq".into(),
            base_settings_id: "b".into(),
            kind: 1,
            hardware_id: "0004f2aabbcc".into(),
            ..Default::default()
        };
        let yes = [
            PhoneFilter::default(),
            PhoneFilter {
                site_id: "hq".into(),
                name_prefix: "Lob".into(),
                ..Default::default()
            },
            PhoneFilter {
                kind: 1,
                hardware_id: "0004f2aabbcc".into(),
                ..Default::default()
            },
        ];
        let no = [
            PhoneFilter {
                site_id: "branch".into(),
                ..Default::default()
            },
            PhoneFilter {
                site_id: "hq".into(),
                kind: 2,
                ..Default::default()
            },
            PhoneFilter {
                name_prefix: "lob".into(),
                ..Default::default()
            },
        ];
        assert!(yes.iter().all(|f| matches(f, &p)));
        assert!(no.iter().all(|f| !matches(f, &p)));
        assert!(
            normalise(PhoneFilter {
                hardware_id: "00:04:F2:AA:BB:CC".into(),
                ..Default::default()
            })
            .unwrap()
            .hardware_id
                == "0004f2aabbcc"
        );
        assert!(
            normalise(PhoneFilter {
                kind: 99,
                ..Default::default()
            })
            .is_err()
        );
    }
}
