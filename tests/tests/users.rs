//! Users through the config API, on a real `dialtone` process: a user's extension shares
//! its site's uniqueness index with site-assigned phones; a companion phone may only name
//! a user that exists and has a site; a user with phones can neither be deleted nor leave
//! its site; a site with users cannot be deleted. Every refusal names the field or the
//! holder and changes nothing.

use dialtone_proto::config::v1 as pb;
use dialtone_tests::{ClusterSandbox, ConfigClient, fleet::import_csv};
use tonic::Code;

async fn embedded() -> (ClusterSandbox, ConfigClient) {
    let sb = ClusterSandbox::embedded().await.unwrap();
    let token = sb.nodes[0].admin_token();
    let mut c = sb.nodes[0].config_client(&token).await.unwrap();
    c.create_edge_group(pb::CreateEdgeGroupRequest {
        edge_group: Some(pb::EdgeGroup {
            id: "eg".into(),
            edges: vec![pb::Edge {
                node_id: "edge-a".into(),
                addresses: Some(pb::SipAddresses {
                    udp: "127.0.0.1:5060".into(),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    c.create_base_settings(pb::CreateBaseSettingsRequest {
        base_settings: Some(pb::BaseSettings {
            id: "desk".into(),
            meta_base: pb::MetaBase::GenericSip as i32,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    for site in ["hq", "branch"] {
        c.create_site(pb::CreateSiteRequest {
            site: Some(pb::Site {
                id: site.into(),
                edge_group_id: "eg".into(),
                number_plan: "nanp".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
    (sb, c)
}

fn user(id: &str, site: &str, extension: &str) -> pb::User {
    pb::User {
        id: id.into(),
        name: id.to_uppercase(),
        site_id: site.into(),
        extension: extension.into(),
        ..Default::default()
    }
}

fn phone(name: &str, mode: pb::assignment::Mode) -> pb::Phone {
    pb::Phone {
        name: name.into(),
        kind: pb::PhoneKind::Unmanaged as i32,
        site_id: "hq".into(),
        base_settings_id: "desk".into(),
        lines: vec![pb::Line {
            sip_user: name.to_lowercase().replace(' ', "-"),
            ..Default::default()
        }],
        assignment: Some(pb::Assignment { mode: Some(mode) }),
        ..Default::default()
    }
}

fn companion_of(user: &str) -> pb::assignment::Mode {
    pb::assignment::Mode::User(pb::UserAssignment {
        user_id: user.into(),
    })
}

fn at_extension(extension: &str) -> pb::assignment::Mode {
    pb::assignment::Mode::Site(pb::SiteAssignment {
        extension: extension.into(),
        ..Default::default()
    })
}

fn refused<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("refused");
    (s.code(), s.message().to_owned())
}

async fn create_user(c: &mut ConfigClient, u: pb::User) -> Result<pb::User, tonic::Status> {
    c.create_user(pb::CreateUserRequest { user: Some(u) })
        .await
        .map(|r| r.into_inner())
}

async fn create_phone(c: &mut ConfigClient, p: pb::Phone) -> Result<pb::Phone, tonic::Status> {
    c.create_phone(pb::CreatePhoneRequest { phone: Some(p) })
        .await
        .map(|r| r.into_inner().phone.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_share_extensions_with_phones_and_keep_their_companions_consistent() {
    let (_sb, mut c) = embedded().await;

    // Bad users are refused naming the field; a user needs a site for an extension.
    for (bad, field) in [
        (user("a/b", "hq", ""), "user.id"),
        (user("dave", "", "2001"), "user.extension"),
        (user("dave", "hq", "1"), "user.extension"),
        (
            pb::User {
                call_patterns: vec!["lunar".into()],
                ..user("dave", "hq", "")
            },
            "user.call_patterns[0]",
        ),
    ] {
        let e = create_user(&mut c, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    let e = create_user(&mut c, user("dave", "nowhere", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // Extensions are unique within a site, among phones and users alike.
    let alice = create_user(&mut c, user("alice@example.com", "hq", "2001"))
        .await
        .unwrap();
    assert!(alice.version > 0);
    let (code, msg) = refused(
        c.create_phone(pb::CreatePhoneRequest {
            phone: Some(phone("Lobby", at_extension("2001"))),
        })
        .await,
    );
    assert_eq!(code, Code::AlreadyExists, "{msg}");
    assert!(msg.contains("user alice@example.com"), "{msg}");
    let lobby = create_phone(&mut c, phone("Lobby", at_extension("2002")))
        .await
        .unwrap();
    let e = create_user(&mut c, user("bob", "hq", "2002"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(
        e.message().contains(&format!("phone {}", lobby.id)),
        "{e:?}"
    );
    // The same extension in another site is another extension.
    create_user(&mut c, user("bob", "branch", "2002"))
        .await
        .unwrap();
    let e = create_user(&mut c, user("bob", "hq", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "user ids are unique");

    // A companion phone names a user that exists and has a site.
    create_user(&mut c, user("nomad", "", "")).await.unwrap();
    for (who, code) in [
        ("ghost", Code::FailedPrecondition),
        ("nomad", Code::FailedPrecondition),
    ] {
        let e = create_phone(&mut c, phone("Desk", companion_of(who)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{who}: {e:?}");
        assert!(
            e.message().starts_with("phone.assignment.user.user_id"),
            "{e:?}"
        );
    }
    let desk = create_phone(&mut c, phone("Desk", companion_of("alice@example.com")))
        .await
        .unwrap();
    // The CSV import holds companions to the same rule.
    let rows = import_csv(
        &mut c,
        "name,kind,site_id,base_settings_id,lines,assignment\nImp,unmanaged,hq,desk,imp,user:ghost\nImp2,unmanaged,hq,desk,imp2,user:alice@example.com\n",
        1 << 16,
    )
    .await
    .unwrap();
    assert_eq!(
        rows[0].outcome,
        pb::ImportOutcome::Failed as i32,
        "{rows:?}"
    );
    assert!(rows[0].reason.contains("ghost"), "{rows:?}");
    assert_eq!(
        rows[1].outcome,
        pb::ImportOutcome::Created as i32,
        "{rows:?}"
    );

    // A user with phones cannot go, nor leave its site for none; its site cannot go.
    let (code, msg) = refused(
        c.delete_user(pb::DeleteRequest {
            id: "alice@example.com".into(),
            version: 0,
        })
        .await,
    );
    assert_eq!(code, Code::FailedPrecondition);
    assert!(msg.contains("2 phones"), "{msg}");
    let (code, _) = refused(
        c.update_user(pb::UpdateUserRequest {
            update_mask: dialtone_tests::whole(),
            user: Some(user("alice@example.com", "", "")),
        })
        .await,
    );
    assert_eq!(code, Code::FailedPrecondition);
    let (code, msg) = refused(
        c.delete_site(pb::DeleteRequest {
            id: "branch".into(),
            version: 0,
        })
        .await,
    );
    assert_eq!(code, Code::FailedPrecondition);
    assert!(msg.contains("1 users"), "{msg}");

    // A stale version is aborted; a new extension frees the old one at once.
    let (code, _) = refused(
        c.update_user(pb::UpdateUserRequest {
            update_mask: dialtone_tests::whole(),
            user: Some(pb::User {
                version: alice.version - 1,
                ..user("alice@example.com", "hq", "2009")
            }),
        })
        .await,
    );
    assert_eq!(code, Code::Aborted);
    let moved = c
        .update_user(pb::UpdateUserRequest {
            update_mask: dialtone_tests::whole(),
            user: Some(pb::User {
                version: alice.version,
                ..user("alice@example.com", "hq", "2009")
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.extension, "2009");
    create_phone(&mut c, phone("Front desk", at_extension("2001")))
        .await
        .unwrap();

    // Listed in id order, page by page.
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_users(pb::ListRequest {
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.users.into_iter().map(|u| u.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(ids, ["alice@example.com", "bob", "nomad"]);

    // Once its phones go elsewhere, the user goes, and its extension is free again.
    let mut all = c
        .list_phones(pb::ListPhonesRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .phones;
    all.retain(|p| p.id == desk.id || p.name == "Imp2");
    for p in all {
        c.delete_phone(pb::DeleteRequest {
            id: p.id,
            version: 0,
        })
        .await
        .unwrap();
    }
    c.delete_user(pb::DeleteRequest {
        id: "alice@example.com".into(),
        version: 0,
    })
    .await
    .unwrap();
    create_user(&mut c, user("carol", "hq", "2009"))
        .await
        .unwrap();
}
