//! Digit patterns as PBX dial plans write them (Asterisk's, without its leading `_`).
//!
//! | element | matches |
//! |---|---|
//! | `0`-`9`, `*`, `#`, `+` | itself |
//! | `X` | any digit |
//! | `Z` | a digit 1-9 |
//! | `N` | a digit 2-9 |
//! | `[1-5,7]`, `[137]` | one of the class: digits, digit ranges, `*`, `#`, `+` (',' separates) |
//! | `.` | one or more digits |
//! | `!` | zero or more digits |
//!
//! `X`, `Z` and `N` may be lowercase. `.` and `!` are usually last (`011X.`) but may stand
//! anywhere; unlike Asterisk's they take digits only, so `X.` never swallows a `#` or a
//! `*` feature code. A whole dialled string must match, not a prefix of it.
//!
//! Both sides are capped and the matcher never backtracks: it carries the set of pattern
//! positions reachable so far through the dialled string once, so a match costs at most
//! [`MAX_DIALLED_LEN`] × [`MAX_PATTERN_LEN`] steps whatever an administrator writes or a
//! caller dials.

use std::fmt;

use super::DialplanError;

/// Longest pattern, in characters.
pub const MAX_PATTERN_LEN: usize = 64;

/// Longest dialled string that can match (separators removed): room for an international
/// prefix and a 15-digit E.164 number with feature codes around it, and a bound on what a
/// caller can make the matcher do.
pub const MAX_DIALLED_LEN: usize = 32;

/// Why a character is not part of a pattern.
const NOT_AN_ELEMENT: &str = "not a digit, '*', '#', '+', X, Z, N, '[', '.' or '!'";

/// A set of symbols, bit `i` for [`symbol`] `i`.
type Set = u16;

/// The ten digits.
const DIGITS: Set = 0x3ff;

/// The symbol a dialled byte is: digits 0-9 are themselves, then `*` 10, `#` 11, `+` 12.
fn symbol(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'*' => Some(10),
        b'#' => Some(11),
        b'+' => Some(12),
        _ => None,
    }
}

/// The symbol a pattern character is, if it is one.
fn symbol_char(c: char) -> Option<u8> {
    u8::try_from(c).ok().and_then(symbol)
}

/// Digits `lo` to `hi`.
fn digits(lo: u8, hi: u8) -> Set {
    (lo..=hi).fold(0, |set, d| set | (1u16 << d))
}

/// One element of a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Element {
    /// One symbol of the set.
    One(Set),
    /// `.`
    OneOrMore,
    /// `!`
    ZeroOrMore,
}

/// A parsed digit pattern such as `NXXNXXXXXX` or `011X.`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// As written, for [`fmt::Display`].
    source: String,
    /// At most [`MAX_PATTERN_LEN`], as each is at least one character: the matcher's
    /// positions 0..=64 fit the bits of a `u128`.
    elements: Vec<Element>,
}

/// Position `i` of the matcher as a bit.
fn bit(i: usize) -> u128 {
    1 << i
}

impl Pattern {
    /// Parses a pattern; the error says where it stops making sense and why.
    pub fn parse(source: &str) -> Result<Self, DialplanError> {
        let fail = |at: usize, why: &'static str| DialplanError::Pattern {
            pattern: source.to_owned(),
            at,
            why,
        };
        if source.is_empty() {
            return Err(fail(0, "a pattern has at least one character"));
        }
        // Counting stops at the cap, so a huge input costs no more than a long pattern.
        if source.chars().nth(MAX_PATTERN_LEN).is_some() {
            return Err(fail(MAX_PATTERN_LEN, "longer than 64 characters"));
        }
        let chars: Vec<char> = source.chars().collect();
        let mut elements = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            let element = match chars[i] {
                'X' | 'x' => Element::One(DIGITS),
                'Z' | 'z' => Element::One(digits(1, 9)),
                'N' | 'n' => Element::One(digits(2, 9)),
                '.' => Element::OneOrMore,
                '!' => Element::ZeroOrMore,
                '[' => {
                    let (set, close) = class(&chars, i).map_err(|(at, why)| fail(at, why))?;
                    i = close;
                    Element::One(set)
                }
                ']' => return Err(fail(i, "']' closes no '['")),
                c => match symbol_char(c) {
                    Some(s) => Element::One(1u16 << s),
                    None => return Err(fail(i, NOT_AN_ELEMENT)),
                },
            };
            elements.push(element);
            i += 1;
        }
        Ok(Pattern {
            source: source.to_owned(),
            elements,
        })
    }

    /// Whether all of `dialled` (already cleaned of separators) matches. Strings longer
    /// than [`MAX_DIALLED_LEN`] or with anything but `0-9 * # +` match nothing.
    pub fn matches(&self, dialled: &str) -> bool {
        if dialled.len() > MAX_DIALLED_LEN {
            return false;
        }
        // Position i: the first i elements have matched what was read so far. Every
        // position is carried at once, one byte at a time, and no choice is ever undone:
        // `!!!!5` against "0000000" costs one sweep of the pattern a byte, not a search of
        // every way to share the digits among the wildcards.
        let mut at = self.past_empty(bit(0));
        for b in dialled.bytes() {
            let Some(s) = symbol(b) else {
                return false;
            };
            let digit = s < 10;
            let mut next = 0;
            for (i, e) in self.elements.iter().enumerate() {
                if at & bit(i) == 0 {
                    continue;
                }
                next |= match *e {
                    Element::One(set) if set & (1u16 << s) != 0 => bit(i + 1),
                    // Stay to take more digits, or move on having taken at least this one.
                    Element::OneOrMore if digit => bit(i) | bit(i + 1),
                    Element::ZeroOrMore if digit => bit(i),
                    _ => 0,
                };
            }
            at = self.past_empty(next);
            if at == 0 {
                return false;
            }
        }
        at & bit(self.elements.len()) != 0
    }

    /// `at` and the positions reachable from it by a `!` taking nothing. One pass in order
    /// is enough: such steps only go forward, so `!!` is passed in one sweep.
    fn past_empty(&self, mut at: u128) -> u128 {
        for (i, e) in self.elements.iter().enumerate() {
            if *e == Element::ZeroOrMore && at & bit(i) != 0 {
                at |= bit(i + 1);
            }
        }
        at
    }
}

/// The class opening at `chars[open]`: its set and the index of its `]`, or where and why
/// it is wrong.
fn class(chars: &[char], open: usize) -> Result<(Set, usize), (usize, &'static str)> {
    let mut set: Set = 0;
    let mut i = open + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err((open, "'[' is not closed"));
        };
        match c {
            ']' if set == 0 => return Err((i, "a class holds at least one symbol")),
            ']' => return Ok((set, i)),
            ',' => {}
            '-' => return Err((i, "a range runs between two digits")),
            c => {
                let Some(lo) = symbol_char(c) else {
                    return Err((i, "a class holds digits, ranges, '*', '#' and '+'"));
                };
                if chars.get(i + 1) == Some(&'-') {
                    match chars.get(i + 2).copied().and_then(symbol_char) {
                        Some(hi) if lo < 10 && hi < 10 && lo <= hi => set |= digits(lo, hi),
                        Some(hi) if lo < 10 && hi < 10 => {
                            return Err((i, "a range runs from a lower digit to a higher one"));
                        }
                        _ => return Err((i + 1, "a range runs between two digits")),
                    }
                    i += 2;
                } else {
                    set |= 1u16 << lo;
                }
            }
        }
        i += 1;
    }
}

impl fmt::Display for Pattern {
    /// The pattern as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_strings() {
        type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            ("911", &["911"], &["91", "9111", "912", ""]),
            ("Z", &["1", "9"], &["0", "*"]),
            ("nxx", &["200", "999"], &["100", "20"]),
            (
                "NXXNXXXXXX",
                &["2125551234"],
                &["1125551234", "2121551234", "212555123"],
            ),
            ("[1-5,7]", &["1", "3", "5", "7"], &["0", "6", "8", "15"]),
            ("[137]", &["1", "3", "7"], &["2", "13"]),
            ("[*#+0]", &["*", "#", "+", "0"], &["1"]),
            ("*72X.", &["*725551234", "*7255"], &["*725", "725551234"]),
            (
                "011X.",
                &["01144", "011442071234567"],
                &["011", "0114", "0124"],
            ),
            (
                "+X.",
                &["+12", "+442071234567"],
                &["+", "+1", "12", "++1", "+1#"],
            ),
            ("9!", &["9", "912"], &["8", "9*", "9+1"]),
            ("!", &["", "123"], &["*"]),
            ("X.X", &["123", "1234"], &["12", "1"]),
            ("1!2!3", &["123", "1000203", "1223"], &["132", "12"]),
            ("X#", &["5#"], &["5", "#5"]),
        ];
        for (source, good, bad) in cases {
            let p = Pattern::parse(source).unwrap();
            assert_eq!(p.to_string(), *source);
            for d in *good {
                assert!(p.matches(d), "{source} should match '{d}'");
            }
            for d in *bad {
                assert!(!p.matches(d), "{source} should not match '{d}'");
            }
        }
    }

    #[test]
    fn bad_patterns_say_where_and_why() {
        let long = "X".repeat(MAX_PATTERN_LEN + 1);
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "at least one character"),
            (long.as_str(), 64, "longer than 64"),
            ("91A", 2, "not a digit"),
            ("9 1", 1, "not a digit"),
            ("é", 0, "not a digit"),
            ("12]", 2, "closes no '['"),
            ("9[1-5", 1, "not closed"),
            ("[]", 1, "at least one symbol"),
            ("[,]", 2, "at least one symbol"),
            ("[5-1]", 1, "lower digit to a higher"),
            ("[1-]", 2, "between two digits"),
            ("[-1]", 1, "between two digits"),
            ("[*-5]", 2, "between two digits"),
            ("[1-5-7]", 4, "between two digits"),
            ("[X]", 1, "a class holds"),
            ("[[1]]", 1, "a class holds"),
        ];
        for (source, want_at, want_why) in cases {
            match Pattern::parse(source) {
                Err(DialplanError::Pattern { pattern, at, why }) => {
                    assert_eq!((pattern.as_str(), at), (*source, *want_at), "{why}");
                    assert!(why.contains(*want_why), "{source}: {why}");
                }
                other => panic!("{source}: {other:?}"),
            }
        }
        let e = Pattern::parse("91A").unwrap_err().to_string();
        assert!(e.contains("'91A'") && e.contains("at 2"), "{e}");
        // At the cap is fine.
        assert!(Pattern::parse(&"X".repeat(MAX_PATTERN_LEN)).is_ok());
    }

    #[test]
    fn matching_costs_are_bounded_at_the_maximum_sizes() {
        // A backtracking matcher would try every way of sharing 32 digits among 63 `!`
        // before failing on the final 5; this one steps 32 × 64 times at most.
        let worst = Pattern::parse(&format!("{}5", "!".repeat(MAX_PATTERN_LEN - 1))).unwrap();
        let zeros = "0".repeat(MAX_DIALLED_LEN);
        let five = format!("{}5", "0".repeat(MAX_DIALLED_LEN - 1));
        type Case<'a> = (&'a Pattern, String, bool);
        let dots = Pattern::parse(&".!".repeat(MAX_PATTERN_LEN / 2)).unwrap();
        let pairs = Pattern::parse(&"X.".repeat(MAX_PATTERN_LEN / 2)).unwrap();
        let cases: Vec<Case> = vec![
            (&worst, zeros.clone(), false),
            (&worst, five, true),
            // 32 `.` need 32 digits at least.
            (&dots, "1".repeat(MAX_DIALLED_LEN), true),
            (&dots, "1".repeat(MAX_DIALLED_LEN - 1), false),
            (&dots, "1".repeat(MAX_DIALLED_LEN + 1), false),
            // 32 `X.` need 64 digits: more than anyone may dial.
            (&pairs, zeros, false),
        ];
        for (p, dialled, want) in cases {
            assert_eq!(p.matches(&dialled), want, "{p} vs {dialled}");
        }
        let any = Pattern::parse("!").unwrap();
        assert!(any.matches(&"1".repeat(MAX_DIALLED_LEN)));
        assert!(
            !any.matches(&"1".repeat(MAX_DIALLED_LEN + 1)),
            "over the cap"
        );
    }
}
