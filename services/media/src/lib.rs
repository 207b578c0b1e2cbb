//! Media anchoring for the edge, on rtpengine (driven over its `ng` control protocol);
//! Dialtone relays no media itself.
//!
//! Layers, as the SIP crate has them: pure parsing and decisions apart from IO.
//! - [`bencode`]: the wire encoding of `ng` (pure).
//! - [`ng`]: `ng` commands built and replies read (pure).
//! - [`sdp`]: what the edge needs to know of an SDP body (pure).
//! - [`anchor`]: when a call's media is anchored, and the flags of its `offer` and
//!   `answer` (pure, table-tested).
//! - [`select`]: which media server a call uses (rendezvous hash by Call-ID, pure).
//! - [`turn`]: the ICE servers a WebRTC phone is given and its time-limited TURN
//!   credentials (coturn's REST API shared secret; pure).
//! - [`client`]: the `ng` client: UDP, cookies, retransmission, timeouts (IO).

pub mod anchor;
pub mod bencode;
pub mod client;
pub mod error;
pub mod ng;
pub mod sdp;
pub mod select;
pub mod turn;

pub use error::MediaError;
