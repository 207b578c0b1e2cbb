//! Any byte stream: framing never panics, never claims more bytes than it has, and always
//! makes progress or asks for more.
#![no_main]

use dialtone_sip::stream::{Frame, next_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Ok(Some(f)) = next_frame(buf, 4096) {
        let n = match f {
            Frame::Ping(n) | Frame::Skip(n) | Frame::Message(n) => n,
        };
        assert!(n > 0 && n <= buf.len());
        buf = &buf[n..];
    }
});
