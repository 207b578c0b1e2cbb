//! The phone CSV format shared by import and export. Pure: bytes in, phones out.
//!
//! Columns (header required, any order; `name`, `kind` and `site_id` are required):
//!
//! | column | content |
//! |---|---|
//! | `name` | phone name |
//! | `kind` | `managed`, `unmanaged`, `webrtc` or `remote` |
//! | `site_id` | site id |
//! | `base_settings_id` | profile id (empty for remote phones) |
//! | `hardware_id` | MAC address or FQDN (required for managed phones) |
//! | `lines` | `;`-separated lines, each `SUFFIX` or `SUFFIX=Display name` (SUFFIX is the SIP user after the site prefix; empty: generated) |
//! | `assignment` | `user:USER_ID`, `site:EXTENSION`, or `unassigned` / empty |
//! | `remote_address` | remote phones: sip: URI or E.164 number |
//! | `disabled` | `true` for a phone that may not register; `false` or empty otherwise |

use dialtone_proto::config::v1::{
    Assignment, Line, Phone, PhoneKind, SiteAssignment, Unassigned, UserAssignment,
    assignment::Mode,
};

use crate::error::ConfigError;

/// The columns, in export order.
pub const COLUMNS: [&str; 9] = [
    "name",
    "kind",
    "site_id",
    "base_settings_id",
    "hardware_id",
    "lines",
    "assignment",
    "remote_address",
    "disabled",
];
const REQUIRED: [&str; 3] = ["name", "kind", "site_id"];

/// One data row: its number in the file (header = 1) and the phone or why it is malformed.
#[derive(Debug)]
pub struct Row {
    pub row: u64,
    pub phone: Result<Phone, String>,
}

/// Parses a whole file. Only a bad header fails the whole file; bad rows are reported.
pub fn parse(bytes: &[u8]) -> Result<Vec<Row>, ConfigError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| ConfigError::invalid("csv.header", e.to_string()))?
        .clone();
    let mut index = [None; COLUMNS.len()];
    for (i, h) in headers.iter().enumerate() {
        let Some(c) = COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(h)) else {
            return Err(ConfigError::invalid(
                "csv.header",
                format!("unknown column '{h}' (known: {})", COLUMNS.join(", ")),
            ));
        };
        if index[c].is_some() {
            return Err(ConfigError::invalid(
                "csv.header",
                format!("column '{h}' appears twice"),
            ));
        }
        index[c] = Some(i);
    }
    for r in REQUIRED {
        if index[COLUMNS.iter().position(|c| *c == r).unwrap_or(0)].is_none() {
            return Err(ConfigError::invalid(
                "csv.header",
                format!("missing required column '{r}'"),
            ));
        }
    }
    let mut rows = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let row = n as u64 + 2;
        let phone = match record {
            Ok(rec) => {
                let get = |c: usize| index[c].and_then(|i| rec.get(i)).unwrap_or("").to_owned();
                let fields: [String; COLUMNS.len()] = std::array::from_fn(get);
                to_phone(&fields)
            }
            Err(e) => Err(format!("unreadable row: {e}")),
        };
        rows.push(Row { row, phone });
    }
    Ok(rows)
}

fn to_phone(f: &[String; COLUMNS.len()]) -> Result<Phone, String> {
    let [
        name,
        kind,
        site_id,
        base_settings_id,
        hardware_id,
        lines,
        assignment,
        remote_address,
        disabled,
    ] = f;
    let disabled = match disabled.to_ascii_lowercase().as_str() {
        "" | "false" => false,
        "true" => true,
        other => return Err(format!("disabled: '{other}' is not true or false")),
    };
    let kind = match kind.to_ascii_lowercase().as_str() {
        "managed" => PhoneKind::Managed,
        "unmanaged" => PhoneKind::Unmanaged,
        "webrtc" => PhoneKind::Webrtc,
        "remote" => PhoneKind::Remote,
        other => {
            return Err(format!(
                "kind: '{other}' is not managed, unmanaged, webrtc or remote"
            ));
        }
    };
    let lines = lines
        .split(';')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (user, display) = l.split_once('=').unwrap_or((l, ""));
            Line {
                sip_user: user.trim().to_owned(),
                display_name: display.trim().to_owned(),
                credentials: None,
                password: String::new(),
            }
        })
        .collect();
    let mode = match assignment.split_once(':') {
        _ if assignment.is_empty() || assignment.eq_ignore_ascii_case("unassigned") => {
            Mode::Unassigned(Unassigned {})
        }
        Some((m, v)) if m.eq_ignore_ascii_case("user") => Mode::User(UserAssignment {
            user_id: v.to_owned(),
        }),
        Some((m, v)) if m.eq_ignore_ascii_case("site") => Mode::Site(SiteAssignment {
            extension: v.to_owned(),
            ..Default::default()
        }),
        _ => {
            return Err(format!(
                "assignment: '{assignment}' is not user:ID, site:EXTENSION or unassigned"
            ));
        }
    };
    Ok(Phone {
        name: name.clone(),
        kind: kind as i32,
        site_id: site_id.clone(),
        base_settings_id: base_settings_id.clone(),
        hardware_id: hardware_id.clone(),
        lines,
        assignment: Some(Assignment { mode: Some(mode) }),
        remote_address: remote_address.clone(),
        disabled,
        ..Default::default()
    })
}

/// The CSV header line.
pub fn header() -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(COLUMNS);
    w.into_inner().unwrap_or_default()
}

/// One phone as a CSV line; `prefix` (the site's SIP user prefix) is stripped from users.
pub fn row(p: &Phone, prefix: &str) -> Vec<u8> {
    let kind = match PhoneKind::try_from(p.kind).unwrap_or(PhoneKind::Unspecified) {
        PhoneKind::Managed => "managed",
        PhoneKind::Unmanaged => "unmanaged",
        PhoneKind::Webrtc => "webrtc",
        PhoneKind::Remote => "remote",
        PhoneKind::Unspecified => "",
    };
    let lines: Vec<String> = p
        .lines
        .iter()
        .map(|l| {
            let user = l.sip_user.strip_prefix(prefix).unwrap_or(&l.sip_user);
            if l.display_name.is_empty() {
                user.to_owned()
            } else {
                format!("{user}={}", l.display_name)
            }
        })
        .collect();
    let assignment = match p.assignment.as_ref().and_then(|a| a.mode.as_ref()) {
        Some(Mode::User(u)) => format!("user:{}", u.user_id),
        Some(Mode::Site(s)) => format!("site:{}", s.extension),
        _ => "unassigned".into(),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        p.name.as_str(),
        kind,
        &p.site_id,
        &p.base_settings_id,
        &p.hardware_id,
        &lines.join(";"),
        &assignment,
        &p.remote_address,
        if p.disabled { "true" } else { "" },
    ]);
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_or_report() {
        let file = "name,kind,site_id,base_settings_id,hardware_id,lines,assignment\n\
                    Lobby,managed,hq,vvx,00:04:f2:aa:bb:cc,1001=Lobby;1002,site:2001\n\
                    Bad,telepathic,hq,vvx,,,\n\
                    \"Desk, 2\",webrtc,hq,web,,,user:u-42\n\
                    Odd,managed,hq,vvx,,,boss:1\n";
        let rows = parse(file.as_bytes()).unwrap();
        assert_eq!(rows.len(), 4);
        let p = rows[0].phone.as_ref().unwrap();
        assert_eq!(p.lines.len(), 2);
        assert_eq!(p.lines[0].display_name, "Lobby");
        assert!(matches!(
            p.assignment.as_ref().unwrap().mode,
            Some(Mode::Site(_))
        ));
        assert_eq!(rows[1].row, 3);
        assert!(rows[1].phone.as_ref().unwrap_err().starts_with("kind:"));
        assert_eq!(rows[2].phone.as_ref().unwrap().name, "Desk, 2");
        assert!(
            rows[3]
                .phone
                .as_ref()
                .unwrap_err()
                .starts_with("assignment:")
        );
    }

    #[test]
    fn bad_headers_fail_the_file() {
        for (file, want) in [
            ("name,kind\nx,managed\n", "site_id"),
            ("name,kind,site_id,colour\n", "colour"),
            ("name,kind,site_id,name\n", "twice"),
        ] {
            let err = parse(file.as_bytes()).unwrap_err().to_string();
            assert!(err.starts_with("csv.header") && err.contains(want), "{err}");
        }
    }

    #[test]
    fn export_round_trips() {
        let file = "name,kind,site_id,base_settings_id,hardware_id,lines,assignment,remote_address,disabled\n\
                    Lobby,managed,hq,vvx,0004f2aabbcc,1001=Lobby;1002,site:2001,,\n\
                    Spare,unmanaged,hq,desk,,1003,unassigned,,true\n";
        let mut out = header();
        for r in parse(file.as_bytes()).unwrap() {
            let mut p = r.phone.unwrap();
            for l in &mut p.lines {
                l.sip_user = format!("k7q2x-{}", l.sip_user);
            }
            out.extend(row(&p, "k7q2x-"));
        }
        assert_eq!(String::from_utf8(out).unwrap(), file);
        let bad = "name,kind,site_id,disabled\nX,remote,hq,maybe\n";
        let err = parse(bad.as_bytes()).unwrap().remove(0).phone.unwrap_err();
        assert!(err.starts_with("disabled:"), "{err}");
    }
}
