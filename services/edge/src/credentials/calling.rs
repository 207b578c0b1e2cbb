//! What each site lets its phones dial beyond extensions: its number plan, restrictions
//! and call patterns, compiled once per change of the site (a template is built, patterns
//! parsed), so deciding a call is a classification and a few comparisons.

use dialtone_domain::{
    dialplan::{
        Caller, Decision, Kind, NumberPlan, Permit, Refusal, Restrictions, decide, templates,
    },
    trunks::Route,
};
use dialtone_proto::config::v1::{CallRestrictions, Site, SiteAssignment, User};

fn restrictions(r: CallRestrictions) -> Restrictions {
    Restrictions {
        allow_external: r.allow_external,
        allow_international: r.allow_international,
        allow_premium: r.allow_premium,
    }
}

/// What a site-assigned phone (or a user, for its companion phones) sets for itself
/// instead of its site's rules.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PhoneCalling {
    restrictions: Option<Restrictions>,
    permits: Option<Vec<Permit>>,
    /// Its own outbound caller id (E.164), if it sets one.
    pub caller_id: Option<String>,
}

impl PhoneCalling {
    /// A phone's own rules, if it sets any.
    pub fn of(a: &SiteAssignment) -> Option<Self> {
        Self::own(a.call_restrictions, &a.call_patterns, &a.outbound_caller_id)
    }

    /// A user's own rules (for its companion phones), if it sets any.
    pub fn of_user(u: &User) -> Option<Self> {
        Self::own(u.call_restrictions, &u.call_patterns, &u.outbound_caller_id)
    }

    fn own(r: Option<CallRestrictions>, patterns: &[String], caller_id: &str) -> Option<Self> {
        let own = PhoneCalling {
            restrictions: r.map(restrictions),
            permits: (!patterns.is_empty())
                .then(|| patterns.iter().map(|p| Permit::parse(p)).collect()),
            caller_id: (!caller_id.is_empty()).then(|| caller_id.to_owned()),
        };
        (own != PhoneCalling::default()).then_some(own)
    }
}

/// A site's calling rules.
#[derive(Debug)]
pub struct SiteCalling {
    /// The site's code, which lines of other sites dial before its extensions.
    pub code: String,
    plan: Option<NumberPlan>,
    restrictions: Restrictions,
    permits: Vec<Permit>,
    /// Where its calls outside the fleet go, by kind.
    pub routes: Vec<Route>,
    /// Its default outbound caller id (E.164), if any.
    pub caller_id: Option<String>,
    /// Its media anchoring and regions.
    pub media: super::media::SiteMedia,
}

impl SiteCalling {
    /// The rules of `site` (an unknown plan name, which the config API refuses, is none).
    pub fn of(site: &Site) -> Self {
        SiteCalling {
            code: site.site_code.clone(),
            plan: templates::by_name(&site.number_plan),
            restrictions: restrictions(site.call_restrictions.unwrap_or_default()),
            permits: site
                .call_patterns
                .iter()
                .map(|p| Permit::parse(p))
                .collect(),
            routes: site
                .outbound_routes
                .iter()
                .map(|r| Route {
                    kinds: r.kinds.iter().filter_map(|k| Kind::from_name(k)).collect(),
                    trunks: r.trunk_ids.clone(),
                    no_answer_s: (r.no_answer_timeout_s > 0).then_some(r.no_answer_timeout_s),
                })
                .collect(),
            caller_id: (!site.default_outbound_caller_id.is_empty())
                .then(|| site.default_outbound_caller_id.clone()),
            media: super::media::SiteMedia::of(site),
        }
    }

    /// What to do with `dialled` from a phone of the site (`assigned` or not), which may
    /// set its own restrictions and call patterns (`phone`). Pure.
    pub fn decide(&self, dialled: &str, assigned: bool, phone: Option<&PhoneCalling>) -> Decision {
        let call = self.plan.as_ref().and_then(|p| p.classify(dialled));
        let caller = Caller {
            assigned,
            restrictions: phone
                .and_then(|p| p.restrictions)
                .unwrap_or(self.restrictions),
            permits: phone
                .and_then(|p| p.permits.as_deref())
                .unwrap_or(&self.permits),
        };
        decide(call, &caller)
    }
}

impl SiteCalling {
    /// The kind of call `number` is by the site's plan (none without a plan, or for a
    /// number it does not know).
    pub fn classify(&self, number: &str) -> Option<Kind> {
        Some(self.plan.as_ref()?.classify(number)?.kind)
    }
}

/// A caller whose site is unknown here (not yet synced, or deleted): nothing but its
/// assignment can be said.
pub fn without_site(assigned: bool) -> Decision {
    Decision::Refuse(if assigned {
        Refusal::NotClassified
    } else {
        Refusal::Unassigned
    })
}

#[cfg(test)]
mod tests {
    use dialtone_domain::dialplan::Kind;
    use dialtone_proto::config::v1::CallRestrictions;

    use super::*;

    fn site(plan: &str, allow: (bool, bool, bool), patterns: &[&str]) -> Site {
        Site {
            id: "hq".into(),
            number_plan: plan.into(),
            call_restrictions: Some(CallRestrictions {
                allow_external: allow.0,
                allow_international: allow.1,
                allow_premium: allow.2,
            }),
            call_patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn allow(kind: Kind, number: &str) -> Decision {
        Decision::Allow {
            kind,
            number: number.into(),
        }
    }

    #[test]
    fn a_site_decides_what_its_phones_dial() {
        let open = site("nanp", (true, true, false), &[]);
        let national_only = site("nanp", (true, true, true), &["national", "emergency"]);
        let closed = site("nanp", (false, false, false), &[]);
        let none = site("", (true, true, true), &[]);
        // (site, dialled, assigned, decision)
        let cases = [
            (
                &open,
                "212 555 1234",
                true,
                allow(Kind::National, "+12125551234"),
            ),
            (
                &open,
                "011442071234567",
                true,
                allow(Kind::International, "+442071234567"),
            ),
            (
                &open,
                "19005551234",
                true,
                Decision::Refuse(Refusal::PremiumBlocked),
            ),
            (
                &open,
                "2125551234",
                false,
                Decision::Refuse(Refusal::Unassigned),
            ),
            (&open, "911", false, allow(Kind::Emergency, "911")),
            (
                &closed,
                "2125551234",
                true,
                Decision::Refuse(Refusal::ExternalBlocked),
            ),
            (&closed, "911", true, allow(Kind::Emergency, "911")),
            (
                &national_only,
                "+442071234567",
                true,
                Decision::Refuse(Refusal::PatternNotAllowed {
                    rule: "international-e164".into(),
                }),
            ),
            (
                &national_only,
                "2125551234",
                true,
                allow(Kind::National, "+12125551234"),
            ),
            (
                &none,
                "2125551234",
                true,
                Decision::Refuse(Refusal::NotClassified),
            ),
            (&none, "911", true, Decision::Refuse(Refusal::NotClassified)),
        ];
        for (site, dialled, assigned, want) in cases {
            let c = SiteCalling::of(site);
            assert_eq!(
                c.decide(dialled, assigned, None),
                want,
                "{} {dialled}",
                site.number_plan
            );
        }
        let emergency = |s: &Site, dialled: &str| {
            let d = SiteCalling::of(s).decide(dialled, true, None);
            matches!(
                d,
                Decision::Allow {
                    kind: Kind::Emergency,
                    ..
                }
            )
        };
        assert!(emergency(&open, "911"));
        assert!(!emergency(&open, "2125551234"));
        assert!(!emergency(&none, "911"));
        assert_eq!(without_site(false), Decision::Refuse(Refusal::Unassigned));
    }

    #[test]
    fn a_phone_may_set_its_own_restrictions_and_patterns() {
        let site = SiteCalling::of(&site("nanp", (true, false, false), &[]));
        let own = |allow: Option<(bool, bool, bool)>, patterns: &[&str]| SiteAssignment {
            extension: "201".into(),
            call_restrictions: allow.map(|(e, i, p)| CallRestrictions {
                allow_external: e,
                allow_international: i,
                allow_premium: p,
            }),
            call_patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
            ..Default::default()
        };
        assert_eq!(
            PhoneCalling::of(&own(None, &[])),
            None,
            "inherits everything"
        );
        let lobby = PhoneCalling::of(&own(Some((false, false, false)), &[])).unwrap();
        let exec = PhoneCalling::of(&own(Some((true, true, false)), &[])).unwrap();
        let only_emergency = PhoneCalling::of(&own(None, &["emergency"])).unwrap();
        let international = "011442071234567";
        // (phone's own rules, dialled, decision)
        let cases = [
            (
                None,
                international,
                Decision::Refuse(Refusal::InternationalBlocked),
            ),
            (
                Some(&exec),
                international,
                allow(Kind::International, "+442071234567"),
            ),
            (
                Some(&lobby),
                "2125551234",
                Decision::Refuse(Refusal::ExternalBlocked),
            ),
            (Some(&lobby), "911", allow(Kind::Emergency, "911")),
            (
                Some(&only_emergency),
                "2125551234",
                Decision::Refuse(Refusal::PatternNotAllowed {
                    rule: "national-10".into(),
                }),
            ),
        ];
        for (phone, dialled, want) in cases {
            assert_eq!(site.decide(dialled, true, phone), want, "{dialled}");
        }
    }
}
