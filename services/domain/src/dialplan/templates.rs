//! Number plans to start a site from: [`nanp`] for the North American Numbering Plan and
//! [`international`] for anywhere that dials E.164 or `00`. A site adds its
//! [`extension_rules`], which are in no template because they depend on its extensions.

use std::ops::RangeInclusive;

use super::{DialplanError, Kind, Normalize, NumberPlan, Rule};

/// Extension lengths, as the config API takes a site phone's extension (2-10 digits).
const EXTENSION_DIGITS: RangeInclusive<usize> = 2..=10;

/// A template rule: name, kind, pattern and normalisation as (strip, prefix).
type Row = (
    &'static str,
    Kind,
    &'static str,
    Option<(usize, &'static str)>,
);

/// '+' before what was dialled.
const PLUS: Option<(usize, &str)> = Some((0, "+"));
/// E.164 already: kept, and checked to be.
const AS_IS: Option<(usize, &str)> = Some((0, ""));

/// Premium rules come before the national ones that would also match them, and in the
/// E.164 form too, which [`NumberPlan::classify`] checks every rewritten number against:
/// 900 555 1234 and 011 1 900 555 1234 are premium however they are dialled.
const NANP: [Row; 12] = [
    ("emergency", Kind::Emergency, "911", None),
    // 933 reads back the address the carrier holds for 911: a test call to emergency
    // services, and as vital to reach from an unassigned phone as 911 itself.
    ("emergency-test", Kind::Emergency, "933", None),
    // 211 community services, 311 city, 411 directory, 511 traffic, 611 carrier repair,
    // 711 relay, 811 dig-safe (911 is matched above: emergency rules go first).
    ("n11", Kind::Custom, "N11", None),
    ("premium-900", Kind::Premium, "1900NXXXXXX", PLUS),
    // A 976 exchange is a pay-per-call line in many area codes.
    ("premium-976", Kind::Premium, "1NXX976XXXX", PLUS),
    ("premium-900-e164", Kind::Premium, "+1900NXXXXXX", AS_IS),
    ("premium-976-e164", Kind::Premium, "+1NXX976XXXX", AS_IS),
    ("national", Kind::National, "1NXXNXXXXXX", PLUS),
    ("national-10", Kind::National, "NXXNXXXXXX", Some((0, "+1"))),
    ("national-e164", Kind::National, "+1NXXNXXXXXX", AS_IS),
    // 011 is NANP's international prefix; E.164 bounds the digits after it.
    (
        "international",
        Kind::International,
        "011X.",
        Some((3, "+")),
    ),
    ("international-e164", Kind::International, "+X.", AS_IS),
];

/// 112 (Europe, and every GSM phone) and 911 (the Americas) are what people dial for help
/// wherever they are; `00` is the international prefix the ITU-T recommends, and most of
/// the world uses.
const INTERNATIONAL: [Row; 4] = [
    ("emergency-112", Kind::Emergency, "112", None),
    ("emergency-911", Kind::Emergency, "911", None),
    ("international", Kind::International, "00X.", Some((2, "+"))),
    ("international-e164", Kind::International, "+X.", AS_IS),
];

/// The names of the templates, as a site's `number_plan` names one.
pub const NAMES: [&str; 2] = ["nanp", "international"];

/// The template named `name`.
pub fn by_name(name: &str) -> Option<NumberPlan> {
    match name {
        "nanp" => Some(nanp()),
        "international" => Some(international()),
        _ => None,
    }
}

fn build(plan: &str, rows: &[Row]) -> Result<NumberPlan, DialplanError> {
    let rules = rows
        .iter()
        .map(|&(name, kind, pattern, normalize)| {
            let normalize = normalize
                .map(|(strip, prefix)| Normalize::new(strip, prefix))
                .transpose()?;
            Rule::new(name, kind, pattern, normalize)
        })
        .collect::<Result<Vec<_>, DialplanError>>()?;
    NumberPlan::new(plan, rules)
}

/// The North American Numbering Plan (`nanp`): 911 and 933, N11 services, premium 900
/// and 976 numbers, 1+10-digit, 10-digit and +1 national numbers, 011 and + international
/// numbers; everything that leaves the site as E.164.
pub fn nanp() -> NumberPlan {
    build("nanp", &NANP).expect("the template is valid: its tests build it")
}

/// A generic plan (`international`): 112 and 911, E.164 numbers dialled with '+' or `00`.
/// Without a country it cannot tell national from international, so every number is
/// international.
pub fn international() -> NumberPlan {
    build("international", &INTERNATIONAL).expect("the template is valid: its tests build it")
}

/// The extension rules of a site whose extensions have `digits` digits (a subset of
/// 2-10): `extension-4` is `XXXX`, one rule a length, since a pattern has no counted
/// repetition and `XX!` would also take every national number. A site's plan puts them
/// with a template's rules, usually first; emergency rules are tried before them anyway.
pub fn extension_rules(digits: RangeInclusive<usize>) -> Result<Vec<Rule>, DialplanError> {
    let (min, max) = (*digits.start(), *digits.end());
    let allowed = |n: usize| EXTENSION_DIGITS.contains(&n);
    if digits.is_empty() || !allowed(min) || !allowed(max) {
        return Err(DialplanError::ExtensionLength { min, max });
    }
    digits
        .map(|n| {
            let name = format!("extension-{n}");
            Rule::new(&name, Kind::Extension, &"X".repeat(n), None)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case<'a> = (&'a str, Option<(&'a str, Kind, &'a str)>);

    #[test]
    fn templates_are_found_by_their_names_and_call_patterns_parse() {
        for name in NAMES {
            assert_eq!(
                by_name(name).map(|p| p.name().to_owned()),
                Some(name.to_owned())
            );
        }
        assert!(by_name("NANP").is_none() && by_name("").is_none());
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
            assert_eq!(
                super::super::Permit::parse(k.name()),
                super::super::Permit::Kind(k)
            );
        }
        assert_eq!(
            super::super::Permit::parse("premium-900"),
            super::super::Permit::Rule("premium-900".into())
        );
    }

    fn check(plan: &NumberPlan, cases: &[Case]) {
        for (dialled, want) in cases {
            let got = plan.classify(dialled);
            let got = got.as_ref().map(|c| (c.rule, c.kind, c.number.as_str()));
            assert_eq!(got, *want, "{}: {dialled}", plan.name());
        }
    }

    #[test]
    fn nanp_classifies_and_normalises() {
        use Kind::*;
        check(
            &nanp(),
            &[
                ("911", Some(("emergency", Emergency, "911"))),
                ("933", Some(("emergency-test", Emergency, "933"))),
                ("411", Some(("n11", Custom, "411"))),
                (
                    "2125551234",
                    Some(("national-10", National, "+12125551234")),
                ),
                (
                    "212.555.1234",
                    Some(("national-10", National, "+12125551234")),
                ),
                (
                    "1 (212) 555-1234",
                    Some(("national", National, "+12125551234")),
                ),
                (
                    "+1 212 555 1234",
                    Some(("national-e164", National, "+12125551234")),
                ),
                (
                    "19005551234",
                    Some(("premium-900", Premium, "+19005551234")),
                ),
                (
                    "+19005551234",
                    Some(("premium-900-e164", Premium, "+19005551234")),
                ),
                (
                    "12129761234",
                    Some(("premium-976", Premium, "+12129761234")),
                ),
                // Premium however dialled: their E.164 forms are.
                (
                    "900-555-1234",
                    Some(("premium-900-e164", Premium, "+19005551234")),
                ),
                (
                    "212 976 1234",
                    Some(("premium-976-e164", Premium, "+12129761234")),
                ),
                (
                    "011 1 900 555 1234",
                    Some(("premium-900-e164", Premium, "+19005551234")),
                ),
                // 011 to a +1 number is a national call.
                (
                    "011 1 212 555 1234",
                    Some(("national-e164", National, "+12125551234")),
                ),
                (
                    "011442071234567",
                    Some(("international", International, "+442071234567")),
                ),
                (
                    "+442071234567",
                    Some(("international-e164", International, "+442071234567")),
                ),
                // Not E.164 once normalised, or no rule at all.
                ("01144", None),
                ("+0442071234", None),
                ("1125551234", None),
                ("12345", None),
                ("", None),
            ],
        );
    }

    #[test]
    fn international_classifies_and_normalises() {
        use Kind::*;
        check(
            &international(),
            &[
                ("112", Some(("emergency-112", Emergency, "112"))),
                ("911", Some(("emergency-911", Emergency, "911"))),
                (
                    "00442071234567",
                    Some(("international", International, "+442071234567")),
                ),
                (
                    "+44 20 7123 4567",
                    Some(("international-e164", International, "+442071234567")),
                ),
                (
                    "+1 (212) 555-1234",
                    Some(("international-e164", International, "+12125551234")),
                ),
                ("0044", None),
                ("2071234567", None),
            ],
        );
    }

    #[test]
    fn extension_rules_fit_a_site_and_never_hide_emergency() {
        let four = extension_rules(4..=4).unwrap();
        assert_eq!(four.len(), 1);
        assert_eq!(four[0].name, "extension-4");
        assert_eq!(four[0].pattern.to_string(), "XXXX");
        let names: Vec<String> = extension_rules(3..=5)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["extension-3", "extension-4", "extension-5"]);
        for (min, max) in [(1, 4), (2, 11), (5, 3)] {
            assert_eq!(
                extension_rules(min..=max).unwrap_err(),
                DialplanError::ExtensionLength { min, max }
            );
        }
        // 3-digit extensions before the NANP rules: 411 is an extension here, 911 is not.
        let mut rules = extension_rules(3..=3).unwrap();
        rules.extend(nanp().rules().iter().cloned());
        let site = NumberPlan::new("hq", rules).unwrap();
        use Kind::*;
        check(
            &site,
            &[
                ("911", Some(("emergency", Emergency, "911"))),
                ("411", Some(("extension-3", Extension, "411"))),
                ("201", Some(("extension-3", Extension, "201"))),
                (
                    "2125551234",
                    Some(("national-10", National, "+12125551234")),
                ),
            ],
        );
    }
}
