//! One device entry: a proper name or a regular expression.

use regex::{Regex, RegexBuilder};

/// A device entry of a softphone profile.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles an entry; the error says why it is not a usable regular expression.
    ///
    /// A name with characters special to regular expressions still matches itself by
    /// equality, but the entry must compile (the config service rejects it otherwise), so a
    /// profile never carries an entry the softphone would silently ignore.
    pub fn new(text: &str) -> Result<Self, String> {
        let regex = RegexBuilder::new(text)
            // Profiles come from admins; bound what one entry may cost to compile.
            .size_limit(1 << 16)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            text: text.to_owned(),
            regex,
        })
    }

    /// The entry as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the entry names this device: equal to its name, or, as a regular
    /// expression, matching somewhere in it.
    pub fn matches(&self, device: &str) -> bool {
        device == self.text || self.regex.is_match(device)
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn names_and_expressions() {
        let cases: &[(&str, &str, bool)] = &[
            ("Plantronics C320", "Plantronics C320", true),
            ("Plantronics C320", "Plantronics D100", false),
            // A name with parentheses is not a regex of itself; equality still matches.
            ("Headset (USB)", "Headset (USB)", true),
            ("Jabra", "Jabra Evolve2 65", true),
            ("^Jabra", "USB Jabra", false),
            ("Evolve2? 65$", "Jabra Evolve2 65", true),
            ("(?i)poly", "POLY Blackwire 5220", true),
            ("poly", "POLY Blackwire 5220", false),
            (".*", "anything", true),
        ];
        for (entry, device, want) in cases {
            let p = Pattern::new(entry).unwrap();
            assert_eq!(p.matches(device), *want, "{entry:?} vs {device:?}");
            assert_eq!(p.as_str(), *entry);
        }
    }

    #[test]
    fn broken_expressions_are_refused() {
        for bad in ["(unclosed", "[z-a]", "a{99999999}"] {
            assert!(Pattern::new(bad).is_err(), "{bad}");
        }
    }
}
