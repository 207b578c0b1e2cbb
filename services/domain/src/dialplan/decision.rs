//! Whether a line may place a classified call. In order: emergency, which nothing refuses;
//! the phone's assignment; whether the site's plan classified the call at all; the site's
//! restrictions; the device's call patterns. A refusal is a 403 whose Warning says which
//! of them refused.

use super::{Classified, Kind};

/// What a site lets its phones call: the config API's `CallRestrictions`, as plain values
/// (this module knows no proto types). The default refuses everything but extensions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restrictions {
    /// Calls to anything but an extension (false: internal extensions only).
    pub allow_external: bool,
    /// International calls.
    pub allow_international: bool,
    /// Premium-rate calls.
    pub allow_premium: bool,
}

/// One entry of a device's allowed call patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Every rule of this kind.
    Kind(Kind),
    /// The plan's rule of this name.
    Rule(String),
}

impl Permit {
    /// A call pattern as the config API lists it: a kind's name (`national`, `premium`,
    /// ...) or the name of a rule of the site's plan.
    pub fn parse(entry: &str) -> Permit {
        match Kind::from_name(entry) {
            Some(k) => Permit::Kind(k),
            None => Permit::Rule(entry.to_owned()),
        }
    }

    /// Whether this entry lets a device place `call`.
    fn admits(&self, call: &Classified<'_>) -> bool {
        match self {
            Permit::Kind(k) => *k == call.kind,
            Permit::Rule(name) => name.as_str() == call.rule,
        }
    }
}

/// The line a call comes from.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// Whether the phone is assigned (to a user or as a site's phone).
    pub assigned: bool,
    /// Its site's restrictions.
    pub restrictions: Restrictions,
    /// Its device's allowed call patterns; empty: the site's default, which is whatever
    /// the restrictions allow.
    pub permits: &'a [Permit],
}

/// What to do with a dialled string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Route it.
    Allow {
        /// What it is.
        kind: Kind,
        /// Where to: E.164 when the plan normalised it, else as dialled (separators removed).
        number: String,
    },
    /// Refuse it (403), saying why.
    Refuse(Refusal),
}

/// Which rule refused a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No rule of the site's number plan takes the dialled string.
    NotClassified,
    /// The phone is not assigned, and the call is not an emergency call.
    Unassigned,
    /// The site allows internal extensions only.
    ExternalBlocked,
    /// The site does not allow international calls.
    InternationalBlocked,
    /// The site does not allow premium-rate calls.
    PremiumBlocked,
    /// The device's call patterns do not include the rule that classified the call.
    PatternNotAllowed {
        /// That rule's name.
        rule: String,
    },
}

impl Refusal {
    /// The text of a SIP `Warning: 399 <host> "..."` header saying why (plain text: rule
    /// names never need escaping, but the SIP layer quotes it all the same).
    pub fn warning_text(&self) -> String {
        let text = match self {
            Refusal::NotClassified => "the number dialled is not in this site's number plan",
            Refusal::Unassigned => "this phone is not assigned: only emergency calls are allowed",
            Refusal::ExternalBlocked => "external calls are restricted at this site",
            Refusal::InternationalBlocked => "international calls are restricted at this site",
            Refusal::PremiumBlocked => "premium-rate calls are restricted at this site",
            Refusal::PatternNotAllowed { rule } => {
                return format!("calls matching '{rule}' are not allowed from this phone");
            }
        };
        text.to_owned()
    }
}

/// Whether `caller` may place `call` (its classification by the site's plan; none when no
/// rule took it).
pub fn decide(call: Option<Classified<'_>>, caller: &Caller<'_>) -> Decision {
    let call = match call {
        // "Emergency numbers are always routed, even from an unassigned phone": before any
        // other check, so no restriction, call pattern or missing assignment refuses one.
        Some(c) if c.kind == Kind::Emergency => {
            return Decision::Allow {
                kind: c.kind,
                number: c.number,
            };
        }
        // An unassigned phone learns that first: whatever it dialled, nothing else works.
        _ if !caller.assigned => return Decision::Refuse(Refusal::Unassigned),
        None => return Decision::Refuse(Refusal::NotClassified),
        Some(c) => c,
    };
    let r = caller.restrictions;
    // The broadest restriction that applies speaks: a site closed to external calls says
    // so, not that international ones are closed too.
    let restricted = match call.kind {
        Kind::Extension | Kind::Emergency => None,
        _ if !r.allow_external => Some(Refusal::ExternalBlocked),
        Kind::International if !r.allow_international => Some(Refusal::InternationalBlocked),
        Kind::Premium if !r.allow_premium => Some(Refusal::PremiumBlocked),
        _ => None,
    };
    if let Some(refusal) = restricted {
        return Decision::Refuse(refusal);
    }
    if !caller.permits.is_empty() && !caller.permits.iter().any(|p| p.admits(&call)) {
        return Decision::Refuse(Refusal::PatternNotAllowed {
            rule: call.rule.to_owned(),
        });
    }
    Decision::Allow {
        kind: call.kind,
        number: call.number,
    }
}

#[cfg(test)]
mod tests {
    use super::super::templates::nanp;
    use super::*;

    const CLOSED: Restrictions = Restrictions {
        allow_external: false,
        allow_international: false,
        allow_premium: false,
    };
    const NATIONAL_ONLY: Restrictions = Restrictions {
        allow_external: true,
        ..CLOSED
    };
    const OPEN: Restrictions = Restrictions {
        allow_external: true,
        allow_international: true,
        allow_premium: true,
    };

    fn number(kind: Kind) -> &'static str {
        if kind == Kind::Extension {
            "201"
        } else {
            "+12125551234"
        }
    }

    fn call(rule: &'static str, kind: Kind) -> Option<Classified<'static>> {
        Some(Classified {
            rule,
            kind,
            number: number(kind).into(),
        })
    }

    #[test]
    fn every_branch_decides() {
        use Kind::*;
        let any: &[Permit] = &[];
        let national: &[Permit] = &[Permit::Kind(National)];
        let by_name: &[Permit] = &[Permit::Rule("national".into())];
        let abroad: &[Permit] = &[Permit::Kind(International), Permit::Rule("premium".into())];
        let refuse = Decision::Refuse;
        let allow = |kind: Kind| Decision::Allow {
            kind,
            number: number(kind).into(),
        };
        type Case<'a> = (
            Option<Classified<'a>>,
            bool,
            Restrictions,
            &'a [Permit],
            Decision,
        );
        let cases: Vec<Case> = vec![
            // Emergency, unassigned, everything closed, a pattern that is not emergency.
            (
                call("sos", Emergency),
                false,
                CLOSED,
                national,
                allow(Emergency),
            ),
            (call("sos", Emergency), true, CLOSED, any, allow(Emergency)),
            (None, false, OPEN, any, refuse(Refusal::Unassigned)),
            (
                call("national", National),
                false,
                OPEN,
                any,
                refuse(Refusal::Unassigned),
            ),
            (
                call("ext", Extension),
                false,
                OPEN,
                any,
                refuse(Refusal::Unassigned),
            ),
            (None, true, OPEN, any, refuse(Refusal::NotClassified)),
            (call("ext", Extension), true, CLOSED, any, allow(Extension)),
            (
                call("national", National),
                true,
                CLOSED,
                any,
                refuse(Refusal::ExternalBlocked),
            ),
            (
                call("n11", Custom),
                true,
                CLOSED,
                any,
                refuse(Refusal::ExternalBlocked),
            ),
            (
                call("intl", International),
                true,
                CLOSED,
                any,
                refuse(Refusal::ExternalBlocked),
            ),
            (
                call("national", National),
                true,
                NATIONAL_ONLY,
                any,
                allow(National),
            ),
            (call("n11", Custom), true, NATIONAL_ONLY, any, allow(Custom)),
            (
                call("intl", International),
                true,
                NATIONAL_ONLY,
                abroad,
                refuse(Refusal::InternationalBlocked),
            ),
            (
                call("premium", Premium),
                true,
                NATIONAL_ONLY,
                abroad,
                refuse(Refusal::PremiumBlocked),
            ),
            (
                call("intl", International),
                true,
                OPEN,
                any,
                allow(International),
            ),
            (call("premium", Premium), true, OPEN, abroad, allow(Premium)),
            (
                call("national", National),
                true,
                OPEN,
                national,
                allow(National),
            ),
            (
                call("national", National),
                true,
                OPEN,
                by_name,
                allow(National),
            ),
            (
                call("intl", International),
                true,
                OPEN,
                abroad,
                allow(International),
            ),
            (
                call("national", National),
                true,
                OPEN,
                abroad,
                refuse(Refusal::PatternNotAllowed {
                    rule: "national".into(),
                }),
            ),
            (
                call("ext", Extension),
                true,
                OPEN,
                by_name,
                refuse(Refusal::PatternNotAllowed { rule: "ext".into() }),
            ),
        ];
        for (i, (call, assigned, restrictions, permits, want)) in cases.into_iter().enumerate() {
            let caller = Caller {
                assigned,
                restrictions,
                permits,
            };
            assert_eq!(decide(call, &caller), want, "case {i}");
        }
    }

    #[test]
    fn emergency_is_always_routed_from_the_template() {
        // An unassigned phone at a closed site whose device may call one other rule.
        let only = [Permit::Rule("national".into())];
        let caller = Caller {
            assigned: false,
            restrictions: CLOSED,
            permits: &only,
        };
        let plan = nanp();
        for (dialled, number) in [("911", "911"), ("933", "933")] {
            let want = Decision::Allow {
                kind: Kind::Emergency,
                number: number.into(),
            };
            assert_eq!(decide(plan.classify(dialled), &caller), want, "{dialled}");
        }
        let open = Caller {
            assigned: true,
            restrictions: OPEN,
            permits: &[],
        };
        let want = Decision::Allow {
            kind: Kind::National,
            number: "+12125551234".into(),
        };
        assert_eq!(decide(plan.classify("1 (212) 555-1234"), &open), want);
        let national_only = Caller {
            restrictions: NATIONAL_ONLY,
            ..open
        };
        let premium = decide(plan.classify("900 555 1234"), &national_only);
        assert_eq!(premium, Decision::Refuse(Refusal::PremiumBlocked));
    }

    #[test]
    fn warnings_say_which_rule_refused() {
        let cases = [
            (
                Refusal::NotClassified,
                "the number dialled is not in this site's number plan",
            ),
            (
                Refusal::Unassigned,
                "this phone is not assigned: only emergency calls are allowed",
            ),
            (
                Refusal::ExternalBlocked,
                "external calls are restricted at this site",
            ),
            (
                Refusal::InternationalBlocked,
                "international calls are restricted at this site",
            ),
            (
                Refusal::PremiumBlocked,
                "premium-rate calls are restricted at this site",
            ),
            (
                Refusal::PatternNotAllowed {
                    rule: "premium-900".into(),
                },
                "calls matching 'premium-900' are not allowed from this phone",
            ),
        ];
        for (refusal, want) in cases {
            assert_eq!(refusal.warning_text(), want);
        }
    }
}
