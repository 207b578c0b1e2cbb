//! Updates that change only what they name, and writes that keep what this node does not
//! know (AIP-134 field masks, applied to the protobuf encoding itself).
//!
//! Two nodes of different releases share one store during a rolling upgrade, and clients
//! of any release call either. A message decoded by a binary drops the fields it does not
//! know, so a whole-object update from an older client, or any write by an older node,
//! would erase what a newer one wrote. So:
//!
//! - an update's `update_mask` names the top-level fields it changes; every other field
//!   keeps its stored value. No mask: the fields the update sets (non-default), so an
//!   older client never clears a field it cannot know; `*`: every field.
//! - a write keeps the stored fields this binary does not know ([`Unknown`]).
//!
//! Both work on the encoding: a message's top-level fields are (tag, bytes) runs, and the
//! concatenation of two encodings whose field numbers do not overlap decodes as the union
//! of their fields. Pure: bytes and a field table in, bytes or a refusal naming the field
//! out.

use std::{collections::BTreeSet, ops::Range};

use dialtone_domain::keys;
use dialtone_proto::config::v1 as pb;
use prost::Message;

/// A message stored under a key, with its full protobuf name (to find its fields).
pub trait Stored: Message + Default {
    /// Its full protobuf name.
    const NAME: &'static str;
    /// What errors call it.
    const KIND: &'static str;
    /// Its id.
    fn id(&self) -> &str;
    /// The version an update of it expects (0: any).
    fn version(&self) -> i64;
    /// The key it is stored under.
    fn key(id: &str) -> String;
}

macro_rules! stored {
    ($($t:ident => $kind:literal, $key:path;)*) => {
        $(impl Stored for pb::$t {
            const NAME: &'static str = concat!("dialtone.config.v1.", stringify!($t));
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn version(&self) -> i64 {
                self.version
            }
            fn key(id: &str) -> String {
                $key(id)
            }
        })*
    };
}
stored! {
    Site => "site", keys::site;
    EdgeGroup => "edge group", keys::edge_group;
    Peer => "peer", keys::peer;
    MediaServer => "media server", keys::media_server;
    User => "user", keys::user;
    Trunk => "trunk", keys::trunk;
    BaseSettings => "base settings", keys::base_settings;
    Phone => "phone", keys::phone;
}

/// The fields of `M` this binary knows.
pub fn fields_of<M: Stored>() -> &'static [(String, u32)] {
    dialtone_proto::message_fields(M::NAME)
}

/// Why an encoding or a mask cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum MaskError {
    /// The mask names a field the object does not have (here, in this release).
    UnknownField(String),
    /// The mask names a field inside another (`overrides.sip_dscp`): only whole top-level
    /// fields are updated.
    Nested(String),
    /// Bytes that are not a protobuf message.
    Malformed,
}

/// The top-level fields of an encoding: (number, the byte range of its tag and value).
pub fn top_level(bytes: &[u8]) -> Result<Vec<(u32, Range<usize>)>, MaskError> {
    dialtone_proto::wire::top_level(bytes).map_err(|_| MaskError::Malformed)
}

/// The field numbers an update with `mask` replaces. `fields`: the object's; `set`: the
/// numbers the update's encoding holds; `always`: taken from the update whatever the mask
/// (`id` and `version`: which object, and the version the update expects).
pub fn replaced(
    fields: &[(String, u32)],
    mask: &[String],
    set: &BTreeSet<u32>,
    always: &[&str],
) -> Result<BTreeSet<u32>, MaskError> {
    let number = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, n)| *n);
    let mut out: BTreeSet<u32> = always.iter().filter_map(|n| number(n)).collect();
    // Each entry may itself be a comma-separated list (FieldMask's JSON form).
    let names: Vec<&str> = mask
        .iter()
        .flat_map(|m| m.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        out.extend(set.iter().copied());
        return Ok(out);
    }
    for name in names {
        if name == "*" {
            out.extend(fields.iter().map(|(_, n)| *n));
            continue;
        }
        if name.contains('.') {
            return Err(MaskError::Nested(name.to_owned()));
        }
        out.insert(number(name).ok_or_else(|| MaskError::UnknownField(name.to_owned()))?);
    }
    Ok(out)
}

/// The stored encoding with the `replaced` fields taken from the update's encoding.
pub fn merge(stored: &[u8], update: &[u8], replaced: &BTreeSet<u32>) -> Result<Vec<u8>, MaskError> {
    let mut out = Vec::with_capacity(stored.len() + update.len());
    for (n, r) in top_level(stored)? {
        if !replaced.contains(&n) {
            out.extend_from_slice(&stored[r]);
        }
    }
    for (n, r) in top_level(update)? {
        if replaced.contains(&n) {
            out.extend_from_slice(&update[r]);
        }
    }
    Ok(out)
}

/// Appends a varint field (`number`, `value`): the version an update is guarded at.
pub fn push_varint_field(out: &mut Vec<u8>, number: u32, value: u64) {
    let mut put = |mut v: u64| loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    };
    put(u64::from(number) << 3);
    put(value);
}

/// The field numbers an encoding holds.
pub fn present(bytes: &[u8]) -> Result<BTreeSet<u32>, MaskError> {
    Ok(top_level(bytes)?.into_iter().map(|(n, _)| n).collect())
}

/// The stored fields this binary does not know, verbatim: written back after what it
/// encodes, so a newer node's fields outlive an older node's write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unknown(Vec<u8>);

impl Unknown {
    /// The fields of `stored` that are not among `fields` (a malformed encoding keeps
    /// nothing: decoding it failed already).
    pub fn of(stored: &[u8], fields: &[(String, u32)]) -> Self {
        let Ok(all) = top_level(stored) else {
            return Self::default();
        };
        let known = |n: u32| fields.iter().any(|(_, k)| *k == n);
        Self(
            all.into_iter()
                .filter(|(n, _)| !known(*n))
                .flat_map(|(_, r)| stored[r].to_vec())
                .collect(),
        )
    }

    /// `encoded` followed by the kept fields.
    pub fn appended_to(&self, mut encoded: Vec<u8>) -> Vec<u8> {
        encoded.extend_from_slice(&self.0);
        encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn site(f: impl FnOnce(&mut pb::Site)) -> pb::Site {
        let mut s = pb::Site {
            id: "hq".into(),
            name: "Head office".into(),
            edge_group_id: "main".into(),
            default_outbound_caller_id: "+15550100".into(),
            media_regions: vec!["eu".into()],
            ..Default::default()
        };
        f(&mut s);
        s
    }

    /// (what, the update, its mask, the site stored after)
    #[test]
    fn masks_change_what_they_name() {
        let fields = fields_of::<pb::Site>();
        assert!(
            fields.iter().any(|(n, _)| n == "edge_group_id"),
            "{fields:?}"
        );
        let stored = site(|_| {});
        type Case = (
            &'static str,
            pb::Site,
            Vec<String>,
            Result<pb::Site, MaskError>,
        );
        let cases: Vec<Case> = vec![
            (
                "no mask: what the update sets, nothing it leaves empty",
                pb::Site {
                    id: "hq".into(),
                    name: "HQ".into(),
                    version: 7,
                    ..Default::default()
                },
                vec![],
                Ok(site(|s| {
                    s.name = "HQ".into();
                    s.version = 7;
                })),
            ),
            (
                "a mask clears what it names",
                pb::Site {
                    id: "hq".into(),
                    ..Default::default()
                },
                names(&["default_outbound_caller_id", "media_regions"]),
                Ok(site(|s| {
                    s.default_outbound_caller_id.clear();
                    s.media_regions.clear();
                })),
            ),
            (
                "a mask leaves what it does not name, even when the update sets it",
                site(|s| {
                    s.name = "ignored".into();
                    s.media_regions = vec!["us".into()];
                }),
                names(&["media_regions"]),
                Ok(site(|s| s.media_regions = vec!["us".into()])),
            ),
            (
                "FieldMask's JSON form: one comma-separated entry",
                site(|s| {
                    s.name = "N".into();
                    s.default_outbound_caller_id.clear();
                }),
                names(&["name, default_outbound_caller_id"]),
                Ok(site(|s| {
                    s.name = "N".into();
                    s.default_outbound_caller_id.clear();
                })),
            ),
            (
                "*: the whole object",
                pb::Site {
                    id: "hq".into(),
                    name: "Only".into(),
                    ..Default::default()
                },
                names(&["*"]),
                Ok(pb::Site {
                    id: "hq".into(),
                    name: "Only".into(),
                    ..Default::default()
                }),
            ),
            (
                "a field this release does not have",
                site(|_| {}),
                names(&["name", "colour"]),
                Err(MaskError::UnknownField("colour".into())),
            ),
            (
                "inside a field",
                site(|_| {}),
                names(&["call_restrictions.allow_premium"]),
                Err(MaskError::Nested("call_restrictions.allow_premium".into())),
            ),
        ];
        for (what, update, mask, want) in cases {
            let enc = update.encode_to_vec();
            let got = replaced(fields, &mask, &present(&enc).unwrap(), &["id", "version"])
                .and_then(|r| merge(&stored.encode_to_vec(), &enc, &r))
                .map(|b| pb::Site::decode(b.as_slice()).unwrap());
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn fields_this_binary_does_not_know_are_kept() {
        // A newer release's site: field 99 (a string) this one does not know.
        let mut newer = site(|_| {}).encode_to_vec();
        newer.extend_from_slice(&[0x9a, 0x06, 0x03, b'n', b'e', b'w']);
        let fields = fields_of::<pb::Site>();
        let unknown = Unknown::of(&newer, fields);
        assert_eq!(unknown, Unknown(vec![0x9a, 0x06, 0x03, b'n', b'e', b'w']));
        // This node changes the name and writes: field 99 is still there.
        let mut s = pb::Site::decode(newer.as_slice()).unwrap();
        s.name = "Renamed".into();
        let written = unknown.appended_to(s.encode_to_vec());
        assert!(present(&written).unwrap().contains(&99));
        assert_eq!(
            pb::Site::decode(written.as_slice()).unwrap().name,
            "Renamed"
        );
        // A merge keeps it too.
        let update = pb::Site {
            id: "hq".into(),
            name: "Again".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let r = replaced(fields, &[], &present(&update).unwrap(), &["id"]).unwrap();
        assert!(
            present(&merge(&newer, &update, &r).unwrap())
                .unwrap()
                .contains(&99)
        );
    }

    #[test]
    fn every_stored_kind_has_its_fields() {
        // An empty table would keep the whole stored encoding as "unknown".
        fn has<M: Stored>() {
            let fields = fields_of::<M>();
            assert!(
                fields.iter().any(|(n, _)| n == "id") && fields.iter().any(|(n, _)| n == "version"),
                "{}: {fields:?}",
                M::NAME
            );
        }
        has::<pb::Site>();
        has::<pb::EdgeGroup>();
        has::<pb::Peer>();
        has::<pb::MediaServer>();
        has::<pb::User>();
        has::<pb::Trunk>();
        has::<pb::BaseSettings>();
        has::<pb::Phone>();
        let version = fields_of::<pb::Site>()
            .iter()
            .find(|(n, _)| n == "version")
            .unwrap()
            .1;
        let mut enc = Vec::new();
        push_varint_field(&mut enc, version, 300);
        assert_eq!(
            pb::Site::decode(enc.as_slice()).unwrap().version,
            300,
            "a version appended decodes"
        );
    }
}
