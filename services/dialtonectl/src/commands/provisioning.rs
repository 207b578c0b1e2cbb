//! `dialtonectl provisioning …`: what a phone fetched against what it should run, and how far
//! dynamic reload has come (`--server` is a provisioning node's gRPC address).

use std::time::Duration;

use clap::Subcommand;
use dialtone_proto::provisioning::v1::{
    self as pb, provisioning_service_client::ProvisioningServiceClient,
};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use crate::{
    Auth,
    output::{Format, json, ms_ago, table},
};

#[derive(Subcommand, Debug)]
pub enum ProvisioningCmd {
    /// A phone's desired and applied configuration, its files and edges.
    Get {
        /// Phone id.
        phone_id: String,
    },
    /// Progress of dynamic reload (resyncs after configuration changes) on this node.
    Reload {
        /// Keep showing it, once a second, until nothing is pending.
        #[arg(long)]
        watch: bool,
    },
}

fn progress_row(p: &pb::ReloadProgress) -> Vec<String> {
    [
        p.pending,
        p.resyncs_sent,
        p.unchanged,
        p.never_fetched,
        p.not_registered,
        p.needs_restart,
        p.other_node,
    ]
    .iter()
    .map(u64::to_string)
    .chain([format!("{}/s", p.rate_per_second)])
    .collect()
}

const PROGRESS: [&str; 8] = [
    "pending",
    "resyncs sent",
    "unchanged",
    "never fetched",
    "not registered",
    "needs restart",
    "other node",
    "pace",
];

pub async fn run(
    mut c: ProvisioningServiceClient<InterceptedService<Channel, Auth>>,
    out: Format,
    cmd: ProvisioningCmd,
) -> anyhow::Result<()> {
    match cmd {
        ProvisioningCmd::Get { phone_id } => {
            let r = c
                .get_provisioning(pb::GetProvisioningRequest { phone_id })
                .await?
                .into_inner();
            if out == Format::Json {
                return json(&r);
            }
            let s = r.state.clone().unwrap_or_default();
            let state = if r.state.is_none() {
                "never fetched".to_owned()
            } else if r.drift {
                "drift".to_owned()
            } else {
                "in sync".to_owned()
            };
            table(
                &[
                    "phone",
                    "hardware id",
                    "desired",
                    "applied",
                    "state",
                    "last fetch",
                    "source",
                    "problem",
                ],
                vec![vec![
                    r.phone_id.clone(),
                    r.hardware_id.clone(),
                    r.desired_version.clone(),
                    s.applied_version.clone(),
                    state,
                    ms_ago(s.last_fetch_ms),
                    s.source.clone(),
                    s.last_error.clone(),
                ]],
            );
            println!("\nfiles: {}", r.files.join(", "));
            println!("primary edge: {}", r.primary_edge);
            if !r.secondary_edge.is_empty() {
                println!("secondary edge: {}", r.secondary_edge);
            }
            Ok(())
        }
        ProvisioningCmd::Reload { watch } => loop {
            let p = c
                .get_reload_progress(pb::GetReloadProgressRequest {})
                .await?
                .into_inner();
            if out == Format::Json {
                json(&p)?;
            } else {
                table(&PROGRESS, vec![progress_row(&p)]);
            }
            if !watch || p.pending == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        },
    }
}

/// `dialtonectl phones how-to-register ID`.
pub async fn how_to_register(
    mut c: ProvisioningServiceClient<InterceptedService<Channel, Auth>>,
    out: Format,
    phone_id: String,
) -> anyhow::Result<()> {
    let r = c
        .get_how_to_register(pb::GetHowToRegisterRequest { phone_id })
        .await?
        .into_inner();
    if out == Format::Json {
        return json(&r);
    }
    let registrar = |role: &str, r: &Option<pb::Registrar>| {
        r.as_ref().map(|r| {
            vec![
                role.to_owned(),
                r.node_id.clone(),
                r.host.clone(),
                r.port.to_string(),
                crate::output::enum_name(
                    dialtone_proto::config::v1::Transport::try_from(r.transport)
                        .unwrap_or_default()
                        .as_str_name(),
                    "TRANSPORT_",
                ),
                r.uri.clone(),
            ]
        })
    };
    table(
        &["registrar", "edge", "host", "port", "transport", "uri"],
        [
            registrar("primary", &r.primary),
            registrar("secondary", &r.secondary),
        ]
        .into_iter()
        .flatten()
        .collect(),
    );
    println!();
    table(
        &[
            "line",
            "sip user (auth user)",
            "domain (realm)",
            "aor",
            "label",
        ],
        r.lines
            .iter()
            .map(|l| {
                vec![
                    l.line_index.to_string(),
                    l.sip_user.clone(),
                    r.domain.clone(),
                    l.aor.clone(),
                    l.display_name.clone(),
                ]
            })
            .collect(),
    );
    println!(
        "\nregister every line to {} (registration period {} s); the password was shown when the line was created or reset",
        if r.secondary.is_some() {
            "both registrars at once"
        } else {
            "the registrar"
        },
        r.registration_period_s
    );
    if !r.ice_servers.is_empty() {
        println!();
        table(
            &[
                "ice server urls",
                "turn username",
                "turn credential",
                "expires at (unix s)",
            ],
            r.ice_servers
                .iter()
                .map(|s| {
                    vec![
                        s.urls.join(" "),
                        s.username.clone(),
                        s.credential.clone(),
                        s.expires_at.to_string(),
                    ]
                })
                .collect(),
        );
        println!("ice transport policy: {}", r.ice_transport_policy);
    }
    for p in &r.problems {
        println!("problem: {p}");
    }
    Ok(())
}
