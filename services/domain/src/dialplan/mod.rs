//! Dial plans: what a dialled string is, and whether a line may call it. Pure: no IO and no
//! proto types, so the config role can validate plans and the edges can route with the
//! same code.
//!
//! Shaped after Genesys Cloud's number plans: a site's plan is named classifications tried
//! in order, the first match wins, and a match may be normalised to E.164. Genesys matches
//! by number list, digit length, country codes or regular expression; here every rule is a
//! PBX digit pattern ([`Pattern`]: `911`, `NXXNXXXXXX`, `011X.`), which says the same of
//! dialled digits and, unlike a regular expression, matches in bounded time whatever an
//! administrator writes or a caller dials.
//!
//! - [`Pattern`]: the digit pattern language.
//! - [`NumberPlan`]: ordered [`Rule`]s that classify a dialled string as a [`Kind`] and
//!   [`Normalize`] it.
//! - [`templates`]: NANP and international plans, and a site's extension rules.
//! - [`decide`]: whether a [`Caller`] may place a [`Classified`] call, or the [`Refusal`]
//!   its 403's Warning gives.
//!
//! A call from a line reaches its site's extensions, and other sites' through
//! `{site code}{extension}`, before any of this; everything else is classified by the
//! caller's site's plan, then decided. Emergency calls are always routed: a plan must have
//! an emergency rule, emergency rules are tried first, and nothing refuses what they take.

mod decision;
mod number;
mod pattern;
mod plan;
pub mod templates;

pub use decision::{Caller, Decision, Permit, Refusal, Restrictions, decide};
pub use number::{Normalize, clean_dialled};
pub use pattern::{MAX_DIALLED_LEN, MAX_PATTERN_LEN, Pattern};
pub use plan::{Classified, Kind, MAX_RULES, NumberPlan, Rule};

/// What a dial plan cannot be built from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialplanError {
    /// A digit pattern that does not parse; `at` is the 0-based character offset.
    #[error("dial pattern '{pattern}' at {at}: {why}")]
    Pattern {
        pattern: String,
        at: usize,
        why: &'static str,
    },
    /// A normalisation that cannot yield E.164.
    #[error("normalisation (strip {strip}, prepend '{prefix}'): {why}")]
    Normalize {
        strip: usize,
        prefix: String,
        why: &'static str,
    },
    /// A plan or rule name that is not 1-63 letters, digits, '-' or '_'.
    #[error("'{0}' is not a name: 1-63 letters, digits, '-' or '_'")]
    Name(String),
    /// Two rules of one plan with the same name.
    #[error("two rules are named '{0}'")]
    DuplicateRule(String),
    /// More rules than [`MAX_RULES`].
    #[error("a plan holds at most {max} rules, not {count}")]
    TooManyRules { count: usize, max: usize },
    /// A plan with no emergency rule.
    #[error("plan '{0}' has no emergency rule, and emergency calls are always routed")]
    NoEmergency(String),
    /// Extension lengths outside 2-10 digits.
    #[error("extensions are 2-10 digits, not {min}-{max}")]
    ExtensionLength { min: usize, max: usize },
}
