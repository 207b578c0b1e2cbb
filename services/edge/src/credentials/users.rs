//! Users as the edge follows them (`config/users/*`): each user's site, extension and
//! calling rules, and the companion phones that name it (phones may arrive before their
//! user, or stay after it: the link is kept from the phone's side). A call for a user's
//! extension rings the first line of each companion phone; a call from a companion phone
//! is decided by the user's site and rules.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use dialtone_proto::config::v1::User;

use super::{CredentialCache, LineEntry, calling::PhoneCalling, extensions::Holder};

/// What the edge keeps of a user.
pub(super) struct UserRec {
    pub site: String,
    pub extension: Option<String>,
    /// Its own restrictions and call patterns, if it sets any.
    pub calling: Option<Arc<PhoneCalling>>,
}

/// Users and their companion phones.
#[derive(Default)]
pub(super) struct Users {
    pub by_id: HashMap<Arc<str>, UserRec>,
    /// User id → the phones naming it, in id order (so every edge rings them alike).
    pub companions: HashMap<String, BTreeSet<Arc<str>>>,
}

impl Users {
    pub fn add_companion(&mut self, user: &str, phone: &Arc<str>) {
        self.companions
            .entry(user.to_owned())
            .or_default()
            .insert(phone.clone());
    }

    pub fn remove_companion(&mut self, user: &str, phone: &str) {
        if let Some(set) = self.companions.get_mut(user) {
            set.remove(phone);
            if set.is_empty() {
                self.companions.remove(user);
            }
        }
    }
}

impl CredentialCache {
    /// A user was created or changed.
    pub fn put_user(&mut self, u: &User) {
        self.remove_user(&u.id);
        let id: Arc<str> = Arc::from(u.id.as_str());
        let rec = UserRec {
            site: u.site_id.clone(),
            extension: (!u.site_id.is_empty() && !u.extension.is_empty())
                .then(|| u.extension.clone()),
            calling: PhoneCalling::of_user(u).map(Arc::new),
        };
        if let Some(ext) = &rec.extension {
            self.extensions
                .put(&rec.site, ext, Holder::User(id.clone()));
        }
        self.users.by_id.insert(id, rec);
    }

    /// A user was deleted.
    pub fn remove_user(&mut self, id: &str) {
        if let Some((id, old)) = self.users.by_id.remove_entry(id)
            && let Some(ext) = &old.extension
        {
            self.extensions.remove(&old.site, ext, &Holder::User(id));
        }
    }

    /// The lines an extension's holder answers with: a phone's first line, or the first
    /// line of each of a user's companion phones.
    pub(super) fn holder_lines(&self, holder: &Holder) -> Vec<Arc<LineEntry>> {
        let first_line = |phone: &str| {
            let sip_user = &self.phones.get(phone)?.lines.first()?.sip_user;
            self.lookup(sip_user)
        };
        match holder {
            Holder::Phone(p) => first_line(p).into_iter().collect(),
            Holder::User(u) => self
                .users
                .companions
                .get(&**u)
                .into_iter()
                .flatten()
                .filter_map(|p| first_line(p))
                .collect(),
        }
    }

    /// The user a companion phone names, if that user is known here.
    pub(super) fn user_of(&self, phone_user: Option<&str>) -> Option<&UserRec> {
        self.users.by_id.get(phone_user?)
    }
}
