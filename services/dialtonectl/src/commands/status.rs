//! `dialtonectl status …`: the live status of phones (`--server` is a status node's gRPC
//! address). Without a subcommand: per-site counts and the phones' table, refreshed in
//! place once a second on a terminal (like `top`), printed once otherwise or with `--once`.

use std::{io::IsTerminal, time::Duration};

use clap::{Args, Subcommand};
use dialtone_proto::status::v1::{
    self as pb, OperationalStatus, status_service_client::StatusServiceClient,
};
use tokio_stream::StreamExt;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use crate::{
    Auth,
    output::{Format, enum_name, json, ms_ago, stream_item, table, wide},
};

type Client = StatusServiceClient<InterceptedService<Channel, Auth>>;

/// Filters of the live table.
#[derive(Args, Debug, Clone, Default)]
pub struct Filters {
    /// Only phones of this site.
    #[arg(long, default_value = "")]
    site: String,
    /// Only phones in this status: operational, degraded, offline, not-applicable.
    #[arg(long, value_parser = parse_status)]
    status: Option<OperationalStatus>,
    /// Only phones of this base settings profile.
    #[arg(long, default_value = "")]
    base_settings: String,
    /// Only phones whose name starts with this.
    #[arg(long, default_value = "")]
    name_prefix: String,
    /// Only phones assigned to or registered on this edge (node id).
    #[arg(long, default_value = "")]
    edge: String,
    /// Most phones shown.
    #[arg(long, default_value_t = 40)]
    limit: u32,
    /// Print once and exit (the default when stdout is not a terminal).
    #[arg(long)]
    once: bool,
}

#[derive(Subcommand, Debug)]
pub enum StatusCmd {
    /// One phone's status: edges with their roles, lines with their contacts.
    Get {
        /// Phone id.
        phone_id: String,
    },
    /// Phones by status per site.
    Summary {
        /// Only this site.
        #[arg(long, default_value = "")]
        site: String,
    },
    /// Carrier trunks: UP, DEGRADED or DOWN as every edge's OPTIONS keep-alives find each
    /// target, and each edge's registration at the carrier (trunks that register).
    Trunks,
    /// Media servers (rtpengine): UP, DEGRADED or DOWN as every edge's ng pings find
    /// each, and the calls up anchored there, in all and per edge.
    #[command(name = "media-servers")]
    MediaServers,
    /// Streams status changes as they happen (a snapshot first unless resuming).
    Watch {
        /// Only phones of this site, and those that leave it (a phone that moved prints
        /// "(left OLD)" after the site it went to).
        #[arg(long, default_value = "")]
        site: String,
        /// Resume from this revision (the last one printed): phones changed at or after it
        /// (a snapshot again when phones were deleted since or, with --site, left it).
        #[arg(long, default_value_t = 0)]
        after_revision: i64,
        /// Skip the initial snapshot (print changes only).
        #[arg(long)]
        changes_only: bool,
    },
}

pub(crate) fn parse_status(s: &str) -> Result<OperationalStatus, String> {
    let name = format!(
        "OPERATIONAL_STATUS_{}",
        s.to_ascii_uppercase().replace('-', "_")
    );
    OperationalStatus::from_str_name(&name)
        .filter(|s| *s != OperationalStatus::Unspecified)
        .ok_or_else(|| "expected operational, degraded, offline or not-applicable".into())
}

pub(crate) fn status_name(s: i32) -> String {
    OperationalStatus::try_from(s)
        .map(|s| enum_name(s.as_str_name(), "OPERATIONAL_STATUS_"))
        .unwrap_or_else(|_| s.to_string())
}

/// `node-1 (primary, 1/1, 3m ago)` per edge.
pub(crate) fn edges_cell(s: &pb::PhoneStatus) -> String {
    s.edges
        .iter()
        .map(|e| {
            let role = pb::EdgeRole::try_from(e.role)
                .map(|r| enum_name(r.as_str_name(), "EDGE_ROLE_"))
                .unwrap_or_default();
            format!(
                "{}({role},{}/{},{})",
                e.node_id,
                e.lines_registered,
                s.lines.len(),
                ms_ago(e.since_ms)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn phone_row(s: &pb::PhoneStatus) -> Vec<String> {
    let mut row = vec![
        s.phone_id.clone(),
        s.name.clone(),
        s.site_id.clone(),
        status_name(s.status),
        ms_ago(s.status_since_ms),
        edges_cell(s),
        s.user_agent.clone(),
    ];
    if wide() {
        row.extend(wide_cells(s));
    }
    row
}

const PHONE_COLUMNS: [&str; 7] = [
    "phone",
    "name",
    "site",
    "status",
    "since",
    "edges",
    "user agent",
];

/// What `-o wide` adds to a phone's status row.
const WIDE_COLUMNS: [&str; 5] = ["kind", "base settings", "config", "fetched", "problem"];

/// The wide cells: the phone's kind and profile, its configuration (the version applied,
/// `→ desired` while it drifts) and last fetch, and a placement or provisioning problem.
pub(crate) fn wide_cells(s: &pb::PhoneStatus) -> Vec<String> {
    let kind = dialtone_proto::config::v1::PhoneKind::try_from(s.kind)
        .map(|k| enum_name(k.as_str_name(), "PHONE_KIND_"))
        .unwrap_or_default();
    let (config, fetched, error) = match &s.provisioning {
        Some(p) if p.drift => (
            format!("{} → {}", p.applied_version, p.desired_version),
            ms_ago(p.last_fetch_ms),
            p.last_error.clone(),
        ),
        Some(p) => (
            p.applied_version.clone(),
            ms_ago(p.last_fetch_ms),
            p.last_error.clone(),
        ),
        None => (String::new(), String::new(), String::new()),
    };
    let problem = [s.placement_problem.as_str(), error.as_str()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    vec![kind, s.base_settings_id.clone(), config, fetched, problem]
}

/// The status table's columns (with the wide ones under `-o wide`).
fn phone_columns() -> Vec<&'static str> {
    let mut c = PHONE_COLUMNS.to_vec();
    if wide() {
        c.extend(WIDE_COLUMNS);
    }
    c
}

fn summary_rows(r: &pb::GetSiteSummariesResponse) -> Vec<Vec<String>> {
    r.sites
        .iter()
        .map(|s| {
            [
                s.total,
                s.operational,
                s.degraded,
                s.offline,
                s.not_applicable,
            ]
            .iter()
            .map(u32::to_string)
            .fold(vec![s.site_id.clone()], |mut row, n| {
                row.push(n);
                row
            })
        })
        .collect()
}

const SUMMARY_COLUMNS: [&str; 6] = [
    "site",
    "total",
    "operational",
    "degraded",
    "offline",
    "remote",
];

async fn live(mut c: Client, out: Format, f: Filters) -> anyhow::Result<()> {
    let refresh = !f.once && out == Format::Table && std::io::stdout().is_terminal();
    loop {
        let summary = c
            .get_site_summaries(pb::GetSiteSummariesRequest {
                site_id: f.site.clone(),
            })
            .await?
            .into_inner();
        let phones = c
            .list_phone_statuses(pb::ListPhoneStatusesRequest {
                site_id: f.site.clone(),
                status: f.status.map_or(0, |s| s as i32),
                edge_node_id: f.edge.clone(),
                page_size: f.limit.clamp(1, 1000),
                page_token: String::new(),
                base_settings_id: f.base_settings.clone(),
                name_prefix: f.name_prefix.clone(),
                phone_ids: Vec::new(),
            })
            .await?
            .into_inner();
        if out == Format::Json {
            json(&summary)?;
            return json(&phones);
        }
        if refresh {
            // Home and clear, like top.
            print!("\x1b[H\x1b[2J");
        }
        table(&SUMMARY_COLUMNS, summary_rows(&summary));
        println!();
        table(
            &phone_columns(),
            phones.statuses.iter().map(phone_row).collect(),
        );
        if !phones.next_page_token.is_empty() {
            println!("… more phones (narrow with --site/--status/--edge, or raise --limit)");
        }
        if !refresh {
            return Ok(());
        }
        println!(
            "\nrevision {}  (refreshing every second; Ctrl-C to quit)",
            phones.revision
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One phone's status as tables: the phone's row, then each line's contacts, placement
/// and provisioning problems.
pub(crate) fn print_phone(s: &pb::PhoneStatus) {
    table(&phone_columns(), vec![phone_row(s)]);
    println!();
    table(
        &["line", "aor", "reachable", "edge", "contact", "source"],
        s.lines
            .iter()
            .flat_map(|l| {
                let head = [l.sip_user.clone(), l.aor.clone(), l.reachable.to_string()];
                if l.contacts.is_empty() {
                    return vec![
                        head.into_iter()
                            .chain(["".into(), "".into(), "".into()])
                            .collect(),
                    ];
                }
                l.contacts
                    .iter()
                    .map(|c| {
                        head.iter()
                            .cloned()
                            .chain([c.node_id.clone(), c.uri.clone(), c.source.clone()])
                            .collect()
                    })
                    .collect::<Vec<Vec<String>>>()
            })
            .collect(),
    );
    if !s.placement_problem.is_empty() {
        println!("\nplacement problem: {}", s.placement_problem);
    }
    if let Some(p) = &s.provisioning {
        println!(
            "\nprovisioning: applied {}{} (last fetch {}){}",
            p.applied_version,
            if p.drift {
                format!(
                    ", desired {} (drift: the phone runs an old configuration)",
                    p.desired_version
                )
            } else {
                String::new()
            },
            ms_ago(p.last_fetch_ms),
            if p.last_error.is_empty() {
                String::new()
            } else {
                format!(", last problem: {}", p.last_error)
            }
        );
    }
}

pub async fn run(
    mut c: Client,
    out: Format,
    cmd: Option<StatusCmd>,
    filters: Filters,
) -> anyhow::Result<()> {
    let Some(cmd) = cmd else {
        return live(c, out, filters).await;
    };
    match cmd {
        StatusCmd::Get { phone_id } => {
            let s = c
                .get_phone_status(pb::GetPhoneStatusRequest { phone_id })
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&s);
            }
            print_phone(&s);
            Ok(())
        }
        StatusCmd::MediaServers => {
            let r = c
                .list_media_server_statuses(pb::ListMediaServerStatusesRequest {})
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&r);
            }
            let when = |ms: i64| if ms == 0 { "-".into() } else { ms_ago(ms) };
            table(
                &[
                    "media server",
                    "state",
                    "ng",
                    "calls",
                    "edge",
                    "up",
                    "edge calls",
                    "changed",
                ],
                r.media_servers
                    .iter()
                    .flat_map(|m| {
                        let state = m
                            .state()
                            .as_str_name()
                            .trim_start_matches("MEDIA_SERVER_STATE_")
                            .to_owned();
                        m.edges.iter().map(move |e| {
                            vec![
                                m.media_server_id.clone(),
                                state.clone(),
                                m.ng_address.clone(),
                                m.active_calls.to_string(),
                                e.edge_node_id.clone(),
                                e.up.to_string(),
                                e.active_calls.to_string(),
                                when(e.changed_at_ms),
                            ]
                        })
                    })
                    .collect(),
            );
            Ok(())
        }
        StatusCmd::Trunks => {
            let r = c
                .list_trunk_statuses(pb::ListTrunkStatusesRequest {})
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&r);
            }
            let state = |t: &pb::TrunkStatus| {
                t.state()
                    .as_str_name()
                    .trim_start_matches("TRUNK_STATE_")
                    .to_owned()
            };
            table(
                &["trunk", "state", "target", "edge", "up", "changed"],
                r.trunks
                    .iter()
                    .flat_map(|t| {
                        let when = |ms: i64| if ms == 0 { "-".into() } else { ms_ago(ms) };
                        let targets = t.targets.iter().map(move |x| {
                            vec![
                                t.trunk_id.clone(),
                                state(t),
                                x.address.clone(),
                                x.edge_node_id.clone(),
                                x.up.to_string(),
                                when(x.changed_at_ms),
                            ]
                        });
                        // A registration shows as a row of its own: up = registered.
                        let registrations = t.registrations.iter().map(move |r| {
                            vec![
                                t.trunk_id.clone(),
                                state(t),
                                format!("registration (last answer {})", r.last_status),
                                r.edge_node_id.clone(),
                                r.registered.to_string(),
                                when(r.changed_at_ms),
                            ]
                        });
                        targets.chain(registrations)
                    })
                    .collect(),
            );
            Ok(())
        }
        StatusCmd::Summary { site } => {
            let r = c
                .get_site_summaries(pb::GetSiteSummariesRequest { site_id: site })
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&r);
            }
            table(&SUMMARY_COLUMNS, summary_rows(&r));
            Ok(())
        }
        StatusCmd::Watch {
            site,
            after_revision,
            changes_only,
        } => {
            let mut stream = c
                .watch_phone_statuses(pb::WatchPhoneStatusesRequest {
                    after_revision,
                    site_id: site,
                })
                .await?
                .into_inner();
            while let Some(change) = stream.next().await {
                let change = change?;
                if changes_only && change.snapshot {
                    continue;
                }
                if out == Format::Json {
                    stream_item(&change)?;
                    continue;
                }
                match (&change.status, change.removed, change.synced) {
                    (_, _, true) => println!(
                        "{:>8}  -- snapshot complete, live changes follow",
                        change.revision
                    ),
                    (_, true, _) => {
                        println!("{:>8}  {}  removed", change.revision, change.phone_id)
                    }
                    // A phone that left a site: its status names the site it went to.
                    (Some(s), _, _) if !change.left_site.is_empty() => println!(
                        "{:>8}  {}  {}  {}  {}  {}  (left {})",
                        change.revision,
                        s.phone_id,
                        s.site_id,
                        status_name(s.status),
                        edges_cell(s),
                        s.name,
                        change.left_site
                    ),
                    (Some(s), _, _) => println!(
                        "{:>8}  {}  {}  {}  {}  {}",
                        change.revision,
                        s.phone_id,
                        s.site_id,
                        status_name(s.status),
                        edges_cell(s),
                        s.name
                    ),
                    (None, false, false) => {}
                }
            }
            Ok(())
        }
    }
}
