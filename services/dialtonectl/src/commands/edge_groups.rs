//! `dialtonectl edge-groups`.

use clap::{Args, Subcommand};

use super::{DeleteArgs, all_pages, changed};
use dialtone_proto::config::v1 as pb;

use crate::{
    Client,
    output::{Format, json, table},
    refuse::{OrRefuse, refuse},
};

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

fn parse_edge(s: &str) -> anyhow::Result<pb::Edge> {
    let (node, addrs) = s
        .split_once('=')
        .or_refuse(|| format!("invalid --edge '{s}': use NODE=udp://HOST:PORT,..."))?;
    let mut a = pb::SipAddresses::default();
    for part in addrs.split(',') {
        let (t, hp) = part.split_once("://").or_refuse(|| {
            format!("invalid address '{part}' in --edge: use TRANSPORT://HOST:PORT")
        })?;
        let slot = match t {
            "udp" => &mut a.udp,
            "tcp" => &mut a.tcp,
            "tls" => &mut a.tls,
            "ws" => &mut a.ws,
            "wss" => &mut a.wss,
            other => refuse!("invalid transport '{other}' in --edge: use udp, tcp, tls, ws or wss"),
        };
        *slot = hp.to_owned();
    }
    Ok(pb::Edge {
        node_id: node.to_owned(),
        addresses: Some(a),
    })
}

fn edge_group_from(a: EdgeGroupArgs) -> anyhow::Result<pb::EdgeGroup> {
    let edges = a
        .edges
        .iter()
        .map(|e| parse_edge(e))
        .collect::<Result<_, _>>()?;
    Ok(pb::EdgeGroup {
        id: a.id,
        name: a.name,
        edges,
        version: a.version,
    })
}

pub async fn run(c: &mut Client, out: Format, cmd: EdgeGroupCmd) -> anyhow::Result<()> {
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
            let g = edge_group_from(a)?;
            show(vec![
                c.create_edge_group(pb::CreateEdgeGroupRequest {
                    edge_group: Some(g),
                })
                .await?
                .into_inner(),
            ])
        }
        EdgeGroupCmd::Update(a) => {
            let g = edge_group_from(a)?;
            let update_mask = changed!(c, get_edge_group, "EdgeGroup", g);
            show(vec![
                c.update_edge_group(pb::UpdateEdgeGroupRequest {
                    edge_group: Some(g),
                    update_mask,
                })
                .await?
                .into_inner(),
            ])
        }
        EdgeGroupCmd::Get { id } => {
            let item = c.get_edge_group(pb::GetRequest { id }).await?.into_inner();
            if out == Format::Json {
                json(&item)
            } else {
                show(vec![item])
            }
        }
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
