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

/// Looks at the start of `buf`: `Ok(None)` means more bytes are needed.
pub fn next_frame(buf: &[u8], max: usize) -> Result<Option<Frame>, FramingError> {
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
    let Some(head_end) = header_end(buf) else {
        return if buf.len() > max {
            Err(FramingError::TooLarge { max })
        } else {
            Ok(None)
        };
    };
    let body = content_length(&buf[..head_end])?;
    let total = head_end
        .checked_add(body)
        .ok_or(FramingError::TooLarge { max })?;
    if total > max {
        return Err(FramingError::TooLarge { max });
    }
    Ok((buf.len() >= total).then_some(Frame::Message(total)))
}

/// The length of the head including its blank line (CRLF CRLF, or LF LF from lenient
/// senders), if it is complete.
fn header_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
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
}
