//! The edge's credentials cache: what it needs to authenticate and register each line,
//! derived from `config/phones/*` and `config/base-settings/*`, and where each phone is
//! placed (its site's edge group, from `config/sites/*` and `config/edge-groups/*`). Pure
//! state; it is fed by the watch in [`crate::credentials::sync`], so neither the REGISTER
//! path nor delivery waits on the store for it.

pub(crate) mod calling;
mod dialling;
pub(crate) mod extensions;
mod line;
pub(crate) mod media;
#[cfg(test)]
mod offers_tests;
mod places;
pub(crate) mod remote;
pub(crate) mod sync;
pub(crate) mod trunks;
pub(crate) mod users;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use dialtone_domain::{
    peers::TrustedPeer,
    settings::{effective, template},
};
use dialtone_proto::config::v1::{
    BaseSettings, Edge, MetaBase, Phone, PhoneKind, PhoneSettings, assignment::Mode,
};
use dialtone_sip::{
    offer::{Offer, OfferCounts},
    registration::Policy,
};

pub use line::{Limits, LineEntry, UnknownOffers};

use line::{Ha1, offer_of};

use crate::credentials::{
    calling::{PhoneCalling, SiteCalling},
    extensions::{Holder, SiteExtensions},
    remote::RemotePhones,
};

struct PhoneRec {
    base: String,
    site: String,
    overrides: Option<Box<PhoneSettings>>,
    lines: Vec<LineCreds>,
    unassigned: bool,
    /// The extension of a site-assigned phone within its site.
    extension: Option<String>,
    /// The restrictions and call patterns it sets for itself, if any.
    calling: Option<Arc<PhoneCalling>>,
    /// The user a companion phone names.
    user: Option<String>,
}

struct LineCreds {
    sip_user: String,
    ha1_md5: String,
    ha1_sha256: String,
}

/// What a change did to a phone's lines, so its bindings can follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The phone is gone: drop every binding.
    pub removed: bool,
    /// Lines (indexes) whose SIP user or password changed, or that are gone: drop their
    /// bindings (a password reset logs out whoever registered with the old one).
    pub lines_gone: Vec<u32>,
}

/// Indexes of `old`'s lines whose SIP user or password is not the one `new_line(index)`
/// (SIP user, MD5 HA1) has now.
fn lines_gone<'a>(
    old: &PhoneRec,
    new_line: impl Fn(usize) -> Option<(&'a str, &'a str)>,
) -> Vec<u32> {
    old.lines
        .iter()
        .enumerate()
        .filter(|(i, l)| new_line(*i) != Some((l.sip_user.as_str(), l.ha1_md5.as_str())))
        .map(|(i, _)| i as u32)
        .collect()
}

/// The cache itself.
pub struct CredentialCache {
    limits: Limits,
    by_user: HashMap<String, Arc<LineEntry>, foldhash::fast::RandomState>,
    /// How many lines of `by_user` get each digest offer.
    offers: OfferCounts,
    /// What a user nobody has is offered while there are no lines: generic SIP's, within
    /// the bound (computed once: it is read for every unknown user's challenge).
    no_lines_offer: Offer,
    phones: HashMap<Arc<str>, PhoneRec>,
    bases: HashMap<String, (MetaBase, PhoneSettings)>,
    base_phones: HashMap<String, HashSet<Arc<str>>>,
    /// Site id → its edge group id.
    sites: HashMap<String, String>,
    /// Site id → what its phones may dial beyond extensions.
    calling: HashMap<String, Arc<SiteCalling>>,
    /// Site code → site id.
    site_codes: HashMap<String, String>,
    /// Edge group id → its configured edges.
    groups: HashMap<String, Vec<Edge>>,
    /// REMOTE phones, by the user they answer to.
    pub remote: RemotePhones,
    /// Phones and users by their extension within their site.
    extensions: SiteExtensions,
    /// Users and their companion phones.
    users: users::Users,
    /// Carrier trunks by id (in id order: see `did_lines`).
    trunks: std::collections::BTreeMap<Arc<str>, trunks::TrunkRec>,
    /// Trusted SIP peers, in id order (a handful: matched one by one).
    peers: Vec<TrustedPeer>,
    /// Media servers by id.
    media_servers: media::MediaServers,
}

impl CredentialCache {
    pub fn new(limits: Limits) -> Self {
        CredentialCache {
            limits,
            by_user: HashMap::default(),
            offers: OfferCounts::default(),
            no_lines_offer: offer_of(&template(MetaBase::GenericSip), limits.digest_bound),
            phones: HashMap::new(),
            bases: HashMap::new(),
            base_phones: HashMap::new(),
            sites: HashMap::new(),
            calling: HashMap::new(),
            site_codes: HashMap::new(),
            groups: HashMap::new(),
            remote: RemotePhones::default(),
            extensions: SiteExtensions::default(),
            users: users::Users::default(),
            trunks: std::collections::BTreeMap::new(),
            peers: Vec::new(),
            media_servers: media::MediaServers::default(),
        }
    }

    pub fn lookup(&self, sip_user: &str) -> Option<Arc<LineEntry>> {
        self.by_user.get(sip_user).cloned()
    }

    /// What the digest offer of a challenge to a SIP user nobody has is drawn from (see
    /// [`UnknownOffers::pick`]): a copy, so the draw's keyed hash is computed after the
    /// cache's lock is let go.
    pub fn unknown_offers(&self) -> UnknownOffers {
        UnknownOffers {
            counts: self.offers,
            fallback: self.no_lines_offer,
        }
    }

    /// Number of registrable lines.
    pub fn lines(&self) -> usize {
        self.by_user.len()
    }

    /// The limits it was made with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// What moving from this cache to `fresh` (a full re-listing) means for the bindings:
    /// phones gone entirely, and lines renamed, removed or with a new password.
    pub fn changes_to(&self, fresh: &CredentialCache) -> Vec<(String, Change)> {
        self.phones
            .iter()
            .filter_map(|(id, old)| {
                let change = match fresh.phones.get(id) {
                    None => Change {
                        removed: true,
                        lines_gone: Vec::new(),
                    },
                    Some(new) => Change {
                        removed: false,
                        lines_gone: lines_gone(old, |i| {
                            new.lines
                                .get(i)
                                .map(|l| (l.sip_user.as_str(), l.ha1_md5.as_str()))
                        }),
                    },
                };
                (change != Change::default()).then(|| (id.to_string(), change))
            })
            .collect()
    }

    /// Whether a phone is known.
    pub fn has_phone(&self, id: &str) -> bool {
        self.phones.contains_key(id)
    }

    /// A phone was created or changed.
    pub fn put_phone(&mut self, phone: &Phone) -> Change {
        self.remote.put_phone(phone);
        let id: Arc<str> = self
            .phones
            .get_key_value(phone.id.as_str())
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Arc::from(phone.id.as_str()));
        let old = self.phones.remove(&id);
        let mut change = Change::default();
        if let Some(old) = &old {
            self.forget_lines(&id, old);
            if let Some(set) = self.base_phones.get_mut(&old.base) {
                set.remove(&id);
            }
            change.lines_gone = lines_gone(old, |i| {
                phone.lines.get(i).map(|l| {
                    let md5 = l.credentials.as_ref().map_or("", |c| c.ha1_md5.as_str());
                    (l.sip_user.as_str(), md5)
                })
            });
        }
        // Remote phones never register here; disabled ones may not.
        if phone.kind == PhoneKind::Remote as i32 || phone.disabled {
            change.removed = old.is_some();
            return change;
        }
        let mode = phone.assignment.as_ref().and_then(|a| a.mode.as_ref());
        let rec = PhoneRec {
            base: phone.base_settings_id.clone(),
            site: phone.site_id.clone(),
            overrides: phone
                .overrides
                .as_ref()
                .filter(|o| **o != PhoneSettings::default())
                .map(|o| Box::new(o.clone())),
            lines: phone
                .lines
                .iter()
                .map(|l| {
                    let c = l.credentials.clone().unwrap_or_default();
                    LineCreds {
                        sip_user: l.sip_user.clone(),
                        ha1_md5: c.ha1_md5,
                        ha1_sha256: c.ha1_sha256,
                    }
                })
                .collect(),
            unassigned: !matches!(mode, Some(Mode::User(_) | Mode::Site(_))),
            extension: match mode {
                Some(Mode::Site(s)) if !s.extension.is_empty() => Some(s.extension.clone()),
                _ => None,
            },
            calling: match mode {
                Some(Mode::Site(s)) => PhoneCalling::of(s).map(Arc::new),
                _ => None,
            },
            user: match mode {
                Some(Mode::User(u)) => Some(u.user_id.clone()),
                _ => None,
            },
        };
        if let Some(ext) = &rec.extension {
            self.extensions
                .put(&rec.site, ext, Holder::Phone(id.clone()));
        }
        if let Some(user) = &rec.user {
            self.users.add_companion(user, &id);
        }
        self.base_phones
            .entry(rec.base.clone())
            .or_default()
            .insert(id.clone());
        self.index_lines(&id, &rec);
        self.phones.insert(id, rec);
        change
    }

    /// A phone was deleted.
    pub fn remove_phone(&mut self, id: &str) -> Change {
        self.remote.remove_phone(id);
        let Some((id, old)) = self.phones.remove_entry(id) else {
            return Change::default();
        };
        self.forget_lines(&id, &old);
        if let Some(set) = self.base_phones.get_mut(&old.base) {
            set.remove(&id);
        }
        Change {
            removed: true,
            lines_gone: Vec::new(),
        }
    }

    /// A profile was created or changed: its phones' limits follow.
    pub fn put_base(&mut self, base: &BaseSettings) {
        let meta = MetaBase::try_from(base.meta_base).unwrap_or(MetaBase::Unspecified);
        self.bases.insert(
            base.id.clone(),
            (meta, base.settings.clone().unwrap_or_default()),
        );
        self.reindex_base(&base.id);
    }

    /// A profile was deleted (only possible when no phone uses it).
    pub fn remove_base(&mut self, id: &str) {
        self.bases.remove(id);
        self.reindex_base(id);
    }

    fn reindex_base(&mut self, base: &str) {
        let ids: Vec<Arc<str>> = self
            .base_phones
            .get(base)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            if let Some(rec) = self.phones.remove(&id) {
                self.index_lines(&id, &rec);
                self.phones.insert(id, rec);
            }
        }
    }

    fn forget_lines(&mut self, id: &Arc<str>, rec: &PhoneRec) {
        for l in &rec.lines {
            if let Some(old) = self.by_user.remove(l.sip_user.as_str()) {
                self.offers.remove(old.offer);
            }
        }
        if let Some(ext) = &rec.extension {
            self.extensions
                .remove(&rec.site, ext, &Holder::Phone(id.clone()));
        }
        if let Some(user) = &rec.user {
            self.users.remove_companion(user, id);
        }
    }

    /// A phone's effective settings: its meta-base's defaults, its profile's, its own.
    fn settings_of(&self, rec: &PhoneRec) -> PhoneSettings {
        let (meta, profile) = self
            .bases
            .get(&rec.base)
            .cloned()
            .unwrap_or((MetaBase::Unspecified, PhoneSettings::default()));
        effective(meta, &profile, rec.overrides.as_deref())
    }

    /// What the edge answers phone `id`'s challenges with: its profile's Digest
    /// Authentication user and password (read when a phone challenges, which is rare: not
    /// kept per line).
    pub fn phone_auth(&self, id: &str) -> Option<Arc<trunks::DigestAuth>> {
        let s = self.effective_settings(id)?;
        Some(Arc::new(trunks::DigestAuth {
            username: s.digest_auth_user?,
            password: s.digest_auth_password?,
            realm: None,
            qop_only: true,
        }))
    }

    /// The SIP DSCP of the edge's packets to phone `id` (0 when it is not known here).
    pub fn phone_sip_dscp(&self, id: &str) -> u8 {
        self.effective_settings(id)
            .and_then(|s| s.sip_dscp)
            .map_or(0, |d| d.min(63) as u8)
    }

    /// The effective settings of phone `id`, if it is known here.
    pub fn effective_settings(&self, id: &str) -> Option<PhoneSettings> {
        self.phones.get(id).map(|rec| self.settings_of(rec))
    }

    fn index_lines(&mut self, id: &Arc<str>, rec: &PhoneRec) {
        let s = self.settings_of(rec);
        let period = s.registration_period_s.unwrap_or(3600);
        let policy = Policy {
            min_expires: self.limits.min_expires,
            max_expires: self.limits.max_expires.max(self.limits.min_expires),
            default_expires: period.clamp(self.limits.min_expires, self.limits.max_expires),
            max_bindings: s.max_bindings.unwrap_or(10).max(1) as usize,
        };
        let persistent_timeout_s = s
            .persistent_connection
            .unwrap_or(false)
            .then(|| s.persistent_connection_timeout_s.unwrap_or(300));
        let offer = offer_of(&s, self.limits.digest_bound);
        // Validation keeps it within 0-63; the bound here only guards the shift by two.
        let sip_dscp = s.sip_dscp.unwrap_or(0).min(63) as u8;
        for (i, l) in rec.lines.iter().enumerate() {
            if l.sip_user.is_empty() || l.ha1_md5.is_empty() {
                continue;
            }
            self.offers.add(offer);
            let replaced = self.by_user.insert(
                l.sip_user.clone(),
                Arc::new(LineEntry {
                    phone_id: id.clone(),
                    line_index: i as u32,
                    sip_user: l.sip_user.clone(),
                    ha1_md5: Ha1::new(&l.ha1_md5),
                    ha1_sha256: Ha1::new(&l.ha1_sha256),
                    policy,
                    mwi: s.mwi_enabled.unwrap_or(false),
                    persistent_timeout_s,
                    unassigned: rec.unassigned,
                    offer,
                    sip_dscp,
                }),
            );
            if let Some(old) = replaced {
                self.offers.remove(old.offer);
            }
        }
    }
}

#[cfg(test)]
mod tests;
