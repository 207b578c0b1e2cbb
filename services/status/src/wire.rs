//! What a status watch writes to its watcher. The hub encodes each change once, for every
//! watcher (the hub's `EncodedChange`); a watch filters it by a few fields read from
//! those bytes ([`ChangeHead`]) and writes the bytes as they are ([`Wire::Encoded`]),
//! instead of decoding the whole status and encoding it again for each watcher. A
//! departed edge changes hundreds of thousands of phones at once, and every watcher
//! (consoles, dashboards) is sent each of them. The view encodes each change from its
//! borrowed parts ([`ChangeParts`]), the bytes prost would write for it.

use std::sync::Arc;

use dialtone_proto::status::v1::{PhoneStatus, StatusChange};
use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut},
    encoding::{self, DecodeContext, WireType},
};

/// A status change as a watch sends it: the wire format is `StatusChange`'s either way.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    /// A change built for this watcher (a snapshot page, a resumed watch); boxed, as a
    /// watch's queue holds many of the other kind.
    Message(Box<StatusChange>),
    /// A change the hub encoded once for every watcher: a `StatusChange`'s encoding.
    Encoded(Arc<[u8]>),
}

impl Default for Wire {
    fn default() -> Self {
        Self::Message(Box::default())
    }
}

impl Wire {
    /// The change, decoded (for callers that need the message itself).
    pub fn into_message(self) -> Result<StatusChange, DecodeError> {
        match self {
            Self::Message(c) => Ok(*c),
            Self::Encoded(bytes) => StatusChange::decode(&bytes[..]),
        }
    }
}

// A `Wire` is encoded as the `StatusChange` it stands for: an encoded change is written as
// its bytes. Decoding one (which the server never does) reads a `StatusChange`.
impl Message for Wire {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            Self::Message(c) => c.encode_raw(buf),
            Self::Encoded(bytes) => buf.put_slice(bytes),
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if let Self::Encoded(bytes) = self {
            *self = Self::Message(Box::new(StatusChange::decode(&bytes[..])?));
        }
        match self {
            Self::Message(c) => c.merge_field(tag, wire_type, buf, ctx),
            Self::Encoded(_) => unreachable!("made a message above"),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Self::Message(c) => c.encoded_len(),
            Self::Encoded(bytes) => bytes.len(),
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// What a `StatusChange` made by the view says (no snapshot, no sync marker), borrowed:
/// the view encodes a change from its parts, with no `StatusChange` (and no copy of the
/// phone's id) built for it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ChangeParts<'a> {
    /// `StatusChange.status`.
    pub(crate) status: Option<&'a PhoneStatus>,
    /// `StatusChange.removed`.
    pub(crate) removed: bool,
    /// `StatusChange.phone_id`.
    pub(crate) phone_id: &'a str,
    /// `StatusChange.revision`.
    pub(crate) revision: i64,
    /// `StatusChange.left_site`.
    pub(crate) left_site: &'a str,
}

impl ChangeParts<'_> {
    /// The change's encoding, byte for byte prost's of the `StatusChange` it stands for
    /// (fields in tag order, defaults left out); `buf` is cleared first and kept by the
    /// caller for the next.
    pub(crate) fn encode(&self, buf: &mut Vec<u8>) -> Arc<[u8]> {
        fn string(tag: u32, value: &str, buf: &mut Vec<u8>) {
            if !value.is_empty() {
                encoding::encode_key(tag, WireType::LengthDelimited, buf);
                encoding::encode_varint(value.len() as u64, buf);
                buf.put_slice(value.as_bytes());
            }
        }
        buf.clear();
        if let Some(status) = self.status {
            encoding::message::encode(1, status, buf);
        }
        if self.removed {
            encoding::bool::encode(2, &true, buf);
        }
        string(3, self.phone_id, buf);
        if self.revision != 0 {
            encoding::int64::encode(4, &self.revision, buf);
        }
        string(7, self.left_site, buf);
        Arc::from(&buf[..])
    }

    /// The `StatusChange` it stands for.
    pub(crate) fn to_change(self) -> StatusChange {
        StatusChange {
            status: self.status.cloned(),
            removed: self.removed,
            phone_id: self.phone_id.to_owned(),
            revision: self.revision,
            left_site: self.left_site.to_owned(),
            ..Default::default()
        }
    }
}

/// The fields of an encoded `StatusChange` a watch filters on, decoded without the rest of
/// the status (prost skips the fields a message does not declare). The tags are
/// `StatusChange`'s and `PhoneStatus`'s (`wire_tests` holds them to that).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ChangeHead {
    /// `StatusChange.status`, of which only the site.
    #[prost(message, optional, tag = "1")]
    pub(crate) status: Option<StatusHead>,
    /// `StatusChange.removed`.
    #[prost(bool, tag = "2")]
    pub(crate) removed: bool,
    /// `StatusChange.phone_id`.
    #[prost(string, tag = "3")]
    pub(crate) phone_id: String,
    /// `StatusChange.revision`.
    #[prost(int64, tag = "4")]
    pub(crate) revision: i64,
    /// `StatusChange.left_site`.
    #[prost(string, tag = "7")]
    pub(crate) left_site: String,
}

/// The site of a `PhoneStatus`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct StatusHead {
    /// `PhoneStatus.site_id`.
    #[prost(string, tag = "3")]
    pub(crate) site_id: String,
}

impl ChangeHead {
    /// Whether the change concerns a watcher of `site` (every site when empty; removals
    /// concern everyone: the removed phone's site is gone with it; a phone that left a
    /// site concerns that site's watchers), as the watch's `in_site` says of a whole
    /// change.
    pub(crate) fn in_site(&self, site: &str) -> bool {
        site.is_empty()
            || self.removed
            || self.left_site == site
            || self.status.as_ref().is_some_and(|s| s.site_id == site)
    }

    /// Whether the change takes the phone out of the view of a watcher of `site` (every
    /// site when empty): a removal, or a move out of that site.
    pub(crate) fn gone_from(&self, site: &str) -> bool {
        self.removed || (!site.is_empty() && self.left_site == site)
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
