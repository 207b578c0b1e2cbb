//! The protobuf wire format at the top level of a message: which fields an encoding holds,
//! and which of them differ between two encodings. What field masks are built on (a
//! client names what it changed; a server merges and keeps what it does not know). Pure.

use std::{collections::BTreeMap, ops::Range};

/// Bytes that are not a protobuf message.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// The top-level fields of an encoding: (number, the byte range of its tag and value).
pub fn top_level(bytes: &[u8]) -> Result<Vec<(u32, Range<usize>)>, Malformed> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let tag = varint(bytes, &mut at)?;
        let number = u32::try_from(tag >> 3).map_err(|_| Malformed)?;
        if number == 0 {
            return Err(Malformed);
        }
        match tag & 7 {
            0 => {
                varint(bytes, &mut at)?;
            }
            1 => at = at.checked_add(8).ok_or(Malformed)?,
            2 => {
                let len = usize::try_from(varint(bytes, &mut at)?).map_err(|_| Malformed)?;
                at = at.checked_add(len).ok_or(Malformed)?;
            }
            5 => at = at.checked_add(4).ok_or(Malformed)?,
            // Groups (3, 4) are proto2's and never in Dialtone's messages.
            _ => return Err(Malformed),
        }
        if at > bytes.len() {
            return Err(Malformed);
        }
        out.push((number, start..at));
    }
    Ok(out)
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, Malformed> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or(Malformed)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Malformed)
}

/// The names of the top-level fields of message `full_name` whose encoding differs between
/// `before` and `after` (a field set, changed or cleared), in field-number order; fields
/// this build does not know are left out. Malformed input yields every known field.
pub fn changed_fields(full_name: &str, before: &[u8], after: &[u8]) -> Vec<String> {
    let by_number = |bytes: &[u8]| -> Result<BTreeMap<u32, Vec<u8>>, Malformed> {
        let mut out: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for (n, r) in top_level(bytes)? {
            out.entry(n).or_default().extend_from_slice(&bytes[r]);
        }
        Ok(out)
    };
    let fields = crate::message_fields(full_name);
    let (Ok(b), Ok(a)) = (by_number(before), by_number(after)) else {
        return fields.iter().map(|(n, _)| n.clone()).collect();
    };
    let mut numbers: Vec<&(String, u32)> = fields.iter().collect();
    numbers.sort_by_key(|(_, n)| *n);
    numbers
        .into_iter()
        .filter(|(_, n)| b.get(n) != a.get(n))
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::v1 as pb;
    use prost::Message;

    #[test]
    fn what_changed_is_named() {
        let before = pb::Site {
            id: "hq".into(),
            name: "HQ".into(),
            default_outbound_caller_id: "+15550100".into(),
            media_regions: vec!["eu".into()],
            ..Default::default()
        };
        let mut after = before.clone();
        after.name = "Head office".into();
        after.default_outbound_caller_id.clear();
        after.media_regions.push("us".into());
        assert_eq!(
            changed_fields(
                "dialtone.config.v1.Site",
                &before.encode_to_vec(),
                &after.encode_to_vec()
            ),
            ["name", "media_regions", "default_outbound_caller_id"]
        );
        assert!(
            changed_fields(
                "dialtone.config.v1.Site",
                &before.encode_to_vec(),
                &before.encode_to_vec()
            )
            .is_empty()
        );
    }

    #[test]
    fn malformed_encodings_are_refused() {
        for bad in [
            &[0x08][..],
            &[0x0a, 0x05, b'a'],
            &[0x00, 0x01],
            &[0x0b],
            &[0xff; 11],
        ] {
            assert_eq!(top_level(bad), Err(Malformed), "{bad:?}");
        }
        assert_eq!(top_level(&[]), Ok(vec![]));
    }
}
