//! Test-data support: the PROTOS c07-sip cases carry placeholders (`<To>`, `<Call-ID>`,
//! ...) and a length prefix; this turns one into the datagram it stands for. Pure.

/// The INVITE of a PROTOS case with its placeholders filled in.
pub fn protos_pdu(raw: &[u8]) -> Vec<u8> {
    let space = raw.iter().position(|b| *b == b' ').unwrap_or(0);
    let len: usize = std::str::from_utf8(&raw[..space])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(raw.len());
    let pdu = &raw[space + 1..(space + 1 + len).min(raw.len())];
    let mut out = pdu.to_vec();
    for (from, to) in [
        (&b"<To>"[..], &b"user@127.0.0.1"[..]),
        (b"<From>", b"caller@127.0.0.2"),
        (b"<From-Address>", b"127.0.0.2"),
        (b"<From-IP>", b"127.0.0.2"),
        (b"<Local-Port>", b"5060"),
        (b"<Branch-ID>", b"1"),
        (b"<Call-ID>", b"1"),
        (b"<CSeq>", b"1"),
        (b"<Teardown-Method>", b"CANCEL"),
    ] {
        out = replace(&out, from, to);
    }
    let body_len = find(&out, b"\r\n\r\n").map_or(0, |i| out.len() - i - 4);
    replace(&out, b"<Content-Length>", body_len.to_string().as_bytes())
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn replace(h: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(h.len());
    let mut i = 0;
    while i < h.len() {
        if h[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(h[i]);
            i += 1;
        }
    }
    out
}
