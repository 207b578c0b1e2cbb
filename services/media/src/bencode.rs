//! Bencode, the encoding of rtpengine's `ng` protocol: integers `i42e`, byte strings
//! `4:spam`, lists `l…e` and dictionaries `d…e` with byte-string keys in sorted order.
//! Pure. Decoding is bounded by its input: no length may run past the end, and nesting
//! stops at [`MAX_DEPTH`], so a hostile datagram costs at most its own size.

use std::collections::BTreeMap;

use crate::error::MediaError;

/// How deep lists and dictionaries may nest.
pub const MAX_DEPTH: usize = 32;

/// A bencoded value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    /// A byte string of `s`.
    pub fn str(s: impl AsRef<[u8]>) -> Value {
        Value::Bytes(s.as_ref().to_vec())
    }

    /// A list of byte strings.
    pub fn strs<S: AsRef<[u8]>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::List(items.into_iter().map(Value::str).collect())
    }

    /// A dictionary of `(key, value)` pairs.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The value under `key` of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// The bytes of a byte string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A byte string as text (None when not UTF-8).
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// An integer.
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value encoded, appended to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => {
                out.extend_from_slice(b.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(b);
            }
            Value::List(items) => {
                out.push(b'l');
                for v in items {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The value encoded.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Decodes exactly one value filling all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, MediaError> {
    let mut at = 0;
    let v = value(input, &mut at, 0)?;
    if at != input.len() {
        return Err(bad(at, "bytes after the value"));
    }
    Ok(v)
}

fn bad(at: usize, what: &'static str) -> MediaError {
    MediaError::Bencode { at, what }
}

fn value(input: &[u8], at: &mut usize, depth: usize) -> Result<Value, MediaError> {
    if depth > MAX_DEPTH {
        return Err(bad(*at, "nested too deep"));
    }
    match input.get(*at) {
        None => Err(bad(*at, "unexpected end")),
        Some(b'i') => {
            *at += 1;
            let end = find(input, *at, b'e')?;
            let text = std::str::from_utf8(&input[*at..end]).map_err(|_| bad(*at, "integer"))?;
            let leading_zero = text.len() > 1 && (text.starts_with('0') || text.starts_with("-0"));
            let n = text
                .parse::<i64>()
                .ok()
                .filter(|_| !leading_zero)
                .ok_or(bad(*at, "integer"))?;
            *at = end + 1;
            Ok(Value::Int(n))
        }
        Some(b'l') => {
            *at += 1;
            let mut items = Vec::new();
            while input.get(*at) != Some(&b'e') {
                items.push(value(input, at, depth + 1)?);
            }
            *at += 1;
            Ok(Value::List(items))
        }
        Some(b'd') => {
            *at += 1;
            let mut d = BTreeMap::new();
            while input.get(*at) != Some(&b'e') {
                let key = string(input, at)?;
                let v = value(input, at, depth + 1)?;
                d.insert(key, v);
            }
            *at += 1;
            Ok(Value::Dict(d))
        }
        Some(b'0'..=b'9') => Ok(Value::Bytes(string(input, at)?)),
        Some(_) => Err(bad(*at, "not a value")),
    }
}

fn string(input: &[u8], at: &mut usize) -> Result<Vec<u8>, MediaError> {
    let colon = find(input, *at, b':')?;
    let len: usize = std::str::from_utf8(&input[*at..colon])
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or(bad(*at, "string length"))?;
    let start = colon + 1;
    let end = start
        .checked_add(len)
        .filter(|&e| e <= input.len())
        .ok_or(bad(*at, "string runs past the end"))?;
    *at = end;
    Ok(input[start..end].to_vec())
}

/// Where `byte` next is at or after `from` (an integer or length is at most 20 bytes).
fn find(input: &[u8], from: usize, byte: u8) -> Result<usize, MediaError> {
    input[from..]
        .iter()
        .take(21)
        .position(|&b| b == byte)
        .map(|p| from + p)
        .ok_or(bad(from, "unterminated integer or length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = Value::dict([
            ("command", Value::str("offer")),
            ("flags", Value::strs(["trust-address"])),
            ("n", Value::Int(-7)),
            ("sdp", Value::str("v=0\r\n")),
        ]);
        let bytes = v.to_bytes();
        // Keys sorted, as bencode requires.
        assert_eq!(
            bytes,
            b"d7:command5:offer5:flagsl13:trust-addresse1:ni-7e3:sdp5:v=0\r\ne".to_vec()
        );
        assert_eq!(decode(&bytes).unwrap(), v);
    }

    #[test]
    fn malformed_input_is_refused_without_panicking() {
        let cases: &[&[u8]] = &[
            b"",
            b"i",
            b"i12",
            b"i1x2e",
            b"i01e",
            b"i-0e",
            b"5:abc",
            b"99999999999999999999999:a",
            b"18446744073709551615:a",
            b"d3:keye",
            b"di1e1:ae",
            b"l",
            b"x",
            b"i1ei2e",
            b":a",
        ];
        for c in cases {
            assert!(decode(c).is_err(), "{:?}", String::from_utf8_lossy(c));
        }
        // Nesting past MAX_DEPTH is refused, and costs nothing deeper.
        let deep = [vec![b'l'; 10_000], vec![b'e'; 10_000]].concat();
        assert!(decode(&deep).is_err());
        let ok = [vec![b'l'; MAX_DEPTH], vec![b'e'; MAX_DEPTH]].concat();
        assert!(decode(&ok).is_ok());
    }
}
