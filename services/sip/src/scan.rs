//! Searching text for one ASCII delimiter. The standard library's `char` patterns
//! (`split_once(':')`, `find(';')`) encode the char and compare it after every byte match,
//! which costs more than the rest of parsing a header; these look for the byte with
//! `memchr`. An ASCII byte never occurs inside a multi-byte UTF-8 sequence, so every
//! position found is a char boundary.

/// Position of the first `b` in `s`.
#[inline]
pub fn find(s: &str, b: u8) -> Option<usize> {
    debug_assert!(b.is_ascii());
    let bytes = s.as_bytes();
    // Most of what is searched (a URI's parts, a parameter) is shorter than a vector
    // search's setup costs.
    if bytes.len() < 32 {
        bytes.iter().position(|c| *c == b)
    } else {
        memchr::memchr(b, bytes)
    }
}

/// Whether `s` holds `b`.
#[inline]
pub fn contains(s: &str, b: u8) -> bool {
    find(s, b).is_some()
}

/// `s` split at the first `b`, without it.
#[inline]
pub fn split_once(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = find(s, b)?;
    Some((&s[..i], &s[i + 1..]))
}

/// The pieces of `s` between the `b`s, as [`str::split`] gives them.
#[inline]
pub fn split(s: &str, b: u8) -> Split<'_> {
    debug_assert!(b.is_ascii());
    Split { rest: Some(s), b }
}

/// The iterator of [`split`].
#[derive(Clone, Debug)]
pub struct Split<'a> {
    rest: Option<&'a str>,
    b: u8,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match find(s, self.b) {
            Some(i) => {
                self.rest = Some(&s[i + 1..]);
                Some(&s[..i])
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_the_char_patterns() {
        let texts = [
            "",
            ";",
            "a",
            "a;b",
            ";a;",
            "a;;b;",
            "é;ü;",
            "sip:ü@host;lr",
            "::",
            "a:b:c",
        ];
        for t in texts {
            for (b, c) in [(b';', ';'), (b':', ':'), (b'@', '@')] {
                assert_eq!(
                    split(t, b).collect::<Vec<_>>(),
                    t.split(c).collect::<Vec<_>>()
                );
                assert_eq!(split_once(t, b), t.split_once(c), "{t}");
                assert_eq!(find(t, b), t.find(c), "{t}");
                assert_eq!(contains(t, b), t.contains(c), "{t}");
            }
        }
    }
}
