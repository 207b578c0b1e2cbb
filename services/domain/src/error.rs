//! What the fleet's vocabulary can refuse.

use std::net::IpAddr;

/// Why an entry of a peer's `addresses` is not one (the config role names the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAddressError {
    #[error("'{0}' is not an IP address, a network or an address:port")]
    NotAnAddress(String),
    #[error("'{address}': the prefix must be 0-{max}")]
    Prefix { address: String, max: u8 },
    #[error("'{address}': networks wider than /{min} are not trusted as one peer")]
    TooWide { address: String, min: u8 },
    #[error("'{address}': host bits are set (the network is {network}/{prefix})")]
    HostBits {
        address: String,
        network: IpAddr,
        prefix: u8,
    },
}

/// Why a DID entry's `numbers` is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    #[error("'{0}' is not an E.164 number (+ and 8-15 digits) or a range of two")]
    NotANumber(String),
    #[error(
        "'{0}': a range's two ends have the same number of digits, the first not above the last"
    )]
    BadRange(String),
    #[error("'{numbers}': a range holds at most {max} numbers")]
    TooLong { numbers: String, max: u64 },
}
