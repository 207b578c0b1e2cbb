//! `dialtonectl media-servers`.

use clap::{Args, Subcommand};

use super::{DeleteArgs, all_pages, changed};
use dialtone_proto::config::v1 as pb;

use crate::{
    Client,
    output::{Format, json, table},
};

#[derive(Subcommand, Debug)]
pub enum MediaServerCmd {
    /// Create a media server: an rtpengine the edges anchor calls' media at (calls of
    /// sites whose media regions include its region).
    Create(MediaServerArgs),
    /// Replace (same flags as create).
    Update(MediaServerArgs),
    /// Show one.
    Get { id: String },
    /// List all.
    List,
    /// Delete: calls anchored at it keep their media; new calls go to its region's others.
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
pub struct MediaServerArgs {
    /// Media server id (lowercase letters, digits, '-').
    id: String,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// Media region it serves (as sites list them with --media-region).
    #[arg(long)]
    region: String,
    /// Its ng control address, IP:PORT (rtpengine's --listen-ng, UDP).
    #[arg(long)]
    ng: String,
    /// Relative share of its region's calls (1-1000).
    #[arg(long, default_value_t = 1)]
    weight: u32,
    /// ICE server URL of the TURN server beside it (coturn with the shared secret of the
    /// provisioning role's --turn-secret-file), repeatable: turn:HOST[:PORT][?transport=udp|tcp],
    /// turns:..., stun:HOST[:PORT]. WebRTC phones of sites in its region get these with
    /// time-limited credentials.
    #[arg(long = "turn-url", value_name = "URL")]
    turn_urls: Vec<String>,
    /// Expected version (update; 0: current).
    #[arg(long, default_value_t = 0)]
    version: i64,
}

fn media_server_from(a: MediaServerArgs) -> pb::MediaServer {
    pb::MediaServer {
        id: a.id,
        name: a.name,
        region: a.region,
        ng_address: a.ng,
        weight: a.weight,
        version: a.version,
        turn_urls: a.turn_urls,
    }
}

pub async fn run(c: &mut Client, out: Format, cmd: MediaServerCmd) -> anyhow::Result<()> {
    let show = |servers: Vec<pb::MediaServer>| -> anyhow::Result<()> {
        match out {
            Format::Json => json(&servers),
            Format::Table => {
                let rows = servers
                    .iter()
                    .map(|m| {
                        vec![
                            m.id.clone(),
                            m.name.clone(),
                            m.region.clone(),
                            m.ng_address.clone(),
                            m.weight.max(1).to_string(),
                            m.turn_urls.join(" "),
                            m.version.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "id",
                        "name",
                        "region",
                        "ng address",
                        "weight",
                        "turn urls",
                        "version",
                    ],
                    rows,
                );
                Ok(())
            }
        }
    };
    match cmd {
        MediaServerCmd::Create(a) => show(vec![
            c.create_media_server(pb::CreateMediaServerRequest {
                media_server: Some(media_server_from(a)),
            })
            .await?
            .into_inner(),
        ]),
        MediaServerCmd::Update(a) => {
            let new = media_server_from(a);
            let update_mask = changed!(c, get_media_server, "MediaServer", new);
            show(vec![
                c.update_media_server(pb::UpdateMediaServerRequest {
                    media_server: Some(new),
                    update_mask,
                })
                .await?
                .into_inner(),
            ])
        }
        MediaServerCmd::Get { id } => {
            let item = c
                .get_media_server(pb::GetRequest { id })
                .await?
                .into_inner();
            if out == Format::Json {
                json(&item)
            } else {
                show(vec![item])
            }
        }
        MediaServerCmd::List => show(all_pages!(c, list_media_servers, media_servers)),
        MediaServerCmd::Delete(d) => {
            c.delete_media_server(pb::DeleteRequest {
                id: d.id.clone(),
                version: d.version,
            })
            .await?;
            println!("media server {} deleted", d.id);
            Ok(())
        }
    }
}
