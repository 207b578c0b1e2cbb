//! `dialtonectl phones import`: streams a CSV, shows progress, writes the per-row report.

use std::path::PathBuf;

use anyhow::{Context, bail};
use dialtone_proto::config::v1 as pb;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    Client,
    output::{Format, enum_name, json},
};

pub async fn run(
    c: &mut Client,
    out: Format,
    file: PathBuf,
    report: PathBuf,
) -> anyhow::Result<()> {
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
        "row",
        "outcome",
        "phone_id",
        "reason",
        "line",
        "sip_user",
        "password",
        "device_password",
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
        // The device password goes on the row's first record only.
        let mut device = r
            .device_credentials
            .as_ref()
            .map(|d| d.password.clone())
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
                std::mem::take(&mut device),
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
                std::mem::take(&mut device),
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
