//! Sites and edge groups: their lists (edge group members up or down, from the members
//! the nodes keep alive in the store) and Add forms.

use std::collections::HashMap;

use axum::{
    Form,
    extract::State,
    response::{IntoResponse, Redirect, Response},
};
use dialtone_auth::Permission;
use dialtone_proto::config::v1 as pb;
use maud::html;
use serde::Deserialize;

use super::{
    Console, Ctx, Problem,
    context::allow,
    form::{self, FormError},
    layout,
};
use crate::rest::{paging, shapes};

async fn sites_page(
    c: &Console,
    ctx: &Ctx,
    f: &SiteForm,
    err: Option<&FormError>,
) -> Result<Response, Problem> {
    let core = c.api.core().clone();
    let sites = paging::read_all("sites", |t| {
        let core = core.clone();
        async move { core.list_sites(1000, &t).await }
    })
    .await?;
    let groups = groups(c).await?;
    let group_names: HashMap<&str, &str> = groups
        .iter()
        .map(|g| (g.id.as_str(), g.name.as_str()))
        .collect();
    let options: Vec<(String, String)> = groups
        .iter()
        .map(|g| (g.id.clone(), g.name.clone()))
        .collect();
    let page = layout::page(
        Some(ctx),
        "Sites",
        "/sites",
        html! {
            @if ctx.can_all {
                form class="card" method="post" action="/sites" {
                    h2 { "Add a site" }
                    (form::csrf(ctx))
                    (form::banner(err.filter(|e| !e.field.ends_with("name") && !e.field.ends_with("edge_group_id"))))
                    (form::text("Name", "name", &f.name, true, err.and_then(|e| e.about("name"))))
                    (form::select("Edge group", "edge_group", &options, &f.edge_group, err.and_then(|e| e.about("edge_group_id"))))
                    button type="submit" class="primary" { "Add site" }
                }
            }
            table {
                caption { (sites.len()) " sites" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Edge group" } th scope="col" { "Number plan" } th scope="col" { "Call patterns" } th scope="col" { "Phones" } } }
                tbody {
                    @for s in &sites {
                        tr {
                            th scope="row" { (s.name) }
                            td { code { (s.id) } }
                            td { (group_names.get(s.edge_group_id.as_str()).copied().unwrap_or(s.edge_group_id.as_str())) }
                            td { (s.number_plan) }
                            td { (s.call_patterns.join(", ")) }
                            td { a href={ "/phones?site=" (form::encode(&s.id)) } { "Phones of " (s.name) } }
                        }
                    }
                }
            }
        },
    );
    let status = err.map_or(axum::http::StatusCode::OK, FormError::status_code);
    Ok((status, page).into_response())
}

async fn groups(c: &Console) -> Result<Vec<pb::EdgeGroup>, Problem> {
    let core = c.api.core().clone();
    Ok(paging::read_all("edge groups", |t| {
        let core = core.clone();
        async move { core.list_edge_groups(1000, &t).await }
    })
    .await?)
}

/// `GET /sites`.
pub async fn sites(State(c): State<Console>, ctx: Ctx) -> Result<Response, Problem> {
    sites_page(&c, &ctx, &SiteForm::default(), None).await
}

/// The Add site form.
#[derive(Debug, Default, Deserialize)]
pub struct SiteForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    edge_group: String,
}

/// `POST /sites`.
pub async fn create_site(
    State(c): State<Console>,
    ctx: Ctx,
    Form(f): Form<SiteForm>,
) -> Result<Response, Problem> {
    ctx.check_csrf(&f.csrf)?;
    allow(&c, &ctx, Permission::All)?;
    let site = pb::Site {
        id: shapes::slug(&f.name),
        name: f.name.trim().to_owned(),
        edge_group_id: f.edge_group.clone(),
        ..Default::default()
    };
    match c.api.core().create_site(site).await {
        Ok(s) => {
            c.record(&ctx, "create site", &s.id, "ok");
            Ok(Redirect::to("/sites").into_response())
        }
        Err(e) => {
            c.record(&ctx, "create site", &f.name, &e.to_string());
            sites_page(&c, &ctx, &f, Some(&FormError::from(e))).await
        }
    }
}

/// An edge group's members, one per line: `node-id udp=host:port tcp=... tls=... wss=...`.
pub fn parse_edges(text: &str) -> Result<Vec<pb::Edge>, FormError> {
    let bad = |line: usize, why: String| FormError {
        status: 400,
        field: "edges".into(),
        message: format!("line {line}: {why}"),
    };
    let mut edges = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut words = line.split_whitespace();
        let node = words.next().unwrap_or_default();
        let mut a = pb::SipAddresses::default();
        for w in words {
            let (t, addr) = w
                .split_once('=')
                .ok_or_else(|| bad(i + 1, format!("'{w}' is not transport=host:port")))?;
            let slot = match t {
                "udp" => &mut a.udp,
                "tcp" => &mut a.tcp,
                "tls" => &mut a.tls,
                "ws" => &mut a.ws,
                "wss" => &mut a.wss,
                _ => {
                    return Err(bad(
                        i + 1,
                        format!("unknown transport '{t}' (udp, tcp, tls, ws, wss)"),
                    ));
                }
            };
            *slot = addr.to_owned();
        }
        edges.push(pb::Edge {
            node_id: node.to_owned(),
            addresses: Some(a),
        });
    }
    Ok(edges)
}

fn edges_text(edges: &[pb::Edge]) -> String {
    edges
        .iter()
        .map(|e| {
            let a = e.addresses.clone().unwrap_or_default();
            let mut line = e.node_id.clone();
            for (t, v) in [
                ("udp", &a.udp),
                ("tcp", &a.tcp),
                ("tls", &a.tls),
                ("ws", &a.ws),
                ("wss", &a.wss),
            ] {
                if !v.is_empty() {
                    line.push_str(&format!(" {t}={v}"));
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn groups_page(
    c: &Console,
    ctx: &Ctx,
    f: &GroupForm,
    err: Option<&FormError>,
) -> Result<Response, Problem> {
    let groups = groups(c).await?;
    let up = crate::rest::edge_groups::edges_up(&c.api).await?;
    let page = layout::page(
        Some(ctx),
        "Edge groups",
        "/edge-groups",
        html! {
            @if ctx.can_all {
                form class="card" method="post" action="/edge-groups" {
                    h2 { "Add an edge group" }
                    (form::csrf(ctx))
                    (form::banner(err.filter(|e| !e.field.ends_with("name") && !e.field.contains("edges"))))
                    (form::text("Name", "name", &f.name, true, err.and_then(|e| e.about("name"))))
                    div class="field" {
                        label for="f-edges" { "Edges, one per line: node id, then transport=host:port" }
                        textarea id="f-edges" name="edges" rows="3" required aria-describedby="edges-help"
                            aria-invalid=[err.filter(|e| e.field.contains("edges")).map(|_| "true")] { (f.edges) }
                        p class="help" id="edges-help" { "e.g. " code { "edge-1 udp=10.0.0.5:5060 tcp=10.0.0.5:5060" } }
                        @if let Some(e) = err.filter(|e| e.field.contains("edges")) { p class="field-error" { (e.message) } }
                    }
                    button type="submit" class="primary" { "Add edge group" }
                }
            }
            @for g in &groups {
                section class="card" aria-labelledby={ "g-" (g.id) } {
                    h2 id={ "g-" (g.id) } { (g.name) " " small { code { (g.id) } } }
                    table {
                        thead { tr { th scope="col" { "Edge" } th scope="col" { "State" } th scope="col" { "Addresses" } } }
                        tbody {
                            @for e in &g.edges {
                                tr {
                                    th scope="row" { (e.node_id) }
                                    td { @if up.contains(&e.node_id) { span class="badge st-operational" { "up" } } @else { span class="badge st-offline" { "down" } } }
                                    td { code { (edges_text(std::slice::from_ref(e)).trim_start_matches(e.node_id.as_str()).trim()) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    );
    let status = err.map_or(axum::http::StatusCode::OK, FormError::status_code);
    Ok((status, page).into_response())
}

/// `GET /edge-groups`.
pub async fn edge_groups(State(c): State<Console>, ctx: Ctx) -> Result<Response, Problem> {
    groups_page(&c, &ctx, &GroupForm::default(), None).await
}

/// The Add edge group form.
#[derive(Debug, Default, Deserialize)]
pub struct GroupForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    edges: String,
}

/// `POST /edge-groups`.
pub async fn create_edge_group(
    State(c): State<Console>,
    ctx: Ctx,
    Form(f): Form<GroupForm>,
) -> Result<Response, Problem> {
    ctx.check_csrf(&f.csrf)?;
    allow(&c, &ctx, Permission::All)?;
    let edges = match parse_edges(&f.edges) {
        Ok(e) => e,
        Err(e) => return groups_page(&c, &ctx, &f, Some(&e)).await,
    };
    let g = pb::EdgeGroup {
        id: shapes::slug(&f.name),
        name: f.name.trim().to_owned(),
        edges,
        version: 0,
    };
    match c.api.core().create_edge_group(g).await {
        Ok(g) => {
            c.record(&ctx, "create edge group", &g.id, "ok");
            Ok(Redirect::to("/edge-groups").into_response())
        }
        Err(e) => {
            c.record(&ctx, "create edge group", &f.name, &e.to_string());
            groups_page(&c, &ctx, &f, Some(&FormError::from(e))).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_read_one_per_line() {
        let e = parse_edges("edge-1 udp=10.0.0.5:5060 tcp=10.0.0.5:5061\n\n  edge-2 wss=h:443 ")
            .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].node_id, "edge-1");
        assert_eq!(e[0].addresses.as_ref().unwrap().tcp, "10.0.0.5:5061");
        assert_eq!(e[1].addresses.as_ref().unwrap().wss, "h:443");
        assert_eq!(
            edges_text(&e),
            "edge-1 udp=10.0.0.5:5060 tcp=10.0.0.5:5061\nedge-2 wss=h:443"
        );
        for (bad, why) in [
            ("edge-1 udp", "not transport=host:port"),
            ("edge-1 sctp=h:1", "unknown transport"),
        ] {
            let err = parse_edges(bad).unwrap_err();
            assert!(
                err.message.contains(why) && err.message.starts_with("line 1"),
                "{}",
                err.message
            );
        }
    }
}
