//! `dialtonectl users`.

use clap::{Args, Subcommand};

use super::{DeleteArgs, all_pages, changed, phones::parse_allow};
use dialtone_proto::config::v1 as pb;

use crate::{
    Client,
    output::{Format, json, table},
};

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user. Assign phones to it with `phones update ID --assign user:USER_ID`:
    /// they all ring when its extension is dialled.
    Create(UserArgs),
    /// Replace (same flags as create).
    Update(UserArgs),
    /// Show one.
    Get { id: String },
    /// List all.
    List,
    /// Delete (refused while phones are assigned to it).
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
pub struct UserArgs {
    /// User id: letters, digits, '.', '_', '-', '@' (an e-mail address will do).
    id: String,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// The user's site (needed for an extension and for companion phones).
    #[arg(long, default_value = "")]
    site: String,
    /// Extension within the site (2-10 digits, unique among the site's phones and users).
    #[arg(long, default_value = "")]
    extension: String,
    /// Caller id of the user's outbound calls, E.164 (empty: the site's default).
    #[arg(long, default_value = "")]
    caller_id: String,
    /// A call pattern the user's phones may use instead of the site's (repeat).
    #[arg(long = "call-pattern")]
    call_patterns: Vec<String>,
    /// What the user's phones may call instead of the site's restrictions: external,
    /// international, premium or none (repeat; none given or `inherit`: the site's).
    #[arg(long = "allow")]
    allow: Vec<String>,
    /// Expected version (update; 0: current).
    #[arg(long, default_value_t = 0)]
    version: i64,
}

fn user_from(a: UserArgs) -> anyhow::Result<pb::User> {
    let call_restrictions = if a.allow.is_empty() {
        None
    } else {
        parse_allow(&a.allow)?
    };
    Ok(pb::User {
        id: a.id,
        name: a.name,
        site_id: a.site,
        extension: a.extension,
        outbound_caller_id: a.caller_id,
        call_restrictions,
        call_patterns: a.call_patterns,
        version: a.version,
    })
}

/// What a user may call, as `--allow` spells it.
fn allowed(r: Option<&pb::CallRestrictions>) -> String {
    let Some(r) = r else {
        return "site's".into();
    };
    let allowed: Vec<&str> = [
        (r.allow_external, "external"),
        (r.allow_international, "international"),
        (r.allow_premium, "premium"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if allowed.is_empty() {
        "none".into()
    } else {
        allowed.join(",")
    }
}

pub async fn run(c: &mut Client, out: Format, cmd: UserCmd) -> anyhow::Result<()> {
    let show = |users: Vec<pb::User>| -> anyhow::Result<()> {
        match out {
            Format::Json => json(&users),
            Format::Table => {
                let rows = users
                    .iter()
                    .map(|u| {
                        vec![
                            u.id.clone(),
                            u.name.clone(),
                            u.site_id.clone(),
                            u.extension.clone(),
                            u.outbound_caller_id.clone(),
                            allowed(u.call_restrictions.as_ref()),
                            u.call_patterns.join(","),
                            u.version.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "id",
                        "name",
                        "site",
                        "extension",
                        "caller id",
                        "allow",
                        "call patterns",
                        "version",
                    ],
                    rows,
                );
                Ok(())
            }
        }
    };
    match cmd {
        UserCmd::Create(a) => show(vec![
            c.create_user(pb::CreateUserRequest {
                user: Some(user_from(a)?),
            })
            .await?
            .into_inner(),
        ]),
        UserCmd::Update(a) => {
            let new = user_from(a)?;
            let update_mask = changed!(c, get_user, "User", new);
            show(vec![
                c.update_user(pb::UpdateUserRequest {
                    user: Some(new),
                    update_mask,
                })
                .await?
                .into_inner(),
            ])
        }
        UserCmd::Get { id } => {
            let item = c.get_user(pb::GetRequest { id }).await?.into_inner();
            if out == Format::Json {
                json(&item)
            } else {
                show(vec![item])
            }
        }
        UserCmd::List => show(all_pages!(c, list_users, users)),
        UserCmd::Delete(d) => {
            c.delete_user(pb::DeleteRequest {
                id: d.id.clone(),
                version: d.version,
            })
            .await?;
            println!("user {} deleted", d.id);
            Ok(())
        }
    }
}
