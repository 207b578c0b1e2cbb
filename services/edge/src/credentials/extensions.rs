//! Site extensions: which phone or user answers to an extension dialled within a site. The
//! config role keeps extensions unique within a site (`index/extension/{site}/{extension}`,
//! phones and users alike); this is the edge's copy, built from the phones and users it
//! follows, so dialling one costs a map lookup and never a store read.

use std::{collections::HashMap, sync::Arc};

/// Who holds an extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A site-assigned phone (its first line answers).
    Phone(Arc<str>),
    /// A user (every companion phone rings).
    User(Arc<str>),
}

/// Site id → extension → holder (nested, so a lookup by a dialled string copies nothing).
#[derive(Default)]
pub struct SiteExtensions {
    by_site: HashMap<String, HashMap<String, Holder>>,
}

impl SiteExtensions {
    /// `holder` now holds `extension` in `site`.
    pub fn put(&mut self, site: &str, extension: &str, holder: Holder) {
        self.by_site
            .entry(site.to_owned())
            .or_default()
            .insert(extension.to_owned(), holder);
    }

    /// `holder` no longer holds `extension` in `site` (another that took it meanwhile
    /// keeps it: changes may arrive in any order within a watch's batch).
    pub fn remove(&mut self, site: &str, extension: &str, holder: &Holder) {
        let Some(extensions) = self.by_site.get_mut(site) else {
            return;
        };
        if extensions.get(extension) == Some(holder) {
            extensions.remove(extension);
            if extensions.is_empty() {
                self.by_site.remove(site);
            }
        }
    }

    /// Who holds `extension` in `site`.
    pub fn get(&self, site: &str, extension: &str) -> Option<&Holder> {
        self.by_site.get(site)?.get(extension)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_belongs_to_its_last_holder() {
        let (a, b) = (Holder::Phone("p-a".into()), Holder::User("u-b".into()));
        let mut x = SiteExtensions::default();
        x.put("hq", "201", a.clone());
        assert_eq!(x.get("hq", "201"), Some(&a));
        assert_eq!(x.get("branch", "201"), None, "extensions are per site");
        // B takes 201 before A's change that gives it up arrives: B keeps it.
        x.put("hq", "201", b.clone());
        x.remove("hq", "201", &a);
        assert_eq!(x.get("hq", "201"), Some(&b));
        // A phone and a user of the same id are different holders.
        x.remove("hq", "201", &Holder::Phone("u-b".into()));
        assert_eq!(x.get("hq", "201"), Some(&b));
        x.remove("hq", "201", &b);
        assert_eq!(x.get("hq", "201"), None);
    }
}
