//! What a phone of the cache may dial and who answers: the lines an extension rings
//! within the caller's site or behind a site code, REMOTE phones, and the calling rules
//! (the site's and the phone's own) a call is decided by.

use std::sync::Arc;

use super::{
    CredentialCache, LineEntry, PhoneRec,
    calling::{PhoneCalling, SiteCalling},
    remote::RemoteCall,
};

impl CredentialCache {
    /// The lines that ring when `caller` (a phone id) dials `extension` within its own
    /// site (its user's, for a companion phone): the first line of the site-assigned phone
    /// holding it, or of each companion phone of the user holding it.
    pub fn extension_lines(&self, caller: &str, extension: &str) -> Vec<Arc<LineEntry>> {
        let Some(site) = self.phones.get(caller).map(|p| self.calling_site(p)) else {
            return Vec::new();
        };
        self.extensions
            .get(site, extension)
            .map(|h| self.holder_lines(h))
            .unwrap_or_default()
    }

    /// The lines answering `dialled` as `{site code}{extension}` of any site: the longest
    /// code that makes an extension of its site wins.
    pub fn coded_extension_lines(&self, dialled: &str) -> Vec<Arc<LineEntry>> {
        self.coded(dialled, |site, extension| {
            let lines = self.holder_lines(self.extensions.get(site, extension)?);
            (!lines.is_empty()).then_some(lines)
        })
        .unwrap_or_default()
    }

    /// `found` of the longest `{site code}{extension}` split of `dialled` it finds.
    fn coded<T>(&self, dialled: &str, found: impl Fn(&str, &str) -> Option<T>) -> Option<T> {
        (1..=dialled.len().min(6)).rev().find_map(|n| {
            let (code, extension) = (dialled.get(..n)?, dialled.get(n..)?);
            found(self.site_codes.get(code)?, extension)
        })
    }

    /// Where a call from phone `caller` for `dialled` is redirected when a REMOTE phone
    /// holds it as an extension: of the caller's site, or behind another site's code.
    pub fn remote_extension(&self, caller: &str, dialled: &str) -> Option<RemoteCall> {
        let own = self.phones.get(caller).map(|p| self.calling_site(p));
        own.and_then(|site| self.remote.at_extension(site, dialled))
            .or_else(|| self.coded(dialled, |site, e| self.remote.at_extension(site, e)))
    }

    /// The site whose plan and extensions a phone's calls use: its user's for a companion
    /// phone whose user is known here, else its own.
    pub(super) fn calling_site<'a>(&'a self, phone: &'a PhoneRec) -> &'a str {
        match self.user_of(phone.user.as_deref()) {
            Some(u) if !u.site.is_empty() => &u.site,
            _ => &phone.site,
        }
    }

    /// The site phone `phone_id` calls from (its user's for a companion phone); none for a
    /// phone without one.
    pub fn site_of(&self, phone_id: &str) -> Option<Arc<str>> {
        let site = self.calling_site(self.phones.get(phone_id)?);
        (!site.is_empty()).then(|| site.into())
    }

    /// What the calling site of phone `phone_id` lets it dial beyond extensions, and what
    /// the phone (or its user, for a companion phone) sets for itself instead.
    pub fn calling_of(
        &self,
        phone_id: &str,
    ) -> Option<(Arc<SiteCalling>, Option<Arc<PhoneCalling>>)> {
        let phone = self.phones.get(phone_id)?;
        let own = match self.user_of(phone.user.as_deref()) {
            Some(u) => u.calling.clone(),
            None => phone.calling.clone(),
        };
        Some((self.calling.get(self.calling_site(phone))?.clone(), own))
    }
}
