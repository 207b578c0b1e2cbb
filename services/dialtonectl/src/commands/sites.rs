//! `dialtonectl sites`.

use clap::{Args, Subcommand};

use super::{DeleteArgs, all_pages, changed};
use dialtone_proto::config::v1 as pb;

use crate::{
    Client,
    output::{Format, enum_name, json, table},
    refuse::OrRefuse,
};

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
    /// Move the site's phones to their assigned edges (after a change of its edge group):
    /// lists the phones registered elsewhere (a dry run unless --apply); with --apply, asks
    /// each managed one to fetch its configuration again (resync, or restart when its
    /// profile applies changes only at a reboot). Hand-configured phones are listed.
    Rebalance {
        /// Site id.
        id: String,
        /// Request the resyncs and restarts (default: only show the moves).
        #[arg(long)]
        apply: bool,
    },
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
    /// When calls' media is anchored at a media server of the site's regions:
    /// when-needed (a WebRTC party, a phone behind a NAT), always, or never (WebRTC calls
    /// are anchored even then).
    #[arg(long, default_value = "when-needed")]
    media_anchoring: String,
    /// The order its media regions are used in: preference (as listed) or lowest-latency
    /// (by the edges' measured round trip to each region's media servers).
    #[arg(long, default_value = "preference")]
    media_region_order: String,
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
    /// Number plan for what phones dial beyond extensions: nanp or international (empty:
    /// extensions only).
    #[arg(long, default_value = "")]
    number_plan: String,
    /// A call pattern phones of the site may use: a kind (national, international,
    /// premium, emergency, custom) or a rule of the number plan (repeat; none: all the
    /// restrictions allow).
    #[arg(long = "call-pattern")]
    call_patterns: Vec<String>,
    /// Site code (1-6 digits): lines of other sites dial it before one of this site's
    /// extensions.
    #[arg(long, default_value = "")]
    site_code: String,
    /// An outbound route: KINDS=TRUNKS[@SECONDS], kinds and trunks comma-separated, e.g.
    /// `national,international=carrier-a,carrier-b@20` (calls go to carrier-a, then to
    /// carrier-b on 408, a 5xx or no answer within 20 s). Repeat; the first route naming
    /// a call's kind takes it.
    #[arg(long = "route")]
    routes: Vec<String>,
    /// Expected version (update; 0: current).
    #[arg(long, default_value_t = 0)]
    version: i64,
}

fn site_from(a: SiteArgs) -> anyhow::Result<pb::Site> {
    let relay = pb::MediaRelay::from_str_name(&format!(
        "MEDIA_RELAY_{}",
        a.media_relay.to_ascii_uppercase()
    ))
    .or_refuse(|| {
        format!(
            "invalid --media-relay '{}': use auto, always or never",
            a.media_relay
        )
    })?;
    let anchoring = pb::MediaAnchoring::from_str_name(&format!(
        "MEDIA_ANCHORING_{}",
        a.media_anchoring.to_ascii_uppercase().replace('-', "_")
    ))
    .or_refuse(|| {
        format!(
            "invalid --media-anchoring '{}': use when-needed, always or never",
            a.media_anchoring
        )
    })?;
    let order = pb::MediaRegionOrder::from_str_name(&format!(
        "MEDIA_REGION_ORDER_{}",
        a.media_region_order.to_ascii_uppercase().replace('-', "_")
    ))
    .or_refuse(|| {
        format!(
            "invalid --media-region-order '{}': use preference or lowest-latency",
            a.media_region_order
        )
    })?;
    Ok(pb::Site {
        media_anchoring: anchoring as i32,
        media_region_order: order as i32,
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
        number_plan: a.number_plan,
        call_patterns: a.call_patterns,
        site_code: a.site_code,
        outbound_routes: a
            .routes
            .iter()
            .map(|r| parse_route(r))
            .collect::<anyhow::Result<_>>()?,
    })
}

/// `KINDS=TRUNKS[@SECONDS]` as a route.
fn parse_route(r: &str) -> anyhow::Result<pb::OutboundRoute> {
    let (kinds, rest) = r.split_once('=').or_refuse(|| {
        format!("invalid --route '{r}': use KINDS=TRUNKS[@SECONDS], e.g. national=carrier-a")
    })?;
    let (trunks, timeout) = match rest.split_once('@') {
        Some((t, s)) => (
            t,
            s.parse()
                .or_refuse(|| format!("invalid --route '{r}': '{s}' is not seconds"))?,
        ),
        None => (rest, 0),
    };
    let list = |s: &str| s.split(',').map(|x| x.trim().to_owned()).collect();
    Ok(pb::OutboundRoute {
        kinds: list(kinds),
        trunk_ids: list(trunks),
        no_answer_timeout_s: timeout,
    })
}

pub async fn run(c: &mut Client, out: Format, cmd: SiteCmd) -> anyhow::Result<()> {
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
                            s.number_plan.clone(),
                            s.version.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "id",
                        "name",
                        "edge group",
                        "sip user prefix",
                        "number plan",
                        "version",
                    ],
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
        SiteCmd::Update(a) => {
            let new = site_from(a)?;
            let update_mask = changed!(c, get_site, "Site", new);
            show(vec![
                c.update_site(pb::UpdateSiteRequest {
                    site: Some(new),
                    update_mask,
                })
                .await?
                .into_inner(),
            ])
        }
        SiteCmd::Get { id } => {
            let item = c.get_site(pb::GetRequest { id }).await?.into_inner();
            if out == Format::Json {
                json(&item)
            } else {
                show(vec![item])
            }
        }
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
        SiteCmd::Rebalance { id, apply } => {
            let r = c
                .rebalance_site(pb::RebalanceSiteRequest {
                    site_id: id,
                    dry_run: !apply,
                })
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&r);
            }
            table(
                &["phone", "name", "registered at", "assigned", "move"],
                r.moves
                    .iter()
                    .map(|m| {
                        vec![
                            m.phone_id.clone(),
                            m.name.clone(),
                            m.registered_edges.join(","),
                            m.assigned_edges.join(","),
                            enum_name(m.action().as_str_name(), "PHONE_MOVE_ACTION_"),
                        ]
                    })
                    .collect(),
            );
            println!(
                "{} phones checked, {} to move, {}",
                r.phones_checked,
                r.moves.len(),
                if apply {
                    format!("{} resyncs or restarts requested", r.requested)
                } else {
                    "dry run (--apply to request the moves)".into()
                }
            );
            Ok(())
        }
    }
}
