//! `dialtonectl trunks`.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::{DeleteArgs, all_pages};
use dialtone_proto::config::v1 as pb;

use crate::{
    Client,
    output::{Format, json, table},
};

#[derive(Subcommand, Debug)]
pub enum TrunkCmd {
    /// Create a carrier trunk: calls a site routes to it go to its targets, and calls its
    /// peer sends for its DIDs reach the phones they name. Sites name it in their
    /// outbound routes (`sites update ID --route national=TRUNK`).
    Create(TrunkArgs),
    /// Replace (same flags as create).
    Update(TrunkArgs),
    /// Show one.
    Get { id: String },
    /// List all.
    List,
    /// Delete (refused while a site routes calls to it).
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
pub struct TrunkArgs {
    /// Trunk id (lowercase letters, digits, '-').
    id: String,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// The trusted peer the carrier's requests come from (`peers create`).
    #[arg(long)]
    peer: String,
    /// Where calls go, IP:PORT over UDP, in order (repeat).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Seconds between OPTIONS keep-alives to each target (0: 30).
    #[arg(long, default_value_t = 0)]
    options_interval: u32,
    /// Ask the carrier to withhold the caller id from called parties (`Privacy: id`).
    #[arg(long)]
    privacy: bool,
    /// A number (or range) the carrier delivers, and who answers it:
    /// `+15551230000=phone:ID`, `+15551230000-+15551230099=ext:SITE/EXTENSION` or
    /// `+15551239999=user:ID` (repeat).
    #[arg(long = "did")]
    dids: Vec<String>,
    /// Expected version (update; 0: current).
    #[arg(long, default_value_t = 0)]
    version: i64,
}

/// `NUMBERS=KIND:TARGET` as a DID entry.
fn parse_did(d: &str) -> anyhow::Result<pb::Did> {
    let (numbers, target) = d.split_once('=').with_context(|| {
        format!("invalid --did '{d}': use NUMBERS=phone:ID, user:ID or ext:SITE/EXTENSION")
    })?;
    let target = match target.split_once(':') {
        Some(("phone", id)) => pb::did::Target::PhoneId(id.into()),
        Some(("user", id)) => pb::did::Target::UserId(id.into()),
        Some(("ext", e)) => pb::did::Target::Extension(e.into()),
        _ => bail!("invalid --did '{d}': the target is phone:ID, user:ID or ext:SITE/EXTENSION"),
    };
    Ok(pb::Did {
        numbers: numbers.into(),
        target: Some(target),
    })
}

fn trunk_from(a: TrunkArgs) -> anyhow::Result<pb::Trunk> {
    Ok(pb::Trunk {
        id: a.id,
        name: a.name,
        peer_id: a.peer,
        targets: a
            .targets
            .into_iter()
            .map(|address| pb::TrunkTarget {
                address,
                transport: "udp".into(),
            })
            .collect(),
        options_interval_s: a.options_interval,
        privacy: a.privacy,
        dids: a
            .dids
            .iter()
            .map(|d| parse_did(d))
            .collect::<anyhow::Result<_>>()?,
        version: a.version,
    })
}

/// A DID entry as `--did` spells it.
fn did_text(d: &pb::Did) -> String {
    let target = match &d.target {
        Some(pb::did::Target::PhoneId(p)) => format!("phone:{p}"),
        Some(pb::did::Target::UserId(u)) => format!("user:{u}"),
        Some(pb::did::Target::Extension(e)) => format!("ext:{e}"),
        None => String::new(),
    };
    format!("{}={target}", d.numbers)
}

pub async fn run(c: &mut Client, out: Format, cmd: TrunkCmd) -> anyhow::Result<()> {
    let show = |trunks: Vec<pb::Trunk>| -> anyhow::Result<()> {
        match out {
            Format::Json => json(&trunks),
            Format::Table => {
                let rows = trunks
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            t.peer_id.clone(),
                            t.targets
                                .iter()
                                .map(|x| x.address.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                            t.dids.iter().map(did_text).collect::<Vec<_>>().join(" "),
                            t.version.to_string(),
                        ]
                    })
                    .collect();
                table(&["id", "name", "peer", "targets", "dids", "version"], rows);
                Ok(())
            }
        }
    };
    match cmd {
        TrunkCmd::Create(a) => show(vec![
            c.create_trunk(pb::CreateTrunkRequest {
                trunk: Some(trunk_from(a)?),
            })
            .await?
            .into_inner(),
        ]),
        TrunkCmd::Update(a) => show(vec![
            c.update_trunk(pb::UpdateTrunkRequest {
                trunk: Some(trunk_from(a)?),
            })
            .await?
            .into_inner(),
        ]),
        TrunkCmd::Get { id } => {
            let item = c.get_trunk(pb::GetRequest { id }).await?.into_inner();
            if out == Format::Json {
                json(&item)
            } else {
                show(vec![item])
            }
        }
        TrunkCmd::List => show(all_pages!(c, list_trunks, trunks)),
        TrunkCmd::Delete(d) => {
            c.delete_trunk(pb::DeleteRequest {
                id: d.id.clone(),
                version: d.version,
            })
            .await?;
            println!("trunk {} deleted", d.id);
            Ok(())
        }
    }
}
