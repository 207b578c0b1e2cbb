//! The config API end to end: real `dialtone` processes, real gRPC clients, real etcd.

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
        }],
        ..Default::default()
    }
}

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
        let b = pb::BaseSettings {
            id: id.into(),
            meta_base: pb::MetaBase::PolyVvx as i32,
            settings: Some(pb::PhoneSettings {
                sip_dscp: Some(dscp),
                ..Default::default()
            }),
            ..Default::default()
        };
        c.create_base_settings(pb::CreateBaseSettingsRequest {
            base_settings: Some(b),
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

/// The behaviours every backend must show.
async fn exercise(c: &mut ConfigClient) {
    seed(c).await;

    // create: password once, HA1 never returned, MAC normalised, SIP user prefixed
    let r = c
        .create_phone(pb::CreatePhoneRequest {
            phone: Some(phone("Lobby", "00:04:F2:AA:BB:01", "1001")),
        })
        .await
        .unwrap()
        .into_inner();
    let p = r.phone.unwrap();
    assert_eq!(p.hardware_id, "0004f2aabb01");
    assert!(p.lines[0].sip_user.ends_with("-1001"));
    assert!(p.lines[0].credentials.is_none());
    assert_eq!(r.credentials[0].password.len(), 24);
    let got = c
        .get_phone(pb::GetRequest { id: p.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(got.lines[0].credentials.is_none());

    // a phone with a hardware id gets a device credential, once; a reset replaces it
    let device = r.device_credentials.expect("device credential");
    assert_eq!(
        (device.user.as_str(), device.password.len()),
        ("0004f2aabb01", 24)
    );
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
    let got = c
        .get_phone(pb::GetRequest { id: p.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.device_credential_generation, 2);

    // bad input: INVALID_ARGUMENT naming the field, nothing written
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

    // uniqueness: hardware id and sip user, through transactions
    let (k, m) = code(
        c.create_phone(pb::CreatePhoneRequest {
            phone: Some(phone("Dup", "0004f2aabb01", "1009")),
        })
        .await,
    );
    assert_eq!(k, Code::AlreadyExists, "{m}");
    let (k, m) = code(
        c.create_phone(pb::CreatePhoneRequest {
            phone: Some(phone("Dup", "0004f2aabb09", "1001")),
        })
        .await,
    );
    assert_eq!(k, Code::AlreadyExists, "{m}");
    assert!(m.contains("sip user"), "{m}");
    assert_eq!(count_phones(c).await, before);

    // concurrent creators of one MAC: exactly one wins
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

    // optimistic concurrency
    let mut p1 = got.clone();
    p1.name = "Lobby east".into();
    let updated = c
        .update_phone(pb::UpdatePhoneRequest {
            phone: Some(p1.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .phone
        .unwrap();
    assert!(updated.version > got.version);
    let (k, m) = code(
        c.update_phone(pb::UpdatePhoneRequest { phone: Some(p1) })
            .await,
    );
    assert_eq!(k, Code::Aborted, "{m}");
    // a new line gets a password; the old one keeps its credentials
    let mut p2 = updated.clone();
    p2.lines.push(pb::Line {
        sip_user: "1010".into(),
        ..Default::default()
    });
    let r = c
        .update_phone(pb::UpdatePhoneRequest { phone: Some(p2) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.credentials.len(), 1);
    assert_eq!(r.credentials[0].line_index, 1);

    // list filters and stable pages
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
        name_prefix: "Lobby".into(),
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
        hardware_id: "00-04-F2-CC-CC-CC".into(),
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
    assert_eq!(r.phones[0].name, "Race");

    // in use: FAILED_PRECONDITION with the count
    let (k, m) = code(
        c.delete_site(pb::DeleteRequest {
            id: "hq".into(),
            version: 0,
        })
        .await,
    );
    assert_eq!(k, Code::FailedPrecondition);
    assert!(m.contains("used by 2 phones"), "{m}");
    let (k, m) = code(
        c.delete_base_settings(pb::DeleteRequest {
            id: "vvx".into(),
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
            id: "eg".into(),
            version: 0,
        })
        .await,
    );
    assert_eq!(k, Code::FailedPrecondition);

    // migrate: dry run shows the diff and writes nothing; apply is idempotent
    let req = |dry_run| pb::MigrateBaseSettingsRequest {
        filter: Some(pb::PhoneFilter {
            base_settings_id: "vvx".into(),
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
        id: "vvx".into(),
        version: 0,
    })
    .await
    .unwrap();

    // CSV import: valid rows created, bad rows reported, re-run idempotent; export round-trips
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

    // templates cover every meta-base
    let t = c
        .get_templates(pb::GetTemplatesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.templates.len(), 7);

    // paging visits every phone exactly once, in a stable order, whatever the page size
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

    // delete removes the phone and frees its unique values
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
            ..phone("Reuse", "0004f2aabb01", "1001")
        }),
    })
    .await
    .unwrap();
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
    }
    let with_hw = phones.iter().filter(|p| !p.hardware_id.is_empty()).count();
    let lines: usize = phones.iter().map(|p| p.lines.len()).sum();
    assert_eq!(
        (
            hw.len(),
            sip.len(),
            by_site.len(),
            by_base.len(),
            by_name.len()
        ),
        (with_hw, lines, phones.len(), phones.len(), phones.len())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_api_on_the_embedded_store() {
    let mut sb = ClusterSandbox::embedded().await.unwrap();
    let token = sb.nodes[0].admin_token();
    assert!(token.starts_with("dt_"));
    let mut c = sb.nodes[0].config_client(&token).await.unwrap();
    exercise(&mut c).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_api_on_etcd_with_two_config_nodes() {
    let mut sb = ClusterSandbox::with_etcd(3, &["config", "config"])
        .await
        .unwrap();
    let mut c = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    exercise(&mut c).await;
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
    let log = sb.nodes[0].log_text();
    assert!(
        log.contains("lease lost") && log.contains("node re-registered on a new lease"),
        "{log}"
    );
    let (_, metrics) = sb.nodes[0].http_get("/metrics").await.unwrap();
    assert!(
        metrics.contains("dialtone_lease_reregistrations_total 1"),
        "{metrics}"
    );
}
