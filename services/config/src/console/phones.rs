//! The Phones page: the list with its filters (name, site, base settings, status,
//! hardware id), status with the primary and secondary edge, live updates, and bulk
//! restart / resync / log out of the selected phones.

use axum::{
    extract::{RawForm, RawQuery, State},
    http::Uri,
    response::{IntoResponse, Redirect, Response},
};
use dialtone_domain::actions::Act;
use dialtone_proto::config::v1 as pb;
use maud::{Markup, html};

use super::{Console, Ctx, Problem, form, layout};
use crate::rest::{
    paging, phones as rest_phones,
    shapes::{Phone, TELEPHONY},
};

/// Phones per page.
pub const PAGE_SIZE: u32 = 50;

/// The list's filters, as the page's query string names them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filters {
    /// Name, exact or a prefix ending in `*`.
    pub name: String,
    /// Site id.
    pub site: String,
    /// Base settings id.
    pub base: String,
    /// Hardware id.
    pub hardware: String,
    /// OPERATIONAL, DEGRADED, OFFLINE or NOT_APPLICABLE.
    pub status: String,
    /// Page, from 1.
    pub page: u32,
}

impl Filters {
    /// From the page's query string.
    pub fn parse(query: &str) -> Filters {
        let mut f = Filters {
            page: 1,
            ..Filters::default()
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.trim().to_owned();
            match k.as_ref() {
                "name" => f.name = v,
                "site" => f.site = v,
                "base" => f.base = v,
                "hardware" => f.hardware = v,
                "status" => f.status = v,
                "page" => f.page = v.parse().unwrap_or(1).max(1),
                _ => {}
            }
        }
        f
    }

    /// The REST list query asking for this page of phones, with their status.
    pub fn api_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("pageSize", &PAGE_SIZE.to_string());
        q.append_pair("pageNumber", &self.page.to_string());
        q.append_pair("expand", "status");
        for (k, v) in [
            ("name", &self.name),
            ("site.id", &self.site),
            ("phoneBaseSettings.id", &self.base),
            ("phone_hardwareId", &self.hardware),
            ("status.operationalStatus", &self.status),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }

    /// This page's own query string, at page `page`.
    pub fn page_query(&self, page: u32) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("name", &self.name),
            ("site", &self.site),
            ("base", &self.base),
            ("hardware", &self.hardware),
            ("status", &self.status),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair("page", &page.to_string());
        q.finish()
    }
}

/// The `(id, name)` options of every site and base settings profile, for the filters and
/// forms.
pub async fn choices(
    c: &Console,
) -> Result<(Vec<(String, String)>, Vec<(String, String)>), Problem> {
    let core = c.api.core();
    let sites = paging::read_all("sites", |t| {
        let core = core.clone();
        async move { core.list_sites(1000, &t).await }
    })
    .await?;
    let bases = paging::read_all("base settings profiles", |t| {
        let core = core.clone();
        async move { core.list_base_settings(1000, &t).await }
    })
    .await?;
    Ok((
        sites.into_iter().map(|s| (s.id, s.name)).collect(),
        bases.into_iter().map(|b| (b.id, b.name)).collect(),
    ))
}

/// The status cell of a phone: its badge and the edges it is registered on.
pub fn status_cell(p: &Phone) -> Markup {
    let status = p
        .status
        .as_ref()
        .map_or("OFFLINE", |s| s.operational_status.as_str());
    let edge = |s: Option<&crate::rest::status::PhoneStatus>| {
        s.and_then(|s| s.edge.as_ref()).map(|e| e.id.clone())
    };
    html! {
        (layout::badge(status))
        @if let Some(e) = edge(p.status.as_ref()) { " " span class="edge" { "primary " (e) } }
        @if let Some(s) = &p.secondary_status {
            " " span class="edge" { "secondary " (s.edge.as_ref().map_or("", |e| e.id.as_str())) " " (s.operational_status) }
        }
    }
}

fn assignment(p: &Phone) -> String {
    match &p.assignment {
        Some(a) if a.kind == "user" => format!("User {}", a.user_id.as_deref().unwrap_or("")),
        Some(a) if a.kind == "site" => {
            format!("Site, ext. {}", a.extension.as_deref().unwrap_or(""))
        }
        _ => "Unassigned".into(),
    }
}

/// `GET /phones`.
pub async fn list(
    State(c): State<Console>,
    ctx: Ctx,
    RawQuery(q): RawQuery,
) -> Result<Response, Problem> {
    let f = Filters::parse(q.as_deref().unwrap_or(""));
    let uri: Uri = format!("{TELEPHONY}/phones?{}", f.api_query())
        .parse()
        .map_err(|_| Problem::new(400, "unreadable filters"))?;
    let listing = rest_phones::list(State(c.api.clone()), ctx.headers(), uri).await;
    let (sites, bases) = choices(&c).await?;
    let (listing, error) = match listing {
        Ok(l) => (Some(l.0), None),
        Err(e) if e.status() == 400 => (None, Some(form::FormError::from(e))),
        Err(e) => return Err(e.into()),
    };
    let any = |opts: &[(String, String)], what: &str| {
        let mut v = vec![(String::new(), format!("Any {what}"))];
        v.extend(opts.iter().cloned());
        v
    };
    let statuses: Vec<(String, String)> =
        ["", "OPERATIONAL", "DEGRADED", "OFFLINE", "NOT_APPLICABLE"]
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    if s.is_empty() {
                        "Any status".into()
                    } else {
                        s.to_string()
                    },
                )
            })
            .collect();
    let body = html! {
        @if ctx.can_add {
            p class="actions" { a class="button primary" href="/phones/new" { "Create phone" } }
        }
        form class="filters" method="get" action="/phones" role="search" aria-label="Filter phones" {
            (form::text("Name (a trailing * matches a prefix)", "name", &f.name, false, None))
            (form::select("Site", "site", &any(&sites, "site"), &f.site, None))
            (form::select("Base settings", "base", &any(&bases, "base settings"), &f.base, None))
            (form::select("Status", "status", &statuses, &f.status, None))
            (form::text("Hardware id", "hardware", &f.hardware, false, None))
            button type="submit" { "Filter" }
            a href="/phones" class="button" { "Clear" }
        }
        (form::banner(error.as_ref()))
        @if let Some(l) = &listing {
            form method="post" action="/phones/bulk" id="bulk" {
                (form::csrf(&ctx))
                @if ctx.can_edit {
                    div class="bulk" {
                        label for="f-action" { "With the selected phones" }
                        select id="f-action" name="action" {
                            option value="restart" { "Restart" }
                            option value="resync" { "Resync" }
                            option value="logout" { "Log out" }
                        }
                        button type="submit" { "Apply" }
                    }
                }
                div class="table-wrap" {
                table class="phones" data-live-status="phones" {
                    caption { (l.total) " phones" @if l.page_count > 1 { ", page " (l.page_number) " of " (l.page_count) } }
                    thead { tr {
                        @if ctx.can_edit {
                            th scope="col" { input type="checkbox" id="select-all" aria-label="Select every phone on this page"; }
                        }
                        th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Site" }
                        th scope="col" { "Base settings" } th scope="col" { "Hardware id" } th scope="col" { "Lines" }
                        th scope="col" { "Assignment" }
                    } }
                    tbody {
                        @for p in &l.entities {
                            @let id = p.id.clone().unwrap_or_default();
                            tr data-phone-id=(id) {
                                @if ctx.can_edit {
                                    td { input type="checkbox" name="ids" value=(id) aria-label={ "Select " (p.name) }; }
                                }
                                th scope="row" { a href={ "/phones/" (id) } { (p.name) } }
                                td class="status" data-status-for=(id) { (status_cell(p)) }
                                td { (p.site.as_ref().and_then(|s| s.name.clone()).unwrap_or_default()) }
                                td { (p.phone_base_settings.as_ref().and_then(|s| s.name.clone()).unwrap_or_default()) }
                                td { code { (p.properties.as_ref().and_then(|pp| pp.phone_hardware_id.as_ref()).map_or("", |h| h.value.instance.as_str())) } }
                                td { @for (i, line) in p.lines.iter().enumerate() { @if i > 0 { ", " } (line.name.clone().unwrap_or_default()) } }
                                td { (assignment(p)) }
                            }
                        }
                    }
                }
                }
            }
            @if l.page_count > 1 {
                nav class="pages" aria-label="Pages" {
                    @if l.page_number > 1 { a href={ "/phones?" (f.page_query(l.page_number - 1)) } rel="prev" { "Previous" } }
                    " Page " (l.page_number) " of " (l.page_count) " "
                    @if l.page_number < l.page_count { a href={ "/phones?" (f.page_query(l.page_number + 1)) } rel="next" { "Next" } }
                }
            }
        }
    };
    let status = if error.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, layout::page(Some(&ctx), "Phones", "/phones", body)).into_response())
}

/// `POST /phones/bulk`: the selected phones restarted, resynced or logged out, paced, in
/// the background (the same wave as `dialtonectl phones restart --all` and gRPC's
/// ActOnPhones).
pub async fn bulk(
    State(c): State<Console>,
    ctx: Ctx,
    RawForm(body): RawForm,
) -> Result<Response, Problem> {
    let mut ids = Vec::new();
    let (mut action, mut csrf) = (String::new(), String::new());
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "ids" => ids.push(v.into_owned()),
            "action" => action = v.into_owned(),
            "_csrf" => csrf = v.into_owned(),
            _ => {}
        }
    }
    ctx.check_csrf(&csrf)?;
    c.api
        .tokens()
        .authorize_header(Some(&ctx.bearer()), dialtone_auth::Permission::Edit)
        .map_err(|e| Problem::from(crate::ConfigError::from(e)))?;
    let (act, bulk) = match action.as_str() {
        "restart" => (Act::Restart, pb::BulkAction::Restart),
        "resync" => (Act::Resync, pb::BulkAction::Resync),
        "logout" => (Act::LogOut, pb::BulkAction::LogOut),
        _ => return Err(Problem::new(400, "choose restart, resync or log out")),
    };
    if ids.is_empty() {
        return Err(Problem::new(400, "select at least one phone"));
    }
    let wave = crate::bulk::Wave::of(pb::ActOnPhonesRequest {
        action: bulk as i32,
        phone_ids: ids.clone(),
        ..Default::default()
    })?;
    let turn = c.api.wave_turn().ok_or_else(|| {
        Problem::new(
            429,
            "too many bulk actions under way on this node; retry when one ends",
        )
    })?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let core = c.api.core().clone();
    let by = format!("console/{}", ctx.who);
    tokio::spawn(async move { core.act_on_phones(wave, &by, tx).await });
    tokio::spawn(async move {
        let _turn = turn;
        while rx.recv().await.is_some() {}
    });
    c.record(
        &ctx,
        &format!("{act:?} phones").to_lowercase(),
        &ids_summary(&ids),
        "started",
    );
    Ok(Redirect::to("/phones").into_response())
}

/// A list of phones as an audit entry names it: how many, and the first few.
pub fn ids_summary(ids: &[String]) -> String {
    const NAMED: usize = 5;
    let first = ids
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if ids.len() > NAMED {
        format!("{} phones: {first},…", ids.len())
    } else {
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_entries_name_a_few_phones() {
        let ids: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        assert_eq!(ids_summary(&ids[..2]), "p0,p1");
        assert_eq!(ids_summary(&ids), "8 phones: p0,p1,p2,p3,p4,…");
    }

    #[test]
    fn filters_become_the_rest_query_and_back() {
        let f = Filters::parse("name=Desk*&site=hq&status=OFFLINE&page=3&bogus=1");
        assert_eq!(
            f,
            Filters {
                name: "Desk*".into(),
                site: "hq".into(),
                status: "OFFLINE".into(),
                page: 3,
                ..Filters::default()
            }
        );
        assert_eq!(
            f.api_query(),
            "pageSize=50&pageNumber=3&expand=status&name=Desk*&site.id=hq&status.operationalStatus=OFFLINE"
        );
        assert_eq!(f.page_query(4), "name=Desk*&site=hq&status=OFFLINE&page=4");
        assert_eq!(Filters::parse("page=0").page, 1);
        assert_eq!(Filters::parse("page=x").page, 1);
        assert_eq!(
            Filters::parse("").api_query(),
            "pageSize=50&pageNumber=1&expand=status"
        );
    }
}
