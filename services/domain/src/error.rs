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
