//! Seeding a node with an edge group, a site, a profile and phones whose passwords the
//! test keeps (the API shows them once, at creation).

use dialtone_proto::config::v1::{self as pb};

use crate::ConfigClient;

/// A phone the test can register.
#[derive(Clone, Debug)]
pub struct Seeded {
    pub phone_id: String,
    pub sip_user: String,
    pub password: String,
    pub version: i64,
}

/// Creates edge group `eg`, site `hq` and profile `desk` (generic SIP, with `settings`).
pub async fn seed_site(c: &mut ConfigClient, settings: pb::PhoneSettings) -> anyhow::Result<()> {
    c.create_edge_group(pb::CreateEdgeGroupRequest {
        edge_group: Some(pb::EdgeGroup {
            id: "eg".into(),
            name: "Edges".into(),
            edges: vec![pb::Edge {
                node_id: "solo".into(),
                addresses: Some(pb::SipAddresses {
                    udp: "127.0.0.1:5060".into(),
                    ..Default::default()
                }),
            }],
            version: 0,
        }),
    })
    .await?;
    c.create_site(pb::CreateSiteRequest {
        site: Some(pb::Site {
            id: "hq".into(),
            name: "HQ".into(),
            edge_group_id: "eg".into(),
            ..Default::default()
        }),
    })
    .await?;
    c.create_base_settings(pb::CreateBaseSettingsRequest {
        base_settings: Some(pb::BaseSettings {
            id: "desk".into(),
            name: "Desk".into(),
            meta_base: pb::MetaBase::GenericSip as i32,
            settings: Some(settings),
            version: 0,
        }),
    })
    .await?;
    Ok(())
}

/// Creates one unmanaged phone with one line named `line` (after the site prefix).
pub async fn add_phone(c: &mut ConfigClient, name: &str, line: &str) -> anyhow::Result<Seeded> {
    let r = c
        .create_phone(pb::CreatePhoneRequest {
            phone: Some(pb::Phone {
                name: name.into(),
                kind: pb::PhoneKind::Unmanaged as i32,
                site_id: "hq".into(),
                base_settings_id: "desk".into(),
                lines: vec![pb::Line {
                    sip_user: line.into(),
                    display_name: name.into(),
                    credentials: None,
                }],
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let phone = r.phone.unwrap_or_default();
    let cred = r.credentials.first().cloned().unwrap_or_default();
    Ok(Seeded {
        phone_id: phone.id,
        sip_user: cred.sip_user,
        password: cred.password,
        version: phone.version,
    })
}
