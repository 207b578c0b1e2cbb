//! The embedded store's on-disk record format: pure encoding and decoding, no IO.
//!
//! A file is a sequence of frames `[len: u32 LE][crc32 of payload: u32 LE][payload]`.
//! A frame cut short or failing its checksum at the end of a file is the torn tail of a
//! write that was never acknowledged (acknowledgement waits for fsync) and is dropped.

/// One logged change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Store revision after a transaction that changed keys.
    Revision(i64),
    /// A key was written (revisions derive from the preceding `Revision`).
    Put {
        key: String,
        value: Vec<u8>,
        lease: i64,
    },
    /// A key was deleted.
    Delete { key: String },
    /// A lease was granted.
    LeaseGrant { id: i64, ttl: i64 },
    /// A lease was revoked or expired.
    LeaseRevoke { id: i64 },
    /// Snapshot only: a key with its full metadata.
    SnapshotKey {
        key: String,
        value: Vec<u8>,
        create_revision: i64,
        mod_revision: i64,
        version: i64,
        lease: i64,
    },
}

const TAG_REVISION: u8 = 1;
const TAG_PUT: u8 = 2;
const TAG_DELETE: u8 = 3;
const TAG_GRANT: u8 = 4;
const TAG_REVOKE: u8 = 5;
const TAG_SNAPSHOT_KEY: u8 = 6;

/// Largest frame accepted when reading (guards against a garbage length).
const MAX_FRAME: usize = 256 << 20;

/// Appends one framed group of records (applied together) to `out`.
pub fn encode_frame(records: &[Record], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    for r in records {
        encode_record(r, out);
    }
    let payload = &out[start + 8..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn encode_record(r: &Record, out: &mut Vec<u8>) {
    match r {
        Record::Revision(rev) => {
            out.push(TAG_REVISION);
            put_i64(out, *rev);
        }
        Record::Put { key, value, lease } => {
            out.push(TAG_PUT);
            put_bytes(out, key.as_bytes());
            put_bytes(out, value);
            put_i64(out, *lease);
        }
        Record::Delete { key } => {
            out.push(TAG_DELETE);
            put_bytes(out, key.as_bytes());
        }
        Record::LeaseGrant { id, ttl } => {
            out.push(TAG_GRANT);
            put_i64(out, *id);
            put_i64(out, *ttl);
        }
        Record::LeaseRevoke { id } => {
            out.push(TAG_REVOKE);
            put_i64(out, *id);
        }
        Record::SnapshotKey {
            key,
            value,
            create_revision,
            mod_revision,
            version,
            lease,
        } => {
            out.push(TAG_SNAPSHOT_KEY);
            put_bytes(out, key.as_bytes());
            put_bytes(out, value);
            for v in [create_revision, mod_revision, version, lease] {
                put_i64(out, *v);
            }
        }
    }
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// What reading a file found.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Each frame's records, in order.
    pub frames: Vec<Vec<Record>>,
    /// Bytes of whole, valid frames; anything after is a torn tail to truncate.
    pub valid_len: usize,
}

/// Decodes every whole frame of `buf`, stopping at the first short or damaged one.
pub fn decode_frames(buf: &[u8]) -> Decoded {
    let mut frames = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= 8 {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap());
        if len > MAX_FRAME || buf.len() - pos - 8 < len {
            break;
        }
        let payload = &buf[pos + 8..pos + 8 + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        match decode_records(payload) {
            Some(records) => frames.push(records),
            None => break,
        }
        pos += 8 + len;
    }
    Decoded {
        frames,
        valid_len: pos,
    }
}

/// Whether the bytes after the last good frame are what a crash during one append leaves:
/// less than a frame header, or one frame whose stated length reaches the end of the file
/// (its payload not all written). Anything else (a bad frame with more after it) is damage
/// a crash cannot explain: dropping it would drop acknowledged commits.
pub fn torn_tail(rest: &[u8]) -> bool {
    if rest.len() < 8 {
        return true;
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    len <= MAX_FRAME && 8 + len >= rest.len()
}

fn decode_records(mut p: &[u8]) -> Option<Vec<Record>> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = p.split_first() {
        p = rest;
        out.push(match tag {
            TAG_REVISION => Record::Revision(take_i64(&mut p)?),
            TAG_PUT => Record::Put {
                key: take_string(&mut p)?,
                value: take_bytes(&mut p)?,
                lease: take_i64(&mut p)?,
            },
            TAG_DELETE => Record::Delete {
                key: take_string(&mut p)?,
            },
            TAG_GRANT => Record::LeaseGrant {
                id: take_i64(&mut p)?,
                ttl: take_i64(&mut p)?,
            },
            TAG_REVOKE => Record::LeaseRevoke {
                id: take_i64(&mut p)?,
            },
            TAG_SNAPSHOT_KEY => Record::SnapshotKey {
                key: take_string(&mut p)?,
                value: take_bytes(&mut p)?,
                create_revision: take_i64(&mut p)?,
                mod_revision: take_i64(&mut p)?,
                version: take_i64(&mut p)?,
                lease: take_i64(&mut p)?,
            },
            _ => return None,
        });
    }
    Some(out)
}

fn take_i64(p: &mut &[u8]) -> Option<i64> {
    let (head, rest) = p.split_at_checked(8)?;
    *p = rest;
    Some(i64::from_le_bytes(head.try_into().ok()?))
}

fn take_bytes(p: &mut &[u8]) -> Option<Vec<u8>> {
    let (head, rest) = p.split_at_checked(4)?;
    let len = u32::from_le_bytes(head.try_into().ok()?) as usize;
    let (body, rest) = rest.split_at_checked(len)?;
    *p = rest;
    Some(body.to_vec())
}

fn take_string(p: &mut &[u8]) -> Option<String> {
    String::from_utf8(take_bytes(p)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::Revision(7),
            Record::Put {
                key: "config/phones/a".into(),
                value: b"\x00\xffv".to_vec(),
                lease: 0,
            },
            Record::Delete { key: "k".into() },
            Record::LeaseGrant { id: 42, ttl: 10 },
            Record::LeaseRevoke { id: 42 },
            Record::SnapshotKey {
                key: "s".into(),
                value: vec![],
                create_revision: 1,
                mod_revision: 2,
                version: 3,
                lease: 4,
            },
        ]
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        encode_frame(&sample(), &mut buf);
        encode_frame(&[Record::Revision(8)], &mut buf);
        let d = decode_frames(&buf);
        assert_eq!(d.frames, vec![sample(), vec![Record::Revision(8)]]);
        assert_eq!(d.valid_len, buf.len());
    }

    #[test]
    fn damaged_tails_are_cut_at_the_last_whole_frame() {
        let mut buf = Vec::new();
        encode_frame(&sample(), &mut buf);
        let whole = buf.len();
        encode_frame(
            &[Record::Revision(9), Record::Delete { key: "x".into() }],
            &mut buf,
        );
        let full = buf.len();
        // (description, mutation) -> only the first frame survives
        type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "cut in the header",
                Box::new(move |b| b.truncate(whole + 3)),
            ),
            (
                "cut in the payload",
                Box::new(move |b| b.truncate(full - 1)),
            ),
            ("flipped payload bit", Box::new(move |b| b[full - 1] ^= 1)),
            ("flipped crc bit", Box::new(move |b| b[whole + 4] ^= 1)),
            ("absurd length", Box::new(move |b| b[whole + 3] = 0xff)),
        ];
        for (name, mutate) in cases {
            let mut b = buf.clone();
            mutate(&mut b);
            let d = decode_frames(&b);
            assert_eq!(d.frames, vec![sample()], "{name}");
            assert_eq!(d.valid_len, whole, "{name}");
        }
    }

    #[test]
    fn only_what_a_crash_leaves_counts_as_a_torn_tail() {
        let mut frame = Vec::new();
        encode_frame(&[Record::Revision(9)], &mut frame);
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        let mut absurd = frame.clone();
        absurd[3] = 0xff;
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("nothing", vec![], true),
            ("half a header", frame[..5].to_vec(), true),
            (
                "a header and part of its payload",
                frame[..frame.len() - 1].to_vec(),
                true,
            ),
            ("a whole frame whose payload is bad", frame.clone(), true),
            ("a bad frame with another after it", two, false),
            ("an absurd length", absurd, false),
        ];
        for (name, rest, want) in cases {
            assert_eq!(torn_tail(&rest), want, "{name}");
        }
    }

    #[test]
    fn unknown_tag_stops_decoding() {
        let mut buf = Vec::new();
        encode_frame(&[Record::Revision(1)], &mut buf);
        let mut bad = vec![0u8; 8];
        bad.push(99);
        let crc = crc32fast::hash(&bad[8..]);
        bad[0..4].copy_from_slice(&1u32.to_le_bytes());
        bad[4..8].copy_from_slice(&crc.to_le_bytes());
        buf.extend_from_slice(&bad);
        assert_eq!(decode_frames(&buf).frames.len(), 1);
    }
}
