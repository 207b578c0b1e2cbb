//! Managed phones end to end, on real processes (etcd, a config+status+provisioning node,
//! two edges) with simulated phones (loadtest/phonesim): each boots by fetching its JSON
//! document over HTTPS with its device credential and registers to the primary and
//! secondary edge it names; the whole fleet ends OPERATIONAL. A profile change reaches
//! every phone of the profile, paced at the configured rate, and only them; a restart
//! from the config API makes one phone fetch again and re-register; a softphone rejects,
//! then rings for, calls as its headset comes and goes; when a third edge joins the group,
//! `sites rebalance` moves the phones it now serves there.

use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use dialtone_domain::placement;
use dialtone_phonesim::{
    Sim, SimConfig,
    https::client_config,
    managed::{ManagedDevice, ProvisioningSource, boot},
};
use dialtone_proto::{
    config::v1 as pb, edge::v1 as epb, provisioning::v1 as ppb, status::v1 as spb,
};
use dialtone_softphone::{Devices, Incoming};
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, VIEWER_TOKEN,
    fleet::{change_profile, create_profile, seed_site_on},
    sip::{Caller, branch},
};

const DESK_PHONES: usize = 30;
const RATE: u64 = 15;

async fn operational(st: &mut dialtone_tests::StatusClient) -> u64 {
    st.get_site_summaries(spb::GetSiteSummariesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sites
        .first()
        .map_or(0, |s| s.operational.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_phones_boot_register_follow_changes_and_apply_audio_rules() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = dialtone_tls::dev_pair(certs.path(), "provisioning").unwrap();
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let rate = format!("--provisioning-resync-rate={RATE}");
    let sb = ClusterSandbox::with_etcd_args(
        1,
        &["config,status,provisioning", "edge", "edge", "edge"],
        &[
            "--provisioning-tls-cert",
            &cert_s,
            "--provisioning-tls-key",
            &key_s,
            &rate,
            "--provisioning-resync-debounce-ms=300",
            "--sip-min-expires=10",
        ],
    )
    .await
    .unwrap();
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    seed_site_on(
        &mut cfg,
        pb::PhoneSettings::default(),
        &sb.udp_edges(&[1, 2]),
    )
    .await
    .unwrap();
    // Desk phones: generic SIP phones with a MAC, provisioned with the JSON document.
    let ac = pb::PhoneSettings {
        transport: pb::Transport::Udp as i32,
        push_credentials: Some(true),
        dynamic_reload: Some(true),
        ..Default::default()
    };
    create_profile(&mut cfg, "ac", "Desks", pb::MetaBase::GenericSip, ac)
        .await
        .unwrap();
    let soft = pb::PhoneSettings {
        transport: pb::Transport::Udp as i32,
        push_credentials: Some(true),
        dynamic_reload: Some(false),
        softphone: Some(pb::SoftphoneAudio {
            use_headset: Some(true),
            headset_name: vec!["Jabra.*".into()],
            reject_session_when_headset_na: Some(true),
            sip_code_when_headset_na: Some(486),
            ..Default::default()
        }),
        ..Default::default()
    };
    create_profile(
        &mut cfg,
        "soft",
        "Agents",
        pb::MetaBase::DesktopSoftphone,
        soft,
    )
    .await
    .unwrap();
    cfg.create_user(pb::CreateUserRequest {
        user: Some(pb::User {
            id: "alice".into(),
            name: "Alice".into(),
            site_id: "hq".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let mut devices = Vec::new();
    for i in 0..=DESK_PHONES {
        let softphone = i == DESK_PHONES;
        let (hw, base) = if softphone {
            ("agent-1.example.com".to_owned(), "soft")
        } else {
            (format!("00908f{i:06x}"), "ac")
        };
        let r = cfg
            .create_phone(pb::CreatePhoneRequest {
                phone: Some(pb::Phone {
                    name: format!("Managed {i}"),
                    kind: if softphone {
                        pb::PhoneKind::Webrtc
                    } else {
                        pb::PhoneKind::Unmanaged
                    } as i32,
                    site_id: "hq".into(),
                    base_settings_id: base.into(),
                    hardware_id: hw.clone(),
                    lines: vec![pb::Line::default()],
                    // The first desk phone is a user's: it places the softphone's calls.
                    assignment: (i == 0).then(|| pb::Assignment {
                        mode: Some(pb::assignment::Mode::User(pb::UserAssignment {
                            user_id: "alice".into(),
                        })),
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        devices.push(ManagedDevice {
            phone_id: r.phone.unwrap().id,
            hardware_id: hw,
            password: r.device_credentials.unwrap().password,
        });
    }

    // Boot: every phone fetches its document and registers where it says.
    let source = ProvisioningSource {
        addr: format!("127.0.0.1:{}", sb.nodes[0].https).parse().unwrap(),
        tls: client_config(&std::fs::read(&cert).unwrap()).unwrap(),
    };
    let specs: Vec<_> = boot(&source, devices.clone(), 8)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert!(specs.iter().all(|s| s.registrars.len() == 2), "{specs:?}");
    let soft_user = specs[DESK_PHONES].user.clone();
    let desk_line = (specs[0].user.clone(), specs[0].password.clone());
    let sim = Sim::start(
        SimConfig {
            expires: 30,
            sockets: 2,
            provisioning: Some(source.clone()),
            devices: Devices {
                inputs: vec!["Built-in Microphone".into()],
                outputs: vec!["Built-in Speakers".into()],
            },
            ..SimConfig::default()
        },
        specs,
    )
    .await
    .unwrap();
    let mut st = sb.nodes[0].status_client(VIEWER_TOKEN).await.unwrap();
    let total = DESK_PHONES as u64 + 1;
    let deadline = Instant::now() + Duration::from_secs(15);
    while operational(&mut st).await < total {
        assert!(
            Instant::now() < deadline,
            "the fleet never became operational"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every boot fetch recorded (applied = desired), so a change is seen as drift.
    let mut prov = sb.nodes[0].provisioning_client(ADMIN_TOKEN).await.unwrap();
    for d in &devices {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let p = prov
                .get_provisioning(ppb::GetProvisioningRequest {
                    phone_id: d.phone_id.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            if !p.drift && p.state.is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "{}: {p:?}", d.hardware_id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A change to the desk profile: every desk phone is told to fetch again, at the
    // configured pace; the softphone, on another profile, is left alone.
    change_profile(&mut cfg, "ac", |s| s.media_dscp = Some(34))
        .await
        .unwrap();
    let stats = sim.stats();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first = None;
    while stats.fetches[0].load(Relaxed) < DESK_PHONES as u64 {
        if first.is_none() && stats.fetches[0].load(Relaxed) > 0 {
            first = Some(Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "{} of {DESK_PHONES} phones fetched again",
            stats.fetches[0].load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spread = first.map_or(Duration::ZERO, |f| f.elapsed());
    // 30 phones at 15 per second: the first and the last are ~2 s apart, never a burst.
    let paced = Duration::from_millis((DESK_PHONES as u64 - 1) * 1000 / RATE * 8 / 10);
    assert!(spread >= paced, "{spread:?} < {paced:?}: not paced");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stats.check_syncs.load(Relaxed), DESK_PHONES as u64);
    assert_eq!(stats.fetches[2].load(Relaxed), 0, "no failed fetch");
    let progress = prov
        .get_reload_progress(ppb::GetReloadProgressRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(progress.resyncs_sent, DESK_PHONES as u64, "{progress:?}");

    // Restart from the config API: one NOTIFY with reboot=true, the phone fetches again
    // (unchanged: 304) and registers again from scratch.
    let registered = stats.registered.load(Relaxed);
    let r = cfg
        .restart_phone(pb::PhoneActionRequest {
            id: devices[0].phone_id.clone(),
            timeout_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.results.last().map(|r| r.outcome()),
        Some(epb::PhoneActionOutcome::Answered),
        "{r:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats.registered.load(Relaxed) < registered + 2 || stats.fetches[1].load(Relaxed) < 1 {
        assert!(Instant::now() < deadline, "the phone never re-registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (
            stats.reboots.load(Relaxed),
            stats.rebooted.load(Relaxed),
            stats.fetches[1].load(Relaxed)
        ),
        (1, 1, 1)
    );

    // A change to the softphone's profile, which applies changes only at a restart: the
    // status shows the drift (desired ≠ applied) until a restart makes it fetch.
    let soft_id = devices[DESK_PHONES].phone_id.clone();
    change_profile(&mut cfg, "soft", |s| s.media_dscp = Some(34))
        .await
        .unwrap();
    let provisioning = async |st: &mut dialtone_tests::StatusClient| {
        st.get_phone_status(spb::GetPhoneStatusRequest {
            phone_id: soft_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .provisioning
        .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let drifted = loop {
        let p = provisioning(&mut st).await;
        if p.drift {
            break p;
        }
        assert!(Instant::now() < deadline, "no drift shown: {p:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(drifted.desired_version, drifted.applied_version);
    assert_eq!(
        stats.check_syncs.load(Relaxed),
        DESK_PHONES as u64 + 1,
        "no resync for it"
    );
    cfg.restart_phone(pb::PhoneActionRequest {
        id: soft_id.clone(),
        timeout_ms: 0,
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = provisioning(&mut st).await;
        if !p.drift && p.applied_version == drifted.desired_version {
            break;
        }
        assert!(Instant::now() < deadline, "the drift never cleared: {p:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The softphone: no headset, calls are rejected with the profile's code; with the
    // headset plugged they ring (no auto-answer); unplugged, rejected again.
    // A call from the first desk phone's line, which proves itself to the edge (407).
    let caller = Caller::line(&desk_line.0, &desk_line.1).await.unwrap();
    let edge = format!("127.0.0.1:{}", sb.nodes[1].sip.udp)
        .parse()
        .unwrap();
    let call = async |expect_ringing: bool| {
        let b = branch();
        caller
            .send(&caller.text("INVITE", &soft_user, &b, "INVITE"), edge)
            .await;
        let codes = caller.codes("INVITE", Duration::from_secs(3)).await;
        if expect_ringing {
            caller
                .send(&caller.text("CANCEL", &soft_user, &b, "CANCEL"), edge)
                .await;
            let _ = caller.codes("CANCEL", Duration::from_secs(2)).await;
            let _ = caller.codes("INVITE", Duration::from_secs(2)).await;
        }
        codes
    };
    let codes = call(false).await;
    assert_eq!(codes.last(), Some(&486), "{codes:?}");
    let headset = Devices {
        inputs: vec!["Built-in Microphone".into(), "Jabra Evolve2 65".into()],
        outputs: vec!["Built-in Speakers".into(), "Jabra Evolve2 65".into()],
    };
    assert_eq!(sim.set_devices(DESK_PHONES, headset), Some(Incoming::Ring));
    let codes = call(true).await;
    assert!(
        codes.contains(&180) && !codes.iter().any(|c| *c >= 200),
        "{codes:?}"
    );
    let unplugged = Devices {
        inputs: vec!["Built-in Microphone".into()],
        outputs: vec!["Built-in Speakers".into()],
    };
    assert_eq!(
        sim.set_devices(DESK_PHONES, unplugged),
        Some(Incoming::Reject(486))
    );
    assert_eq!(call(false).await.last(), Some(&486));
    assert_eq!(
        [0, 1, 2].map(|i| stats.calls[i].load(Relaxed)),
        [0, 1, 2],
        "answered, rang, rejected"
    );

    // A third edge joins the group while the desk profile applies changes only at a
    // reboot (so no reload wave moves anyone): the phones it now serves are registered
    // elsewhere than assigned. The dry run lists exactly them, to be restarted; --apply
    // restarts them, they fetch their new edges and move, and the next dry run is empty
    // with the whole fleet OPERATIONAL again.
    change_profile(&mut cfg, "ac", |s| s.dynamic_reload = Some(false))
        .await
        .unwrap();
    let mut group = cfg
        .get_edge_group(pb::GetRequest { id: "eg".into() })
        .await
        .unwrap()
        .into_inner();
    let (third, third_udp) = sb.udp_edges(&[3])[0].clone();
    group.edges.push(pb::Edge {
        node_id: third.to_owned(),
        addresses: Some(pb::SipAddresses {
            udp: third_udp,
            ..Default::default()
        }),
    });
    let edges = group.edges.clone();
    cfg.update_edge_group(pb::UpdateEdgeGroupRequest {
        update_mask: dialtone_tests::whole(),
        edge_group: Some(group),
    })
    .await
    .unwrap();
    let movers: Vec<&ManagedDevice> = devices
        .iter()
        .filter(|d| {
            let p = placement::place(&d.phone_id, &edges, true).unwrap();
            p.primary.node_id == third || p.secondary.is_some_and(|e| e.node_id == third)
        })
        .collect();
    assert!(
        !movers.is_empty(),
        "rendezvous gives the new edge some phones"
    );
    let ask = |dry_run| pb::RebalanceSiteRequest {
        site_id: "hq".into(),
        dry_run,
    };
    let plan = cfg.rebalance_site(ask(true)).await.unwrap().into_inner();
    assert_eq!(plan.phones_checked, total);
    assert_eq!(plan.requested, 0);
    let mut moved: Vec<&str> = plan.moves.iter().map(|m| m.phone_id.as_str()).collect();
    let mut want: Vec<&str> = movers.iter().map(|d| d.phone_id.as_str()).collect();
    moved.sort();
    want.sort();
    assert_eq!(moved, want);
    for m in &plan.moves {
        assert!(m.assigned_edges.iter().any(|e| e == third), "{m:?}");
        assert!(!m.registered_edges.iter().any(|e| e == third), "{m:?}");
        assert_eq!(m.action(), pb::PhoneMoveAction::Restart, "{m:?}");
    }
    let applied = cfg.rebalance_site(ask(false)).await.unwrap().into_inner();
    assert_eq!(applied.requested, movers.len() as u64);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = cfg.rebalance_site(ask(true)).await.unwrap().into_inner();
        if left.moves.is_empty() && operational(&mut st).await == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} phones still to move: {:?}",
            left.moves.len(),
            left.moves
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(stats.moved.load(Relaxed) >= movers.len() as u64);
    let mut viewer = sb.nodes[0].config_client(VIEWER_TOKEN).await.unwrap();
    assert_eq!(
        viewer.rebalance_site(ask(true)).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    let missing = pb::RebalanceSiteRequest {
        site_id: "nowhere".into(),
        dry_run: true,
    };
    assert_eq!(
        cfg.rebalance_site(missing).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    sim.stop(false, 1).await;
}
