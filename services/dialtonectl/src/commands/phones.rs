//! `dialtonectl phones`.

use std::{io::Write, path::PathBuf};

use anyhow::Context;

use clap::{Args, Subcommand};

use super::{DeleteArgs, changed_fields, parse_settings};
use dialtone_proto::config::v1::{self as pb, assignment::Mode};

use crate::{
    Client,
    output::{Format, enum_name, json, table},
    refuse::{OrRefuse, refuse},
};

#[derive(Subcommand, Debug)]
pub enum PhoneCmd {
    /// Create a phone; prints each line's SIP user and password (shown only once).
    Create(PhoneArgs),
    /// Change a phone: only the flags given change.
    Update {
        /// Phone id.
        id: String,
        #[command(flatten)]
        args: PhoneArgs,
    },
    /// Show one.
    Get { id: String },
    /// List with filters.
    List(super::phone_list::ListArgs),
    /// Delete a phone.
    Delete(DeleteArgs),
    /// Generate a new password for one line (shown once).
    ResetPassword {
        /// Phone id.
        id: String,
        /// Line index.
        #[arg(long, default_value_t = 0)]
        line: u32,
    },
    /// Give a phone with a hardware id a new provisioning (device) password (shown once);
    /// the old one stops working at once.
    ResetDevicePassword {
        /// Phone id.
        id: String,
    },
    /// Where and as whom a phone registers: its primary and secondary registrar (host, port,
    /// transport), SIP users and domain, and for a WebRTC phone its ICE servers with a
    /// time-limited TURN credential; never the SIP password (asks the provisioning role).
    HowToRegister {
        /// Phone id.
        id: String,
    },
    /// Restart a phone: NOTIFY check-sync;reboot=true through one edge holding its
    /// registration (the primary's first); prints what the phone answered.
    Restart(ActionArgs),
    /// Resync a phone (it fetches its configuration again without rebooting):
    /// check-sync;reboot=false through one edge; prints what the phone answered.
    Resync(ActionArgs),
    /// Log a phone out: every edge holding a binding drops them; prints how many.
    Logout(ActionArgs),
    /// Import phones from CSV (columns in docs/api.md). Generated passwords go to --report.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Per-row report (CSV, created with mode 0600: it holds the new passwords).
        #[arg(long, default_value = "import-report.csv")]
        report: PathBuf,
    },
    /// Export phones as CSV (the import format).
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        /// Output file (default: standard output).
        #[arg(short = 'f', long)]
        file: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct ActionArgs {
    /// Phone id (or, for many phones, --site, --base-settings or --phone).
    pub id: Option<String>,
    /// Seconds to wait for the edges' reports, per phone (1-60).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub timeout: u32,
    /// Every phone of this site, paced.
    #[arg(long, conflicts_with_all = ["id", "base_settings", "phones"])]
    pub site: Option<String>,
    /// Every phone of this base-settings profile, paced.
    #[arg(long, conflicts_with_all = ["id", "phones"])]
    pub base_settings: Option<String>,
    /// These phones (repeat), paced.
    #[arg(long = "phone", conflicts_with = "id")]
    pub phones: Vec<String>,
    /// Phones started per second, for many (1-1000).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rate: u32,
    /// Print the progress every second, for many (else only the outcome).
    #[arg(long)]
    pub watch: bool,
}

#[derive(Args, Debug, Default)]
pub struct PhoneArgs {
    /// Name.
    #[arg(long)]
    name: Option<String>,
    /// Kind: managed, unmanaged, webrtc or remote.
    #[arg(long)]
    kind: Option<String>,
    /// Site id.
    #[arg(long)]
    site: Option<String>,
    /// Base-settings profile id.
    #[arg(long)]
    base_settings: Option<String>,
    /// MAC address or FQDN.
    #[arg(long)]
    hardware_id: Option<String>,
    /// A line: SUFFIX[=Display name] (repeat; empty suffix: generated). Replaces all lines.
    #[arg(long = "line")]
    lines: Vec<String>,
    /// The SIP password of the --line at the same position (repeat; 12-128 characters),
    /// for new lines only; without it a strong one is generated. A typed password cannot
    /// be pushed to a managed phone (reset the line for one that can). Like every flag it
    /// shows in the process list while the command runs.
    #[arg(long = "line-password")]
    line_passwords: Vec<String>,
    /// Assignment: user:USER_ID, site:EXTENSION or unassigned.
    #[arg(long)]
    assign: Option<String>,
    /// Remote phones: sip: URI or E.164 number.
    #[arg(long)]
    remote_address: Option<String>,
    /// Per-phone setting overrides as JSON (PhoneSettings fields).
    #[arg(long)]
    overrides: Option<String>,
    /// Caller id of a site-assigned phone's outbound calls, E.164 ("" for the site's).
    #[arg(long)]
    caller_id: Option<String>,
    /// A call pattern a site-assigned phone may use instead of its site's (repeat;
    /// `inherit` alone: the site's).
    #[arg(long = "call-pattern")]
    call_patterns: Vec<String>,
    /// What a site-assigned phone may call instead of its site's restrictions: external,
    /// international, premium or none (repeat; `inherit` alone: the site's).
    #[arg(long = "allow")]
    allow: Vec<String>,
    /// true: a REMOTE phone's calls are always redirected (302) to its address; false: a
    /// call for its number goes out through its site's route for it.
    #[arg(long, value_name = "BOOL")]
    remote_redirect: Option<bool>,
    /// true: the phone may not register (edges refuse it and drop its bindings within a
    /// second); false: it may again.
    #[arg(long, value_name = "BOOL")]
    disabled: Option<bool>,
}

#[derive(Args, Debug, Default, Clone)]
pub struct FilterArgs {
    /// Only this site.
    #[arg(long)]
    site: Option<String>,
    /// Only this profile.
    #[arg(long)]
    base_settings: Option<String>,
    /// Only this kind.
    #[arg(long)]
    kind: Option<String>,
    /// Only names starting with this.
    #[arg(long)]
    name_prefix: Option<String>,
    /// Only the phone with this hardware id (its MAC address or FQDN, in any common
    /// spelling).
    #[arg(long, visible_alias = "mac")]
    hardware_id: Option<String>,
    /// Only the phone one of whose lines registers as this SIP user.
    #[arg(long)]
    sip_user: Option<String>,
}

/// Every page of a `List*` call that takes a `ListRequest`.
fn parse_kind(s: &str) -> anyhow::Result<i32> {
    let k = pb::PhoneKind::from_str_name(&format!("PHONE_KIND_{}", s.to_ascii_uppercase()))
        .or_refuse(|| format!("invalid --kind '{s}': use managed, unmanaged, webrtc or remote"))?;
    Ok(k as i32)
}

pub(crate) fn filter(f: FilterArgs) -> anyhow::Result<pb::PhoneFilter> {
    Ok(pb::PhoneFilter {
        site_id: f.site.unwrap_or_default(),
        base_settings_id: f.base_settings.unwrap_or_default(),
        kind: f.kind.as_deref().map(parse_kind).transpose()?.unwrap_or(0),
        name_prefix: f.name_prefix.unwrap_or_default(),
        hardware_id: f.hardware_id.unwrap_or_default(),
        sip_user: f.sip_user.unwrap_or_default(),
    })
}

fn apply_phone_args(p: &mut pb::Phone, a: PhoneArgs) -> anyhow::Result<()> {
    if a.line_passwords.len() > a.lines.len() {
        refuse!(
            "each --line-password needs a --line at the same position ({} passwords, {} lines)",
            a.line_passwords.len(),
            a.lines.len()
        );
    }
    if let Some(v) = a.name {
        p.name = v;
    }
    if let Some(v) = a.kind {
        p.kind = parse_kind(&v)?;
    }
    if let Some(v) = a.site {
        p.site_id = v;
    }
    if let Some(v) = a.base_settings {
        p.base_settings_id = v;
    }
    if let Some(v) = a.hardware_id {
        p.hardware_id = v;
    }
    if !a.lines.is_empty() {
        p.lines = a
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (u, d) = l.split_once('=').unwrap_or((l, ""));
                pb::Line {
                    sip_user: u.to_owned(),
                    display_name: d.to_owned(),
                    credentials: None,
                    password: a.line_passwords.get(i).cloned().unwrap_or_default(),
                }
            })
            .collect();
    }
    if let Some(v) = a.assign {
        let mode = match v.split_once(':') {
            Some(("user", id)) => Mode::User(pb::UserAssignment {
                user_id: id.to_owned(),
            }),
            Some(("site", ext)) => Mode::Site(pb::SiteAssignment {
                extension: ext.to_owned(),
                ..Default::default()
            }),
            _ if v == "unassigned" => Mode::Unassigned(pb::Unassigned {}),
            _ => refuse!("invalid --assign '{v}': use user:ID, site:EXTENSION or unassigned"),
        };
        p.assignment = Some(pb::Assignment { mode: Some(mode) });
    }
    let own_rules = a.caller_id.is_some() || !a.call_patterns.is_empty() || !a.allow.is_empty();
    if own_rules {
        let Some(Mode::Site(s)) = p.assignment.as_mut().and_then(|a| a.mode.as_mut()) else {
            refuse!(
                "--caller-id, --call-pattern and --allow are for site-assigned phones (--assign site:EXTENSION)"
            );
        };
        if let Some(v) = a.caller_id {
            s.outbound_caller_id = v;
        }
        if !a.call_patterns.is_empty() {
            s.call_patterns = if a.call_patterns == ["inherit"] {
                Vec::new()
            } else {
                a.call_patterns
            };
        }
        if !a.allow.is_empty() {
            s.call_restrictions = parse_allow(&a.allow)?;
        }
    }
    if let Some(v) = a.remote_address {
        p.remote_address = v;
    }
    if let Some(v) = a.overrides {
        p.overrides = Some(parse_settings(&v, "--overrides")?);
    }
    if let Some(v) = a.remote_redirect {
        p.remote_redirect = v;
    }
    if let Some(v) = a.disabled {
        p.disabled = v;
    }
    Ok(())
}

/// `--allow` values as restrictions (none for `inherit`).
pub(crate) fn parse_allow(allow: &[String]) -> anyhow::Result<Option<pb::CallRestrictions>> {
    if allow == ["inherit"] {
        return Ok(None);
    }
    let mut r = pb::CallRestrictions::default();
    for a in allow {
        match a.as_str() {
            "external" => r.allow_external = true,
            "international" => r.allow_international = true,
            "premium" => r.allow_premium = true,
            "none" => {}
            _ => refuse!(
                "invalid --allow '{a}': use external, international, premium, none or inherit"
            ),
        }
    }
    Ok(Some(r))
}

pub(crate) fn phone_rows(phones: &[pb::Phone]) -> Vec<Vec<String>> {
    phones
        .iter()
        .map(|p| {
            let mut kind = pb::PhoneKind::try_from(p.kind)
                .map(|k| enum_name(k.as_str_name(), "PHONE_KIND_"))
                .unwrap_or_default();
            if p.disabled {
                kind.push_str(" (disabled)");
            }
            let assign = match p.assignment.as_ref().and_then(|a| a.mode.as_ref()) {
                Some(Mode::User(u)) => format!("user:{}", u.user_id),
                Some(Mode::Site(s)) => format!("site:{}", s.extension),
                _ => "unassigned".into(),
            };
            let lines = p
                .lines
                .iter()
                .map(|l| l.sip_user.as_str())
                .collect::<Vec<_>>()
                .join(",");
            vec![
                p.id.clone(),
                p.name.clone(),
                kind,
                p.site_id.clone(),
                p.base_settings_id.clone(),
                p.hardware_id.clone(),
                lines,
                assign,
            ]
        })
        .collect()
}

pub(crate) const PHONE_HEADERS: [&str; 8] = [
    "id",
    "name",
    "kind",
    "site",
    "base settings",
    "hardware id",
    "lines",
    "assignment",
];

pub(crate) fn print_credentials(creds: &[pb::LineCredentials]) {
    if creds.is_empty() {
        return;
    }
    println!("\nSIP credentials (shown only now; Dialtone keeps only their hashes):");
    table(
        &["line", "sip user", "realm", "password"],
        creds
            .iter()
            .map(|c| {
                vec![
                    c.line_index.to_string(),
                    c.sip_user.clone(),
                    c.realm.clone(),
                    c.password.clone(),
                ]
            })
            .collect(),
    );
}

fn print_device_credentials(d: Option<&pb::DeviceCredentials>) {
    let Some(d) = d else { return };
    println!("\nProvisioning credential (shown only now; give it to the phone):");
    table(
        &["user", "realm", "password"],
        vec![vec![d.user.clone(), d.realm.clone(), d.password.clone()]],
    );
}

/// Prints a created or updated phone and the credentials shown only this once.
fn print_result<T: serde::Serialize>(
    out: Format,
    response: &T,
    phone: Option<&pb::Phone>,
    credentials: &[pb::LineCredentials],
    device: Option<&pb::DeviceCredentials>,
) -> anyhow::Result<()> {
    if out == Format::Json {
        return json(response);
    }
    table(
        &PHONE_HEADERS,
        phone_rows(phone.map(std::slice::from_ref).unwrap_or_default()),
    );
    print_credentials(credentials);
    print_device_credentials(device);
    Ok(())
}

pub async fn run(c: &mut Client, out: Format, cmd: PhoneCmd) -> anyhow::Result<()> {
    match cmd {
        PhoneCmd::Create(a) => {
            let mut p = pb::Phone::default();
            apply_phone_args(&mut p, a)?;
            let r = c
                .create_phone(pb::CreatePhoneRequest { phone: Some(p) })
                .await?
                .into_inner();
            print_result(
                out,
                &r,
                r.phone.as_ref(),
                &r.credentials,
                r.device_credentials.as_ref(),
            )
        }
        PhoneCmd::Update { id, args } => {
            let current = c.get_phone(pb::GetRequest { id }).await?.into_inner();
            let mut p = current.clone();
            apply_phone_args(&mut p, args)?;
            let update_mask = changed_fields("Phone", &current, &p);
            let r = c
                .update_phone(pb::UpdatePhoneRequest {
                    phone: Some(p),
                    update_mask,
                })
                .await?
                .into_inner();
            print_result(
                out,
                &r,
                r.phone.as_ref(),
                &r.credentials,
                r.device_credentials.as_ref(),
            )
        }
        PhoneCmd::List(_) | PhoneCmd::Get { .. } => {
            unreachable!("phones list and get join the status client (phone_list)")
        }
        PhoneCmd::Delete(d) => {
            c.delete_phone(pb::DeleteRequest {
                id: d.id.clone(),
                version: d.version,
            })
            .await?;
            println!("phone {} deleted", d.id);
            Ok(())
        }
        PhoneCmd::ResetPassword { id, line } => {
            let r = c
                .reset_line_password(pb::ResetLinePasswordRequest {
                    phone_id: id,
                    line_index: line,
                    version: 0,
                })
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&r);
            }
            print_credentials(&[r]);
            Ok(())
        }
        PhoneCmd::HowToRegister { .. } => unreachable!("served by the provisioning client"),
        PhoneCmd::ResetDevicePassword { id } => {
            let r = c
                .reset_device_password(pb::ResetDevicePasswordRequest {
                    phone_id: id,
                    version: 0,
                })
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&r);
            }
            print_device_credentials(Some(&r));
            Ok(())
        }
        PhoneCmd::Restart(a) => act(c, out, a, Act::Restart).await,
        PhoneCmd::Resync(a) => act(c, out, a, Act::Resync).await,
        PhoneCmd::Logout(a) => act(c, out, a, Act::LogOut).await,
        PhoneCmd::Import { file, report } => super::import::run(c, out, file, report).await,
        PhoneCmd::Export { filter: f, file } => {
            let mut stream = c
                .export_phones(pb::ListPhonesRequest {
                    filter: Some(filter(f)?),
                    page_size: 0,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            let mut sink: Box<dyn Write> = match &file {
                Some(p) => Box::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            while let Some(chunk) = stream.message().await? {
                sink.write_all(&chunk.chunk)?;
            }
            sink.flush()?;
            Ok(())
        }
    }
}

#[derive(PartialEq)]
enum Act {
    Restart,
    Resync,
    LogOut,
}

/// Many phones at once: a paced wave, its progress as it goes (`--watch`) and its outcome.
async fn act_on_many(c: &mut Client, out: Format, a: ActionArgs, what: Act) -> anyhow::Result<()> {
    let action = match what {
        Act::Restart => pb::BulkAction::Restart,
        Act::Resync => pb::BulkAction::Resync,
        Act::LogOut => pb::BulkAction::LogOut,
    };
    let mut stream = c
        .act_on_phones(pb::ActOnPhonesRequest {
            action: action as i32,
            site_id: a.site.unwrap_or_default(),
            base_settings_id: a.base_settings.unwrap_or_default(),
            phone_ids: a.phones,
            rate_per_s: a.rate,
            timeout_ms: a.timeout * 1000,
        })
        .await?
        .into_inner();
    let mut last = pb::ActOnPhonesProgress::default();
    while let Some(p) = stream.message().await? {
        if a.watch && out == Format::Table {
            eprintln!(
                "{}/{} done: {} answered, {} not registered, {} failed",
                p.done, p.total, p.answered, p.not_registered, p.failed
            );
        }
        last = p;
    }
    anyhow::ensure!(last.finished, "the wave ended before every phone was done");
    if out == Format::Json {
        return json(&last);
    }
    table(
        &["phones", "answered", "not registered", "failed"],
        vec![vec![
            last.total.to_string(),
            last.answered.to_string(),
            last.not_registered.to_string(),
            last.failed.to_string(),
        ]],
    );
    if !last.failed_phone_ids.is_empty() {
        println!("failed: {}", last.failed_phone_ids.join(" "));
    }
    Ok(())
}

async fn act(c: &mut Client, out: Format, a: ActionArgs, what: Act) -> anyhow::Result<()> {
    let Some(id) = a.id.clone() else {
        if a.site.is_none() && a.base_settings.is_none() && a.phones.is_empty() {
            refuse!("name a phone id, or --site, --base-settings or --phone");
        }
        return act_on_many(c, out, a, what).await;
    };
    let req = pb::PhoneActionRequest {
        id,
        timeout_ms: a.timeout * 1000,
    };
    let r = match what {
        Act::Restart => c.restart_phone(req).await?,
        Act::Resync => c.resync_phone(req).await?,
        Act::LogOut => c.log_out_phone(req).await?,
    }
    .into_inner();
    if out == Format::Json {
        return json(&r);
    }
    let mut rows = Vec::new();
    for x in &r.results {
        let outcome = enum_name(x.outcome().as_str_name(), "PHONE_ACTION_OUTCOME_");
        if x.results.is_empty() {
            let detail = if what == Act::LogOut {
                format!("{} contacts dropped", x.contacts_dropped)
            } else {
                String::new()
            };
            rows.push(vec![
                x.node_id.clone(),
                outcome.clone(),
                String::new(),
                detail,
            ]);
        }
        for n in &x.results {
            rows.push(vec![
                x.node_id.clone(),
                outcome.clone(),
                n.contact.clone(),
                format!("{} {}", n.status_code, n.reason),
            ]);
        }
    }
    table(&["edge", "outcome", "contact", "answer"], rows);
    Ok(())
}
