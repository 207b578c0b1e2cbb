//! `dialtonectl base-settings`.

use clap::{Args, Subcommand};

use super::{DeleteArgs, all_pages, changed, parse_settings};
use dialtone_proto::config::v1 as pb;

use crate::{
    Client,
    output::{Format, enum_name, json, table},
    refuse::OrRefuse,
};

#[derive(Subcommand, Debug)]
pub enum BaseCmd {
    /// Show every meta-base's defaults.
    Templates,
    /// Create a profile.
    Create(BaseArgs),
    /// Replace a profile's name and settings.
    Update(BaseArgs),
    /// Show one.
    Get { id: String },
    /// What a desktop softphone of this profile does with these audio devices: which
    /// microphone and speaker it uses, whether it answers by itself, rings or rejects
    /// incoming calls, and whether it may place calls (the same rules the softphones run).
    Explain {
        /// Profile id.
        id: String,
        /// A microphone the system lists, in the system's order (repeat).
        #[arg(long = "microphone")]
        inputs: Vec<String>,
        /// A speaker the system lists, in the system's order (repeat).
        #[arg(long = "speaker")]
        outputs: Vec<String>,
    },
    /// List all.
    List,
    /// Delete (refused while phones use it).
    Delete(DeleteArgs),
    /// Move phones from one profile to another, of another meta-base too (a model upgrade:
    /// the settings both share carry over); --dry-run shows per phone each setting that
    /// changes, falls back to the target's default (defaulted) or is dropped.
    Migrate {
        /// Profile the phones use now.
        #[arg(long)]
        from: String,
        /// Profile to move them to.
        #[arg(long)]
        to: String,
        /// Only these phones (repeat); default: every phone of --from.
        #[arg(long = "phone")]
        phones: Vec<String>,
        /// Show what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args, Debug)]
pub struct BaseArgs {
    /// Profile id.
    id: String,
    /// Meta-base: generic-sip, webrtc, poly-vvx, poly-edge-e, yealink, audiocodes, desktop-softphone.
    #[arg(long)]
    meta_base: String,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// Settings as JSON (PhoneSettings fields, e.g. '{"sip_dscp": 26, "codecs": ["audio/opus"]}').
    #[arg(long, default_value = "{}")]
    settings: String,
    /// Expected version (update; 0: current).
    #[arg(long, default_value_t = 0)]
    version: i64,
    /// Sets the profile's Digest Authentication password (`digest_auth_password`: what
    /// answers a phone's challenges, and the phones' administrative password) to a new
    /// random one, printed once the write succeeded; `base-settings get` shows it again.
    /// With update, --settings still gives the profile's whole settings.
    #[arg(long)]
    generate_digest_password: bool,
}

/// A random password of 24 letters and digits (no look-alikes).
fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn base_from(a: BaseArgs) -> anyhow::Result<pb::BaseSettings> {
    let meta = pb::MetaBase::from_str_name(&format!(
        "META_BASE_{}",
        a.meta_base.to_ascii_uppercase().replace('-', "_")
    ))
    .or_refuse(|| format!("invalid --meta-base '{}'", a.meta_base))?;
    Ok(pb::BaseSettings {
        id: a.id,
        name: a.name,
        meta_base: meta as i32,
        settings: Some({
            let mut s = parse_settings(&a.settings, "--settings")?;
            if a.generate_digest_password {
                // Printed once the server took it (`print_generated`).
                s.digest_auth_password = Some(random_password());
            }
            s
        }),
        version: a.version,
    })
}

/// Creates (or replaces) the profile `a` describes; prints a generated Digest
/// Authentication password once the write succeeded.
async fn write(c: &mut Client, a: BaseArgs, create: bool) -> anyhow::Result<pb::BaseSettings> {
    let generated = a.generate_digest_password;
    let sent = base_from(a)?;
    let written = if create {
        let req = pb::CreateBaseSettingsRequest {
            base_settings: Some(sent.clone()),
        };
        c.create_base_settings(req).await?
    } else {
        let update_mask = changed!(c, get_base_settings, "BaseSettings", sent);
        let req = pb::UpdateBaseSettingsRequest {
            base_settings: Some(sent.clone()),
            update_mask,
        };
        c.update_base_settings(req).await?
    };
    let password = sent.settings.and_then(|s| s.digest_auth_password);
    if let Some(p) = password.filter(|_| generated) {
        eprintln!("digest authentication password: {p}");
    }
    Ok(written.into_inner())
}

pub async fn run(c: &mut Client, out: Format, cmd: BaseCmd) -> anyhow::Result<()> {
    let show = |items: Vec<pb::BaseSettings>| -> anyhow::Result<()> {
        match out {
            Format::Json => json(&items),
            Format::Table => {
                let rows = items
                    .iter()
                    .map(|b| {
                        let meta = pb::MetaBase::try_from(b.meta_base)
                            .map(|m| enum_name(m.as_str_name(), "META_BASE_"))
                            .unwrap_or_default();
                        vec![b.id.clone(), b.name.clone(), meta, b.version.to_string()]
                    })
                    .collect();
                table(&["id", "name", "meta-base", "version"], rows);
                Ok(())
            }
        }
    };
    match cmd {
        BaseCmd::Templates => {
            let r = c
                .get_templates(pb::GetTemplatesRequest {})
                .await?
                .into_inner();
            json(&r)
        }
        BaseCmd::Create(a) => show(vec![write(c, a, true).await?]),
        BaseCmd::Update(a) => show(vec![write(c, a, false).await?]),
        BaseCmd::Get { id } => {
            let b = c
                .get_base_settings(pb::GetRequest { id })
                .await?
                .into_inner();
            if out == Format::Table {
                json(&b)
            } else {
                show(vec![b])
            }
        }
        BaseCmd::Explain {
            id,
            inputs,
            outputs,
        } => {
            let b = c
                .get_base_settings(pb::GetRequest { id })
                .await?
                .into_inner();
            let devices = dialtone_softphone::Devices { inputs, outputs };
            let e = super::explain::explain(&b, devices)?;
            match out {
                Format::Json => json(&e),
                Format::Table => {
                    let row = vec![
                        e.input.unwrap_or_else(|| "-".into()),
                        e.output.unwrap_or_else(|| "-".into()),
                        e.headset_present.to_string(),
                        e.should_answer.into(),
                        e.incoming,
                        e.outgoing_allowed.to_string(),
                    ];
                    let head = ["input", "output", "headset", "should-answer", "incoming"];
                    table(&[&head[..], &["outgoing"]].concat(), vec![row]);
                    Ok(())
                }
            }
        }
        BaseCmd::List => show(all_pages!(c, list_base_settings, base_settings)),
        BaseCmd::Delete(d) => {
            c.delete_base_settings(pb::DeleteRequest {
                id: d.id.clone(),
                version: d.version,
            })
            .await?;
            println!("base settings {} deleted", d.id);
            Ok(())
        }
        BaseCmd::Migrate {
            from,
            to,
            phones,
            dry_run,
        } => {
            let req = pb::MigrateBaseSettingsRequest {
                filter: Some(pb::PhoneFilter {
                    base_settings_id: from,
                    ..Default::default()
                }),
                phone_ids: phones,
                to_base_settings_id: to,
                dry_run,
            };
            let r = c.migrate_base_settings(req).await?.into_inner();
            if out == Format::Json {
                return json(&r);
            }
            let mut rows = Vec::new();
            for p in &r.phones {
                let outcome = pb::MigrationOutcome::try_from(p.outcome)
                    .map(|o| enum_name(o.as_str_name(), "MIGRATION_OUTCOME_"))
                    .unwrap_or_default();
                let what = if p.reason.is_empty() {
                    format!("{} settings change", p.changes.len())
                } else {
                    p.reason.clone()
                };
                rows.push(vec![
                    p.phone_id.clone(),
                    p.phone_name.clone(),
                    outcome,
                    what,
                ]);
                for ch in &p.changes {
                    // Why: the target sets it, its meta-base's default applies, or the
                    // target meta-base has no such setting.
                    let why = enum_name(ch.kind().as_str_name(), "SETTING_CHANGE_KIND_");
                    rows.push(vec![
                        String::new(),
                        format!("  {}", ch.path),
                        why,
                        format!("{} -> {}", ch.before, ch.after),
                    ]);
                }
            }
            table(&["phone", "name", "outcome", "detail"], rows);
            println!(
                "{} phones{}",
                r.phones.len(),
                if r.dry_run {
                    " (dry run: nothing written)"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}
