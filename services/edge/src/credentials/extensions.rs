//! Site extensions: which phone answers to an extension dialled within a site. The config
//! role keeps extensions unique within a site (`index/extension/{site}/{extension}`); this
//! is the edge's copy, built from the phones it follows, so dialling one costs a map
//! lookup and never a store read.

use std::{collections::HashMap, sync::Arc};

/// Site id → extension → phone id (nested, so a lookup by a dialled string copies
/// nothing).
#[derive(Default)]
pub struct SiteExtensions {
    by_site: HashMap<String, HashMap<String, Arc<str>>>,
}

impl SiteExtensions {
    /// `phone` now holds `extension` in `site`.
    pub fn put(&mut self, site: &str, extension: &str, phone: &Arc<str>) {
        self.by_site
            .entry(site.to_owned())
            .or_default()
            .insert(extension.to_owned(), phone.clone());
    }

    /// `phone` no longer holds `extension` in `site` (another phone that took it meanwhile
    /// keeps it: changes may arrive in any order within a watch's batch).
    pub fn remove(&mut self, site: &str, extension: &str, phone: &str) {
        let Some(extensions) = self.by_site.get_mut(site) else {
            return;
        };
        if extensions.get(extension).is_some_and(|p| &**p == phone) {
            extensions.remove(extension);
            if extensions.is_empty() {
                self.by_site.remove(site);
            }
        }
    }

    /// The phone holding `extension` in `site`.
    pub fn get(&self, site: &str, extension: &str) -> Option<&Arc<str>> {
        self.by_site.get(site)?.get(extension)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_belongs_to_its_last_holder() {
        let (a, b): (Arc<str>, Arc<str>) = ("p-a".into(), "p-b".into());
        let mut x = SiteExtensions::default();
        x.put("hq", "201", &a);
        assert_eq!(x.get("hq", "201"), Some(&a));
        assert_eq!(x.get("branch", "201"), None, "extensions are per site");
        // B takes 201 before A's change that gives it up arrives: B keeps it.
        x.put("hq", "201", &b);
        x.remove("hq", "201", "p-a");
        assert_eq!(x.get("hq", "201"), Some(&b));
        x.remove("hq", "201", "p-b");
        assert_eq!(x.get("hq", "201"), None);
    }
}
