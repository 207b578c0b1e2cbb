//! rtpengine's `ng` control protocol, pure: a datagram is a cookie, a space and a
//! bencoded dictionary; the reply carries the same cookie. Commands used here: `ping`,
//! `offer`, `answer`, `delete`, `query` and `list`. (rtpengine's documentation: "ng
//! Control Protocol".)

use crate::{
    bencode::{self, Value},
    error::MediaError,
};

/// Bytes of a cookie the client accepts in a reply.
pub const MAX_COOKIE: usize = 64;

/// `cookie SP message`.
pub fn frame(cookie: &str, message: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.len() + 512);
    out.extend_from_slice(cookie.as_bytes());
    out.push(b' ');
    message.encode(&mut out);
    out
}

/// A datagram's cookie and message.
pub fn unframe(datagram: &[u8]) -> Result<(&str, Value), MediaError> {
    let space = datagram
        .iter()
        .take(MAX_COOKIE + 1)
        .position(|&b| b == b' ')
        .ok_or(MediaError::Frame("no cookie"))?;
    let cookie = std::str::from_utf8(&datagram[..space])
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or(MediaError::Frame("cookie is not text"))?;
    let message = bencode::decode(&datagram[space + 1..])?;
    if !matches!(message, Value::Dict(_)) {
        return Err(MediaError::Frame("message is not a dictionary"));
    }
    Ok((cookie, message))
}

/// The dialog a command is about: Call-ID and tags (RFC 3261 §12), and for a forked
/// offer the branch it goes out on.
#[derive(Clone, Copy, Debug)]
pub struct Dialog<'a> {
    pub call_id: &'a str,
    pub from_tag: &'a str,
    pub to_tag: Option<&'a str>,
    pub via_branch: Option<&'a str>,
}

impl Dialog<'_> {
    fn pairs(&self) -> Vec<(&'static str, Value)> {
        let mut p = vec![
            ("call-id", Value::str(self.call_id)),
            ("from-tag", Value::str(self.from_tag)),
        ];
        if let Some(t) = self.to_tag {
            p.push(("to-tag", Value::str(t)));
        }
        if let Some(b) = self.via_branch {
            p.push(("via-branch", Value::str(b)));
        }
        p
    }
}

/// How rtpengine is to rewrite one side's SDP (see `anchor` for what decides each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// Plain flags (`trust-address`, `SIP-source-address`, `generate-mid`, ...).
    pub flags: Vec<&'static str>,
    /// `replace` (`origin`, `session-connection`).
    pub replace: Vec<&'static str>,
    /// `transport-protocol` (`RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`).
    pub transport_protocol: Option<&'static str>,
    /// `ICE` (`remove`, `force`).
    pub ice: Option<&'static str>,
    /// `DTLS` (`off`, `passive`).
    pub dtls: Option<&'static str>,
    /// `rtcp-mux` (`demux`, `offer`, `accept`).
    pub rtcp_mux: Vec<&'static str>,
    /// `SDES` (`off`, or suites to offer).
    pub sdes: Vec<&'static str>,
    /// `received-from`: the address the SIP message came from (`IP4`/`IP6`, address).
    pub received_from: Option<(&'static str, String)>,
}

impl Flags {
    fn pairs(&self) -> Vec<(&'static str, Value)> {
        let mut p = Vec::new();
        if !self.flags.is_empty() {
            p.push(("flags", Value::strs(&self.flags)));
        }
        if !self.replace.is_empty() {
            p.push(("replace", Value::strs(&self.replace)));
        }
        if let Some(t) = self.transport_protocol {
            p.push(("transport-protocol", Value::str(t)));
        }
        if let Some(i) = self.ice {
            p.push(("ICE", Value::str(i)));
        }
        if let Some(d) = self.dtls {
            p.push(("DTLS", Value::str(d)));
        }
        if !self.rtcp_mux.is_empty() {
            p.push(("rtcp-mux", Value::strs(&self.rtcp_mux)));
        }
        if !self.sdes.is_empty() {
            p.push(("SDES", Value::strs(&self.sdes)));
        }
        if let Some((family, addr)) = &self.received_from {
            p.push(("received-from", Value::strs([*family, addr.as_str()])));
        }
        p
    }
}

fn command(name: &str, pairs: Vec<(&'static str, Value)>) -> Value {
    Value::dict(std::iter::once(("command", Value::str(name))).chain(pairs))
}

/// `ping`.
pub fn ping() -> Value {
    command("ping", vec![])
}

/// `offer`: the caller's SDP, to be rewritten for the callee.
pub fn offer(d: &Dialog<'_>, sdp: &[u8], f: &Flags) -> Value {
    let mut p = d.pairs();
    p.push(("sdp", Value::str(sdp)));
    p.extend(f.pairs());
    command("offer", p)
}

/// `answer`: the callee's SDP, to be rewritten for the caller.
pub fn answer(d: &Dialog<'_>, sdp: &[u8], f: &Flags) -> Value {
    let mut p = d.pairs();
    p.push(("sdp", Value::str(sdp)));
    p.extend(f.pairs());
    command("answer", p)
}

/// `delete`: the call's whole session (every branch) goes at once (`delete-delay` 0),
/// not after rtpengine's default grace period.
pub fn delete(call_id: &str) -> Value {
    command(
        "delete",
        vec![
            ("call-id", Value::str(call_id)),
            ("delete-delay", Value::Int(0)),
        ],
    )
}

/// `query`: a call's state and per-stream packet counts.
pub fn query(call_id: &str) -> Value {
    command("query", vec![("call-id", Value::str(call_id))])
}

/// `list`: the Call-IDs of the sessions the media server holds.
pub fn list() -> Value {
    command("list", vec![])
}

/// What a reply says: `ok` or `pong` (with the SDP, for `offer` and `answer`), or the
/// server's reason for an `error`.
pub fn reply(command: &'static str, r: &Value) -> Result<Option<Vec<u8>>, MediaError> {
    match r.get("result").and_then(Value::text) {
        Some("ok" | "pong") => Ok(r.get("sdp").and_then(Value::bytes).map(<[u8]>::to_vec)),
        Some("error") => Err(MediaError::Refused {
            command,
            reason: r
                .get("error-reason")
                .and_then(Value::text)
                .unwrap_or("no reason given")
                .to_owned(),
        }),
        _ => Err(MediaError::Refused {
            command,
            reason: "a reply without a known result".to_owned(),
        }),
    }
}

/// The Call-IDs of a `list` reply.
pub fn calls(r: &Value) -> Vec<String> {
    match r.get("calls") {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|v| v.text().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Packets rtpengine received from each party of a `query` reply, by tag: what shows that
/// media flows both ways.
pub fn packets_by_tag(r: &Value) -> Vec<(String, i64)> {
    let Some(Value::Dict(tags)) = r.get("tags") else {
        return Vec::new();
    };
    tags.iter()
        .map(|(tag, t)| {
            let packets = match t.get("medias") {
                Some(Value::List(medias)) => medias
                    .iter()
                    .filter_map(|m| match m.get("streams") {
                        Some(Value::List(s)) => Some(s),
                        _ => None,
                    })
                    .flatten()
                    .filter_map(|s| s.get("stats")?.get("packets")?.int())
                    .sum(),
                _ => 0,
            };
            (String::from_utf8_lossy(tag).into_owned(), packets)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_frames_as_rtpengine_reads_it() {
        let d = Dialog {
            call_id: "c1",
            from_tag: "ft",
            to_tag: None,
            via_branch: Some("z9hG4bK1"),
        };
        let f = Flags {
            flags: vec!["trust-address"],
            replace: vec!["origin", "session-connection"],
            ice: Some("remove"),
            ..Flags::default()
        };
        let bytes = frame("k1", &offer(&d, b"v=0\r\n", &f));
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            "k1 d3:ICE6:remove7:call-id2:c17:command5:offer5:flagsl13:trust-addresse\
             8:from-tag2:ft7:replacel6:origin18:session-connectione3:sdp5:v=0\r\n\
             10:via-branch8:z9hG4bK1e"
        );
        let (cookie, v) = unframe(&bytes).unwrap();
        assert_eq!(cookie, "k1");
        assert_eq!(v.get("command").and_then(Value::text), Some("offer"));
    }

    #[test]
    fn replies_give_the_sdp_or_the_reason() {
        let ok = bencode::decode(b"d3:sdp3:v=06:result2:oke").unwrap();
        assert_eq!(reply("offer", &ok).unwrap(), Some(b"v=0".to_vec()));
        let pong = bencode::decode(b"d6:result4:ponge").unwrap();
        assert_eq!(reply("ping", &pong).unwrap(), None);
        let err = bencode::decode(b"d12:error-reason12:Unknown call6:result5:errore").unwrap();
        let e = reply("answer", &err).unwrap_err().to_string();
        assert!(e.contains("answer") && e.contains("Unknown call"), "{e}");
        let odd = bencode::decode(b"d6:result3:hmme").unwrap();
        assert!(reply("offer", &odd).is_err());
    }

    #[test]
    fn datagrams_without_a_cookie_or_dictionary_are_refused() {
        for d in [
            &b"nocookie"[..],
            b" d6:result2:oke",
            b"k1 i1e",
            b"k1 d6:result",
        ] {
            assert!(unframe(d).is_err(), "{:?}", String::from_utf8_lossy(d));
        }
        let long = [vec![b'x'; MAX_COOKIE + 1], b" de".to_vec()].concat();
        assert!(unframe(&long).is_err());
    }

    #[test]
    fn list_and_query_replies_are_read() {
        let l = bencode::decode(b"d5:callsl2:c12:c2e6:result2:oke").unwrap();
        assert_eq!(calls(&l), ["c1", "c2"]);
        let stream = |n| Value::dict([("stats", Value::dict([("packets", Value::Int(n))]))]);
        let streams = |s| Value::dict([("streams", Value::List(s))]);
        let q = Value::dict([
            (
                "tags",
                Value::dict([
                    (
                        "a",
                        Value::dict([(
                            "medias",
                            Value::List(vec![streams(vec![stream(5), stream(2)])]),
                        )]),
                    ),
                    ("b", Value::dict([("medias", Value::List(vec![]))])),
                ]),
            ),
            ("result", Value::str("ok")),
        ]);
        assert_eq!(
            packets_by_tag(&q),
            [("a".to_owned(), 7), ("b".to_owned(), 0)]
        );
    }
}
