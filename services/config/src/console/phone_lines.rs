//! A phone's lines, added and removed in the browser through the same `UpdatePhone` as
//! gRPC and REST: a new line gets its SIP user (the site's prefix and the admin's suffix,
//! or a generated one) and a password shown once on the phone's page; a removed line's
//! credentials stop working at once. Both at the version the page was read.

use axum::{
    Form,
    extract::{Path, State},
    response::Response,
};
use dialtone_auth::Permission;
use dialtone_proto::config::v1 as pb;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Console, Ctx, Problem, context::allow, form};

/// The lines form's fields.
#[derive(Debug, Deserialize)]
pub struct LinesForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    op: String,
    #[serde(default)]
    version: i64,
    #[serde(default)]
    label: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    line: usize,
}

/// `lines` after the form's change: a line added (`add`, with its label and SIP user
/// suffix) or line `line` removed (`remove`; a phone keeps at least one).
pub fn changed(mut lines: Vec<pb::Line>, f: &LinesForm) -> Result<Vec<pb::Line>, Problem> {
    match f.op.as_str() {
        "add" => lines.push(pb::Line {
            sip_user: f.user.trim().to_owned(),
            display_name: f.label.trim().to_owned(),
            ..Default::default()
        }),
        "remove" if lines.len() <= 1 => {
            return Err(Problem::new(
                400,
                "a phone keeps at least one line: delete the phone instead",
            ));
        }
        "remove" if f.line < lines.len() => {
            lines.remove(f.line);
        }
        "remove" => return Err(Problem::new(400, "no such line: reload the page")),
        _ => return Err(Problem::new(400, "add or remove a line")),
    }
    Ok(lines)
}

/// `POST /phones/{id}/lines`.
pub async fn update(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<LinesForm>,
) -> Result<Response, Problem> {
    ctx.check_csrf(&f.csrf)?;
    allow(&c, &ctx, Permission::Edit)?;
    let mut p = c.api.core().get_phone(&id).await?;
    p.version = f.version;
    p.lines = changed(std::mem::take(&mut p.lines), &f)?;
    let action = if f.op == "add" {
        "add line"
    } else {
        "remove line"
    };
    super::phone_edit::save(&c, &ctx, action, p).await
}

/// A line's Remove button.
pub fn remove_button(ctx: &Ctx, p: &pb::Phone, line: usize) -> Markup {
    html! {
        form method="post" action={ "/phones/" (p.id) "/lines" } class="inline" {
            (form::csrf(ctx))
            input type="hidden" name="op" value="remove";
            input type="hidden" name="line" value=(line);
            input type="hidden" name="version" value=(p.version);
            button type="submit" aria-label={ "Remove line " (line + 1) }
                data-confirm="The line's registrations end and its password stops working. Remove it?" { "Remove" }
        }
    }
}

/// The Add line form.
pub fn add_form(ctx: &Ctx, p: &pb::Phone) -> Markup {
    html! {
        form method="post" action={ "/phones/" (p.id) "/lines" } class="inline" {
            (form::csrf(ctx))
            input type="hidden" name="op" value="add";
            input type="hidden" name="version" value=(p.version);
            (form::text("Line label", "label", "", false, None))
            (form::text("SIP user after the site's prefix (empty: generated)", "user", "", false, None))
            button type="submit" { "Add line" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(user: &str) -> pb::Line {
        pb::Line {
            sip_user: user.into(),
            ..Default::default()
        }
    }

    fn form(op: &str, line: usize) -> LinesForm {
        LinesForm {
            csrf: String::new(),
            op: op.into(),
            version: 1,
            label: " Front desk ".into(),
            user: " 204 ".into(),
            line,
        }
    }

    #[test]
    fn lines_are_added_and_removed() {
        let two = vec![line("a"), line("b")];
        let added = changed(two.clone(), &form("add", 0)).unwrap();
        assert_eq!(added.len(), 3);
        assert_eq!(
            (added[2].sip_user.as_str(), added[2].display_name.as_str()),
            ("204", "Front desk")
        );
        let removed = changed(two.clone(), &form("remove", 0)).unwrap();
        assert_eq!(removed, vec![line("b")]);
        for (lines, f, why) in [
            (vec![line("a")], form("remove", 0), "at least one line"),
            (two.clone(), form("remove", 2), "no such line"),
            (two, form("rename", 0), "add or remove"),
        ] {
            let e = changed(lines, &f).unwrap_err();
            assert!(e.message.contains(why), "{}", e.message);
        }
    }
}
