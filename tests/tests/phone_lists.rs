//! The Phones list as the seeds show it: "list with filters (site, base settings, status,
//! name, hardware id)" and a status column. The status role filters by status, site,
//! profile, name prefix and a list of ids together; `dialtonectl phones list` shows the
//! live status and combines `--status` with the others; `dialtonectl status` takes the same
//! filters. A real node, a real phone registering over UDP.

use std::time::Duration;

use dialtone_proto::{
    config::v1 as pb,
    status::v1::{self as spb, OperationalStatus},
};
use dialtone_tests::{
    ClusterSandbox,
    fleet::{add_phone_with, create_profile},
    sip::UdpPhone,
};

fn ctl(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    dialtone_tests::dialtonectl(data_dir, args)
}

/// The phone ids of a table's rows whose STATUS column says `status` (and every row id when
/// `status` is empty), in order.
fn rows_with(table: &str, status: &str) -> Vec<String> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let col = header.find("STATUS").expect("a STATUS column");
    lines
        .filter(|l| status.is_empty() || l.get(col..).is_some_and(|c| c.starts_with(status)))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phones_list_filters_by_live_status_with_site_profile_and_name() {
    let (sb, mut c, mut e) = ClusterSandbox::embedded_seeded(&[], pb::PhoneSettings::default())
        .await
        .unwrap();
    create_profile(
        &mut c,
        "lobby",
        "Lobby phones",
        pb::MetaBase::GenericSip,
        pb::PhoneSettings::default(),
    )
    .await
    .unwrap();
    let desk_a = add_phone_with(&mut c, &mut e, "Desk A", "1001", "desk")
        .await
        .unwrap();
    let desk_b = add_phone_with(&mut c, &mut e, "Desk B", "1002", "desk")
        .await
        .unwrap();
    let lobby = add_phone_with(&mut c, &mut e, "Lobby", "1003", "lobby")
        .await
        .unwrap();
    let edge = std::net::SocketAddr::from(([127, 0, 0, 1], sb.nodes[0].sip.udp));
    let mut phone = UdpPhone::new(edge, &desk_a.sip_user, &desk_a.password)
        .await
        .unwrap();
    let answer = phone.register(600).await.unwrap();
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");

    let token = sb.nodes[0].admin_token();
    let mut st = sb.nodes[0].status_client(&token).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while st
        .get_phone_status(spb::GetPhoneStatusRequest {
            phone_id: desk_a.phone_id.clone(),
        })
        .await
        .map_or(true, |s| {
            s.into_inner().status() != OperationalStatus::Operational
        })
    {
        assert!(std::time::Instant::now() < deadline, "never operational");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // (status, profile, name prefix, ids) → the phones listed, in id order.
    let (a, b, l) = (&desk_a.phone_id, &desk_b.phone_id, &lobby.phone_id);
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    let op = OperationalStatus::Operational;
    let off = OperationalStatus::Offline;
    let none = OperationalStatus::Unspecified;
    type Case<'a> = (
        OperationalStatus,
        &'a str,
        &'a str,
        Vec<&'a String>,
        Vec<&'a String>,
    );
    let cases: Vec<Case> = vec![
        (none, "", "", vec![], vec![a, b, l]),
        (op, "", "", vec![], vec![a]),
        (off, "", "", vec![], vec![b, l]),
        (off, "desk", "", vec![], vec![b]),
        (off, "lobby", "", vec![], vec![l]),
        (op, "lobby", "", vec![], vec![]),
        (none, "", "Desk", vec![], vec![a, b]),
        (off, "", "Desk", vec![], vec![b]),
        (none, "desk", "Desk B", vec![], vec![b]),
        (none, "", "", vec![l, a, l], vec![a, l]),
        (off, "", "", vec![a, l], vec![l]),
    ];
    for (status, profile, prefix, ids, want) in cases {
        let got = st
            .list_phone_statuses(spb::ListPhoneStatusesRequest {
                site_id: "hq".into(),
                status: status as i32,
                base_settings_id: profile.into(),
                name_prefix: prefix.into(),
                phone_ids: ids.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let got: Vec<String> = got.statuses.into_iter().map(|s| s.phone_id).collect();
        assert_eq!(
            got,
            sorted(want),
            "{status:?} {profile:?} {prefix:?} {ids:?}"
        );
    }
    // Asked-for ids page like the whole fleet: one at a time, each once, in id order.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = st
            .list_phone_statuses(spb::ListPhoneStatusesRequest {
                phone_ids: vec![l.clone(), b.clone(), a.clone(), "nobody".into()],
                page_size: 1,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        paged.extend(page.statuses.into_iter().map(|s| s.phone_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, sorted(vec![a, b, l]));
    let err = st
        .list_phone_statuses(spb::ListPhoneStatusesRequest {
            phone_ids: vec!["x".into(); 1001],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("phone_ids"), "{err:?}");

    // dialtonectl: the status column, and --status with the configuration's filters.
    let dir = &sb.nodes[0].data_dir;
    let (ok, out, err) = ctl(dir, &["phones", "list"]);
    assert!(ok, "{err}");
    assert_eq!(rows_with(&out, "operational"), vec![a.clone()], "{out}");
    assert_eq!(rows_with(&out, "offline"), sorted(vec![b, l]), "{out}");
    let listed = |args: &[&str]| {
        let (ok, out, err) = ctl(dir, args);
        assert!(ok, "{args:?}: {err}");
        rows_with(&out, "")
    };
    assert_eq!(
        listed(&[
            "phones",
            "list",
            "--status",
            "offline",
            "--base-settings",
            "desk"
        ]),
        vec![b.clone()]
    );
    assert_eq!(
        listed(&["phones", "list", "--status", "operational", "--site", "hq"]),
        vec![a.clone()]
    );
    assert_eq!(
        listed(&[
            "phones",
            "list",
            "--status",
            "offline",
            "--name-prefix",
            "Lob"
        ]),
        vec![l.clone()]
    );
    assert_eq!(
        listed(&[
            "phones",
            "list",
            "--status",
            "offline",
            "--page-size",
            "1",
            "--all"
        ]),
        sorted(vec![b, l])
    );
    let (ok, _, err) = ctl(
        dir,
        &["phones", "list", "--status", "offline", "--kind", "managed"],
    );
    assert!(!ok && err.contains("--status combines with"), "{err}");
    let (ok, _, err) = ctl(dir, &["phones", "list", "--status", "asleep"]);
    assert!(
        !ok && err.contains("operational, degraded, offline"),
        "{err}"
    );

    // A phone's page shows its registration: status, then its line's contact.
    let (ok, out, err) = ctl(dir, &["phones", "get", a]);
    assert!(ok, "{err}");
    assert_eq!(rows_with(&out, "operational"), vec![a.clone()], "{out}");
    assert!(
        out.contains(&desk_a.sip_user) && out.contains("127.0.0.1:"),
        "{out}"
    );

    // dialtonectl status takes the profile and name filters too.
    let (ok, out, err) = ctl(
        dir,
        &[
            "status",
            "--once",
            "--base-settings",
            "desk",
            "--name-prefix",
            "Desk B",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(b.as_str()) && !out.contains(a.as_str()),
        "{out}"
    );
    assert!(!out.contains(l.as_str()), "{out}");
}
