//! `dialtonectl peers`.

use clap::{Args, Subcommand};

use super::{DeleteArgs, all_pages, changed};
use dialtone_proto::config::v1 as pb;

use crate::{
    Client,
    output::{Format, json, table},
};

#[derive(Subcommand, Debug)]
pub enum PeerCmd {
    /// Create a trusted SIP peer (a PBX, a voicemail server, a carrier's SBC): its requests
    /// reach our phones without digest authentication.
    Create(PeerArgs),
    /// Replace (same flags as create).
    Update(PeerArgs),
    /// Show one.
    Get { id: String },
    /// List all.
    List,
    /// Delete: its requests are challenged like anyone's again.
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
pub struct PeerArgs {
    /// Peer id (lowercase letters, digits, '-').
    id: String,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// Where its requests come from, once per address: IP, CIDR network (at most /16 for
    /// IPv4, /48 for IPv6) or IP:PORT ([IPv6]:PORT).
    #[arg(long = "address")]
    addresses: Vec<String>,
    /// A name of its TLS client certificate (verified by the edges against their
    /// --sip-tls-client-ca), once per name: over TLS or WSS it is then trusted from any
    /// address. (Not `--tls-name`: that global flag names the config API's certificate.)
    #[arg(long = "client-cert-name")]
    tls_names: Vec<String>,
    /// A transport it may use (udp, tcp, tls, ws, wss), once per transport; none: any.
    #[arg(long = "transport")]
    transports: Vec<String>,
    /// Expected version (update; 0: current).
    #[arg(long, default_value_t = 0)]
    version: i64,
}

fn peer_from(a: PeerArgs) -> pb::Peer {
    pb::Peer {
        id: a.id,
        name: a.name,
        addresses: a.addresses,
        tls_names: a.tls_names,
        transports: a.transports,
        version: a.version,
    }
}

pub async fn run(c: &mut Client, out: Format, cmd: PeerCmd) -> anyhow::Result<()> {
    let show = |peers: Vec<pb::Peer>| -> anyhow::Result<()> {
        match out {
            Format::Json => json(&peers),
            Format::Table => {
                let rows = peers
                    .iter()
                    .map(|p| {
                        let transports = if p.transports.is_empty() {
                            "any".to_owned()
                        } else {
                            p.transports.join(",")
                        };
                        vec![
                            p.id.clone(),
                            p.name.clone(),
                            p.addresses.join(","),
                            p.tls_names.join(","),
                            transports,
                            p.version.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "id",
                        "name",
                        "addresses",
                        "tls names",
                        "transports",
                        "version",
                    ],
                    rows,
                );
                Ok(())
            }
        }
    };
    match cmd {
        PeerCmd::Create(a) => show(vec![
            c.create_peer(pb::CreatePeerRequest {
                peer: Some(peer_from(a)),
            })
            .await?
            .into_inner(),
        ]),
        PeerCmd::Update(a) => {
            let new = peer_from(a);
            let update_mask = changed!(c, get_peer, "Peer", new);
            show(vec![
                c.update_peer(pb::UpdatePeerRequest {
                    peer: Some(new),
                    update_mask,
                })
                .await?
                .into_inner(),
            ])
        }
        PeerCmd::Get { id } => {
            let item = c.get_peer(pb::GetRequest { id }).await?.into_inner();
            if out == Format::Json {
                json(&item)
            } else {
                show(vec![item])
            }
        }
        PeerCmd::List => show(all_pages!(c, list_peers, peers)),
        PeerCmd::Delete(d) => {
            c.delete_peer(pb::DeleteRequest {
                id: d.id.clone(),
                version: d.version,
            })
            .await?;
            println!("peer {} deleted", d.id);
            Ok(())
        }
    }
}
