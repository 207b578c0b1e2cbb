//! Dialled strings as rules see them, and how a rule's match becomes E.164.

use super::{DialplanError, MAX_DIALLED_LEN};

/// Longest string [`clean_dialled`] reads, separators included.
const MAX_RAW_LEN: usize = 4 * MAX_DIALLED_LEN;

/// `dialled` without visual separators (' ', '-', '.', '(', ')'), if what is left is 1-32
/// of `0-9 * # +`. Numbers arrive as people and address books write them ("+1 (212)
/// 555-1234"; RFC 3966 §5.1.1 calls '-', '.', '(' and ')' visual separators), and a
/// separator says nothing about where a call goes: removing them first lets one pattern
/// match every spelling of a number.
pub fn clean_dialled(dialled: &str) -> Option<String> {
    if dialled.len() > MAX_RAW_LEN {
        return None;
    }
    let cleaned: String = dialled
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let ok = (1..=MAX_DIALLED_LEN).contains(&cleaned.len())
        && cleaned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'+'));
    ok.then_some(cleaned)
}

/// How a matched string becomes E.164: strip some leading characters, then prepend a
/// prefix (`1NXXNXXXXXX`: strip 0, prepend "+"; `011X.`: strip 3, prepend "+"). The result
/// must be E.164 or the rule does not take the string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalize {
    strip: usize,
    /// Empty, or '+' and up to 15 digits.
    prefix: String,
}

impl Normalize {
    /// Strip `strip` characters, then prepend `prefix` (empty, or '+' and up to 15 digits:
    /// a whole E.164 number maps a short code to one, as Genesys maps 988).
    pub fn new(strip: usize, prefix: &str) -> Result<Self, DialplanError> {
        let fail = |why| DialplanError::Normalize {
            strip,
            prefix: prefix.to_owned(),
            why,
        };
        if strip > MAX_DIALLED_LEN {
            return Err(fail("strips more than anyone may dial"));
        }
        let prefix_ok = prefix.is_empty()
            || prefix
                .strip_prefix('+')
                .is_some_and(|d| d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit()));
        if !prefix_ok {
            return Err(fail("the prefix is empty or '+' and up to 15 digits"));
        }
        Ok(Normalize {
            strip,
            prefix: prefix.to_owned(),
        })
    }

    /// Kept as dialled: for rules whose matches are E.164 already (`+X.`), still checked
    /// to be.
    pub fn unchanged() -> Self {
        Normalize {
            strip: 0,
            prefix: String::new(),
        }
    }

    /// Characters stripped.
    pub fn strip(&self) -> usize {
        self.strip
    }

    /// What is prepended.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `dialled` normalised, if that is E.164.
    pub fn apply(&self, dialled: &str) -> Option<String> {
        let number = format!("{}{}", self.prefix, dialled.get(self.strip..)?);
        is_e164(&number).then_some(number)
    }
}

/// E.164 as the config API takes it: '+' then 8-15 digits, the first not 0.
fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && !d.starts_with('0') && d.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialled_strings_lose_their_separators() {
        let long = "1".repeat(MAX_DIALLED_LEN + 1);
        let spaced = format!("{}1", " ".repeat(MAX_RAW_LEN));
        let cases: &[(&str, Option<&str>)] = &[
            ("1 (212) 555-1234", Some("12125551234")),
            ("+44 20.7123.4567", Some("+442071234567")),
            ("*72 #", Some("*72#")),
            ("", None),
            (" - ", None),
            ("911a", None),
            ("sip:911", None),
            (long.as_str(), None),
            (spaced.as_str(), None),
        ];
        for (dialled, want) in cases {
            assert_eq!(clean_dialled(dialled).as_deref(), *want, "{dialled}");
        }
    }

    #[test]
    fn normalisation_yields_e164_or_nothing() {
        type Case<'a> = (usize, &'a str, &'a str, Option<&'a str>);
        let cases: &[Case] = &[
            (0, "+", "12125551234", Some("+12125551234")),
            (0, "+1", "2125551234", Some("+12125551234")),
            (3, "+", "011442071234567", Some("+442071234567")),
            (0, "", "+442071234567", Some("+442071234567")),
            (3, "+18005550100", "988", Some("+18005550100")),
            (3, "+", "01144", None),
            (0, "", "+0442071234", None),
            (0, "+", "1234567890123456", None),
            (5, "+", "0114", None),
        ];
        for (strip, prefix, dialled, want) in cases {
            let n = Normalize::new(*strip, prefix).unwrap();
            assert_eq!(
                n.apply(dialled).as_deref(),
                *want,
                "{strip} {prefix} {dialled}"
            );
        }
        for (strip, prefix) in [(0, "1"), (0, "+1a"), (0, "+1234567890123456"), (33, "+")] {
            let e = Normalize::new(strip, prefix).unwrap_err();
            assert!(matches!(e, DialplanError::Normalize { .. }), "{e}");
        }
        assert_eq!(Normalize::unchanged(), Normalize::new(0, "").unwrap());
    }
}
