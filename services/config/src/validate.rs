//! Pure validators and normalisers of single values. Each returns the reason a value is
//! refused; callers attach the field name.

/// Object ids: 1-63 of lowercase letters, digits and '-', starting with a letter.
pub fn slug(s: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err("must be 1-63 lowercase letters, digits or '-', starting with a letter".into())
    }
}

/// User ids: 1-128 of letters, digits and '.', '_', '-', '@' (an e-mail address will do;
/// never '/', which separates the parts of a store key).
pub fn user_id(s: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err("must be 1-128 letters, digits, '.', '_', '-' or '@'".into())
    }
}

/// A display name: `min`-`max` characters, no control characters.
pub fn name(s: &str, min: usize, max: usize) -> Result<(), String> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(format!("must be {min}-{max} characters (got {n})"));
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Normalises a hardware id: a MAC address in any usual spelling becomes 12 lowercase hex
/// digits; anything else must be a fully qualified domain name (lowercased).
pub fn hardware_id(s: &str) -> Result<String, String> {
    let t = s.trim();
    let hex: String = t
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    let separators_ok = t
        .chars()
        .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '-' | '.'));
    if hex.len() == 12 && separators_ok && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(hex.to_ascii_lowercase());
    }
    let fqdn = t.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = fqdn.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let tld_ok = labels
        .last()
        .is_some_and(|l| l.chars().any(|c| c.is_ascii_lowercase()));
    if fqdn.len() <= 253 && labels.len() >= 2 && labels.iter().all(label_ok) && tld_ok {
        Ok(fqdn)
    } else {
        Err("must be a MAC address (12 hex digits, optionally separated by ':', '-' or '.') or a fully qualified domain name".into())
    }
}

/// E.164: '+' then 8-15 digits, the first not 0.
pub fn e164(s: &str) -> Result<(), String> {
    let digits = s.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0')
    {
        Ok(())
    } else {
        Err("must be an E.164 number: '+' and 8-15 digits".into())
    }
}

/// A SIP or SIPS URI with a user and a host (`sip:alice@example.com`), or an E.164 number.
pub fn remote_address(s: &str) -> Result<(), String> {
    if s.starts_with('+') {
        return e164(s);
    }
    let rest = s.strip_prefix("sip:").or_else(|| s.strip_prefix("sips:"));
    let ok = rest
        .and_then(|r| r.split_once('@'))
        .is_some_and(|(user, host)| {
            !user.is_empty()
                && !host.is_empty()
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        });
    if ok {
        Ok(())
    } else {
        Err("must be a sip:/sips: URI with user and host, or an E.164 number".into())
    }
}

/// `host:port` with a port 1-65535.
pub fn host_port(s: &str) -> Result<(), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "must be host:port".to_string())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(format!("'{s}' must be host:port with a port 1-65535"))
    }
}

/// SIP user suffix given by the admin: 1-32 of letters, digits, '.', '_', '-'.
pub fn sip_user_suffix(s: &str) -> Result<(), String> {
    if (1..=32).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Ok(())
    } else {
        Err("must be 1-32 letters, digits, '.', '_' or '-'".into())
    }
}

/// A SIP password an admin types for a line: 12-128 characters, no control characters
/// (it goes into phones' digest answers and files).
pub fn typed_password(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if (12..=128).contains(&n) && !s.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(format!(
            "must be 12-128 characters without control characters (got {n})"
        ))
    }
}

/// An http(s) URL with a host.
pub fn url(s: &str, https_only: bool) -> Result<(), String> {
    let rest = s.strip_prefix("https://").or_else(|| {
        if https_only {
            None
        } else {
            s.strip_prefix("http://")
        }
    });
    let ok = rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    match (ok, https_only) {
        (true, _) => Ok(()),
        (false, true) => Err("must be an https:// URL with a host".into()),
        (false, false) => Err("must be an http:// or https:// URL with a host".into()),
    }
}

/// An integer within an inclusive range.
pub fn range(v: u32, lo: u32, hi: u32) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("must be {lo}-{hi} (got {v})"))
    }
}

/// Only digits, `min`-`max` of them.
pub fn digits(s: &str, min: usize, max: usize) -> Result<(), String> {
    if (min..=max).contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("must be {min}-{max} digits"))
    }
}

/// A BCP 47 language tag of the simple form `ll` or `ll-RR`.
pub fn language(s: &str) -> Result<(), String> {
    let mut parts = s.split('-');
    let lang = parts.next().unwrap_or("");
    let lang_ok = (2..=3).contains(&lang.len()) && lang.chars().all(|c| c.is_ascii_lowercase());
    let rest_ok =
        parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if lang_ok && rest_ok {
        Ok(())
    } else {
        Err("must be a language tag such as 'en' or 'en-US'".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_ids_normalise() {
        let cases: &[(&str, Option<&str>)] = &[
            ("00:04:F2:AB:CD:EF", Some("0004f2abcdef")),
            ("00-04-f2-ab-cd-ef", Some("0004f2abcdef")),
            ("0004.f2ab.cdef", Some("0004f2abcdef")),
            ("0004F2ABCDEF", Some("0004f2abcdef")),
            (" 0004f2abcdef ", Some("0004f2abcdef")),
            ("Phone1.Example.COM.", Some("phone1.example.com")),
            ("0004f2abcde", None),
            ("0004f2abcdeg", None),
            ("00:04:f2:ab:cd:ef:01", None),
            ("localhost", None),
            ("-bad.example.com", None),
            ("a..b", None),
            ("1.2.3.4", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(hardware_id(input).ok().as_deref(), *want, "{input}");
        }
    }

    #[test]
    fn primitive_validators() {
        assert!(slug("hq-1").is_ok());
        for bad in ["", "1hq", "HQ", "hq_1", &"a".repeat(64)] {
            assert!(slug(bad).is_err(), "{bad}");
        }
        assert!(e164("+14155550100").is_ok());
        for bad in [
            "14155550100",
            "+0123456789",
            "+1234567",
            "+1415555010a",
            "+1234567890123456",
        ] {
            assert!(e164(bad).is_err(), "{bad}");
        }
        assert!(remote_address("sip:alice@example.com").is_ok());
        assert!(remote_address("sips:alice@10.0.0.1:5061").is_ok());
        assert!(remote_address("+442071234567").is_ok());
        for bad in [
            "alice@example.com",
            "sip:example.com",
            "sip:@x",
            "sip:a b@x",
            "tel:+1",
        ] {
            assert!(remote_address(bad).is_err(), "{bad}");
        }
        assert!(host_port("edge1.example.com:5060").is_ok());
        assert!(host_port("[::1]:5061").is_ok());
        for bad in ["edge1", "edge1:0", "edge1:70000", ":5060", "a b:5060"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
        assert!(url("https://fw.example.com/vvx", false).is_ok());
        assert!(url("http://fw.example.com", false).is_ok());
        assert!(url("http://fw.example.com", true).is_err());
        assert!(url("ftp://x", false).is_err());
        assert!(digits("1234", 4, 10).is_ok());
        assert!(digits("123", 4, 10).is_err());
        assert!(digits("12a4", 4, 10).is_err());
        assert!(language("en-US").is_ok());
        assert!(language("english").is_err());
        assert!(name("", 1, 200).is_err());
        assert!(name("a\nb", 1, 200).is_err());
        assert!(range(4000, 1024, 65535).is_ok());
        assert_eq!(range(70, 0, 63).unwrap_err(), "must be 0-63 (got 70)");
    }
}
