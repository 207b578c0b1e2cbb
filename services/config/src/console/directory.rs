//! Users (listed, added), trunks and media servers (listed): the pages for what the
//! config role holds beside phones, as admins manage them in `dialtonectl` and gRPC.

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
    layout, phones,
};
use crate::rest::{paging, shapes};

async fn users_page(
    c: &Console,
    ctx: &Ctx,
    f: &UserForm,
    err: Option<&FormError>,
) -> Result<Response, Problem> {
    let core = c.api.core().clone();
    let users = paging::read_all("users", |t| {
        let core = core.clone();
        async move { core.list_users(1000, &t).await }
    })
    .await?;
    let (sites, _) = phones::choices(c).await?;
    let about = |f: &str| err.and_then(|e| e.about(f));
    let page = layout::page(
        Some(ctx),
        "Users",
        "/users",
        html! {
            @if ctx.can_all {
                form class="card" method="post" action="/users" {
                    h2 { "Add a user" }
                    (form::csrf(ctx))
                    (form::banner(err.filter(|e| !["name", "site_id", "extension"].iter().any(|f| e.field.ends_with(f)))))
                    (form::text("Name", "name", &f.name, true, about("name")))
                    (form::select("Site", "site", &sites, &f.site, about("site_id")))
                    (form::text("Extension (2-10 digits)", "extension", &f.extension, false, about("extension")))
                    button type="submit" class="primary" { "Add user" }
                }
            }
            table {
                caption { (users.len()) " users" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Site" } th scope="col" { "Extension" } th scope="col" { "Caller id" } } }
                tbody {
                    @for u in &users {
                        tr {
                            th scope="row" { (u.name) }
                            td { code { (u.id) } }
                            td { (sites.iter().find(|(id, _)| *id == u.site_id).map_or(u.site_id.as_str(), |(_, n)| n.as_str())) }
                            td { (u.extension) }
                            td { (u.outbound_caller_id) }
                        }
                    }
                }
            }
        },
    );
    let status = err.map_or(axum::http::StatusCode::OK, FormError::status_code);
    Ok((status, page).into_response())
}

/// `GET /users`.
pub async fn users(State(c): State<Console>, ctx: Ctx) -> Result<Response, Problem> {
    users_page(&c, &ctx, &UserForm::default(), None).await
}

/// The Add user form.
#[derive(Debug, Default, Deserialize)]
pub struct UserForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    extension: String,
}

/// `POST /users`.
pub async fn create_user(
    State(c): State<Console>,
    ctx: Ctx,
    Form(f): Form<UserForm>,
) -> Result<Response, Problem> {
    ctx.check_csrf(&f.csrf)?;
    allow(&c, &ctx, Permission::All)?;
    let u = pb::User {
        id: shapes::slug(&f.name),
        name: f.name.trim().to_owned(),
        site_id: f.site.clone(),
        extension: f.extension.trim().to_owned(),
        ..Default::default()
    };
    match c.api.core().create_user(u).await {
        Ok(u) => {
            c.record(&ctx, "create user", &u.id, "ok");
            Ok(Redirect::to("/users").into_response())
        }
        Err(e) => {
            c.record(&ctx, "create user", &f.name, &e.to_string());
            users_page(&c, &ctx, &f, Some(&FormError::from(e))).await
        }
    }
}

/// `GET /trunks`.
pub async fn trunks(State(c): State<Console>, ctx: Ctx) -> Result<Response, Problem> {
    let core = c.api.core().clone();
    let trunks = paging::read_all("trunks", |t| {
        let core = core.clone();
        async move { core.list_trunks(1000, &t).await }
    })
    .await?;
    Ok(layout::page(
        Some(&ctx),
        "Trunks",
        "/trunks",
        html! {
            p class="help" { "Carrier trunks: add and change them with " code { "dialtonectl trunks" } " (their passwords are write-only)." }
            table {
                caption { (trunks.len()) " trunks" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Peer" } th scope="col" { "Targets" } th scope="col" { "DIDs" } th scope="col" { "Registers" } th scope="col" { "Media" } } }
                tbody {
                    @for t in &trunks {
                        tr {
                            th scope="row" { (t.name) " " small { code { (t.id) } } }
                            td { (t.peer_id) }
                            td { @for (i, x) in t.targets.iter().enumerate() { @if i > 0 { ", " } code { (x.address) } " " (x.transport) } }
                            td { @for (i, d) in t.dids.iter().enumerate() { @if i > 0 { ", " } code { (d.numbers) } } }
                            td { (t.registration.as_ref().map_or("no".to_owned(), |r| format!("as {} at {}", r.user, r.registrar))) }
                            td { @if t.anchor_media { "anchored" } @else { "direct" } }
                        }
                    }
                }
            }
        },
    )
    .into_response())
}

/// `GET /media-servers`.
pub async fn media_servers(State(c): State<Console>, ctx: Ctx) -> Result<Response, Problem> {
    let core = c.api.core().clone();
    let servers = paging::read_all("media servers", |t| {
        let core = core.clone();
        async move { core.list_media_servers(1000, &t).await }
    })
    .await?;
    Ok(layout::page(
        Some(&ctx),
        "Media servers",
        "/media-servers",
        html! {
            p class="help" { "rtpengine instances the edges anchor calls at: add and change them with " code { "dialtonectl media-servers" } "." }
            table {
                caption { (servers.len()) " media servers" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Region" } th scope="col" { "ng address" } th scope="col" { "Weight" } th scope="col" { "TURN" } } }
                tbody {
                    @for m in &servers {
                        tr {
                            th scope="row" { (m.name) " " small { code { (m.id) } } }
                            td { (m.region) }
                            td { code { (m.ng_address) } }
                            td { (m.weight) }
                            td { @for (i, u) in m.turn_urls.iter().enumerate() { @if i > 0 { ", " } code { (u) } } }
                        }
                    }
                }
            }
        },
    )
    .into_response())
}
