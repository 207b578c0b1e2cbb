//! What every Dialtone crate shares below the fleet's vocabulary (`dialtone-domain`):
//! the one wall clock, listening sockets with a deep accept queue, and the park hook that
//! gives memory back when a thread goes quiet. Nothing here knows SIP, the store or a role.

pub mod clock;
pub mod idle;
pub mod listen;
