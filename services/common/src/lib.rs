//! What every Dialtone crate shares below the fleet's vocabulary (`dialtone-domain`):
//! today the one wall clock. Nothing here knows SIP, the store or a role.

pub mod clock;
