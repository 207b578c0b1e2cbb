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
