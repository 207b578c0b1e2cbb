//! The crate's one error type.

use std::net::SocketAddr;

/// What can go wrong talking to a media server.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Bytes that are not bencode (or nest too deep, or run past their end).
    #[error("malformed bencode at byte {at}: {what}")]
    Bencode { at: usize, what: &'static str },
    /// A datagram that is not `cookie SP bencode-dictionary`.
    #[error("malformed ng datagram: {0}")]
    Frame(&'static str),
    /// The media server refused the command, with its reason.
    #[error("media server refused {command}: {reason}")]
    Refused {
        command: &'static str,
        reason: String,
    },
    /// No answer within the timeout, retransmissions included.
    #[error("media server {0} did not answer")]
    Timeout(SocketAddr),
    /// Too many commands under way at once.
    #[error("too many ng commands under way")]
    Busy,
    /// No `ng` client runs where the command was to be sent from.
    #[error("no ng client runs here")]
    NoClient,
    /// The client's socket failed.
    #[error("ng socket: {0}")]
    Io(#[from] std::io::Error),
}
