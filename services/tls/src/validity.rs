//! When a certificate expires: its validity's notAfter, as Unix seconds, for the expiry
//! gauge (`dialtone_tls_certificate_expiry_timestamp_seconds`) and its alert. Pure DER
//! reading, like [`crate::certificate_names`].

use crate::der::{elements, tlv};

/// The notAfter of a DER certificate, Unix seconds; None when it is not a certificate.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut fields = elements(tbs).peekable();
    if fields.peek().is_some_and(|(t, _)| *t == 0xa0) {
        fields.next();
    }
    // serial, signature, issuer, then the validity: SEQUENCE { notBefore, notAfter }.
    let (0x30, validity) = fields.nth(3)? else {
        return None;
    };
    let (tag, time) = elements(validity).nth(1)?;
    unix_time(tag, std::str::from_utf8(time).ok()?)
}

/// An X.509 Time: UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), both in UTC as RFC 5280 requires.
fn unix_time(tag: u8, s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i64 = s.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &s[2..])
        }
        (0x18, 14) => (s.get(..4)?.parse().ok()?, &s[4..]),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| -> i64 { rest[i..i + 2].parse().unwrap_or(-1) };
    let (month, day, h, m, sec) = (n(0), n(2), n(4), n(6), n(8));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_unix_seconds() {
        let cases: &[(u8, &str, Option<i64>)] = &[
            (0x17, "700101000000Z", Some(0)),
            (0x17, "491231235959Z", Some(2_524_607_999)),
            (0x17, "500101000000Z", Some(-631_152_000)),
            (0x18, "20380119031408Z", Some(2_147_483_648)),
            (0x18, "20240229120000Z", Some(1_709_208_000)),
            (0x18, "99991231235959Z", Some(253_402_300_799)),
            (0x17, "700101000000", None),
            (0x17, "20240229120000Z", None),
            (0x18, "700101000000Z", None),
            (0x17, "701301000000Z", None),
            (0x17, "70010100000aZ", None),
            (0x04, "700101000000Z", None),
        ];
        for (tag, text, want) in cases {
            assert_eq!(unix_time(*tag, text), *want, "{tag:#x} {text}");
        }
    }

    #[test]
    fn a_certificates_not_after_is_read() {
        let mut p = rcgen::CertificateParams::new(vec!["edge.example".to_string()]).unwrap();
        p.not_after = rcgen::date_time_ymd(2031, 7, 4);
        let key = rcgen::KeyPair::generate().unwrap();
        let der = p.self_signed(&key).unwrap().der().to_vec();
        // 2031-07-04T00:00:00Z
        assert_eq!(not_after(&der), Some(1_940_889_600));
        assert_eq!(not_after(b"not a certificate"), None);
        assert_eq!(not_after(&der[..der.len() / 2]), None);
    }
}
