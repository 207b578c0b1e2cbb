//! The commands, one per API call.

use std::{io::Write, path::PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dialtone_proto::config::v1::{self as pb, assignment::Mode};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    Client,
    output::{Format, enum_name, json, table},
};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Edge groups: the edges a site's phones register to.
    #[command(subcommand, name = "edge-groups")]
    EdgeGroups(EdgeGroupCmd),
    /// Sites.
    #[command(subcommand)]
    Sites(SiteCmd),
    /// Base-settings profiles.
    #[command(subcommand, name = "base-settings")]
    BaseSettings(BaseCmd),
    /// Phones.
    #[command(subcommand)]
    Phones(PhoneCmd),
    /// Live cluster members.
    Members {
        /// Only this role.
        #[arg(long, default_value = "")]
        role: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum EdgeGroupCmd {
    /// Create: `--edge NODE=udp://HOST:PORT,tcp://HOST:PORT` once per edge, in order.
    Create(EdgeGroupArgs),
    /// Replace (same flags as create).
    Update(EdgeGroupArgs),
    /// Show one.
    Get { id: String },
    /// List all.
    List,
    /// Delete (refused while a site uses it).
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
pub struct EdgeGroupArgs {
    /// Edge group id.
    id: String,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// An edge: NODE=TRANSPORT://HOST:PORT[,TRANSPORT://HOST:PORT…] (udp, tcp, tls, ws, wss).
    #[arg(long = "edge", required = true)]
    edges: Vec<String>,
    /// Expected version (update; 0: current).
    #[arg(long, default_value_t = 0)]
    version: i64,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Object id.
    id: String,
    /// Expected version (0: current).
    #[arg(long, default_value_t = 0)]
    version: i64,
}

#[derive(Subcommand, Debug)]
pub enum SiteCmd {
    /// Create a site.
    Create(SiteArgs),
    /// Replace a site's editable fields (same flags as create).
    Update(SiteArgs),
    /// Show one.
    Get { id: String },
    /// List all.
    List,
    /// Delete (refused while phones use it).
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
pub struct SiteArgs {
    /// Site id.
    id: String,
    /// Edge group serving the site.
    #[arg(long)]
    edge_group: String,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// Media region, in order of preference (repeat).
    #[arg(long = "media-region")]
    media_regions: Vec<String>,
    /// Media relay: auto, always or never.
    #[arg(long, default_value = "auto")]
    media_relay: String,
    /// Default outbound caller id (E.164).
    #[arg(long, default_value = "")]
    caller_id: String,
    /// Allow external calls.
    #[arg(long)]
    allow_external: bool,
    /// Allow international calls.
    #[arg(long)]
    allow_international: bool,
    /// Allow premium-rate calls.
    #[arg(long)]
    allow_premium: bool,
    /// Expected version (update; 0: current).
    #[arg(long, default_value_t = 0)]
    version: i64,
}

#[derive(Subcommand, Debug)]
pub enum BaseCmd {
    /// Show every meta-base's defaults.
    Templates,
    /// Create a profile.
    Create(BaseArgs),
    /// Replace a profile's name and settings.
    Update(BaseArgs),
    /// Show one.
    Get { id: String },
    /// List all.
    List,
    /// Delete (refused while phones use it).
    Delete(DeleteArgs),
    /// Move phones from one profile to another; --dry-run shows per phone what changes.
    Migrate {
        /// Profile the phones use now.
        #[arg(long)]
        from: String,
        /// Profile to move them to.
        #[arg(long)]
        to: String,
        /// Only these phones (repeat); default: every phone of --from.
        #[arg(long = "phone")]
        phones: Vec<String>,
        /// Show what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args, Debug)]
pub struct BaseArgs {
    /// Profile id.
    id: String,
    /// Meta-base: generic-sip, webrtc, poly-vvx, poly-edge-e, yealink, audiocodes, desktop-softphone.
    #[arg(long)]
    meta_base: String,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// Settings as JSON (PhoneSettings fields, e.g. '{"sip_dscp": 26, "codecs": ["audio/opus"]}').
    #[arg(long, default_value = "{}")]
    settings: String,
    /// Expected version (update; 0: current).
    #[arg(long, default_value_t = 0)]
    version: i64,
}

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
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Page size (1-1000).
        #[arg(long, default_value_t = 100)]
        page_size: i32,
        /// Page token from the previous page.
        #[arg(long, default_value = "")]
        page_token: String,
        /// Every page.
        #[arg(long)]
        all: bool,
    },
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
    /// Import phones from CSV (columns in the README). Generated passwords go to --report.
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
    /// Assignment: user:USER_ID, site:EXTENSION or unassigned.
    #[arg(long)]
    assign: Option<String>,
    /// Remote phones: sip: URI or E.164 number.
    #[arg(long)]
    remote_address: Option<String>,
    /// Per-phone setting overrides as JSON (PhoneSettings fields).
    #[arg(long)]
    overrides: Option<String>,
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
    /// Only this hardware id.
    #[arg(long)]
    hardware_id: Option<String>,
}

/// Every page of a `List*` call that takes a `ListRequest`.
macro_rules! all_pages {
    ($c:expr, $method:ident, $field:ident) => {{
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let r = $c
                .$method(pb::ListRequest {
                    page_size: 1000,
                    page_token: token,
                })
                .await?
                .into_inner();
            all.extend(r.$field);
            if r.next_page_token.is_empty() {
                break all;
            }
            token = r.next_page_token;
        }
    }};
}

fn parse_kind(s: &str) -> anyhow::Result<i32> {
    let k = pb::PhoneKind::from_str_name(&format!("PHONE_KIND_{}", s.to_ascii_uppercase()))
        .with_context(|| {
            format!("invalid --kind '{s}': use managed, unmanaged, webrtc or remote")
        })?;
    Ok(k as i32)
}

fn filter(f: FilterArgs) -> anyhow::Result<pb::PhoneFilter> {
    Ok(pb::PhoneFilter {
        site_id: f.site.unwrap_or_default(),
        base_settings_id: f.base_settings.unwrap_or_default(),
        kind: f.kind.as_deref().map(parse_kind).transpose()?.unwrap_or(0),
        name_prefix: f.name_prefix.unwrap_or_default(),
        hardware_id: f.hardware_id.unwrap_or_default(),
    })
}

fn parse_edge(s: &str) -> anyhow::Result<pb::Edge> {
    let (node, addrs) = s
        .split_once('=')
        .with_context(|| format!("invalid --edge '{s}': use NODE=udp://HOST:PORT,..."))?;
    let mut a = pb::SipAddresses::default();
    for part in addrs.split(',') {
        let (t, hp) = part.split_once("://").with_context(|| {
            format!("invalid address '{part}' in --edge: use TRANSPORT://HOST:PORT")
        })?;
        let slot = match t {
            "udp" => &mut a.udp,
            "tcp" => &mut a.tcp,
            "tls" => &mut a.tls,
            "ws" => &mut a.ws,
            "wss" => &mut a.wss,
            other => bail!("invalid transport '{other}' in --edge: use udp, tcp, tls, ws or wss"),
        };
        *slot = hp.to_owned();
    }
    Ok(pb::Edge {
        node_id: node.to_owned(),
        addresses: Some(a),
    })
}

fn parse_settings(s: &str, flag: &str) -> anyhow::Result<pb::PhoneSettings> {
    serde_json::from_str(s).with_context(|| format!("invalid {flag} JSON (PhoneSettings fields)"))
}

fn apply_phone_args(p: &mut pb::Phone, a: PhoneArgs) -> anyhow::Result<()> {
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
            .map(|l| {
                let (u, d) = l.split_once('=').unwrap_or((l, ""));
                pb::Line {
                    sip_user: u.to_owned(),
                    display_name: d.to_owned(),
                    credentials: None,
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
            }),
            _ if v == "unassigned" => Mode::Unassigned(pb::Unassigned {}),
            _ => bail!("invalid --assign '{v}': use user:ID, site:EXTENSION or unassigned"),
        };
        p.assignment = Some(pb::Assignment { mode: Some(mode) });
    }
    if let Some(v) = a.remote_address {
        p.remote_address = v;
    }
    if let Some(v) = a.overrides {
        p.overrides = Some(parse_settings(&v, "--overrides")?);
    }
    Ok(())
}

fn phone_rows(phones: &[pb::Phone]) -> Vec<Vec<String>> {
    phones
        .iter()
        .map(|p| {
            let kind = pb::PhoneKind::try_from(p.kind)
                .map(|k| enum_name(k.as_str_name(), "PHONE_KIND_"))
                .unwrap_or_default();
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

const PHONE_HEADERS: [&str; 8] = [
    "id",
    "name",
    "kind",
    "site",
    "base settings",
    "hardware id",
    "lines",
    "assignment",
];

fn print_credentials(creds: &[pb::LineCredentials]) {
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

pub async fn run(mut c: Client, out: Format, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::EdgeGroups(cmd) => edge_groups(&mut c, out, cmd).await,
        Command::Sites(cmd) => sites(&mut c, out, cmd).await,
        Command::BaseSettings(cmd) => base_settings(&mut c, out, cmd).await,
        Command::Phones(cmd) => phones(&mut c, out, cmd).await,
        Command::Members { role } => {
            let r = c
                .list_members(pb::ListMembersRequest { role })
                .await?
                .into_inner();
            match out {
                Format::Json => json(&r),
                Format::Table => {
                    table(
                        &["role", "node", "grpc", "admin", "version"],
                        r.members
                            .iter()
                            .map(|m| {
                                vec![
                                    m.role.clone(),
                                    m.node_id.clone(),
                                    m.grpc_address.clone(),
                                    m.admin_address.clone(),
                                    m.version.clone(),
                                ]
                            })
                            .collect(),
                    );
                    Ok(())
                }
            }
        }
    }
}

async fn edge_groups(c: &mut Client, out: Format, cmd: EdgeGroupCmd) -> anyhow::Result<()> {
    let show = |groups: Vec<pb::EdgeGroup>| -> anyhow::Result<()> {
        match out {
            Format::Json => json(&groups),
            Format::Table => {
                let rows = groups
                    .iter()
                    .map(|g| {
                        let edges = g
                            .edges
                            .iter()
                            .map(|e| e.node_id.as_str())
                            .collect::<Vec<_>>()
                            .join(",");
                        vec![g.id.clone(), g.name.clone(), edges, g.version.to_string()]
                    })
                    .collect();
                table(&["id", "name", "edges", "version"], rows);
                Ok(())
            }
        }
    };
    match cmd {
        EdgeGroupCmd::Create(a) => {
            let g = pb::EdgeGroup {
                id: a.id,
                name: a.name,
                edges: a
                    .edges
                    .iter()
                    .map(|e| parse_edge(e))
                    .collect::<Result<_, _>>()?,
                version: 0,
            };
            show(vec![
                c.create_edge_group(pb::CreateEdgeGroupRequest {
                    edge_group: Some(g),
                })
                .await?
                .into_inner(),
            ])
        }
        EdgeGroupCmd::Update(a) => {
            let g = pb::EdgeGroup {
                id: a.id,
                name: a.name,
                edges: a
                    .edges
                    .iter()
                    .map(|e| parse_edge(e))
                    .collect::<Result<_, _>>()?,
                version: a.version,
            };
            show(vec![
                c.update_edge_group(pb::UpdateEdgeGroupRequest {
                    edge_group: Some(g),
                })
                .await?
                .into_inner(),
            ])
        }
        EdgeGroupCmd::Get { id } => show(vec![
            c.get_edge_group(pb::GetRequest { id }).await?.into_inner(),
        ]),
        EdgeGroupCmd::List => show(all_pages!(c, list_edge_groups, edge_groups)),
        EdgeGroupCmd::Delete(d) => {
            c.delete_edge_group(pb::DeleteRequest {
                id: d.id.clone(),
                version: d.version,
            })
            .await?;
            println!("edge group {} deleted", d.id);
            Ok(())
        }
    }
}

fn site_from(a: SiteArgs) -> anyhow::Result<pb::Site> {
    let relay = pb::MediaRelay::from_str_name(&format!(
        "MEDIA_RELAY_{}",
        a.media_relay.to_ascii_uppercase()
    ))
    .with_context(|| {
        format!(
            "invalid --media-relay '{}': use auto, always or never",
            a.media_relay
        )
    })?;
    Ok(pb::Site {
        id: a.id,
        name: a.name,
        edge_group_id: a.edge_group,
        media_regions: a.media_regions,
        media_relay: relay as i32,
        default_outbound_caller_id: a.caller_id,
        call_restrictions: Some(pb::CallRestrictions {
            allow_international: a.allow_international,
            allow_premium: a.allow_premium,
            allow_external: a.allow_external,
        }),
        sip_user_prefix: String::new(),
        version: a.version,
    })
}

async fn sites(c: &mut Client, out: Format, cmd: SiteCmd) -> anyhow::Result<()> {
    let show = |sites: Vec<pb::Site>| -> anyhow::Result<()> {
        match out {
            Format::Json => json(&sites),
            Format::Table => {
                let rows = sites
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.clone(),
                            s.name.clone(),
                            s.edge_group_id.clone(),
                            s.sip_user_prefix.clone(),
                            s.version.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &["id", "name", "edge group", "sip user prefix", "version"],
                    rows,
                );
                Ok(())
            }
        }
    };
    match cmd {
        SiteCmd::Create(a) => show(vec![
            c.create_site(pb::CreateSiteRequest {
                site: Some(site_from(a)?),
            })
            .await?
            .into_inner(),
        ]),
        SiteCmd::Update(a) => show(vec![
            c.update_site(pb::UpdateSiteRequest {
                site: Some(site_from(a)?),
            })
            .await?
            .into_inner(),
        ]),
        SiteCmd::Get { id } => show(vec![c.get_site(pb::GetRequest { id }).await?.into_inner()]),
        SiteCmd::List => show(all_pages!(c, list_sites, sites)),
        SiteCmd::Delete(d) => {
            c.delete_site(pb::DeleteRequest {
                id: d.id.clone(),
                version: d.version,
            })
            .await?;
            println!("site {} deleted", d.id);
            Ok(())
        }
    }
}

fn base_from(a: BaseArgs) -> anyhow::Result<pb::BaseSettings> {
    let meta = pb::MetaBase::from_str_name(&format!(
        "META_BASE_{}",
        a.meta_base.to_ascii_uppercase().replace('-', "_")
    ))
    .with_context(|| format!("invalid --meta-base '{}'", a.meta_base))?;
    Ok(pb::BaseSettings {
        id: a.id,
        name: a.name,
        meta_base: meta as i32,
        settings: Some(parse_settings(&a.settings, "--settings")?),
        version: a.version,
    })
}

async fn base_settings(c: &mut Client, out: Format, cmd: BaseCmd) -> anyhow::Result<()> {
    let show = |items: Vec<pb::BaseSettings>| -> anyhow::Result<()> {
        match out {
            Format::Json => json(&items),
            Format::Table => {
                let rows = items
                    .iter()
                    .map(|b| {
                        let meta = pb::MetaBase::try_from(b.meta_base)
                            .map(|m| enum_name(m.as_str_name(), "META_BASE_"))
                            .unwrap_or_default();
                        vec![b.id.clone(), b.name.clone(), meta, b.version.to_string()]
                    })
                    .collect();
                table(&["id", "name", "meta-base", "version"], rows);
                Ok(())
            }
        }
    };
    match cmd {
        BaseCmd::Templates => {
            let r = c
                .get_templates(pb::GetTemplatesRequest {})
                .await?
                .into_inner();
            json(&r)
        }
        BaseCmd::Create(a) => show(vec![
            c.create_base_settings(pb::CreateBaseSettingsRequest {
                base_settings: Some(base_from(a)?),
            })
            .await?
            .into_inner(),
        ]),
        BaseCmd::Update(a) => show(vec![
            c.update_base_settings(pb::UpdateBaseSettingsRequest {
                base_settings: Some(base_from(a)?),
            })
            .await?
            .into_inner(),
        ]),
        BaseCmd::Get { id } => {
            let b = c
                .get_base_settings(pb::GetRequest { id })
                .await?
                .into_inner();
            if out == Format::Table {
                json(&b)
            } else {
                show(vec![b])
            }
        }
        BaseCmd::List => show(all_pages!(c, list_base_settings, base_settings)),
        BaseCmd::Delete(d) => {
            c.delete_base_settings(pb::DeleteRequest {
                id: d.id.clone(),
                version: d.version,
            })
            .await?;
            println!("base settings {} deleted", d.id);
            Ok(())
        }
        BaseCmd::Migrate {
            from,
            to,
            phones,
            dry_run,
        } => {
            let req = pb::MigrateBaseSettingsRequest {
                filter: Some(pb::PhoneFilter {
                    base_settings_id: from,
                    ..Default::default()
                }),
                phone_ids: phones,
                to_base_settings_id: to,
                dry_run,
            };
            let r = c.migrate_base_settings(req).await?.into_inner();
            if out == Format::Json {
                return json(&r);
            }
            let mut rows = Vec::new();
            for p in &r.phones {
                let outcome = pb::MigrationOutcome::try_from(p.outcome)
                    .map(|o| enum_name(o.as_str_name(), "MIGRATION_OUTCOME_"))
                    .unwrap_or_default();
                let what = if p.reason.is_empty() {
                    format!("{} settings change", p.changes.len())
                } else {
                    p.reason.clone()
                };
                rows.push(vec![
                    p.phone_id.clone(),
                    p.phone_name.clone(),
                    outcome,
                    what,
                ]);
                for ch in &p.changes {
                    rows.push(vec![
                        String::new(),
                        format!("  {}", ch.path),
                        ch.before.clone(),
                        format!("-> {}", ch.after),
                    ]);
                }
            }
            table(&["phone", "name", "outcome", "detail"], rows);
            println!(
                "{} phones{}",
                r.phones.len(),
                if r.dry_run {
                    " (dry run: nothing written)"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}

async fn phones(c: &mut Client, out: Format, cmd: PhoneCmd) -> anyhow::Result<()> {
    let show = |phones: Vec<pb::Phone>| -> anyhow::Result<()> {
        match out {
            Format::Json => json(&phones),
            Format::Table => {
                table(&PHONE_HEADERS, phone_rows(&phones));
                Ok(())
            }
        }
    };
    match cmd {
        PhoneCmd::Create(a) => {
            let mut p = pb::Phone::default();
            apply_phone_args(&mut p, a)?;
            let r = c
                .create_phone(pb::CreatePhoneRequest { phone: Some(p) })
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&r);
            }
            show(r.phone.into_iter().collect())?;
            print_credentials(&r.credentials);
            Ok(())
        }
        PhoneCmd::Update { id, args } => {
            let mut p = c.get_phone(pb::GetRequest { id }).await?.into_inner();
            apply_phone_args(&mut p, args)?;
            let r = c
                .update_phone(pb::UpdatePhoneRequest { phone: Some(p) })
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&r);
            }
            show(r.phone.into_iter().collect())?;
            print_credentials(&r.credentials);
            Ok(())
        }
        PhoneCmd::Get { id } => show(vec![c.get_phone(pb::GetRequest { id }).await?.into_inner()]),
        PhoneCmd::List {
            filter: f,
            page_size,
            page_token,
            all,
        } => {
            let f = filter(f)?;
            let mut phones = Vec::new();
            let mut token = page_token;
            loop {
                let r = c
                    .list_phones(pb::ListPhonesRequest {
                        filter: Some(f.clone()),
                        page_size,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                phones.extend(r.phones);
                if !all || r.next_page_token.is_empty() {
                    show(phones)?;
                    if !r.next_page_token.is_empty() {
                        eprintln!("more: --page-token '{}'", r.next_page_token);
                    }
                    return Ok(());
                }
                token = r.next_page_token;
            }
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
        PhoneCmd::Import { file, report } => import(c, out, file, report).await,
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

async fn import(c: &mut Client, out: Format, file: PathBuf, report: PathBuf) -> anyhow::Result<()> {
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let chunks: Vec<pb::ImportPhonesRequest> = bytes
        .chunks(1 << 20)
        .map(|c| pb::ImportPhonesRequest { chunk: c.to_vec() })
        .collect();
    let mut stream = c
        .import_phones(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    let report_file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&report)
            .with_context(|| format!("creating report {}", report.display()))?
    };
    let mut w = csv::Writer::from_writer(report_file);
    w.write_record([
        "row", "outcome", "phone_id", "reason", "line", "sip_user", "password",
    ])?;
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut counts = [0u64; 4];
    let mut failures = Vec::new();
    while let Some(r) = stream.message().await? {
        if bar.length().is_none() {
            bar.set_length(r.total_rows);
            if out == Format::Table {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
        }
        bar.inc(1);
        counts[(r.outcome as usize).min(3)] += 1;
        let outcome = pb::ImportOutcome::try_from(r.outcome)
            .map(|o| enum_name(o.as_str_name(), "IMPORT_OUTCOME_"))
            .unwrap_or_default();
        if r.credentials.is_empty() {
            w.write_record([
                r.row.to_string(),
                outcome.clone(),
                r.phone_id.clone(),
                r.reason.clone(),
                String::new(),
                String::new(),
                String::new(),
            ])?;
        }
        for cr in &r.credentials {
            w.write_record([
                r.row.to_string(),
                outcome.clone(),
                r.phone_id.clone(),
                String::new(),
                cr.line_index.to_string(),
                cr.sip_user.clone(),
                cr.password.clone(),
            ])?;
        }
        if r.outcome == pb::ImportOutcome::Failed as i32 {
            failures.push((r.row, r.reason));
        }
    }
    bar.finish_and_clear();
    w.flush()?;
    failures.sort();
    let (created, existing, failed) = (counts[1], counts[2], counts[3]);
    if out == Format::Json {
        return json(
            &serde_json::json!({"created": created, "existing": existing, "failed": failed, "report": report}),
        );
    }
    println!(
        "created {created}, existing {existing}, failed {failed}; per-row report (with new passwords): {}",
        report.display()
    );
    for (row, reason) in failures.iter().take(20) {
        eprintln!("  row {row}: {reason}");
    }
    if failures.len() > 20 {
        eprintln!("  ... {} more in the report", failures.len() - 20);
    }
    if failed > 0 {
        bail!("{failed} rows failed");
    }
    Ok(())
}
