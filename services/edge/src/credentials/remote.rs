//! REMOTE phones: an external number or SIP address, configuration only. They never
//! register; a call for one whose address is a number goes out through its site's route
//! for that number (the dispatcher decides), anything else is redirected (302) to its
//! remote address.
//!
//! A remote phone is reached where its assignment puts it: a site assignment at its
//! extension under the site's SIP user prefix (`{prefix}{extension}`, as the site's lines
//! are named), a user assignment at the user's id. Lines of registering phones win over a
//! remote phone claiming the same user. Pure state, fed by the config watch.

use std::collections::HashMap;

use dialtone_proto::config::v1::{Phone, PhoneKind, Site, assignment::Mode};

/// How a remote phone is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    /// `{site prefix}{extension}`.
    Extension(String),
    /// The user's id.
    User(String),
}

#[derive(Debug, Clone)]
struct RemoteRec {
    site: String,
    address: Address,
    /// The Contact of the redirect.
    target: String,
    /// The E.164 number it is, if its address is one.
    number: Option<String>,
    /// Always redirect (never call out through the site's routes).
    redirect: bool,
}

/// A REMOTE phone a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCall {
    /// Its site.
    pub site: String,
    /// Where a redirect sends the caller.
    pub target: String,
    /// The E.164 number to call out, unless it always redirects or is a SIP address.
    pub number: Option<String>,
}

/// The remote phones of the fleet, by the Request-URI user they answer to.
#[derive(Debug, Default)]
pub struct RemotePhones {
    by_phone: HashMap<String, RemoteRec>,
    by_user: HashMap<String, String>,
    prefixes: HashMap<String, String>,
}

/// The Contact URI a redirect to `remote_address` carries: SIP URIs as given, E.164
/// numbers as `tel:` URIs (RFC 3966).
pub fn contact_uri(remote_address: &str) -> String {
    if remote_address.starts_with('+') {
        format!("tel:{remote_address}")
    } else {
        remote_address.to_owned()
    }
}

impl RemotePhones {
    fn user_of(&self, r: &RemoteRec) -> Option<String> {
        match &r.address {
            Address::User(u) => Some(u.clone()),
            Address::Extension(e) => self.prefixes.get(&r.site).map(|p| format!("{p}{e}")),
        }
    }

    fn unindex(&mut self, phone_id: &str) {
        if let Some(old) = self.by_phone.get(phone_id)
            && let Some(u) = self.user_of(old)
            && self.by_user.get(&u).is_some_and(|p| p == phone_id)
        {
            self.by_user.remove(&u);
        }
    }

    fn index(&mut self, phone_id: &str) {
        if let Some(r) = self.by_phone.get(phone_id)
            && let Some(u) = self.user_of(r)
        {
            self.by_user.insert(u, phone_id.to_owned());
        }
    }

    /// A phone was created or changed (any kind: one that stopped being remote is dropped).
    pub fn put_phone(&mut self, p: &Phone) {
        self.unindex(&p.id);
        self.by_phone.remove(&p.id);
        if p.kind != PhoneKind::Remote as i32 || p.disabled || p.remote_address.is_empty() {
            return;
        }
        let address = match p.assignment.as_ref().and_then(|a| a.mode.as_ref()) {
            Some(Mode::Site(s)) if !s.extension.is_empty() => {
                Address::Extension(s.extension.clone())
            }
            Some(Mode::User(u)) if !u.user_id.is_empty() => Address::User(u.user_id.clone()),
            // Unassigned: nothing addresses it.
            _ => return,
        };
        self.by_phone.insert(
            p.id.clone(),
            RemoteRec {
                site: p.site_id.clone(),
                address,
                target: contact_uri(&p.remote_address),
                number: p
                    .remote_address
                    .starts_with('+')
                    .then(|| p.remote_address.clone()),
                redirect: p.remote_redirect,
            },
        );
        self.index(&p.id);
    }

    /// A phone was deleted.
    pub fn remove_phone(&mut self, id: &str) {
        self.unindex(id);
        self.by_phone.remove(id);
    }

    /// A site was created or changed: its remote phones answer under its prefix (sites may
    /// arrive after their phones).
    pub fn put_site(&mut self, site: &Site) {
        let phones: Vec<String> = self
            .by_phone
            .iter()
            .filter(|(_, r)| r.site == site.id && matches!(r.address, Address::Extension(_)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &phones {
            self.unindex(id);
        }
        self.prefixes
            .insert(site.id.clone(), site.sip_user_prefix.clone());
        for id in &phones {
            self.index(id);
        }
    }

    /// A site was deleted.
    pub fn remove_site(&mut self, id: &str) {
        let phones: Vec<String> = self
            .by_phone
            .iter()
            .filter(|(_, r)| r.site == id)
            .map(|(p, _)| p.clone())
            .collect();
        for p in &phones {
            self.unindex(p);
        }
        self.prefixes.remove(id);
    }

    /// The remote phone of `site` holding `extension`, if any.
    pub fn at_extension(&self, site: &str, extension: &str) -> Option<RemoteCall> {
        let prefix = self.prefixes.get(site)?;
        self.call(&format!("{prefix}{extension}"))
    }

    /// The remote phone answering to Request-URI user `user`, if any.
    pub fn call(&self, user: &str) -> Option<RemoteCall> {
        let r = self.by_phone.get(self.by_user.get(user)?)?;
        Some(RemoteCall {
            site: r.site.clone(),
            target: r.target.clone(),
            number: r.number.clone().filter(|_| !r.redirect),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_proto::config::v1::{Assignment, SiteAssignment, UserAssignment};

    fn remote(id: &str, site: &str, mode: Option<Mode>, to: &str) -> Phone {
        Phone {
            id: id.into(),
            kind: PhoneKind::Remote as i32,
            site_id: site.into(),
            assignment: mode.map(|m| Assignment { mode: Some(m) }),
            remote_address: to.into(),
            ..Default::default()
        }
    }

    fn ext(e: &str) -> Option<Mode> {
        Some(Mode::Site(SiteAssignment {
            extension: e.into(),
            ..Default::default()
        }))
    }

    fn site(id: &str, prefix: &str) -> Site {
        Site {
            id: id.into(),
            sip_user_prefix: prefix.into(),
            ..Default::default()
        }
    }

    #[test]
    fn numbers_become_tel_uris_and_sip_uris_stay() {
        for (given, want) in [
            ("+15551234567", "tel:+15551234567"),
            ("sip:alice@example.com", "sip:alice@example.com"),
            ("sips:desk@pbx.example.com", "sips:desk@pbx.example.com"),
        ] {
            assert_eq!(contact_uri(given), want);
        }
    }

    #[test]
    fn remote_phones_answer_where_their_assignment_puts_them() {
        let mut r = RemotePhones::default();
        // The phone arrives before its site (the initial load lists phones first).
        r.put_phone(&remote("p1", "hq", ext("2001"), "+15550001"));
        assert_eq!(
            r.call("hqx-2001").map(|c| c.target).as_deref(),
            None,
            "prefix not known yet"
        );
        r.put_site(&site("hq", "hqx-"));
        assert_eq!(
            r.call("hqx-2001").map(|c| c.target).as_deref(),
            Some("tel:+15550001")
        );
        let user = Some(Mode::User(UserAssignment {
            user_id: "alice".into(),
        }));
        r.put_phone(&remote("p2", "hq", user, "sip:alice@example.com"));
        assert_eq!(
            r.call("alice").map(|c| c.target).as_deref(),
            Some("sip:alice@example.com")
        );
        // Unassigned remote phones answer to nothing; a changed extension moves.
        r.put_phone(&remote(
            "p3",
            "hq",
            Some(Mode::Unassigned(Default::default())),
            "+1",
        ));
        assert_eq!(r.call("").map(|c| c.target).as_deref(), None);
        r.put_phone(&remote("p1", "hq", ext("2002"), "+15550001"));
        assert_eq!(r.call("hqx-2001").map(|c| c.target).as_deref(), None);
        assert_eq!(
            r.call("hqx-2002").map(|c| c.target).as_deref(),
            Some("tel:+15550001")
        );
        // A phone that stops being remote, a deleted phone, a deleted site.
        let mut p2 = remote("p2", "hq", None, "sip:alice@example.com");
        p2.kind = PhoneKind::Unmanaged as i32;
        r.put_phone(&p2);
        assert_eq!(r.call("alice").map(|c| c.target).as_deref(), None);
        r.remove_site("hq");
        assert_eq!(r.call("hqx-2002").map(|c| c.target).as_deref(), None);
        r.put_site(&site("hq", "hqx-"));
        assert_eq!(
            r.call("hqx-2002").map(|c| c.target).as_deref(),
            Some("tel:+15550001")
        );
        r.remove_phone("p1");
        assert_eq!(r.call("hqx-2002").map(|c| c.target).as_deref(), None);
        // Disabled remote phones are not reached.
        let mut p4 = remote("p4", "hq", ext("2004"), "+15550004");
        p4.disabled = true;
        r.put_phone(&p4);
        assert_eq!(r.call("hqx-2004").map(|c| c.target).as_deref(), None);
    }

    #[test]
    fn a_remote_number_is_called_out_unless_it_always_redirects() {
        let mut r = RemotePhones::default();
        r.put_site(&Site {
            id: "hq".into(),
            sip_user_prefix: "hqx-".into(),
            ..Default::default()
        });
        let site = |ext: &str| {
            Some(Mode::Site(SiteAssignment {
                extension: ext.into(),
                ..Default::default()
            }))
        };
        r.put_phone(&remote("p1", "hq", site("1"), "+15550001"));
        r.put_phone(&remote("p2", "hq", site("2"), "sip:desk@example.com"));
        let mut always = remote("p3", "hq", site("3"), "+15550003");
        always.remote_redirect = true;
        r.put_phone(&always);
        let number = |ext: &str| r.at_extension("hq", ext).map(|c| c.number);
        assert_eq!(number("1"), Some(Some("+15550001".into())));
        assert_eq!(number("2"), Some(None), "a SIP address is redirected");
        assert_eq!(number("3"), Some(None), "set to always redirect");
        assert_eq!(number("4"), None);
    }
}
