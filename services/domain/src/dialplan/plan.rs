//! Number plans: a site's named, ordered rules that say what a dialled string is (a
//! [`Kind`]) and, for numbers that leave the site, its E.164 form.

use super::{DialplanError, Normalize, Pattern, clean_dialled};

/// Most rules a plan holds: enough for any country's plan with room for custom rules, and
/// a bound on the work of classifying (Genesys Cloud allows 200 number plans per site,
/// but spends a regular expression where a rule here is one pattern).
pub const MAX_RULES: usize = 64;

/// What a dialled string reaches, as a site's restrictions and a device's call patterns
/// speak of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An extension: internal, allowed even when external calls are not.
    Extension,
    /// A number in the site's own country.
    National,
    /// A number in another country.
    International,
    /// Emergency services: always routed.
    Emergency,
    /// A premium-rate number.
    Premium,
    /// Anything else a plan names, such as N11 services or feature codes; external.
    Custom,
}

impl Kind {
    /// Every kind, in the order a device's call patterns name them.
    pub const ALL: [Kind; 6] = [
        Kind::Extension,
        Kind::National,
        Kind::International,
        Kind::Emergency,
        Kind::Premium,
        Kind::Custom,
    ];

    /// Its lowercase name, as call patterns and metrics spell it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Extension => "extension",
            Kind::National => "national",
            Kind::International => "international",
            Kind::Emergency => "emergency",
            Kind::Premium => "premium",
            Kind::Custom => "custom",
        }
    }

    /// The kind of a lowercase name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Whether `name` can name a plan or a rule: 1-63 ASCII letters, digits, '-' or '_'. Rule
/// names are what devices' call patterns list and what a SIP Warning quotes, so nothing
/// that needs escaping.
fn check_name(name: &str) -> Result<(), DialplanError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(DialplanError::Name(name.to_owned()))
    }
}

/// One classification of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Unique in its plan (checked by [`NumberPlan::new`]).
    pub name: String,
    /// What a match is.
    pub kind: Kind,
    /// What it matches, separators removed.
    pub pattern: Pattern,
    /// How a match becomes E.164; none keeps it as dialled (extensions, emergency, N11).
    pub normalize: Option<Normalize>,
}

impl Rule {
    /// A rule from its parts, the name checked and the pattern parsed.
    pub fn new(
        name: &str,
        kind: Kind,
        pattern: &str,
        normalize: Option<Normalize>,
    ) -> Result<Self, DialplanError> {
        check_name(name)?;
        Ok(Rule {
            name: name.to_owned(),
            kind,
            pattern: Pattern::parse(pattern)?,
            normalize,
        })
    }

    /// What `cleaned` becomes if this rule takes it: it matches, and when the rule
    /// normalises, the result is E.164 (so `011X.` also bounds the length it takes).
    fn take(&self, cleaned: &str) -> Option<String> {
        if !self.pattern.matches(cleaned) {
            return None;
        }
        match &self.normalize {
            Some(n) => n.apply(cleaned),
            None => Some(cleaned.to_owned()),
        }
    }
}

/// What a plan made of a dialled string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified<'a> {
    /// The rule's name.
    pub rule: &'a str,
    /// The rule's kind.
    pub kind: Kind,
    /// The normalised number, or the cleaned dialled string when the rule keeps it.
    pub number: String,
}

/// A site's number plan: rules tried in order, the first that takes a dialled string
/// classifies it (Genesys Cloud's number plans, with digit patterns as the one match type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberPlan {
    name: String,
    rules: Vec<Rule>,
}

impl NumberPlan {
    /// A plan of `rules` in order: names unique and well formed, at most [`MAX_RULES`],
    /// and at least one emergency rule, since a plan without one would refuse emergency
    /// calls that must always be routed.
    pub fn new(name: &str, rules: Vec<Rule>) -> Result<Self, DialplanError> {
        check_name(name)?;
        if rules.len() > MAX_RULES {
            return Err(DialplanError::TooManyRules {
                count: rules.len(),
                max: MAX_RULES,
            });
        }
        for (i, r) in rules.iter().enumerate() {
            check_name(&r.name)?;
            if rules[..i].iter().any(|o| o.name == r.name) {
                return Err(DialplanError::DuplicateRule(r.name.clone()));
            }
        }
        if !rules.iter().any(|r| r.kind == Kind::Emergency) {
            return Err(DialplanError::NoEmergency(name.to_owned()));
        }
        Ok(NumberPlan {
            name: name.to_owned(),
            rules,
        })
    }

    /// The plan's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rules in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What `dialled` is, separators removed; none when no rule takes it.
    pub fn classify(&self, dialled: &str) -> Option<Classified<'_>> {
        let cleaned = clean_dialled(dialled)?;
        let first = self.first_match(&cleaned)?;
        // One destination can be dialled many ways (1 900…, 900…, +1 900…, 011 1 900…)
        // and a plan lists few of them; what a number is, is what its E.164 form is. So a
        // number the rule rewrote is classified once more, and another kind found there
        // wins: a premium number dialled through the national rule is still premium.
        // Once is enough: E.164 rules keep E.164 numbers as they are. Emergency stays
        // emergency whatever it was rewritten to.
        if first.kind != Kind::Emergency
            && first.number != cleaned
            && let Some(canonical) = self.first_match(&first.number)
            && canonical.kind != first.kind
        {
            return Some(canonical);
        }
        Some(first)
    }

    /// The first rule that takes `cleaned`, emergency rules before all others wherever they
    /// stand: a plan that lists 3-digit extensions (`XXX`) above `911` still reaches
    /// emergency services.
    fn first_match(&self, cleaned: &str) -> Option<Classified<'_>> {
        let emergency = self.rules.iter().filter(|r| r.kind == Kind::Emergency);
        let others = self.rules.iter().filter(|r| r.kind != Kind::Emergency);
        emergency.chain(others).find_map(|r| {
            r.take(cleaned).map(|number| Classified {
                rule: &r.name,
                kind: r.kind,
                number,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, kind: Kind, pattern: &str, normalize: Option<(usize, &str)>) -> Rule {
        let normalize = normalize.map(|(strip, prefix)| Normalize::new(strip, prefix).unwrap());
        Rule::new(name, kind, pattern, normalize).unwrap()
    }

    #[test]
    fn plans_are_checked() {
        let sos = || rule("emergency", Kind::Emergency, "911", None);
        let many: Vec<Rule> = (0..=MAX_RULES)
            .map(|i| rule(&format!("r{i}"), Kind::Emergency, "911", None))
            .collect();
        let bad_rule = Rule {
            name: "a b".into(),
            ..sos()
        };
        let cases: Vec<(&str, Vec<Rule>, DialplanError)> = vec![
            ("", vec![sos()], DialplanError::Name(String::new())),
            (
                "site",
                vec![sos(), bad_rule],
                DialplanError::Name("a b".into()),
            ),
            (
                "site",
                vec![sos(), sos()],
                DialplanError::DuplicateRule("emergency".into()),
            ),
            (
                "site",
                many,
                DialplanError::TooManyRules { count: 65, max: 64 },
            ),
            (
                "site",
                vec![rule("ext", Kind::Extension, "XXXX", None)],
                DialplanError::NoEmergency("site".into()),
            ),
        ];
        for (name, rules, want) in cases {
            assert_eq!(NumberPlan::new(name, rules).unwrap_err(), want);
        }
        let long = "r".repeat(64);
        for bad in ["", "x\"y", "a b", long.as_str()] {
            assert!(Rule::new(bad, Kind::Custom, "X", None).is_err(), "{bad}");
        }
        assert!(NumberPlan::new(&"p".repeat(63), vec![sos()]).is_ok());
    }

    #[test]
    fn first_match_wins_with_emergency_first_and_kinds_from_the_e164_form() {
        let plan = NumberPlan::new(
            "site",
            vec![
                rule("ext", Kind::Extension, "XXX", None),
                rule("emergency", Kind::Emergency, "911", None),
                rule("crisis", Kind::Emergency, "988", Some((3, "+18005550100"))),
                rule("national", Kind::National, "NXXNXXXXXX", Some((0, "+1"))),
                rule("premium", Kind::Premium, "+1900NXXXXXX", Some((0, ""))),
                rule("toll-free", Kind::National, "+1800NXXXXXX", Some((0, ""))),
                rule("any", Kind::National, "X.", None),
            ],
        )
        .unwrap();
        type Case<'a> = (&'a str, Option<(&'a str, Kind, &'a str)>);
        let cases: &[Case] = &[
            ("911", Some(("emergency", Kind::Emergency, "911"))),
            ("201", Some(("ext", Kind::Extension, "201"))),
            // Rewritten to a number the plan calls national: still emergency.
            ("988", Some(("crisis", Kind::Emergency, "+18005550100"))),
            (
                "212-555-1234",
                Some(("national", Kind::National, "+12125551234")),
            ),
            // Premium in its E.164 form, whichever rule took it first.
            (
                "900 555 1234",
                Some(("premium", Kind::Premium, "+19005551234")),
            ),
            // Same kind in the E.164 form: the rule that took the dialled string stays.
            (
                "8005551234",
                Some(("national", Kind::National, "+18005551234")),
            ),
            ("1234", Some(("any", Kind::National, "1234"))),
            ("+1234", None),
            // 33 digits: more than anyone may dial.
            ("123456789012345678901234567890123", None),
        ];
        for (dialled, want) in cases {
            let got = plan.classify(dialled);
            let got = got.as_ref().map(|c| (c.rule, c.kind, c.number.as_str()));
            assert_eq!(got, *want, "{dialled}");
        }
    }
}
