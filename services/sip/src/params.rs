//! The pieces of grammar headers and URIs share: `;name[=value]` parameters read in
//! place, and lowercasing that allocates only when it must. Below both `header` and `uri`,
//! so neither imports the other for them.

use std::borrow::Cow;

use crate::scan;

/// `s` in lowercase, allocating only when it has uppercase letters.
pub fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// `name[=value]` parameters separated by `;`, checked once and then read in place: names
/// compare case-insensitively, values come trimmed of linear whitespace. The text starts
/// after the first `;`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a>(&'a str);

impl<'a> Params<'a> {
    /// Parameters already checked by their parser.
    pub(crate) fn checked(text: &'a str) -> Self {
        Params(text)
    }

    /// The parameters' text (after the first `;`).
    pub(crate) fn text(&self) -> &'a str {
        self.0
    }

    /// Each parameter as (name as written, value).
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        let text = self.0;
        scan::split(text, b';')
            .filter(move |_| !text.is_empty())
            .map(|p| match scan::split_once(p, b'=') {
                Some((n, v)) => (n.trim_ascii(), Some(v.trim_ascii())),
                None => (p.trim_ascii(), None),
            })
    }

    /// The first parameter of this name: `Some(None)` when it has no value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The value of a parameter (none when absent or without a value).
    pub fn value(&self, name: &str) -> Option<&'a str> {
        self.get(name).flatten()
    }

    /// Whether a parameter of this name is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
