//! The desktop softphone's audio-device rules, as one small pure library.
//!
//! A softphone profile (`SoftphoneAudio` in `dialtone.config.v1`) says which audio devices
//! to use and how to treat incoming calls when the required headset is missing:
//!
//! - **Device selection**, applied at start and again on every change of the devices the
//!   system lists. With `use_headset`, the applicable list is `headset_name`; otherwise it is
//!   `audio_in_device` for the microphone and `audio_out_device` for the speaker. The first
//!   entry of the list (highest priority) that matches a present device wins. When no entry
//!   matches (or the list is empty), the first devices the system lists are used.
//! - **Headset presence**: with `use_headset`, the headset is available when one
//!   `headset_name` entry matches both an input and an output device (a headset is both).
//! - **should_answer** is tri-state: `Yes` (answer automatically), `No` (reject) and
//!   `Unknown` (ring; the user decides). "In cases where either of the following conditions
//!   is met, the auto-answer functionality is blocked (a policy of should answer returns
//!   unknown, although a manual answer is still possible)": a required headset is missing
//!   (`use_headset`), or, without `use_headset`, no usable microphone or speaker is there
//!   (nothing to answer with).
//! - **Rejection**: with `use_headset`, `reject_session_when_headset_na` and no headset,
//!   incoming calls are rejected with `sip_code_when_headset_na` (480 when missing or outside
//!   400-699), and outgoing calls are blocked: exactly when incoming ones are rejected.
//!
//! An entry matches a device when it equals the device's name, or when, read as a regular
//! expression, it matches somewhere in the name (`Jabra` matches `Jabra Evolve2 65`).

mod pattern;
mod state;

pub use pattern::Pattern;
pub use state::AudioState;

use dialtone_proto::config::v1::SoftphoneAudio;

/// The SIP code of a rejection when the profile gives none or an invalid one.
pub const DEFAULT_REJECT_CODE: u16 = 480;

/// Why a profile's rules cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RulesError {
    /// A device entry is neither usable as a name nor as a regular expression.
    #[error("{field}[{index}]: not a device name or regular expression: {reason}")]
    Pattern {
        /// The list the entry is in (`headset_name`, `audio_in_device`, `audio_out_device`).
        field: &'static str,
        /// Position of the entry in its list.
        index: usize,
        /// What the regular-expression compiler said.
        reason: String,
    },
}

/// The rules of one softphone, compiled from its effective settings.
#[derive(Debug, Clone)]
pub struct Rules {
    /// A headset is required for calls.
    pub use_headset: bool,
    /// Headset entries, highest priority first.
    pub headsets: Vec<Pattern>,
    /// Microphone entries, highest priority first.
    pub inputs: Vec<Pattern>,
    /// Speaker entries, highest priority first.
    pub outputs: Vec<Pattern>,
    /// Answer incoming calls automatically.
    pub auto_answer: bool,
    /// Reject incoming calls while the required headset is missing.
    pub reject_when_headset_na: bool,
    /// The configured rejection code, as given (checked by [`Rules::reject_code`]).
    pub configured_reject_code: Option<u32>,
}

/// The devices the system lists now, each list in the system's own order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Devices {
    /// Microphones.
    pub inputs: Vec<String>,
    /// Speakers.
    pub outputs: Vec<String>,
}

/// The devices the rules chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Microphone in use (none when the system lists none).
    pub input: Option<String>,
    /// Speaker in use (none when the system lists none).
    pub output: Option<String>,
    /// The required headset is present (always false without `use_headset`).
    pub headset_present: bool,
}

/// The tri-state answer policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShouldAnswer {
    /// Answer automatically.
    Yes,
    /// Reject the call.
    No,
    /// Ring and let the user decide.
    Unknown,
}

/// What to do with an incoming INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Answer at once (200 OK).
    AutoAnswer,
    /// Ring (180) and wait for the user.
    Ring,
    /// Reject with this SIP code.
    Reject(u16),
}

impl Rules {
    /// Compiles the rules of a softphone's effective settings (unset fields are off).
    pub fn from_settings(s: &SoftphoneAudio) -> Result<Self, RulesError> {
        let compile = |field: &'static str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(index, p)| {
                    Pattern::new(p).map_err(|reason| RulesError::Pattern {
                        field,
                        index,
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            use_headset: s.use_headset.unwrap_or(false),
            headsets: compile("headset_name", &s.headset_name)?,
            inputs: compile("audio_in_device", &s.audio_in_device)?,
            outputs: compile("audio_out_device", &s.audio_out_device)?,
            auto_answer: s.auto_answer.unwrap_or(false),
            reject_when_headset_na: s.reject_session_when_headset_na.unwrap_or(false),
            configured_reject_code: s.sip_code_when_headset_na,
        })
    }

    /// The SIP code of a rejection: the configured one when it is 400-699, else 480.
    pub fn reject_code(&self) -> u16 {
        match self.configured_reject_code {
            Some(c @ 400..=699) => c as u16,
            _ => DEFAULT_REJECT_CODE,
        }
    }

    /// Chooses the devices for what the system lists now.
    pub fn select(&self, devices: &Devices) -> Selection {
        if self.use_headset {
            // The first headset entry present as both microphone and speaker wins.
            for p in &self.headsets {
                let input = devices.inputs.iter().find(|d| p.matches(d));
                let output = devices.outputs.iter().find(|d| p.matches(d));
                if let (Some(i), Some(o)) = (input, output) {
                    return Selection {
                        input: Some(i.clone()),
                        output: Some(o.clone()),
                        headset_present: true,
                    };
                }
            }
            return Selection {
                input: devices.inputs.first().cloned(),
                output: devices.outputs.first().cloned(),
                headset_present: false,
            };
        }
        Selection {
            input: first_match(&self.inputs, &devices.inputs),
            output: first_match(&self.outputs, &devices.outputs),
            headset_present: false,
        }
    }

    /// True when a required headset is missing and the profile rejects calls then.
    fn rejecting(&self, sel: &Selection) -> bool {
        self.use_headset && !sel.headset_present && self.reject_when_headset_na
    }

    /// The answer policy for an incoming call with the devices selected.
    pub fn should_answer(&self, sel: &Selection) -> ShouldAnswer {
        if self.rejecting(sel) {
            ShouldAnswer::No
        } else if self.use_headset && !sel.headset_present {
            // Auto-answer is blocked without the headset; a manual answer stays possible.
            ShouldAnswer::Unknown
        } else if sel.input.is_none() || sel.output.is_none() {
            // Nothing to talk or listen with: blocked too (the headset case is above).
            ShouldAnswer::Unknown
        } else if self.auto_answer {
            ShouldAnswer::Yes
        } else {
            ShouldAnswer::Unknown
        }
    }

    /// What to do with an incoming call.
    pub fn incoming(&self, sel: &Selection) -> Incoming {
        match self.should_answer(sel) {
            ShouldAnswer::Yes => Incoming::AutoAnswer,
            ShouldAnswer::No => Incoming::Reject(self.reject_code()),
            ShouldAnswer::Unknown => Incoming::Ring,
        }
    }

    /// Outgoing calls are allowed unless incoming ones are being rejected.
    pub fn outgoing_allowed(&self, sel: &Selection) -> bool {
        !self.rejecting(sel)
    }
}

/// The device matched by the highest-priority entry that matches any, else the first listed.
fn first_match(entries: &[Pattern], listed: &[String]) -> Option<String> {
    entries
        .iter()
        .find_map(|p| listed.iter().find(|d| p.matches(d)))
        .or_else(|| listed.first())
        .cloned()
}

#[cfg(test)]
mod tests;
