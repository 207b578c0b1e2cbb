//! What every Dialtone crate shares below the fleet's vocabulary (`dialtone-domain`):
//! the one wall clock, and listening sockets with a deep accept queue. Nothing here knows
//! SIP, the store or a role.

pub mod clock;
pub mod listen;
