//! Import / Export: upload a CSV of phones (the columns `dialtonectl phones import`
//! takes), see the per-row report and download it (with the new lines' passwords, the
//! only time they are shown: the report is kept 10 minutes, for the session that ran the
//! import only); download every phone as CSV.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Multipart, Path, State},
    http::header,
    response::{IntoResponse, Response},
};
use dialtone_auth::Permission;
use dialtone_proto::config::v1::{self as pb, ImportOutcome, PhoneFilter};
use maud::{Markup, html};

use super::{Console, Ctx, Problem, context::allow, form, layout};
use crate::{csv_format::COLUMNS, service::MAX_IMPORT_BYTES};

/// Reports kept per node; older ones are dropped.
pub const MAX_REPORTS: usize = 32;
/// Bytes of reports kept per node; older ones are dropped, and a larger one is not kept
/// (its rows are still shown, the first [`SHOWN_ROWS`] of them).
pub const MAX_REPORT_BYTES: usize = 32 << 20;
/// Rows the report page lists (its counts cover every row).
pub const SHOWN_ROWS: usize = 1_000;
/// Imports a node runs at once from the console.
pub const MAX_IMPORTS: usize = 2;
/// How long a report can be downloaded.
pub const REPORT_TTL: Duration = Duration::from_secs(600);

/// The import reports waiting to be downloaded.
#[derive(Default)]
pub struct Reports {
    kept: VecDeque<Report>,
}

struct Report {
    id: String,
    sid: String,
    at: Instant,
    csv: Vec<u8>,
}

impl Reports {
    /// Keeps `csv` for session `sid`: its id, or none when it is too large to keep.
    fn keep(&mut self, sid: &str, csv: Vec<u8>, now: Instant) -> Option<String> {
        self.kept
            .retain(|r| now.saturating_duration_since(r.at) < REPORT_TTL);
        if csv.len() > MAX_REPORT_BYTES {
            return None;
        }
        while self.kept.len() >= MAX_REPORTS
            || self.kept.iter().map(|r| r.csv.len()).sum::<usize>() + csv.len() > MAX_REPORT_BYTES
        {
            self.kept.pop_front();
        }
        let id = super::session::random_secret();
        self.kept.push_back(Report {
            id: id.clone(),
            sid: super::session::key_hex(sid),
            at: now,
            csv,
        });
        Some(id)
    }

    fn get(&self, id: &str, sid: &str, now: Instant) -> Option<Vec<u8>> {
        self.kept
            .iter()
            .find(|r| {
                r.id == id
                    && super::session::same_secret(&r.sid, &super::session::key_hex(sid))
                    && now.saturating_duration_since(r.at) < REPORT_TTL
            })
            .map(|r| r.csv.clone())
    }
}

/// One row of the report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportRow {
    /// The row's number in the file (the header is 1).
    pub row: u64,
    /// created, existing or failed.
    pub outcome: &'static str,
    /// The phone's id.
    pub phone_id: String,
    /// Why it failed.
    pub reason: String,
    /// New passwords: `line user=password` and the device's.
    pub secrets: Vec<String>,
}

/// The report row of one import answer.
pub fn report_row(r: &pb::ImportPhonesResponse) -> ReportRow {
    let outcome = match ImportOutcome::try_from(r.outcome).unwrap_or_default() {
        ImportOutcome::Created => "created",
        ImportOutcome::Existing => "existing",
        _ => "failed",
    };
    let mut secrets: Vec<String> = r
        .credentials
        .iter()
        .map(|c| format!("{}={}", c.sip_user, c.password))
        .collect();
    if let Some(d) = &r.device_credentials {
        secrets.push(format!("device {}={}", d.user, d.password));
    }
    ReportRow {
        row: r.row,
        outcome,
        phone_id: r.phone_id.clone(),
        reason: r.reason.clone(),
        secrets,
    }
}

/// The report as CSV.
pub fn report_csv_of(rows: &[ReportRow]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["row", "outcome", "phone_id", "reason", "passwords"]);
    for r in rows {
        let _ = w.write_record([
            r.row.to_string(),
            r.outcome.to_owned(),
            r.phone_id.clone(),
            r.reason.clone(),
            r.secrets.join(" "),
        ]);
    }
    w.into_inner().unwrap_or_default()
}

fn import_page(
    ctx: &Ctx,
    report: Option<(&[ReportRow], Option<&str>)>,
    error: Option<&str>,
) -> Markup {
    layout::page(
        Some(ctx),
        "Import / Export",
        "/import",
        html! {
            section class="card" aria-labelledby="export-h" {
                h2 id="export-h" { "Export" }
                p { a class="button" href="/import/phones.csv" download { "Download every phone (CSV)" } }
            }
            @if ctx.can_add {
                section class="card" aria-labelledby="import-h" {
                    h2 id="import-h" { "Import phones" }
                    p class="help" { "Columns: " code { (COLUMNS.join(",")) } " (a header row first). Rows that fail are reported; the others are created." }
                    @if let Some(e) = error { p class="error" role="alert" { (e) } }
                    form method="post" action="/import" enctype="multipart/form-data" {
                        (form::csrf(ctx))
                        div class="field" {
                            label for="f-file" { "CSV file" }
                            input type="file" id="f-file" name="file" accept=".csv,text/csv" required;
                        }
                        button type="submit" class="primary" { "Import" }
                    }
                }
            }
            @if let Some((rows, id)) = report {
                section class="card" aria-labelledby="report-h" {
                    h2 id="report-h" { "Report" }
                    @let created = rows.iter().filter(|r| r.outcome == "created").count();
                    @let failed = rows.iter().filter(|r| r.outcome == "failed").count();
                    p role="status" { (rows.len()) " rows: " (created) " created, " (failed) " failed, " (rows.len() - created - failed) " existing." }
                    @match id {
                        Some(id) => p { a class="button" id="report-download" href={ "/import/" (id) } download="import-report.csv" { "Download the report (CSV, with the new passwords)" } },
                        None => p class="error" { "The report is too large to keep for download: run the import with " code { "dialtonectl phones import" } ", which prints it." },
                    }
                    @if rows.len() > SHOWN_ROWS { p class="help" { "The first " (SHOWN_ROWS) " rows are listed; the report holds them all." } }
                    table {
                        thead { tr { th scope="col" { "Row" } th scope="col" { "Outcome" } th scope="col" { "Phone" } th scope="col" { "Reason" } } }
                        tbody {
                            @for r in rows.iter().take(SHOWN_ROWS) {
                                tr {
                                    td { (r.row) }
                                    td { (r.outcome) }
                                    td { @if !r.phone_id.is_empty() { a href={ "/phones/" (r.phone_id) } { (r.phone_id) } } }
                                    td { (r.reason) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// `GET /import`.
pub async fn page(ctx: Ctx) -> Markup {
    import_page(&ctx, None, None)
}

/// `POST /import` (multipart: `_csrf`, `file`).
pub async fn upload(
    State(c): State<Console>,
    ctx: Ctx,
    mut parts: Multipart,
) -> Result<Response, Problem> {
    // The permission before the body is read; the CSRF field (the form's first) before
    // the file is; at most MAX_IMPORTS under way (each holds its file).
    allow(&c, &ctx, Permission::Add)?;
    let _turn = c.imports.clone().try_acquire_owned().map_err(|_| {
        Problem::new(
            429,
            "imports are under way on this node: try again when one ends",
        )
    })?;
    let (mut csrf, mut file) = (String::new(), None);
    while let Some(field) = parts
        .next_field()
        .await
        .map_err(|e| Problem::new(400, format!("unreadable upload: {e}")))?
    {
        match field.name() {
            Some("_csrf") => {
                csrf = field
                    .text()
                    .await
                    .map_err(|e| Problem::new(400, e.to_string()))?
            }
            Some("file") => {
                ctx.check_csrf(&csrf)?;
                file = Some(
                    field
                        .bytes()
                        .await
                        .map_err(|e| Problem::new(400, format!("unreadable file: {e}")))?,
                )
            }
            _ => {}
        }
    }
    ctx.check_csrf(&csrf)?;
    let Some(bytes) = file.filter(|b| !b.is_empty()) else {
        return Ok((
            axum::http::StatusCode::BAD_REQUEST,
            import_page(&ctx, None, Some("choose a CSV file")),
        )
            .into_response());
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let core = c.api.core().clone();
    // No copy of the file: the bytes read are the bytes imported.
    let run = tokio::spawn(async move { core.import_phones(Vec::from(bytes), tx).await });
    let mut rows = Vec::new();
    while let Some(r) = rx.recv().await {
        rows.push(report_row(&r));
    }
    match run.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            c.record(&ctx, "import phones", "", &e.to_string());
            return Ok((
                axum::http::StatusCode::BAD_REQUEST,
                import_page(&ctx, None, Some(&e.to_string())),
            )
                .into_response());
        }
        Err(e) => return Err(Problem::new(500, format!("the import stopped: {e}"))),
    }
    rows.sort_by_key(|r| r.row);
    let created = rows.iter().filter(|r| r.outcome == "created").count();
    c.record(
        &ctx,
        "import phones",
        &format!("{} rows", rows.len()),
        &format!("{created} created"),
    );
    let id = c
        .reports
        .lock()
        .keep(&ctx.sid, report_csv_of(&rows), Instant::now());
    Ok(import_page(&ctx, Some((&rows, id.as_deref())), None).into_response())
}

/// `GET /import/{report}`: a report, or `phones.csv`, every phone.
pub async fn report_csv(
    State(c): State<Console>,
    ctx: Ctx,
    Path(report): Path<String>,
) -> Result<Response, Problem> {
    let attachment = |name: &str, body: Body| {
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            body,
        )
            .into_response()
    };
    if report == "phones.csv" {
        allow(&c, &ctx, Permission::View)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let core = c.api.core().clone();
        // A whole-fleet read: one of the REST API's few at once.
        let turn = c.api.scan_turn().await;
        tokio::spawn(async move {
            let _turn = turn;
            core.export_csv(PhoneFilter::default(), tx).await
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        return Ok(attachment("phones.csv", Body::from_stream(stream)));
    }
    let csv = c
        .reports
        .lock()
        .get(&report, &ctx.sid, Instant::now())
        .ok_or_else(|| {
            Problem::new(
                404,
                "no such report: reports are kept 10 minutes, for the session that ran the import",
            )
        })?;
    Ok(attachment("import-report.csv", Body::from(csv)))
}

/// The largest upload the import page takes.
pub const MAX_UPLOAD: usize = MAX_IMPORT_BYTES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_the_sessions_own_and_expire() {
        let mut r = Reports::default();
        let t0 = Instant::now();
        let id = r.keep("s1", b"x".to_vec(), t0).unwrap();
        assert_eq!(r.get(&id, "s1", t0), Some(b"x".to_vec()));
        assert_eq!(r.get(&id, "s2", t0), None, "another session");
        assert_eq!(r.get(&id, "s1", t0 + REPORT_TTL), None, "expired");
        for _ in 0..MAX_REPORTS {
            r.keep("s1", Vec::new(), t0);
        }
        assert_eq!(r.get(&id, "s1", t0), None, "dropped when full");
        // Bytes are bounded too: a report too large is not kept, a large one pushes out
        // older ones.
        assert!(r.keep("s1", vec![0; MAX_REPORT_BYTES + 1], t0).is_none());
        let big = r.keep("s1", vec![0; MAX_REPORT_BYTES / 2 + 1], t0).unwrap();
        let bigger = r.keep("s1", vec![0; MAX_REPORT_BYTES / 2 + 1], t0).unwrap();
        assert!(r.get(&big, "s1", t0).is_none() && r.get(&bigger, "s1", t0).is_some());
    }

    #[test]
    fn report_rows_carry_outcome_reason_and_passwords() {
        let rows = [
            report_row(&pb::ImportPhonesResponse {
                row: 2,
                outcome: ImportOutcome::Created as i32,
                phone_id: "p1".into(),
                credentials: vec![pb::LineCredentials {
                    sip_user: "u1".into(),
                    password: "pw".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            report_row(&pb::ImportPhonesResponse {
                row: 3,
                outcome: ImportOutcome::Failed as i32,
                reason: "site_id: site 'x' does not exist".into(),
                ..Default::default()
            }),
        ];
        let csv = String::from_utf8(report_csv_of(&rows)).unwrap();
        assert_eq!(
            csv,
            "row,outcome,phone_id,reason,passwords\n2,created,p1,,u1=pw\n3,failed,,site_id: site 'x' does not exist,\n"
        );
    }
}
