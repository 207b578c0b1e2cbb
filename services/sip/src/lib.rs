//! SIP for the Dialtone edge, as pure code (no IO), in the manner of mini-redis's
//! `frame.rs`: [`message::parse`] frames a datagram into a start line, unfolded headers with
//! canonical names and a body; [`verdict::check`] says whether the edge may process it, must
//! answer with an error, or must drop it. Where the `rsip` crate of the verified set cannot
//! type a valid message (compact forms, quoted Contact params, comma-joined Contacts,
//! LF-only lines), this code does.

pub mod addressing;
pub mod conformance;
pub mod digest;
pub mod header;
pub mod message;
pub mod offer;
mod params;
pub mod proxy;
pub mod registration;
pub mod response;
pub mod route;
pub mod scan;
pub mod stream;
pub mod transaction;
pub mod transport;
pub mod uri;
pub mod verdict;

pub use message::{Message, ParseError, StartLine, parse};
pub use verdict::{Verdict, check};

/// Parses and judges a datagram in one step: a request that cannot be parsed gets 400 (with
/// what [`message::salvage`] could read of it to answer along; nothing when it has no Via),
/// a response that cannot be parsed is dropped.
pub fn judge(datagram: &[u8]) -> (Option<Message>, Verdict) {
    match parse(datagram) {
        Ok(m) => {
            let v = check(&m);
            (Some(m), v)
        }
        Err(e) if message::looks_like_response(datagram) => (
            None,
            Verdict::Drop {
                reason: e.to_string(),
            },
        ),
        Err(e) if matches!(e, ParseError::Empty) => (
            None,
            Verdict::Drop {
                reason: e.to_string(),
            },
        ),
        Err(e) => (
            message::salvage(datagram),
            Verdict::Reject {
                code: 400,
                reason: e.to_string(),
            },
        ),
    }
}
