//! Any datagram: parsing, the verdict, and everything the edge derives from an accepted
//! REGISTER (registration parts, Authorization, responses) must never panic.
#![no_main]

use dialtone_sip::{Verdict, digest, judge, registration, response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (msg, verdict) = judge(data);
    let Some(m) = msg else { return };
    for v in m.all("authorization") {
        let _ = digest::parse_authorization(v);
    }
    if verdict == Verdict::Accept && !m.is_response() {
        let src = response::Source {
            ip: [192, 0, 2, 1].into(),
            port: 5060,
        };
        let _ = response::build(&m, &src, 200, "", "t", &[], b"");
        if let Ok(reg) = registration::from_message(&m, "udp:192.0.2.1:5060") {
            let policy = registration::Policy {
                min_expires: 60,
                max_expires: 7200,
                default_expires: 3600,
                max_bindings: 5,
            };
            let _ = registration::register(&[], &reg, &policy, 1_000_000);
        }
    }
});
