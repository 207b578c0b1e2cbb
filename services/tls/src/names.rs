//! The names an X.509 certificate gives its subject: the subject's common names and the
//! DNS names of its subjectAltName extension. Pure DER reading, no validation (rustls has
//! verified the chain before anyone asks); enough for a client certificate to say which
//! device it is (vendors put the MAC address in the CN of a phone's certificate).

/// OID 2.5.4.3 (commonName), DER content bytes.
const CN: &[u8] = &[0x55, 0x04, 0x03];
/// OID 2.5.29.17 (subjectAltName).
const SAN: &[u8] = &[0x55, 0x1d, 0x11];

use crate::der::{elements, tlv};

/// Directory-string types a CN may use: UTF8String, PrintableString, TeletexString,
/// IA5String.
fn string(tag: u8, content: &[u8]) -> Option<String> {
    matches!(tag, 0x0c | 0x13 | 0x14 | 0x16).then(|| String::from_utf8_lossy(content).into_owned())
}

/// The subject's common names then its subjectAltName DNS names. Empty when the DER is not
/// a certificate.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some((0x30, cert, _)) = tlv(der) else {
        return out;
    };
    let Some((0x30, tbs, _)) = tlv(cert) else {
        return out;
    };
    let mut fields = elements(tbs).peekable();
    // [0] version, when present.
    if fields.peek().is_some_and(|(t, _)| *t == 0xa0) {
        fields.next();
    }
    // serial, signature, issuer, validity, then the subject.
    let subject = fields.nth(4);
    if let Some((0x30, subject)) = subject {
        for (tag, set) in elements(subject) {
            if tag != 0x31 {
                continue;
            }
            for (tag, atv) in elements(set) {
                let mut parts = elements(atv);
                if let (0x30, Some((0x06, oid)), Some((t, v))) = (tag, parts.next(), parts.next())
                    && oid == CN
                    && let Some(s) = string(t, v)
                {
                    out.push(s);
                }
            }
        }
    }
    // subjectPublicKeyInfo, the optional unique ids, then [3] extensions.
    for (tag, content) in fields {
        if tag != 0xa3 {
            continue;
        }
        let Some((0x30, exts, _)) = tlv(content) else {
            continue;
        };
        for (_, ext) in elements(exts) {
            let mut parts = elements(ext);
            let Some((0x06, oid)) = parts.next() else {
                continue;
            };
            if oid != SAN {
                continue;
            }
            // critical BOOLEAN is optional; the value is the OCTET STRING.
            let Some((_, value)) = parts.find(|(t, _)| *t == 0x04) else {
                continue;
            };
            if let Some((0x30, names, _)) = tlv(value) {
                // dNSName is [2] IMPLICIT IA5String.
                out.extend(
                    elements(names)
                        .filter(|(t, _)| *t == 0x82)
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned()),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>, sans: &[&str]) -> Vec<u8> {
        let mut p =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Poly");
        if let Some(cn) = cn {
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn names_come_from_the_cn_then_the_dns_sans() {
        let cases: &[(Option<&str>, &[&str], &[&str])] = &[
            (Some("0004f2aabb01"), &[], &["0004f2aabb01"]),
            (
                Some("00:04:f2:aa:bb:01"),
                &["phone.example.com"],
                &["00:04:f2:aa:bb:01", "phone.example.com"],
            ),
            (None, &["agent-7.example.com"], &["agent-7.example.com"]),
            (None, &[], &[]),
        ];
        for (cn, sans, want) in cases {
            assert_eq!(
                certificate_names(&cert(*cn, sans)),
                *want,
                "{cn:?} {sans:?}"
            );
        }
    }

    #[test]
    fn malformed_der_gives_nothing_and_never_panics() {
        let good = cert(Some("0004f2aabb01"), &["a.example"]);
        assert!(certificate_names(&[]).is_empty());
        assert!(certificate_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
        assert!(certificate_names(b"not a certificate").is_empty());
        // Every truncation and a flipped byte at every position: no panic.
        for n in 0..good.len() {
            let _ = certificate_names(&good[..n]);
            let mut bad = good.clone();
            bad[n] ^= 0xff;
            let _ = certificate_names(&bad);
        }
    }
}
