//! The Audit log page: the node's recent changes, newest first, with the token that made
//! each.

use axum::extract::State;
use maud::{Markup, html};

use super::{Console, Ctx, layout};
use crate::{audit::AuditLog, rest::shapes::rfc3339};

/// `GET /audit`.
pub async fn page(State(c): State<Console>, ctx: Ctx) -> Markup {
    let entries = c.audit().recent(AuditLog::CAPACITY);
    layout::page(
        Some(&ctx),
        "Audit log",
        "/audit",
        html! {
            p class="help" { "Changes asked of this node through the console, the REST API and gRPC (the last " (AuditLog::CAPACITY) "), newest first. Every node also writes them to its log as " code { "audit" } " events." }
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Via" } th scope="col" { "What" } th scope="col" { "Object" } th scope="col" { "Outcome" } } }
                tbody {
                    @for e in &entries {
                        tr { td { (rfc3339(e.at_ms)) } td { (e.who) } td { (e.via) } td { (e.action) } td { code { (e.object) } } td { (e.outcome) } }
                    }
                }
            }
        },
    )
}
