//! Framing of SIP over a byte stream (TCP, TLS): messages are delimited by their
//! Content-Length (RFC 3261 §18.3), and a double CRLF is a keep-alive ping that the server
//! answers with a single CRLF pong (RFC 5626 §3.5.1). Pure: it looks at a buffer and says
//! how many bytes the next frame takes, without IO.

/// The next frame at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `CRLF CRLF`: a keep-alive ping of `len` bytes; answer with [`PONG`].
    Ping(usize),
    /// Stray line ends before a message (ignored, RFC 3261 §7.5) or a pong: skip `len` bytes.
    Skip(usize),
    /// A whole message of `len` bytes.
    Message(usize),
}

/// The pong answering a ping.
pub const PONG: &[u8] = b"\r\n";

/// Why a stream cannot be framed; the connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The headers or the whole message exceed the limit.
    #[error("message larger than {max} bytes")]
    TooLarge { max: usize },
    /// Content-Length is mandatory on streams (RFC 3261 §18.3).
    #[error("missing Content-Length on a stream")]
    MissingContentLength,
    /// Content-Length is not a number.
    #[error("invalid Content-Length")]
    BadContentLength,
}

/// Looks at the start of `buf`: `Ok(None)` means more bytes are needed. Scans from the
/// start every time: a connection uses a [`Framer`], which does not.
pub fn next_frame(buf: &[u8], max: usize) -> Result<Option<Frame>, FramingError> {
    Framer::default().next(buf, max)
}

/// Frames one stream incrementally: it remembers how far the head of the frame being read
/// was scanned and, once the head is whole, the frame's length, so bytes that trickle in
/// are looked at once (a rescan from the frame's start on every read would let a peer
/// sending one byte at a time cost the edge the square of the message size).
///
/// Each call must get the buffer from the start of the current frame, with whatever has
/// arrived since the last call appended.
#[derive(Clone, Copy, Debug, Default)]
pub struct Framer {
    /// Bytes of the head already scanned for its end.
    scanned: usize,
    /// The length of the frame, once its head is whole.
    frame: Option<usize>,
}

impl Framer {
    /// The next frame at the start of `buf`: `Ok(None)` means more bytes are needed.
    pub fn next(&mut self, buf: &[u8], max: usize) -> Result<Option<Frame>, FramingError> {
        if let Some(total) = self.frame {
            return Ok(self.whole(buf, total));
        }
        // The first bytes only: constant work on every call.
        if buf.starts_with(b"\r\n\r\n") {
            return Ok(Some(Frame::Ping(4)));
        }
        if buf.starts_with(b"\r\n") {
            // Either half a ping or a pong followed by a message: wait for the next bytes.
            return Ok(match buf.get(2) {
                None => None,
                Some(b'\r') if buf.len() < 4 => None,
                Some(_) => Some(Frame::Skip(2)),
            });
        }
        if buf.first() == Some(&b'\n') {
            return Ok(Some(Frame::Skip(1)));
        }
        let Some(head_end) = header_end(buf, self.scanned) else {
            if buf.len() > max {
                return Err(FramingError::TooLarge { max });
            }
            // The last two bytes may start the blank line: look at them again.
            self.scanned = buf.len().saturating_sub(2);
            return Ok(None);
        };
        let body = content_length(&buf[..head_end])?;
        let total = head_end
            .checked_add(body)
            .ok_or(FramingError::TooLarge { max })?;
        if total > max {
            return Err(FramingError::TooLarge { max });
        }
        self.frame = Some(total);
        Ok(self.whole(buf, total))
    }

    /// The frame of `total` bytes when `buf` holds it (and a fresh start for the next).
    fn whole(&mut self, buf: &[u8], total: usize) -> Option<Frame> {
        (buf.len() >= total).then(|| {
            *self = Framer::default();
            Frame::Message(total)
        })
    }
}

/// The length of the head including its blank line (CRLF CRLF, or LF LF from lenient
/// senders), if it is complete; the scan starts at `from`.
fn header_end(buf: &[u8], from: usize) -> Option<usize> {
    let from = from.min(buf.len());
    memchr::memchr_iter(b'\n', &buf[from..])
        .map(|i| from + i)
        .find_map(|i| match buf.get(i + 1..) {
            Some([b'\n', ..]) => Some(i + 2),
            Some([b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        })
}

/// Content-Length (or its compact form `l`) of a head.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = std::str::from_utf8(line[colon + 1..].trim_ascii())
                .map_err(|_| FramingError::BadContentLength)?;
            return value.parse().map_err(|_| FramingError::BadContentLength);
        }
    }
    Err(FramingError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let msg = b"OPTIONS sip:e SIP/2.0\r\nl: 3\r\n\r\nabc";
        let mut two = msg.to_vec();
        two.extend_from_slice(msg);
        type Case<'a> = (&'a [u8], Result<Option<Frame>, FramingError>);
        let cases: &[Case] = &[
            (b"", Ok(None)),
            (b"\r\n", Ok(None)),
            (b"\r\n\r", Ok(None)),
            (b"\r\n\r\n", Ok(Some(Frame::Ping(4)))),
            (b"\r\nOPT", Ok(Some(Frame::Skip(2)))),
            (b"\nOPT", Ok(Some(Frame::Skip(1)))),
            (b"OPTIONS sip:e SIP/2.0\r\nl: 3\r\n", Ok(None)),
            (b"OPTIONS sip:e SIP/2.0\r\nl: 3\r\n\r\nab", Ok(None)),
            (msg, Ok(Some(Frame::Message(msg.len())))),
            (&two, Ok(Some(Frame::Message(msg.len())))),
            (
                b"OPTIONS sip:e SIP/2.0\nContent-Length: 0\n\n",
                Ok(Some(Frame::Message(41))),
            ),
            (
                b"OPTIONS sip:e SIP/2.0\r\nVia: x\r\n\r\n",
                Err(FramingError::MissingContentLength),
            ),
            (
                b"OPTIONS sip:e SIP/2.0\r\nContent-Length: x\r\n\r\n",
                Err(FramingError::BadContentLength),
            ),
            (
                b"OPTIONS sip:e SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                Err(FramingError::BadContentLength),
            ),
            (
                b"OPTIONS sip:e SIP/2.0\r\nContent-Length: 5000\r\n\r\n",
                Err(FramingError::TooLarge { max: 100 }),
            ),
        ];
        for (buf, want) in cases {
            let max = if want == &Err(FramingError::TooLarge { max: 100 }) {
                100
            } else {
                65535
            };
            assert_eq!(
                &next_frame(buf, max),
                want,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
        // an endless head is refused once it passes the limit
        assert_eq!(
            next_frame(&[b'a'; 200], 100),
            Err(FramingError::TooLarge { max: 100 })
        );
    }

    #[test]
    fn bytes_that_trickle_in_frame_as_a_whole_buffer_does() {
        let msg = b"OPTIONS sip:e SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nl: 3\r\n\r\nabc";
        let mut two = b"\r\n\r\n".to_vec();
        two.extend_from_slice(msg);
        two.extend_from_slice(b"\r\n\r\n");
        two.extend_from_slice(&msg[..msg.len() - 3]);
        two.extend_from_slice(b"de");
        // One byte at a time, as a slow peer sends them: the same frames, in order.
        let mut framer = Framer::default();
        let (mut start, mut frames) = (0, Vec::new());
        for end in 1..=two.len() {
            while let Some(f) = framer.next(&two[start..end], 65535).unwrap() {
                let len = match f {
                    Frame::Ping(n) | Frame::Skip(n) | Frame::Message(n) => n,
                };
                frames.push(f);
                start += len;
            }
        }
        assert_eq!(
            frames,
            [Frame::Ping(4), Frame::Message(msg.len()), Frame::Ping(4)]
        );
        assert_eq!(
            start,
            4 + msg.len() + 4,
            "the second message waits for its body"
        );
        // LF-only heads split across reads.
        let lf = b"OPTIONS sip:e SIP/2.0\nl: 0\n\n";
        let mut framer = Framer::default();
        for end in 1..lf.len() {
            assert_eq!(framer.next(&lf[..end], 65535), Ok(None), "{end}");
        }
        assert_eq!(framer.next(lf, 65535), Ok(Some(Frame::Message(lf.len()))));
    }
}
