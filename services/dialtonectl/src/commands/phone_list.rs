//! `dialtonectl phones list` and `phones get`: the configuration joined with the live
//! status, as the Phones page shows it (a status column, and a status filter that combines
//! with the site, profile and name filters).
//!
//! Without `--status` the configuration drives the listing (every filter, its paging) and
//! each page asks the status role for those phones' statuses. With `--status` the status
//! role drives it (it filters by status, site, profile and name prefix) and the
//! configuration is read for each phone listed.

use dialtone_proto::{config::v1 as pb, status::v1 as spb};
use tonic::Code;

use super::phones::{FilterArgs, PHONE_HEADERS, filter, phone_rows};
use crate::{
    Client, StatusClient,
    commands::status::{parse_status, status_name},
    output::{Format, json, table, wide},
    refuse::refuse,
};

/// `phones list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Only phones in this live status: operational, degraded, offline or not-applicable
    /// (combines with --site, --base-settings and --name-prefix).
    #[arg(long, value_parser = parse_status)]
    status: Option<spb::OperationalStatus>,
    /// Page size (1-1000).
    #[arg(long, default_value_t = 100)]
    page_size: i32,
    /// Page token from the previous page.
    #[arg(long, default_value = "")]
    page_token: String,
    /// Every page.
    #[arg(long)]
    all: bool,
}

/// The status column of a phone: its operational status, `?` when the status role does not
/// answer for it.
fn status_cell(statuses: &[spb::PhoneStatus], id: &str) -> String {
    statuses
        .iter()
        .find(|s| s.phone_id == id)
        .map_or_else(|| "?".into(), |s| status_name(s.status))
}

/// The statuses of `ids`; none (and a note on stderr) when no status role answers here.
async fn statuses_of(
    s: &mut StatusClient,
    ids: &[String],
) -> anyhow::Result<Vec<spb::PhoneStatus>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let r = s
        .list_phone_statuses(spb::ListPhoneStatusesRequest {
            phone_ids: ids.to_vec(),
            page_size: ids.len().min(1000) as u32,
            ..Default::default()
        })
        .await;
    match r {
        Ok(r) => Ok(r.into_inner().statuses),
        Err(e) if matches!(e.code(), Code::Unimplemented | Code::Unavailable) => {
            eprintln!("note: no status role answers at this --server; status shown as '?'");
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

fn print(out: Format, phones: &[pb::Phone], statuses: &[spb::PhoneStatus]) -> anyhow::Result<()> {
    if out == Format::Json {
        return json(&phones);
    }
    let mut headers = PHONE_HEADERS.to_vec();
    headers.insert(2, "status");
    if wide() {
        headers.extend(["version", "edges", "user agent"]);
    }
    let rows = phone_rows(phones)
        .into_iter()
        .zip(phones)
        .map(|(mut row, p)| {
            row.insert(2, status_cell(statuses, &p.id));
            if wide() {
                let st = statuses.iter().find(|s| s.phone_id == p.id);
                row.push(p.version.to_string());
                row.push(st.map(super::status::edges_cell).unwrap_or_default());
                row.push(st.map(|s| s.user_agent.clone()).unwrap_or_default());
            }
            row
        })
        .collect();
    table(&headers, rows);
    Ok(())
}

/// `phones list`.
pub async fn list(
    c: &mut Client,
    s: &mut StatusClient,
    out: Format,
    a: ListArgs,
) -> anyhow::Result<()> {
    let f = filter(a.filter)?;
    let mut phones = Vec::new();
    let mut statuses = Vec::new();
    let mut token = a.page_token;
    loop {
        let next = match a.status {
            None => {
                let r = c
                    .list_phones(pb::ListPhonesRequest {
                        filter: Some(f.clone()),
                        page_size: a.page_size,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                let ids: Vec<String> = r.phones.iter().map(|p| p.id.clone()).collect();
                statuses.extend(statuses_of(s, &ids).await?);
                phones.extend(r.phones);
                r.next_page_token
            }
            Some(want) => {
                if f.kind != 0 || !f.hardware_id.is_empty() || !f.sip_user.is_empty() {
                    refuse!(
                        "--status combines with --site, --base-settings and --name-prefix only"
                    );
                }
                let r = s
                    .list_phone_statuses(spb::ListPhoneStatusesRequest {
                        site_id: f.site_id.clone(),
                        status: want as i32,
                        base_settings_id: f.base_settings_id.clone(),
                        name_prefix: f.name_prefix.clone(),
                        page_size: a.page_size.clamp(1, 1000) as u32,
                        page_token: token,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                for st in &r.statuses {
                    match c
                        .get_phone(pb::GetRequest {
                            id: st.phone_id.clone(),
                        })
                        .await
                    {
                        Ok(p) => phones.push(p.into_inner()),
                        // Deleted since the status role saw it.
                        Err(e) if e.code() == Code::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                statuses.extend(r.statuses);
                r.next_page_token
            }
        };
        if !a.all || next.is_empty() {
            print(out, &phones, &statuses)?;
            if !next.is_empty() {
                eprintln!("more: --page-token '{next}'");
            }
            return Ok(());
        }
        token = next;
    }
}

/// `phones get`: the phone, then (as a table) its live status per edge and line.
pub async fn get(
    c: &mut Client,
    s: &mut StatusClient,
    out: Format,
    id: String,
) -> anyhow::Result<()> {
    let phone = c.get_phone(pb::GetRequest { id }).await?.into_inner();
    if out == Format::Json {
        return json(&phone);
    }
    let statuses = statuses_of(s, std::slice::from_ref(&phone.id)).await?;
    print(out, std::slice::from_ref(&phone), &statuses)?;
    if let Some(st) = statuses.first() {
        println!();
        super::status::print_phone(st);
    }
    Ok(())
}
