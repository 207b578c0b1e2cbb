//! What identifies a message's parties and place in its dialog (From and To addresses, the
//! CSeq), read once. The verdict has to parse all three to judge a message; the registrar,
//! the trust boundary and the subscription handler need them again. Rather than each
//! parsing them anew, the first reading (normally the verdict's) is kept in the message as
//! ranges of its header text, as the topmost Via is ([`crate::Message::addressing`]).

use crate::header::{HeaderError, NameAddr, parse_cseq, parse_name_addr};

/// A From or To address as far as routing needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Party<'a> {
    /// Whether the URI is sip or sips.
    pub sip: bool,
    /// The URI's user part (still %-escaped), if any.
    pub user: Option<&'a str>,
    /// The `tag` parameter, if any.
    pub tag: Option<&'a str>,
}

/// The From, To and CSeq of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addressing<'a> {
    /// The From address.
    pub from: Party<'a>,
    /// The To address.
    pub to: Party<'a>,
    /// The CSeq sequence number.
    pub cseq: u32,
    /// The CSeq method.
    pub cseq_method: &'a str,
}

/// Which header kept a message from being read, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressingError {
    /// A header is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A header does not parse.
    #[error("{header}: {error}")]
    Malformed {
        /// The header's canonical name.
        header: &'static str,
        /// What is wrong with it.
        error: HeaderError,
    },
}

/// Where the parts of a [`Party`] lie in a message's header text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PartyRanges {
    sip: bool,
    user: Option<(u32, u32)>,
    tag: Option<(u32, u32)>,
}

/// Where the parts of an [`Addressing`] lie in a message's header text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AddressingRanges {
    from: PartyRanges,
    to: PartyRanges,
    cseq: u32,
    cseq_method: (u32, u32),
}

/// The range of `part`, a slice of `text`, in it (an empty range if it were not one: the
/// parsers only ever return slices of their input, but a wrong range must not panic later).
fn range_in(text: &str, part: &str) -> (u32, u32) {
    let start = (part.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if end <= text.len() => (start as u32, end as u32),
        _ => (0, 0),
    }
}

fn slice(text: &str, (a, b): (u32, u32)) -> &str {
    &text[a as usize..b as usize]
}

impl AddressingRanges {
    /// Reads From, To and CSeq, given each header's first value (slices of `text`).
    pub(crate) fn read(
        text: &str,
        from: Option<&str>,
        to: Option<&str>,
        cseq: Option<&str>,
    ) -> Result<Self, AddressingError> {
        let party = |header: &'static str, value: Option<&str>| {
            let value = value.ok_or(AddressingError::Missing(header))?;
            let a = parse_name_addr(value)
                .map_err(|error| AddressingError::Malformed { header, error })?;
            Ok(party_ranges(text, &a))
        };
        let cseq_value = cseq.ok_or(AddressingError::Missing("cseq"))?;
        let (number, method) =
            parse_cseq(cseq_value).map_err(|error| AddressingError::Malformed {
                header: "cseq",
                error,
            })?;
        Ok(Self {
            // The order of the checks is the order of their errors: CSeq, From, To.
            from: party("from", from)?,
            to: party("to", to)?,
            cseq: number,
            cseq_method: range_in(text, method),
        })
    }

    /// The view of these ranges over the text they were read from.
    pub(crate) fn view(self, text: &str) -> Addressing<'_> {
        let party = |p: PartyRanges| Party {
            sip: p.sip,
            user: p.user.map(|r| slice(text, r)),
            tag: p.tag.map(|r| slice(text, r)),
        };
        Addressing {
            from: party(self.from),
            to: party(self.to),
            cseq: self.cseq,
            cseq_method: slice(text, self.cseq_method),
        }
    }
}

fn party_ranges(text: &str, a: &NameAddr<'_>) -> PartyRanges {
    PartyRanges {
        sip: a.uri.is_sip(),
        // An empty part has no place in the text worth keeping (and its pointer may be
        // anywhere).
        user: a.uri.user.map(|u| {
            if u.is_empty() {
                (0, 0)
            } else {
                range_in(text, u)
            }
        }),
        tag: a.params.get("tag").flatten().map(|t| {
            if t.is_empty() {
                (0, 0)
            } else {
                range_in(text, t)
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::parse;

    fn msg(headers: &str) -> crate::Message {
        let raw = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{headers}Call-ID: c\r\nContent-Length: 0\r\n\r\n"
        );
        parse(raw.as_bytes()).expect("parses")
    }

    #[test]
    fn reads_parties_and_cseq_once() {
        let m = msg(
            "From: \"A\" <sip:alice@example.com>;tag=88\r\nTo: tel:+1415\r\nCSeq: 7 INVITE\r\n",
        );
        let a = m.addressing().expect("reads");
        assert_eq!(a.from.user, Some("alice"));
        assert_eq!(a.from.tag, Some("88"));
        assert!(a.from.sip);
        assert!(!a.to.sip);
        assert_eq!(a.to.tag, None);
        assert_eq!((a.cseq, a.cseq_method), (7, "INVITE"));
        // Kept: a second reading is the first.
        assert_eq!(m.addressing(), Ok(a));
    }

    #[test]
    fn names_the_header_that_fails() {
        use super::AddressingError as E;
        use crate::header::HeaderError;
        let cases = [
            ("From: <sip:a@h>\r\nTo: <sip:b@h>\r\n", E::Missing("cseq")),
            ("To: <sip:b@h>\r\nCSeq: 1 INVITE\r\n", E::Missing("from")),
            (
                "From: <sip:a@h>\r\nTo: <sip:b@h>\r\nCSeq: x INVITE\r\n",
                E::Malformed {
                    header: "cseq",
                    error: HeaderError::Malformed,
                },
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(msg(headers).addressing(), Err(want), "{headers:?}");
        }
        let m = msg("From: <sip:a@h\r\nTo: <sip:b@h>\r\nCSeq: 1 INVITE\r\n");
        assert!(matches!(
            m.addressing(),
            Err(E::Malformed { header: "from", .. })
        ));
    }
}
