//! `dialtonectl edge …`: a phone's bindings on one edge (the node `--server` points at),
//! log-out, NOTIFY check-sync (resync, or restart with `--reboot`), and the calls up.

use clap::Subcommand;
use dialtone_proto::edge::v1::{self as pb, edge_service_client::EdgeServiceClient};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use crate::{
    Auth,
    output::{Format, enum_name, json, table},
};

#[derive(Subcommand, Debug)]
pub enum EdgeCmd {
    /// A phone's registered contacts on this edge.
    Bindings {
        /// Phone id.
        phone_id: String,
    },
    /// Logs a phone out of this edge (drops its bindings).
    Logout {
        /// Phone id.
        phone_id: String,
    },
    /// Sends NOTIFY check-sync to the phone's contacts and shows their answers.
    CheckSync {
        /// Phone id.
        phone_id: String,
        /// Restart the phone (`reboot=true`) instead of a resync.
        #[arg(long)]
        reboot: bool,
    },
    /// The calls up on this edge (answered, not hung up), oldest first: every call, or
    /// one phone's as caller or callee. A call between phones on two edges is listed by
    /// both.
    Calls {
        /// Only this phone's calls.
        #[arg(long)]
        phone: Option<String>,
        /// At most this many (the edge caps it at 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub async fn run(
    mut c: EdgeServiceClient<InterceptedService<Channel, Auth>>,
    out: Format,
    cmd: EdgeCmd,
) -> anyhow::Result<()> {
    match cmd {
        EdgeCmd::Bindings { phone_id } => {
            let r = c
                .list_bindings(pb::ListBindingsRequest { phone_id })
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&r);
            }
            let now = dialtone_common::clock::unix_secs() as i64;
            let rows = r
                .bindings
                .iter()
                .flat_map(|b| {
                    b.contacts.iter().map(move |k| {
                        vec![
                            b.line_index.to_string(),
                            b.sip_user.clone(),
                            k.uri.clone(),
                            enum_name(k.transport().as_str_name(), "SIP_TRANSPORT_"),
                            k.source.clone(),
                            (k.expires_at_s - now).max(0).to_string(),
                            k.user_agent.clone(),
                        ]
                    })
                })
                .collect();
            table(
                &[
                    "line",
                    "sip user",
                    "contact",
                    "transport",
                    "source",
                    "expires in",
                    "user agent",
                ],
                rows,
            );
            Ok(())
        }
        EdgeCmd::Logout { phone_id } => {
            let r = c
                .drop_bindings(pb::DropBindingsRequest { phone_id })
                .await?
                .into_inner();
            match out {
                Format::Json => json(&r),
                Format::Table => {
                    println!("{} contact(s) dropped", r.contacts_dropped);
                    Ok(())
                }
            }
        }
        EdgeCmd::Calls { phone, limit } => {
            let r = c
                .list_calls(pb::ListCallsRequest {
                    phone_id: phone.unwrap_or_default(),
                    page_size: limit,
                })
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&r);
            }
            let now = dialtone_common::clock::unix_ms() as i64;
            let rows = r
                .calls
                .iter()
                .map(|k| {
                    vec![
                        party(k.caller.as_ref()),
                        party(k.callee.as_ref()),
                        k.dialled.clone(),
                        k.site_id.clone(),
                        format!("{}s", (now - k.answered_at_ms).max(0) / 1000),
                        k.call_id.clone(),
                    ]
                })
                .collect();
            table(
                &["caller", "callee", "dialled", "site", "up for", "call-id"],
                rows,
            );
            if r.total as usize > r.calls.len() {
                println!("({} of {} calls shown)", r.calls.len(), r.total);
            }
            Ok(())
        }
        EdgeCmd::CheckSync { phone_id, reboot } => {
            let r = c
                .check_sync(pb::CheckSyncRequest { phone_id, reboot })
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&r);
            }
            table(
                &["contact", "status", "reason"],
                r.results
                    .iter()
                    .map(|x| {
                        vec![
                            x.contact.clone(),
                            x.status_code.to_string(),
                            x.reason.clone(),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
    }
}

/// One end of a call as a table cell: `phone:ID`, `trunk:ID`, `peer:ID`, `edge` or `?`.
fn party(p: Option<&pb::CallParty>) -> String {
    use pb::call_party::Party as P;
    match p.and_then(|p| p.party.as_ref()) {
        Some(P::PhoneId(id)) => format!("phone:{id}"),
        Some(P::TrunkId(id)) => format!("trunk:{id}"),
        Some(P::PeerId(id)) => format!("peer:{id}"),
        Some(P::OtherEdge(_)) => "edge".to_owned(),
        None => "?".to_owned(),
    }
}
