//! Trunks: which one carries a call out, when a call moves on to the next, and who answers
//! a number a carrier delivers. Pure, shared by the config role (which validates) and the
//! edges (which route).

use crate::{dialplan::Kind, error::DidError};

/// Most numbers one DID range may hold.
pub const MAX_RANGE: u64 = 100_000;

/// A DID entry's numbers: `+15551230000`, or `+15551230000-+15551230099` (both ends the
/// same length). Kept as digits without the `+`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Numbers {
    /// How many digits each number has.
    pub digits: u8,
    pub first: u64,
    pub last: u64,
}

/// The digits of `+` and 8-15 digits.
fn e164_digits(s: &str) -> Option<(u8, u64)> {
    let d = s.strip_prefix('+')?;
    if !(8..=15).contains(&d.len()) || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((d.len() as u8, d.parse().ok()?))
}

impl Numbers {
    pub fn parse(s: &str) -> Result<Numbers, DidError> {
        let not = || DidError::NotANumber(s.to_owned());
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s.trim(), s.trim()),
        };
        let (da, first) = e164_digits(a).ok_or_else(not)?;
        let (db, last) = e164_digits(b).ok_or_else(not)?;
        if da != db || first > last {
            return Err(DidError::BadRange(s.to_owned()));
        }
        if last - first >= MAX_RANGE {
            return Err(DidError::TooLong {
                numbers: s.to_owned(),
                max: MAX_RANGE,
            });
        }
        Ok(Numbers {
            digits: da,
            first,
            last,
        })
    }

    /// Whether two entries share a number.
    pub fn overlaps(&self, o: &Numbers) -> bool {
        self.digits == o.digits && self.first <= o.last && o.first <= self.last
    }

    fn holds(&self, digits: u8, n: u64) -> bool {
        self.digits == digits && (self.first..=self.last).contains(&n)
    }
}

/// The number a carrier's Request-URI user names: `+15551230000` or `15551230000` (many
/// carriers leave out the `+`), as digits and their count. None for anything else.
pub fn delivered_number(user: &str) -> Option<(u8, u64)> {
    let d = user.strip_prefix('+').unwrap_or(user);
    e164_digits(&format!("+{d}"))
}

/// A trunk's DIDs and who answers each, looked up by the number a carrier delivers.
#[derive(Clone, Debug)]
pub struct Dids<T> {
    entries: Vec<(Numbers, T)>,
}

impl<T> Dids<T> {
    /// The table of `entries` (validated apart: they do not overlap).
    pub fn new(entries: Vec<(Numbers, T)>) -> Self {
        Dids { entries }
    }

    /// Who answers `user`, the Request-URI user of a call from the trunk.
    pub fn find(&self, user: &str) -> Option<&T> {
        let (digits, n) = delivered_number(user)?;
        self.entries
            .iter()
            .find(|(numbers, _)| numbers.holds(digits, n))
            .map(|(_, t)| t)
    }
}

/// The first pair of entries of `all` that overlap (their indexes).
pub fn first_overlap(all: &[Numbers]) -> Option<(usize, usize)> {
    (0..all.len()).find_map(|j| (0..j).find(|&i| all[i].overlaps(&all[j])).map(|i| (i, j)))
}

/// A site's outbound route, as plain values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub kinds: Vec<Kind>,
    pub trunks: Vec<String>,
    /// How long a trunk may ring before the call moves on (none: the edge's INVITE timeout).
    pub no_answer_s: Option<u32>,
}

/// The route that takes a call of `kind`: the first naming it.
pub fn route_for(routes: &[Route], kind: Kind) -> Option<&Route> {
    routes.iter().find(|r| r.kinds.contains(&kind))
}

/// Whether a trunk's final answer `code` sends the call on to the next target: a timeout
/// (408), a server failure (5xx), or an answer the edge made itself because the trunk did
/// not answer, or rang past the route's limit (`generated`). Any other 4xx, every 6xx (and
/// of course a 2xx or 3xx) is the caller's answer.
pub fn fails_over(code: u16, generated: bool) -> bool {
    generated || code == 408 || (500..600).contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_numbers_parse_as_one_number_or_a_range() {
        let ok = |s: &str| Numbers::parse(s).unwrap();
        assert_eq!(
            ok("+15551230000"),
            Numbers {
                digits: 11,
                first: 15551230000,
                last: 15551230000
            }
        );
        assert_eq!(ok("+15551230000-+15551230099").last, 15551230099);
        assert_eq!(ok(" +4930123456 - +4930123460 ").first, 4930123456);
        let cases = [
            ("15551230000", DidError::NotANumber("15551230000".into())),
            ("+1555", DidError::NotANumber("+1555".into())),
            ("+1555123000a", DidError::NotANumber("+1555123000a".into())),
            ("", DidError::NotANumber("".into())),
            (
                "+15551230099-+15551230000",
                DidError::BadRange("+15551230099-+15551230000".into()),
            ),
            (
                "+15551230000-+155512300000",
                DidError::BadRange("+15551230000-+155512300000".into()),
            ),
            (
                "+15551200000-+15551300000",
                DidError::TooLong {
                    numbers: "+15551200000-+15551300000".into(),
                    max: MAX_RANGE,
                },
            ),
        ];
        for (s, want) in cases {
            assert_eq!(Numbers::parse(s), Err(want), "{s}");
        }
    }

    #[test]
    fn a_delivered_number_finds_its_entry_with_or_without_plus() {
        let dids = Dids::new(vec![
            (
                Numbers::parse("+15551230000-+15551230099").unwrap(),
                "range",
            ),
            (Numbers::parse("+15551239999").unwrap(), "one"),
            (Numbers::parse("+4930123456").unwrap(), "berlin"),
        ]);
        let cases = [
            ("+15551230000", Some("range")),
            ("15551230042", Some("range")),
            ("+15551230100", None),
            ("+15551239999", Some("one")),
            ("4930123456", Some("berlin")),
            ("04930123456", None), // another length is another number
            ("201", None),
            ("+1555123000a", None),
            ("", None),
        ];
        for (user, want) in cases {
            assert_eq!(dids.find(user).copied(), want, "{user}");
        }
    }

    #[test]
    fn overlapping_entries_are_found() {
        let n = |s: &str| Numbers::parse(s).unwrap();
        let cases = [
            (
                vec![n("+15551230000-+15551230099"), n("+15551230100")],
                None,
            ),
            (
                vec![n("+15551230000-+15551230099"), n("+15551230099")],
                Some((0, 1)),
            ),
            (
                vec![n("+15551230000"), n("+4930123456"), n("+15551230000")],
                Some((0, 2)),
            ),
            // Same digits, another length: not the same number.
            (vec![n("+15551230000"), n("+155512300000")], None),
        ];
        for (all, want) in cases {
            assert_eq!(first_overlap(&all), want, "{all:?}");
        }
    }

    #[test]
    fn the_first_route_naming_a_kind_takes_the_call() {
        let route = |kinds: &[Kind], trunk: &str| Route {
            kinds: kinds.to_vec(),
            trunks: vec![trunk.into()],
            no_answer_s: None,
        };
        let routes = [
            route(&[Kind::Emergency], "e911"),
            route(&[Kind::National, Kind::International], "carrier-a"),
            route(&[Kind::National], "carrier-b"),
        ];
        let cases = [
            (Kind::Emergency, Some("e911")),
            (Kind::National, Some("carrier-a")),
            (Kind::International, Some("carrier-a")),
            (Kind::Premium, None),
        ];
        for (kind, want) in cases {
            let got = route_for(&routes, kind).map(|r| r.trunks[0].as_str());
            assert_eq!(got, want, "{kind:?}");
        }
    }

    #[test]
    fn timeouts_server_errors_and_silence_fail_over_nothing_else_does() {
        let cases = [
            (408, false, true),
            (500, false, true),
            (503, false, true),
            (599, false, true),
            (480, true, true), // rang past the route's limit: the edge's own 480
            (408, true, true),
            (480, false, false),
            (404, false, false),
            (486, false, false),
            (403, false, false),
            (603, false, false),
            (600, false, false),
            (200, false, false),
            (302, false, false),
        ];
        for (code, generated, want) in cases {
            assert_eq!(fails_over(code, generated), want, "{code} {generated}");
        }
    }
}
