//! `dialtonectl trunks`.

use anyhow::Context;

use clap::{Args, Subcommand};

use super::{DeleteArgs, all_pages, changed};
use dialtone_proto::config::v1 as pb;

use crate::{
    Client,
    output::{Format, json, table},
    refuse::{OrRefuse, refuse},
};

#[derive(Subcommand, Debug)]
pub enum TrunkCmd {
    /// Create a carrier trunk: calls a site routes to it go to its targets, and calls its
    /// peer sends for its DIDs reach the phones they name. Sites name it in their
    /// outbound routes (`sites update ID --route national=TRUNK`).
    Create(TrunkArgs),
    /// Replace (same flags as create).
    Update(TrunkArgs),
    /// Show one.
    Get { id: String },
    /// List all.
    List,
    /// Delete (refused while a site routes calls to it).
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
pub struct TrunkArgs {
    /// Trunk id (lowercase letters, digits, '-').
    id: String,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// The trusted peer the carrier's requests come from (`peers create`).
    #[arg(long)]
    peer: String,
    /// Where calls go, in order (repeat): `IP:PORT` over UDP, `tcp:IP:PORT`, or
    /// `tls:IP:PORT` with the name the carrier's certificate carries after a `#`
    /// (`tls:198.51.100.7:5061#sbc.carrier.example`; default: the IP address).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Seconds between OPTIONS keep-alives to each target (0: 30).
    #[arg(long, default_value_t = 0)]
    options_interval: u32,
    /// Ask the carrier to withhold the caller id from called parties (`Privacy: id`).
    #[arg(long)]
    privacy: bool,
    /// Anchor the media of calls out through it and in from its carrier at a media server
    /// of the site (for a carrier that takes media only from a fixed address; unless the
    /// site's media anchoring is never). WebRTC phones' calls are anchored anyway.
    #[arg(long)]
    anchor_media: bool,
    /// A number (or range) the carrier delivers, and who answers it:
    /// `+15551230000=phone:ID`, `+15551230000-+15551230099=ext:SITE/EXTENSION` or
    /// `+15551239999=user:ID` (repeat).
    #[arg(long = "did")]
    dids: Vec<String>,
    /// User name the carrier challenges this trunk's calls with (digest, 401/407).
    #[arg(long)]
    auth_user: Option<String>,
    /// The carrier password: read from this file (first line), else from the
    /// DIALTONE_TRUNK_PASSWORD environment variable, so it stays out of shell history and
    /// process lists. On update, give neither to keep the stored one.
    #[arg(long, value_name = "FILE", requires = "auth_user")]
    auth_password_file: Option<std::path::PathBuf>,
    /// The realm the credentials answer (default: any the carrier names).
    #[arg(long, requires = "auth_user")]
    auth_realm: Option<String>,
    /// Register every edge at the carrier (calls then come to the registered contact and
    /// are routed by the DID in their To header).
    #[arg(long)]
    register: bool,
    /// Address-of-record user of the registration (default: --auth-user).
    #[arg(long, requires = "register")]
    register_user: Option<String>,
    /// Domain of the registration (default: the registrar's address).
    #[arg(long, requires = "register")]
    register_domain: Option<String>,
    /// IP:PORT of the carrier's registrar (default: the first --target).
    #[arg(long, requires = "register")]
    registrar: Option<String>,
    /// Seconds of registration asked for (60-86400; 0: 3600).
    #[arg(long, default_value_t = 0, requires = "register")]
    register_expires: u32,
    /// Expected version (update; 0: current).
    #[arg(long, default_value_t = 0)]
    version: i64,
}

/// `NUMBERS=KIND:TARGET` as a DID entry.
fn parse_did(d: &str) -> anyhow::Result<pb::Did> {
    let (numbers, target) = d.split_once('=').or_refuse(|| {
        format!("invalid --did '{d}': use NUMBERS=phone:ID, user:ID or ext:SITE/EXTENSION")
    })?;
    let target = match target.split_once(':') {
        Some(("phone", id)) => pb::did::Target::PhoneId(id.into()),
        Some(("user", id)) => pb::did::Target::UserId(id.into()),
        Some(("ext", e)) => pb::did::Target::Extension(e.into()),
        _ => refuse!("invalid --did '{d}': the target is phone:ID, user:ID or ext:SITE/EXTENSION"),
    };
    Ok(pb::Did {
        numbers: numbers.into(),
        target: Some(target),
    })
}

fn trunk_from(a: TrunkArgs) -> anyhow::Result<pb::Trunk> {
    let password = match &a.auth_password_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --auth-password-file {}", path.display()))?
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
        None => std::env::var("DIALTONE_TRUNK_PASSWORD").unwrap_or_default(),
    };
    let credentials = a.auth_user.map(|username| pb::TrunkCredentials {
        username,
        password,
        realm: a.auth_realm.unwrap_or_default(),
        has_password: false,
    });
    let registration = a.register.then(|| pb::TrunkRegistration {
        user: a.register_user.unwrap_or_default(),
        domain: a.register_domain.unwrap_or_default(),
        registrar: a.registrar.unwrap_or_default(),
        expires_s: a.register_expires,
    });
    Ok(pb::Trunk {
        id: a.id,
        name: a.name,
        peer_id: a.peer,
        targets: a.targets.iter().map(|t| parse_target(t)).collect(),
        options_interval_s: a.options_interval,
        privacy: a.privacy,
        anchor_media: a.anchor_media,
        dids: a
            .dids
            .iter()
            .map(|d| parse_did(d))
            .collect::<anyhow::Result<_>>()?,
        version: a.version,
        credentials,
        registration,
    })
}

/// `[udp:|tcp:|tls:]IP:PORT[#TLS_NAME]` as a target (the server checks the parts).
fn parse_target(t: &str) -> pb::TrunkTarget {
    let (transport, rest) = match t.split_once(':') {
        Some((scheme @ ("udp" | "tcp" | "tls"), rest)) => (scheme, rest),
        _ => ("udp", t),
    };
    let (address, tls_name) = rest.split_once('#').unwrap_or((rest, ""));
    pb::TrunkTarget {
        address: address.into(),
        transport: transport.into(),
        tls_name: tls_name.into(),
    }
}

/// A target as `--target` spells it.
fn target_text(t: &pb::TrunkTarget) -> String {
    let scheme = match t.transport.as_str() {
        "" | "udp" => String::new(),
        other => format!("{other}:"),
    };
    let name = if t.tls_name.is_empty() {
        String::new()
    } else {
        format!("#{}", t.tls_name)
    };
    format!("{scheme}{}{name}", t.address)
}

/// A DID entry as `--did` spells it.
fn did_text(d: &pb::Did) -> String {
    let target = match &d.target {
        Some(pb::did::Target::PhoneId(p)) => format!("phone:{p}"),
        Some(pb::did::Target::UserId(u)) => format!("user:{u}"),
        Some(pb::did::Target::Extension(e)) => format!("ext:{e}"),
        None => String::new(),
    };
    format!("{}={target}", d.numbers)
}

pub async fn run(c: &mut Client, out: Format, cmd: TrunkCmd) -> anyhow::Result<()> {
    let show = |trunks: Vec<pb::Trunk>| -> anyhow::Result<()> {
        match out {
            Format::Json => json(&trunks),
            Format::Table => {
                let rows = trunks
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            t.peer_id.clone(),
                            t.targets
                                .iter()
                                .map(target_text)
                                .collect::<Vec<_>>()
                                .join(","),
                            t.dids.iter().map(did_text).collect::<Vec<_>>().join(" "),
                            t.credentials
                                .as_ref()
                                .map(|c| c.username.clone())
                                .unwrap_or_default(),
                            if t.registration.is_some() {
                                "yes"
                            } else {
                                "no"
                            }
                            .into(),
                            t.version.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "id", "name", "peer", "targets", "dids", "auth", "register", "version",
                    ],
                    rows,
                );
                Ok(())
            }
        }
    };
    match cmd {
        TrunkCmd::Create(a) => show(vec![
            c.create_trunk(pb::CreateTrunkRequest {
                trunk: Some(trunk_from(a)?),
            })
            .await?
            .into_inner(),
        ]),
        TrunkCmd::Update(a) => {
            let new = trunk_from(a)?;
            let update_mask = changed!(c, get_trunk, "Trunk", new);
            show(vec![
                c.update_trunk(pb::UpdateTrunkRequest {
                    trunk: Some(new),
                    update_mask,
                })
                .await?
                .into_inner(),
            ])
        }
        TrunkCmd::Get { id } => {
            let item = c.get_trunk(pb::GetRequest { id }).await?.into_inner();
            if out == Format::Json {
                json(&item)
            } else {
                show(vec![item])
            }
        }
        TrunkCmd::List => show(all_pages!(c, list_trunks, trunks)),
        TrunkCmd::Delete(d) => {
            c.delete_trunk(pb::DeleteRequest {
                id: d.id.clone(),
                version: d.version,
            })
            .await?;
            println!("trunk {} deleted", d.id);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_target, target_text};

    #[test]
    fn targets_read_and_print_alike() {
        // (as typed, transport, address, TLS name)
        let cases = [
            ("198.51.100.7:5060", "udp", "198.51.100.7:5060", ""),
            ("tcp:198.51.100.7:5060", "tcp", "198.51.100.7:5060", ""),
            (
                "tls:198.51.100.7:5061#sbc.example",
                "tls",
                "198.51.100.7:5061",
                "sbc.example",
            ),
            ("tls:[2001:db8::1]:5061", "tls", "[2001:db8::1]:5061", ""),
            ("[2001:db8::1]:5060", "udp", "[2001:db8::1]:5060", ""),
        ];
        for (typed, transport, address, name) in cases {
            let t = parse_target(typed);
            assert_eq!(
                (
                    t.transport.as_str(),
                    t.address.as_str(),
                    t.tls_name.as_str()
                ),
                (transport, address, name),
                "{typed}"
            );
            let printed = target_text(&t);
            assert_eq!(parse_target(&printed), t, "{printed}");
        }
    }
}
