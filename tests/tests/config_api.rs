//! The config API end to end: real `dialtone` processes, real gRPC clients, real etcd.
//!
//! Each behaviour is a scenario: an async function on a config client. Each runs alone as
//! its own test on a fresh embedded store (`on_the_embedded_store::*`), and all run in
//! sequence on one store per backend (`config_api_on_the_embedded_store`,
//! `config_api_on_etcd_with_two_config_nodes`). So that they can share a store, every
//! scenario uses phone names, hardware ids, SIP users and object ids of its own.

use std::time::Duration;

use dialtone_proto::config::v1::{self as pb, assignment::Mode};
use dialtone_tests::{ADDER_TOKEN, ADMIN_TOKEN, ClusterSandbox, ConfigClient, VIEWER_TOKEN};
use tonic::Code;

fn edge_group(id: &str) -> pb::EdgeGroup {
    pb::EdgeGroup {
        id: id.into(),
        name: "Edges".into(),
        edges: vec![
            pb::Edge {
                node_id: "edge-a".into(),
                addresses: Some(pb::SipAddresses {
                    udp: "127.0.0.1:5060".into(),
                    ..Default::default()
                }),
            },
            pb::Edge {
                node_id: "edge-b".into(),
                addresses: Some(pb::SipAddresses {
                    udp: "127.0.0.2:5060".into(),
                    ..Default::default()
                }),
            },
        ],
        version: 0,
    }
}

fn phone(name: &str, mac: &str, line: &str) -> pb::Phone {
    pb::Phone {
        name: name.into(),
        kind: pb::PhoneKind::Managed as i32,
        site_id: "hq".into(),
        base_settings_id: "vvx".into(),
        hardware_id: mac.into(),
        lines: vec![pb::Line {
            sip_user: line.into(),
            display_name: name.into(),
            credentials: None,
            password: String::new(),
        }],
        ..Default::default()
    }
}

/// A Poly VVX profile whose only setting is `sip_dscp`.
fn profile(id: &str, sip_dscp: u32) -> pb::BaseSettings {
    pb::BaseSettings {
        id: id.into(),
        meta_base: pb::MetaBase::PolyVvx as i32,
        settings: Some(pb::PhoneSettings {
            sip_dscp: Some(sip_dscp),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What most scenarios stand on: edge group `eg`, site `hq` on it, and the profiles `vvx`
/// (DSCP 26) and `vvx2` (DSCP 34).
async fn seed(c: &mut ConfigClient) {
    c.create_edge_group(pb::CreateEdgeGroupRequest {
        edge_group: Some(edge_group("eg")),
    })
    .await
    .unwrap();
    let site = pb::Site {
        id: "hq".into(),
        name: "HQ".into(),
        edge_group_id: "eg".into(),
        ..Default::default()
    };
    c.create_site(pb::CreateSiteRequest { site: Some(site) })
        .await
        .unwrap();
    for (id, dscp) in [("vvx", 26), ("vvx2", 34)] {
        c.create_base_settings(pb::CreateBaseSettingsRequest {
            base_settings: Some(profile(id, dscp)),
        })
        .await
        .unwrap();
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("expected an error");
    (s.code(), s.message().to_owned())
}

async fn count_phones(c: &mut ConfigClient) -> usize {
    let r = c
        .list_phones(pb::ListPhonesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    r.phones.len()
}

/// Creates `p`; returns the phone as stored and its credentials.
async fn create(c: &mut ConfigClient, p: pb::Phone) -> pb::CreatePhoneResponse {
    c.create_phone(pb::CreatePhoneRequest { phone: Some(p) })
        .await
        .unwrap()
        .into_inner()
}

async fn get_phone(c: &mut ConfigClient, id: &str) -> pb::Phone {
    c.get_phone(pb::GetRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

/// Create: the password is shown once and the HA1 never, the MAC is normalised, the SIP
/// user prefixed.
async fn a_new_phone_is_normalised_and_its_password_shown_once(c: &mut ConfigClient) {
    let r = create(c, phone("Lobby", "00:04:F2:AA:BB:01", "1001")).await;
    let p = r.phone.unwrap();
    assert_eq!(p.hardware_id, "0004f2aabb01");
    assert!(p.lines[0].sip_user.ends_with("-1001"));
    assert!(p.lines[0].credentials.is_none());
    assert_eq!(r.credentials[0].password.len(), 24);
    let got = get_phone(c, &p.id).await;
    assert!(got.lines[0].credentials.is_none());
}

/// A phone with a hardware id gets a device credential, once; a reset replaces it (at the
/// current version only).
async fn a_device_credential_is_given_once_and_a_reset_replaces_it(c: &mut ConfigClient) {
    let r = create(c, phone("Desk", "00:04:F2:AA:BB:11", "1011")).await;
    let p = r.phone.unwrap();
    let device = r.device_credentials.expect("device credential");
    assert_eq!(
        (device.user.as_str(), device.password.len()),
        ("0004f2aabb11", 24)
    );
    let got = get_phone(c, &p.id).await;
    assert_eq!(got.device_credential_generation, 1);
    let again = c
        .reset_device_password(pb::ResetDevicePasswordRequest {
            phone_id: p.id.clone(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.user, device.user);
    assert_ne!(again.password, device.password);
    let (k, m) = code(
        c.reset_device_password(pb::ResetDevicePasswordRequest {
            phone_id: p.id.clone(),
            version: 1,
        })
        .await,
    );
    assert!(
        k == Code::Aborted || k == Code::FailedPrecondition,
        "{k:?} {m}"
    );
    let got = get_phone(c, &p.id).await;
    assert_eq!(got.device_credential_generation, 2);
}

/// Bad input: INVALID_ARGUMENT naming the field, nothing written.
async fn bad_input_is_refused_naming_the_field_and_nothing_is_written(c: &mut ConfigClient) {
    let before = count_phones(c).await;
    let mut bad = phone("Bad", "00:04:f2:aa:bb:02", "1002");
    bad.overrides = Some(pb::PhoneSettings {
        dtmf_payload_type: Some(140),
        ..Default::default()
    });
    let (k, m) = code(
        c.create_phone(pb::CreatePhoneRequest { phone: Some(bad) })
            .await,
    );
    assert_eq!(k, Code::InvalidArgument);
    assert!(
        m.starts_with("phone.overrides.dtmf_payload_type: must be 96-127"),
        "{m}"
    );
    let (k, m) = code(
        c.create_phone(pb::CreatePhoneRequest {
            phone: Some(phone("Bad", "nonsense", "1003")),
        })
        .await,
    );
    assert_eq!(k, Code::InvalidArgument);
    assert!(m.starts_with("phone.hardware_id"), "{m}");
    let bad_profile = pb::BaseSettings {
        id: "bad".into(),
        meta_base: pb::MetaBase::DesktopSoftphone as i32,
        settings: Some(pb::PhoneSettings {
            softphone: Some(pb::SoftphoneAudio {
                sip_code_when_headset_na: Some(300),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (k, m) = code(
        c.create_base_settings(pb::CreateBaseSettingsRequest {
            base_settings: Some(bad_profile),
        })
        .await,
    );
    assert_eq!(
        (k, m.split(':').next().unwrap()),
        (
            Code::InvalidArgument,
            "base_settings.settings.softphone.sip_code_when_headset_na"
        )
    );
    assert_eq!(count_phones(c).await, before);
}

/// Uniqueness of the hardware id and the SIP user, through transactions: a duplicate is
/// ALREADY_EXISTS and nothing is written.
async fn hardware_ids_and_sip_users_are_unique(c: &mut ConfigClient) {
    create(c, phone("Unique", "00:04:f2:aa:bb:21", "1021")).await;
    let before = count_phones(c).await;
    let (k, m) = code(
        c.create_phone(pb::CreatePhoneRequest {
            phone: Some(phone("Dup", "0004f2aabb21", "1029")),
        })
        .await,
    );
    assert_eq!(k, Code::AlreadyExists, "{m}");
    let (k, m) = code(
        c.create_phone(pb::CreatePhoneRequest {
            phone: Some(phone("Dup", "0004f2aabb29", "1021")),
        })
        .await,
    );
    assert_eq!(k, Code::AlreadyExists, "{m}");
    assert!(m.contains("sip user"), "{m}");
    assert_eq!(count_phones(c).await, before);
}

/// Concurrent creators of one MAC: exactly one wins.
async fn of_concurrent_creators_of_one_mac_exactly_one_wins(c: &mut ConfigClient) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut c2 = c.clone();
        tasks.push(tokio::spawn(async move {
            c2.create_phone(pb::CreatePhoneRequest {
                phone: Some(phone("Race", "0004f2cccccc", &format!("20{i:02}"))),
            })
            .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(s) => assert_eq!(s.code(), Code::AlreadyExists, "{s:?}"),
        }
    }
    assert_eq!(wins, 1);
}

/// Optimistic concurrency: an update at the current version moves the version on; one at
/// the version it replaced is ABORTED.
async fn an_update_at_a_stale_version_is_aborted(c: &mut ConfigClient) {
    let p = create(c, phone("Stale", "00:04:f2:aa:bb:31", "1031"))
        .await
        .phone
        .unwrap();
    let got = get_phone(c, &p.id).await;
    let mut p1 = got.clone();
    p1.name = "Stale east".into();
    let updated = c
        .update_phone(pb::UpdatePhoneRequest {
            update_mask: dialtone_tests::whole(),
            phone: Some(p1.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .phone
        .unwrap();
    assert!(updated.version > got.version);
    let (k, m) = code(
        c.update_phone(pb::UpdatePhoneRequest {
            update_mask: dialtone_tests::whole(),
            phone: Some(p1),
        })
        .await,
    );
    assert_eq!(k, Code::Aborted, "{m}");
}

/// An update that adds a line: the new line gets a password; the old one keeps its
/// credentials (none are generated for it).
async fn a_new_line_gets_a_password_and_the_old_keeps_its_own(c: &mut ConfigClient) {
    let p = create(c, phone("Two lines", "00:04:f2:aa:bb:41", "1041"))
        .await
        .phone
        .unwrap();
    let mut p2 = get_phone(c, &p.id).await;
    p2.lines.push(pb::Line {
        sip_user: "1042".into(),
        ..Default::default()
    });
    let r = c
        .update_phone(pb::UpdatePhoneRequest {
            update_mask: dialtone_tests::whole(),
            phone: Some(p2),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.credentials.len(), 1);
    assert_eq!(r.credentials[0].line_index, 1);
}

/// Lists: pages do not repeat a phone, and filters find phones by name prefix and by
/// hardware id in any MAC notation.
async fn lists_page_and_filter_by_name_prefix_and_mac(c: &mut ConfigClient) {
    create(c, phone("Foyer east", "00:04:f2:aa:bb:51", "1051")).await;
    create(c, phone("Kitchen", "00:04:f2:aa:bb:52", "1052")).await;
    let all = c
        .list_phones(pb::ListPhonesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.phones.len(), 1);
    assert!(!all.next_page_token.is_empty());
    let next = c
        .list_phones(pb::ListPhonesRequest {
            page_size: 1,
            page_token: all.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(next.phones[0].id, all.phones[0].id);
    let by_name = pb::PhoneFilter {
        name_prefix: "Foyer".into(),
        ..Default::default()
    };
    let r = c
        .list_phones(pb::ListPhonesRequest {
            filter: Some(by_name),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.phones.len(), 1);
    let by_mac = pb::PhoneFilter {
        hardware_id: "00-04-F2-AA-BB-52".into(),
        ..Default::default()
    };
    let r = c
        .list_phones(pb::ListPhonesRequest {
            filter: Some(by_mac),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.phones[0].name, "Kitchen");
}

/// In use: a site, a profile or an edge group still used cannot be deleted
/// (FAILED_PRECONDITION with the count); unused again, each can. The objects are its own,
/// so that the counts are its own on a shared store, and are gone at the end: the other
/// scenarios count on every phone being in site `hq`.
async fn a_site_profile_or_edge_group_in_use_is_not_deleted(c: &mut ConfigClient) {
    c.create_edge_group(pb::CreateEdgeGroupRequest {
        edge_group: Some(edge_group("eg-busy")),
    })
    .await
    .unwrap();
    let site = pb::Site {
        id: "busy".into(),
        name: "Busy".into(),
        edge_group_id: "eg-busy".into(),
        ..Default::default()
    };
    c.create_site(pb::CreateSiteRequest { site: Some(site) })
        .await
        .unwrap();
    c.create_base_settings(pb::CreateBaseSettingsRequest {
        base_settings: Some(profile("vvx-busy", 26)),
    })
    .await
    .unwrap();
    let mut ids = Vec::new();
    for (name, mac, line) in [
        ("Busy one", "00:04:f2:aa:bb:61", "1061"),
        ("Busy two", "00:04:f2:aa:bb:62", "1062"),
    ] {
        let p = pb::Phone {
            site_id: "busy".into(),
            base_settings_id: "vvx-busy".into(),
            ..phone(name, mac, line)
        };
        ids.push(create(c, p).await.phone.unwrap().id);
    }

    let (k, m) = code(
        c.delete_site(pb::DeleteRequest {
            id: "busy".into(),
            version: 0,
        })
        .await,
    );
    assert_eq!(k, Code::FailedPrecondition);
    assert!(m.contains("used by 2 phones"), "{m}");
    let (k, m) = code(
        c.delete_base_settings(pb::DeleteRequest {
            id: "vvx-busy".into(),
            version: 0,
        })
        .await,
    );
    assert!(
        k == Code::FailedPrecondition && m.contains("2 phones"),
        "{m}"
    );
    let (k, _) = code(
        c.delete_edge_group(pb::DeleteRequest {
            id: "eg-busy".into(),
            version: 0,
        })
        .await,
    );
    assert_eq!(k, Code::FailedPrecondition);

    for id in ids {
        c.delete_phone(pb::DeleteRequest { id, version: 0 })
            .await
            .unwrap();
    }
    c.delete_site(pb::DeleteRequest {
        id: "busy".into(),
        version: 0,
    })
    .await
    .unwrap();
    c.delete_base_settings(pb::DeleteRequest {
        id: "vvx-busy".into(),
        version: 0,
    })
    .await
    .unwrap();
    c.delete_edge_group(pb::DeleteRequest {
        id: "eg-busy".into(),
        version: 0,
    })
    .await
    .unwrap();
}

/// Migrate: a dry run shows the diff and writes nothing; applying is idempotent, and the
/// profile left behind, unused then, can be deleted. The profile migrated from is its own
/// (like `vvx`, DSCP 26), so that the phones moved are its own on a shared store.
async fn a_migration_dry_run_writes_nothing_and_applying_is_idempotent(c: &mut ConfigClient) {
    c.create_base_settings(pb::CreateBaseSettingsRequest {
        base_settings: Some(profile("vvx-old", 26)),
    })
    .await
    .unwrap();
    for (name, mac, line) in [
        ("Moved one", "00:04:f2:aa:bb:71", "1071"),
        ("Moved two", "00:04:f2:aa:bb:72", "1072"),
    ] {
        let p = pb::Phone {
            base_settings_id: "vvx-old".into(),
            ..phone(name, mac, line)
        };
        create(c, p).await;
    }
    let req = |dry_run| pb::MigrateBaseSettingsRequest {
        filter: Some(pb::PhoneFilter {
            base_settings_id: "vvx-old".into(),
            ..Default::default()
        }),
        to_base_settings_id: "vvx2".into(),
        dry_run,
        ..Default::default()
    };
    let dry = c
        .migrate_base_settings(req(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.phones.len(), 2);
    assert_eq!(dry.phones[0].changes[0].path, "sip_dscp");
    assert_eq!(
        (
            dry.phones[0].changes[0].before.as_str(),
            dry.phones[0].changes[0].after.as_str()
        ),
        ("26", "34")
    );
    assert_eq!(
        c.migrate_base_settings(req(true))
            .await
            .unwrap()
            .into_inner()
            .phones
            .len(),
        2,
        "dry run wrote nothing"
    );
    let applied = c
        .migrate_base_settings(req(false))
        .await
        .unwrap()
        .into_inner();
    assert!(
        applied
            .phones
            .iter()
            .all(|p| p.outcome == pb::MigrationOutcome::Moved as i32)
    );
    let ids: Vec<String> = applied.phones.iter().map(|p| p.phone_id.clone()).collect();

    // Across models (the seed's example is a model upgrade): to an Edge E profile that sets
    // only the DSCP, the codecs and transport fall back to Edge E's defaults; a managed
    // phone may not move to a generic SIP profile, and nothing is written for it.
    for (id, meta) in [
        ("edge-e", pb::MetaBase::PolyEdgeE),
        ("generic", pb::MetaBase::GenericSip),
    ] {
        c.create_base_settings(pb::CreateBaseSettingsRequest {
            base_settings: Some(pb::BaseSettings {
                meta_base: meta as i32,
                ..profile(id, 34)
            }),
        })
        .await
        .unwrap();
    }
    let across = |to: &str, dry_run| pb::MigrateBaseSettingsRequest {
        phone_ids: ids[..1].to_vec(),
        to_base_settings_id: to.into(),
        dry_run,
        ..Default::default()
    };
    let dry = c
        .migrate_base_settings(across("edge-e", true))
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<(&str, pb::SettingChangeKind)> = dry.phones[0]
        .changes
        .iter()
        .map(|ch| (ch.path.as_str(), ch.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("codecs", pb::SettingChangeKind::Defaulted),
            ("transport", pb::SettingChangeKind::Defaulted)
        ]
    );
    let refused = c
        .migrate_base_settings(across("generic", false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        refused.phones[0].outcome,
        pb::MigrationOutcome::Failed as i32
    );
    assert!(
        refused.phones[0]
            .reason
            .contains("a PHONE_KIND_MANAGED phone cannot use a META_BASE_GENERIC_SIP profile"),
        "{:?}",
        refused.phones[0]
    );
    let moved = c
        .migrate_base_settings(across("edge-e", false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.phones[0].outcome, pb::MigrationOutcome::Moved as i32);
    let p = c
        .get_phone(pb::GetRequest { id: ids[0].clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.base_settings_id, "edge-e");
    // ... and back, for the rest of this scenario.
    let back = c
        .migrate_base_settings(across("vvx2", false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.phones[0].outcome, pb::MigrationOutcome::Moved as i32);
    for id in ["edge-e", "generic"] {
        c.delete_base_settings(pb::DeleteRequest {
            id: id.into(),
            version: 0,
        })
        .await
        .unwrap();
    }

    let again = pb::MigrateBaseSettingsRequest {
        phone_ids: ids,
        to_base_settings_id: "vvx2".into(),
        ..Default::default()
    };
    let again = c.migrate_base_settings(again).await.unwrap().into_inner();
    assert!(
        again
            .phones
            .iter()
            .all(|p| p.outcome == pb::MigrationOutcome::Unchanged as i32)
    );
    c.delete_base_settings(pb::DeleteRequest {
        id: "vvx-old".into(),
        version: 0,
    })
    .await
    .unwrap();
}

/// CSV import: valid rows created, bad rows reported, a re-run idempotent; the export
/// round-trips, and an unknown column refuses the whole file.
async fn a_csv_import_reports_bad_rows_is_idempotent_and_round_trips(c: &mut ConfigClient) {
    c.create_user(pb::CreateUserRequest {
        user: Some(pb::User {
            id: "u-2".into(),
            site_id: "hq".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let csv = "name,kind,site_id,base_settings_id,hardware_id,lines,assignment\n\
               Imp1,managed,hq,vvx2,00:04:f2:10:00:01,3001=Imp one,site:3001\n\
               Imp2,managed,hq,vvx2,00:04:f2:10:00:02,3002,user:u-2\n\
               Broken,managed,hq,vvx2,zz,3003,\n\
               Nosite,managed,elsewhere,vvx2,00:04:f2:10:00:04,3004,\n\
               Dupline,managed,hq,vvx2,00:04:f2:10:00:05,3001,\n";
    let results = import(c, csv).await;
    let outcome = |row: u64| {
        results
            .iter()
            .find(|r| r.row == row)
            .map(|r| r.outcome)
            .unwrap()
    };
    assert_eq!(outcome(2), pb::ImportOutcome::Created as i32);
    assert_eq!(outcome(3), pb::ImportOutcome::Created as i32);
    assert_eq!(outcome(4), pb::ImportOutcome::Failed as i32);
    assert_eq!(outcome(5), pb::ImportOutcome::Failed as i32);
    assert_eq!(outcome(6), pb::ImportOutcome::Failed as i32, "{results:?}");
    assert!(
        results
            .iter()
            .find(|r| r.row == 4)
            .unwrap()
            .reason
            .starts_with("hardware_id:")
    );
    assert_eq!(
        results
            .iter()
            .find(|r| r.row == 2)
            .unwrap()
            .credentials
            .len(),
        1
    );
    let n = count_phones(c).await;
    let again = import(c, csv).await;
    assert_eq!(
        again
            .iter()
            .filter(|r| r.outcome == pb::ImportOutcome::Existing as i32)
            .count(),
        2
    );
    assert!(again.iter().all(|r| r.credentials.is_empty()));
    assert_eq!(count_phones(c).await, n, "re-import created nothing");
    let imp = c
        .list_phones(pb::ListPhonesRequest {
            filter: Some(pb::PhoneFilter {
                hardware_id: "0004f2100001".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .phones
        .remove(0);
    assert!(matches!(imp.assignment.unwrap().mode, Some(Mode::Site(s)) if s.extension == "3001"));
    let mut export = c
        .export_phones(pb::ListPhonesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut text = Vec::new();
    while let Some(chunk) = export.message().await.unwrap() {
        text.extend(chunk.chunk);
    }
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with(
        "name,kind,site_id,base_settings_id,hardware_id,lines,assignment,remote_address,disabled\n"
    ));
    assert!(
        text.contains("Imp1,managed,hq,vvx2,0004f2100001,3001=Imp one,site:3001,"),
        "{text}"
    );
    let re = import(c, &text).await;
    assert!(
        re.iter()
            .all(|r| r.outcome == pb::ImportOutcome::Existing as i32),
        "{re:?}"
    );
    let (k, m) = code(import_raw(c, "name,kind,colour\n").await);
    assert!(k == Code::InvalidArgument && m.contains("colour"), "{m}");
}

/// Templates cover every meta-base.
async fn templates_cover_every_meta_base(c: &mut ConfigClient) {
    let t = c
        .get_templates(pb::GetTemplatesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.templates.len(), 7);
}

/// Paging visits every phone exactly once, in a stable order, whatever the page size. One
/// phone besides the bulk, so that the unfiltered lists hold more than the bulk.
async fn paging_visits_every_phone_once_in_a_stable_order(c: &mut ConfigClient) {
    create(c, phone("Not bulk", "00:04:f2:aa:bb:81", "1081")).await;
    let mut bulk = String::from("name,kind,site_id,base_settings_id,hardware_id,lines\n");
    for i in 0..300 {
        bulk.push_str(&format!("Bulk {i},managed,hq,vvx2,0004f2ee{i:04x},b{i}\n"));
    }
    assert!(
        import(c, &bulk)
            .await
            .iter()
            .all(|r| r.outcome == pb::ImportOutcome::Created as i32)
    );
    let total = count_phones(c).await;
    assert!(total > 300);
    let site = pb::PhoneFilter {
        site_id: "hq".into(),
        ..Default::default()
    };
    let bulk_names = pb::PhoneFilter {
        name_prefix: "Bulk ".into(),
        ..Default::default()
    };
    for (filter, size, want) in [
        (None, 7, total),
        (Some(site), 13, total),
        (None, 1000, total),
        (Some(bulk_names), 50, 300),
    ] {
        let mut ids = Vec::new();
        let mut token = String::new();
        loop {
            let r = c
                .list_phones(pb::ListPhonesRequest {
                    filter: filter.clone(),
                    page_size: size,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.phones.len() <= size as usize);
            ids.extend(r.phones.into_iter().map(|p| p.id));
            if r.next_page_token.is_empty() {
                break;
            }
            token = r.next_page_token;
        }
        let mut sorted = ids.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), want, "filter {filter:?} page size {size}");
        assert_eq!(ids.len(), want);
        if filter.as_ref().is_none_or(|f| f.name_prefix.is_empty()) {
            sorted.sort();
            assert_eq!(ids, sorted, "pages come in id order");
        }
    }
}

/// Delete removes the phone and frees its unique values (hardware id, SIP user).
async fn deleting_a_phone_frees_its_hardware_id_and_sip_user(c: &mut ConfigClient) {
    let p = create(c, phone("Gone", "00:04:F2:AA:BB:91", "1091"))
        .await
        .phone
        .unwrap();
    c.delete_phone(pb::DeleteRequest {
        id: p.id.clone(),
        version: 0,
    })
    .await
    .unwrap();
    let (k, _) = code(c.get_phone(pb::GetRequest { id: p.id.clone() }).await);
    assert_eq!(k, Code::NotFound);
    c.create_phone(pb::CreatePhoneRequest {
        phone: Some(pb::Phone {
            base_settings_id: "vvx2".into(),
            ..phone("Reuse", "0004f2aabb91", "1091")
        }),
    })
    .await
    .unwrap();
}

/// Phone names are unique in the organisation, as the seed's device names are ("device
/// names unique within an organisation"), whatever their case and surrounding blanks: a
/// second phone, an import row or a rename to a taken name is refused naming the holder;
/// a rename or a delete frees the old name.
async fn phone_names_are_unique_in_the_organisation(c: &mut ConfigClient) {
    let first = create(c, phone("Reception desk", "00:04:F2:AA:BB:A1", "10a1"))
        .await
        .phone
        .unwrap();
    for taken in ["Reception desk", " reception DESK "] {
        let (k, msg) = code(
            c.create_phone(pb::CreatePhoneRequest {
                phone: Some(phone(taken, "00:04:F2:AA:BB:A2", "10a2")),
            })
            .await,
        );
        assert_eq!(k, Code::AlreadyExists, "{taken:?}: {msg}");
        assert!(
            msg.contains("phone name") && msg.contains(&first.id),
            "{msg}"
        );
    }
    let second = create(c, phone("Reception desk 2", "00:04:F2:AA:BB:A2", "10a2"))
        .await
        .phone
        .unwrap();
    // A rename to the taken name is refused and changes nothing...
    let (k, msg) = code(
        c.update_phone(pb::UpdatePhoneRequest {
            update_mask: dialtone_tests::whole(),
            phone: Some(pb::Phone {
                name: "RECEPTION DESK".into(),
                ..second.clone()
            }),
        })
        .await,
    );
    assert_eq!(k, Code::AlreadyExists, "{msg}");
    assert_eq!(get_phone(c, &second.id).await.name, "Reception desk 2");
    // ... a change of case only is the same name, and a rename frees the old one.
    let first = c
        .update_phone(pb::UpdatePhoneRequest {
            update_mask: dialtone_tests::whole(),
            phone: Some(pb::Phone {
                name: "RECEPTION desk".into(),
                ..first
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .phone
        .unwrap();
    c.update_phone(pb::UpdatePhoneRequest {
        update_mask: dialtone_tests::whole(),
        phone: Some(pb::Phone {
            name: "Front desk".into(),
            ..first.clone()
        }),
    })
    .await
    .unwrap();
    let third = create(c, phone("Reception desk", "00:04:F2:AA:BB:A3", "10a3"))
        .await
        .phone
        .unwrap();
    // An import row with a taken name fails alone, naming the column.
    let report = import(
        c,
        "name,kind,site_id,base_settings_id,hardware_id,lines\nfront DESK,managed,hq,vvx,00:04:F2:AA:BB:A4,10a4\n",
    )
    .await;
    assert_eq!(
        report[0].outcome,
        pb::ImportOutcome::Failed as i32,
        "{report:?}"
    );
    assert!(report[0].reason.contains("phone name"), "{report:?}");
    // Deleting frees the name.
    for p in [&third, &second] {
        c.delete_phone(pb::DeleteRequest {
            id: p.id.clone(),
            version: 0,
        })
        .await
        .unwrap();
    }
    let again = create(c, phone("reception desk", "00:04:F2:AA:BB:A3", "10a3"))
        .await
        .phone
        .unwrap();
    for id in [&again.id, &first.id] {
        c.delete_phone(pb::DeleteRequest {
            id: id.clone(),
            version: 0,
        })
        .await
        .unwrap();
    }
}

/// Runs scenarios in order on one client, naming each on stderr as it starts (a failure's
/// output then says in which one).
macro_rules! in_sequence {
    ($c:ident; $($scenario:ident),+ $(,)?) => {
        $(
            eprintln!("scenario {}", stringify!($scenario));
            $scenario($c).await;
        )+
    };
}

/// Every scenario, in order, on one store: seeded once, as each scenario's own test seeds
/// its store.
async fn every_scenario(c: &mut ConfigClient) {
    seed(c).await;
    in_sequence!(c;
        a_new_phone_is_normalised_and_its_password_shown_once,
        a_device_credential_is_given_once_and_a_reset_replaces_it,
        bad_input_is_refused_naming_the_field_and_nothing_is_written,
        hardware_ids_and_sip_users_are_unique,
        of_concurrent_creators_of_one_mac_exactly_one_wins,
        an_update_at_a_stale_version_is_aborted,
        a_new_line_gets_a_password_and_the_old_keeps_its_own,
        lists_page_and_filter_by_name_prefix_and_mac,
        a_site_profile_or_edge_group_in_use_is_not_deleted,
        a_migration_dry_run_writes_nothing_and_applying_is_idempotent,
        a_csv_import_reports_bad_rows_is_idempotent_and_round_trips,
        templates_cover_every_meta_base,
        paging_visits_every_phone_once_in_a_stable_order,
        deleting_a_phone_frees_its_hardware_id_and_sip_user,
        phone_names_are_unique_in_the_organisation,
    );
}

/// Reads the store directly: every phone has exactly its index entries and no index entry
/// points at a phone that is not there (nothing half-written after any error).
async fn assert_store_consistent(store: &dialtone_store::Store) {
    use prost::Message;
    let all =
        |prefix: &'static str| async move { store.range(prefix, None, 100_000).await.unwrap().kvs };
    let phones: Vec<pb::Phone> = all("config/phones/")
        .await
        .iter()
        .map(|kv| pb::Phone::decode(kv.value.as_slice()).unwrap())
        .collect();
    let hw = all("index/hardware/").await;
    let sip = all("index/sip-user/").await;
    let by_site = all("index/site-phones/").await;
    let by_base = all("index/base-phones/").await;
    let by_name = all("index/phone-names/").await;
    let unique_names = all("index/unique-phone-name/").await;
    let owner = |kvs: &[dialtone_store::KeyValue], key: &str| {
        kvs.iter()
            .find(|kv| kv.key == key)
            .map(|kv| String::from_utf8(kv.value.clone()).unwrap())
    };
    for p in &phones {
        if !p.hardware_id.is_empty() {
            assert_eq!(
                owner(&hw, &format!("index/hardware/{}", p.hardware_id)).as_deref(),
                Some(p.id.as_str()),
                "{p:?}"
            );
        }
        for l in &p.lines {
            assert_eq!(
                owner(&sip, &format!("index/sip-user/{}", l.sip_user)).as_deref(),
                Some(p.id.as_str())
            );
            assert!(
                l.credentials
                    .as_ref()
                    .is_some_and(|c| c.ha1_md5.len() == 32 && c.ha1_sha256.len() == 64)
            );
        }
        assert!(
            by_site
                .iter()
                .any(|kv| kv.key == format!("index/site-phones/{}/{}", p.site_id, p.id))
        );
        assert!(
            by_base
                .iter()
                .any(|kv| kv.key == format!("index/base-phones/{}/{}", p.base_settings_id, p.id))
        );
        assert!(
            by_name
                .iter()
                .any(|kv| kv.key == format!("index/phone-names/{}\u{1}{}", p.name, p.id))
        );
        let folded = p.name.trim().to_lowercase();
        assert_eq!(
            owner(&unique_names, &format!("index/unique-phone-name/{folded}")).as_deref(),
            Some(p.id.as_str()),
            "{p:?}"
        );
    }
    let with_hw = phones.iter().filter(|p| !p.hardware_id.is_empty()).count();
    let lines: usize = phones.iter().map(|p| p.lines.len()).sum();
    assert_eq!(
        (
            hw.len(),
            sip.len(),
            by_site.len(),
            by_base.len(),
            by_name.len(),
            unique_names.len()
        ),
        (
            with_hw,
            lines,
            phones.len(),
            phones.len(),
            phones.len(),
            phones.len()
        )
    );
}

async fn import_raw(
    c: &mut ConfigClient,
    csv: &str,
) -> Result<Vec<pb::ImportPhonesResponse>, tonic::Status> {
    // Small chunks: rows cross chunk boundaries.
    dialtone_tests::fleet::import_csv(c, csv, 40).await
}

async fn import(c: &mut ConfigClient, csv: &str) -> Vec<pb::ImportPhonesResponse> {
    import_raw(c, csv).await.unwrap()
}

/// A fresh embedded sandbox (one all-roles node, in the dev mode) and a config client with
/// its generated admin token. Keep the sandbox while the client is used.
async fn embedded() -> (ClusterSandbox, ConfigClient) {
    let sb = ClusterSandbox::embedded().await.unwrap();
    let token = sb.nodes[0].admin_token();
    assert!(token.starts_with("dt_"));
    let c = sb.nodes[0].config_client(&token).await.unwrap();
    (sb, c)
}

/// Each scenario alone, on a fresh embedded store with just what it stands on.
mod on_the_embedded_store {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_phone_is_normalised_and_its_password_shown_once() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::a_new_phone_is_normalised_and_its_password_shown_once(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_device_credential_is_given_once_and_a_reset_replaces_it() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::a_device_credential_is_given_once_and_a_reset_replaces_it(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_input_is_refused_naming_the_field_and_nothing_is_written() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::bad_input_is_refused_naming_the_field_and_nothing_is_written(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hardware_ids_and_sip_users_are_unique() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::hardware_ids_and_sip_users_are_unique(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_concurrent_creators_of_one_mac_exactly_one_wins() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::of_concurrent_creators_of_one_mac_exactly_one_wins(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_update_at_a_stale_version_is_aborted() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::an_update_at_a_stale_version_is_aborted(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_line_gets_a_password_and_the_old_keeps_its_own() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::a_new_line_gets_a_password_and_the_old_keeps_its_own(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists_page_and_filter_by_name_prefix_and_mac() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::lists_page_and_filter_by_name_prefix_and_mac(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_site_profile_or_edge_group_in_use_is_not_deleted() {
        let (_sb, mut c) = embedded().await;
        super::a_site_profile_or_edge_group_in_use_is_not_deleted(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_migration_dry_run_writes_nothing_and_applying_is_idempotent() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::a_migration_dry_run_writes_nothing_and_applying_is_idempotent(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_csv_import_reports_bad_rows_is_idempotent_and_round_trips() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::a_csv_import_reports_bad_rows_is_idempotent_and_round_trips(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn templates_cover_every_meta_base() {
        let (_sb, mut c) = embedded().await;
        super::templates_cover_every_meta_base(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paging_visits_every_phone_once_in_a_stable_order() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::paging_visits_every_phone_once_in_a_stable_order(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deleting_a_phone_frees_its_hardware_id_and_sip_user() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::deleting_a_phone_frees_its_hardware_id_and_sip_user(&mut c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn phone_names_are_unique_in_the_organisation() {
        let (_sb, mut c) = embedded().await;
        seed(&mut c).await;
        super::phone_names_are_unique_in_the_organisation(&mut c).await;
    }
}

/// Every scenario in sequence on one embedded store (as on etcd below), then what a whole
/// history and a running node show: a crash loses nothing acknowledged, an unknown token
/// is refused, the health endpoints answer and shutdown is graceful.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_api_on_the_embedded_store() {
    let (mut sb, mut c) = embedded().await;
    every_scenario(&mut c).await;

    // a crash loses nothing acknowledged
    let n = count_phones(&mut c).await;
    sb.nodes[0].restart().await.unwrap();
    let mut c = sb.nodes[0]
        .config_client(&sb.nodes[0].admin_token())
        .await
        .unwrap();
    assert_eq!(count_phones(&mut c).await, n);
    assert_eq!(
        c.get_site(pb::GetRequest { id: "hq".into() })
            .await
            .unwrap()
            .into_inner()
            .edge_group_id,
        "eg"
    );

    // unknown token
    let mut anon = sb.nodes[0].config_client("dt_nobody").await.unwrap();
    assert_eq!(
        code(anon.list_sites(pb::ListRequest::default()).await).0,
        Code::Unauthenticated
    );

    // health endpoints and graceful shutdown
    assert_eq!(sb.nodes[0].http_status("/healthz").await, Some(200));
    let (_, metrics) = sb.nodes[0].http_get("/metrics").await.unwrap();
    assert!(metrics.contains("dialtone_store_up 1"), "{metrics}");
    assert!(sb.nodes[0].terminate().unwrap().success());
}

/// Every scenario in sequence on one etcd cluster behind two config nodes, then what only
/// this setup shows: the store stays consistent, the replicas agree, tokens carry their
/// permissions, a dead etcd member loses nothing, and a stopped node leaves at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_api_on_etcd_with_two_config_nodes() {
    let mut sb = ClusterSandbox::with_etcd(3, &["config", "config"])
        .await
        .unwrap();
    let mut c = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    every_scenario(&mut c).await;
    assert_store_consistent(&sb.store().await.unwrap()).await;

    // the other replica serves the same data, and both are members
    let mut c2 = sb.nodes[1].config_client(ADMIN_TOKEN).await.unwrap();
    assert_eq!(count_phones(&mut c2).await, count_phones(&mut c).await);
    let members = c2
        .list_members(pb::ListMembersRequest {
            role: "config".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(
        members
            .iter()
            .map(|m| m.node_id.as_str())
            .collect::<Vec<_>>(),
        ["node-0", "node-1"]
    );

    // permissions
    let mut viewer = sb.nodes[0].config_client(VIEWER_TOKEN).await.unwrap();
    viewer.list_sites(pb::ListRequest::default()).await.unwrap();
    let (k, m) = code(
        viewer
            .delete_site(pb::DeleteRequest {
                id: "hq".into(),
                version: 0,
            })
            .await,
    );
    assert_eq!(k, Code::PermissionDenied, "{m}");
    let mut adder = sb.nodes[0].config_client(ADDER_TOKEN).await.unwrap();
    adder
        .create_phone(pb::CreatePhoneRequest {
            phone: Some(pb::Phone {
                base_settings_id: "vvx2".into(),
                ..phone("Adder", "0004f2dd0001", "4001")
            }),
        })
        .await
        .unwrap();
    let (k, _) = code(
        adder
            .delete_edge_group(pb::DeleteRequest {
                id: "eg".into(),
                version: 0,
            })
            .await,
    );
    assert_eq!(k, Code::PermissionDenied);

    // an etcd member dies: nothing acknowledged is lost and both nodes keep serving
    let n = count_phones(&mut c).await;
    sb.etcd.as_mut().unwrap().kill(0);
    for client in [&mut c, &mut c2] {
        let mut ok = false;
        for _ in 0..50 {
            match client
                .list_phones(pb::ListPhonesRequest {
                    page_size: 1000,
                    ..Default::default()
                })
                .await
            {
                Ok(r) => {
                    assert_eq!(r.into_inner().phones.len(), n);
                    ok = true;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        assert!(
            ok,
            "a config node stopped serving after one etcd member died"
        );
    }
    c2.create_phone(pb::CreatePhoneRequest {
        phone: Some(pb::Phone {
            base_settings_id: "vvx2".into(),
            ..phone("After", "0004f2dd0002", "4002")
        }),
    })
    .await
    .unwrap();

    assert_store_consistent(&sb.store().await.unwrap()).await;

    // graceful shutdown revokes the lease: the member record goes at once
    assert!(sb.nodes[1].terminate().unwrap().success());
    let members = c
        .list_members(pb::ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_detected_and_the_node_re_registers() {
    let sb = ClusterSandbox::with_etcd(1, &["config"]).await.unwrap();
    let store = sb.store().await.unwrap();
    let key = "members/config/node-0";
    let first = store.get(key).await.unwrap().expect("member registered");
    // Another party revokes the node's lease (as etcd does when keep-alives stop reaching it).
    store.lease_revoke(first.lease).await.unwrap();
    assert!(store.get(key).await.unwrap().is_none());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(kv) = store.get(key).await.unwrap() {
            assert_ne!(kv.lease, first.lease, "re-registered on a new lease");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node never re-registered: {}",
            sb.nodes[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The key shows before the node logs and counts what it did: wait for those too.
    loop {
        let log = sb.nodes[0].log_text();
        let (_, metrics) = sb.nodes[0].http_get("/metrics").await.unwrap();
        let logged =
            log.contains("lease lost") && log.contains("node re-registered on a new lease");
        let counted = metrics.contains("dialtone_lease_reregistrations_total 1");
        if logged && counted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "logged: {logged}, counted: {counted}\n{log}\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Phones written before names were unique (no `index/unique-phone-name/` entry; here two
/// of one name, written straight to the store) get their entries when a config node
/// starts: the first keeps the name, the duplicate is logged for the admin, and a new
/// phone of that name is refused from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_of_phones_from_before_are_indexed_on_start() {
    use prost::Message;
    let mut sb = ClusterSandbox::with_etcd(1, &["config"]).await.unwrap();
    let mut c = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    seed(&mut c).await;
    let store = sb.store().await.unwrap();
    assert!(store.delete("upgrades/phone-names-indexed").await.unwrap());
    for id in ["old-a", "old-b"] {
        let p = pb::Phone {
            id: id.into(),
            ..phone("Old desk", "", "")
        };
        store
            .put(&format!("config/phones/{id}"), p.encode_to_vec(), None)
            .await
            .unwrap();
    }
    sb.nodes[0].restart().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store
        .get("upgrades/phone-names-indexed")
        .await
        .unwrap()
        .is_none()
    {
        assert!(std::time::Instant::now() < deadline, "never backfilled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = store
        .get("index/unique-phone-name/old desk")
        .await
        .unwrap()
        .expect("indexed");
    assert_eq!(held.value, b"old-a");
    assert!(
        sb.nodes[0]
            .log_text()
            .contains("two phones hold one unique value"),
        "{}",
        sb.nodes[0].log_text()
    );
    let mut c = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    let (k, msg) = code(
        c.create_phone(pb::CreatePhoneRequest {
            phone: Some(phone("OLD DESK", "00:04:F2:AA:BB:B1", "10b1")),
        })
        .await,
    );
    assert_eq!(k, Code::AlreadyExists, "{msg}");
}

/// Updates change what their mask names and keep the rest: with no mask, the fields the
/// update sets (a client that does not know a field never clears it); a named field is
/// cleared; a name this release does not know is refused, changing nothing. And a write
/// keeps the fields of a newer release that this node does not know (as an older node does
/// in a rolling upgrade): here field 99 of a site, put in the store as a newer node would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_change_only_what_their_mask_names() {
    let sb = ClusterSandbox::with_etcd(1, &["config"]).await.unwrap();
    let mut c = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    dialtone_tests::fleet::seed_site(&mut c, pb::PhoneSettings::default())
        .await
        .unwrap();
    let get = |c: &mut ConfigClient| {
        let mut c = c.clone();
        async move {
            c.get_site(pb::GetRequest { id: "hq".into() })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let mut hq = get(&mut c).await;
    hq.default_outbound_caller_id = "+15550100".into();
    hq.media_regions = vec!["eu".into()];
    c.update_site(pb::UpdateSiteRequest {
        site: Some(hq),
        update_mask: vec!["*".into()],
    })
    .await
    .unwrap();

    // No mask: what the update sets.
    c.update_site(pb::UpdateSiteRequest {
        site: Some(pb::Site {
            id: "hq".into(),
            name: "Head office".into(),
            ..Default::default()
        }),
        update_mask: vec![],
    })
    .await
    .unwrap();
    let hq = get(&mut c).await;
    assert_eq!(hq.name, "Head office");
    assert_eq!(hq.default_outbound_caller_id, "+15550100");
    assert_eq!(hq.media_regions, ["eu"]);
    assert_eq!(hq.edge_group_id, "eg");

    // A named field is cleared, the others kept.
    c.update_site(pb::UpdateSiteRequest {
        site: Some(pb::Site {
            id: "hq".into(),
            version: hq.version,
            ..Default::default()
        }),
        update_mask: vec!["default_outbound_caller_id".into()],
    })
    .await
    .unwrap();
    let hq = get(&mut c).await;
    assert_eq!(hq.default_outbound_caller_id, "");
    assert_eq!(
        (hq.name.as_str(), hq.media_regions.len()),
        ("Head office", 1)
    );

    // Refused, naming the mask: a field of no release, a path inside a field; a stale
    // version still fails as before.
    for (mask, version, code) in [
        ("colour", 0, Code::InvalidArgument),
        ("call_restrictions.allow_premium", 0, Code::InvalidArgument),
        ("name", hq.version - 1, Code::Aborted),
    ] {
        let e = c
            .update_site(pb::UpdateSiteRequest {
                site: Some(pb::Site {
                    id: "hq".into(),
                    name: "Never".into(),
                    version,
                    ..Default::default()
                }),
                update_mask: vec![mask.into()],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{mask}: {e:?}");
        if code == Code::InvalidArgument {
            assert!(e.message().contains("update_mask"), "{e:?}");
        }
    }
    assert_eq!(get(&mut c).await.name, "Head office");

    // A newer release's field 99 (a string), written as a newer node would.
    let store = sb.store().await.unwrap();
    let key = dialtone_domain::keys::site("hq");
    let newer = [0x9a, 0x06, 0x03, b'n', b'e', b'w'];
    let mut value = store.get(&key).await.unwrap().unwrap().value;
    value.extend_from_slice(&newer);
    store.put(&key, value, None).await.unwrap();
    // A whole-object write of this node (every field it knows) keeps it.
    let mut hq = get(&mut c).await;
    hq.name = "Renamed".into();
    c.update_site(pb::UpdateSiteRequest {
        site: Some(hq),
        update_mask: vec!["*".into()],
    })
    .await
    .unwrap();
    let stored = store.get(&key).await.unwrap().unwrap().value;
    assert!(
        stored.windows(newer.len()).any(|w| w == newer),
        "the newer release's field was erased"
    );
    assert_eq!(get(&mut c).await.name, "Renamed");
}
