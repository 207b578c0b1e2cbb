//! The REST API (`/api/v2/...`): a client written only from Genesys Cloud's published API
//! shapes (`tests/rest/genesys_client.py`) lists, creates, gets, updates, deletes and
//! reboots a phone against a real node unchanged, and every JSON answer it gets is
//! checked against the node's OpenAPI document. What the API writes is what gRPC reads:
//! one core behind both.

use std::{path::Path, process::Command};

use anyhow::{Context, ensure};
use dialtone_proto::config::v1 as pb;
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, VIEWER_TOKEN, fleet, http_request_within, test_python,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genesys_cloud_client_manages_phones_unchanged() -> anyhow::Result<()> {
    let sb = ClusterSandbox::with_etcd(1, &["config"]).await?;
    let node = &sb.nodes[0];
    let mut c = node.config_client(ADMIN_TOKEN).await?;
    fleet::seed_site(&mut c, pb::PhoneSettings::default()).await?;
    // A desk phone family, as a Genesys Cloud script creates a provisioned phone with.
    fleet::create_profile(
        &mut c,
        "yealink",
        "Yealink desks",
        pb::MetaBase::Yealink,
        pb::PhoneSettings::default(),
    )
    .await?;
    let url = node.api_url();
    ensure!(
        url.starts_with("http://127.0.0.1:"),
        "api endpoint: {url:?}"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("rest/genesys_client.py");
    let out = Command::new(test_python())
        .arg(&script)
        .args([url.as_str(), ADMIN_TOKEN, VIEWER_TOKEN, "hq", "yealink"])
        .output()
        .context("the test venv's python (scripts/deps.sh --test makes it)")?;
    let said = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "the client failed:\n{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        said.contains("checked ") && !said.contains("checked 0 "),
        "no answer was checked against the OpenAPI document:\n{said}"
    );

    // One core: a phone the API creates is the phone gRPC reads, and the reverse.
    let made = rest(&url, "POST", "/api/v2/telephony/providers/edges/phones", Some(
        r#"{"name":"Both ways","site":{"id":"hq"},"phoneBaseSettings":{"id":"desk"},"kind":"unmanaged","lines":[{}]}"#,
    ))
    .await?;
    let id = made["id"].as_str().context("an id")?.to_owned();
    let p = c
        .get_phone(pb::GetRequest { id: id.clone() })
        .await?
        .into_inner();
    ensure!(
        p.name == "Both ways" && p.site_id == "hq" && p.lines.len() == 1,
        "{p:?}"
    );
    ensure!(
        made["version"].as_i64() == Some(p.version),
        "versions differ: {made} vs {}",
        p.version
    );
    let mut renamed = p.clone();
    renamed.name = "Renamed over gRPC".into();
    c.update_phone(pb::UpdatePhoneRequest {
        update_mask: dialtone_tests::whole(),
        phone: Some(renamed),
    })
    .await?;
    let read = rest(
        &url,
        "GET",
        &format!("/api/v2/telephony/providers/edges/phones/{id}"),
        None,
    )
    .await?;
    ensure!(read["name"] == "Renamed over gRPC", "{read}");
    ensure!(
        read["lines"][0]["properties"]["station_identity_address"]["value"]["instance"]
            == p.lines[0].sip_user.as_str(),
        "{read}"
    );
    Ok(())
}

/// One admin request; the JSON answer of a 2xx.
async fn rest(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    rest_as(url, ADMIN_TOKEN, method, path, body).await
}

/// A registered phone's status through the REST API is the status role's, lists filter by
/// it, and a reboot reaches the phone as a check-sync NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_phone_shows_its_status_and_reboots() -> anyhow::Result<()> {
    use dialtone_proto::status::v1::{self as spb, OperationalStatus};
    use std::time::{Duration, Instant};
    let (sb, mut c, mut e) =
        ClusterSandbox::embedded_seeded(&[], pb::PhoneSettings::default()).await?;
    let node = &sb.nodes[0];
    let added = fleet::add_phone_with(&mut c, &mut e, "Desk A", "1001", "desk").await?;
    let other = fleet::add_phone_with(&mut c, &mut e, "Desk B", "1002", "desk").await?;
    let edge = std::net::SocketAddr::from(([127, 0, 0, 1], node.sip.udp));
    let mut phone =
        dialtone_tests::sip::UdpPhone::new(edge, &added.sip_user, &added.password).await?;
    let answer = phone.register(600).await?;
    ensure!(answer.starts_with("SIP/2.0 200"), "{answer}");
    let token = node.admin_token();
    let mut st = node.status_client(&token).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while st
        .get_phone_status(spb::GetPhoneStatusRequest {
            phone_id: added.phone_id.clone(),
        })
        .await
        .map_or(true, |s| {
            s.into_inner().status() != OperationalStatus::Operational
        })
    {
        ensure!(Instant::now() < deadline, "never operational");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let url = node.api_url();
    let get = |path: String| {
        let (url, token) = (url.clone(), token.clone());
        async move { rest_as(&url, &token, "GET", &path, None).await }
    };
    let phones = "/api/v2/telephony/providers/edges/phones";
    let one = get(format!("{phones}/{}", added.phone_id)).await?;
    ensure!(one["status"]["operationalStatus"] == "OPERATIONAL", "{one}");
    ensure!(one["status"]["edgesStatus"] == "IN_SERVICE", "{one}");
    ensure!(one["status"]["edge"]["id"] == "solo", "{one}");
    ensure!(
        one["status"]["lineStatuses"][0]["reachable"] == true
            && one["status"]["lineStatuses"][0]["addressOfRecord"]
                .as_str()
                .is_some_and(|a| a.starts_with(&format!("sip:{}@", added.sip_user))),
        "{one}"
    );
    let offline = get(format!("{phones}/{}", other.phone_id)).await?;
    ensure!(
        offline["status"]["operationalStatus"] == "OFFLINE",
        "{offline}"
    );

    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["entities"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let up = get(format!("{phones}?status.operationalStatus=OPERATIONAL")).await?;
    ensure!(ids(&up) == [added.phone_id.clone()], "{up}");
    ensure!(
        up["entities"][0]["status"]["operationalStatus"] == "OPERATIONAL",
        "{up}"
    );
    let down = get(format!(
        "{phones}?status.operationalStatus=offline&site.id=hq"
    ))
    .await?;
    ensure!(ids(&down) == [other.phone_id.clone()], "{down}");
    let plain = get(format!("{phones}?pageSize=5")).await?;
    ensure!(
        plain["entities"][0].get("status").is_none(),
        "status only with expand: {plain}"
    );
    let expanded = get(format!("{phones}?expand=status&name=Desk%20A")).await?;
    ensure!(
        expanded["entities"][0]["status"]["operationalStatus"] == "OPERATIONAL",
        "{expanded}"
    );

    // Reboot: the edge holding the registration sends the phone a check-sync NOTIFY.
    let reboot = format!("{phones}/{}/reboot", added.phone_id);
    let rebooting = tokio::spawn({
        let (url, token) = (url.clone(), token.clone());
        async move { rest_status(&url, &token, "POST", &reboot).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let notify = loop {
        ensure!(Instant::now() < deadline, "no NOTIFY reached the phone");
        if let Some(m) = phone.recv(Duration::from_millis(500)).await
            && m.starts_with("NOTIFY ")
        {
            break m;
        }
    };
    ensure!(
        notify.to_ascii_lowercase().contains("check-sync"),
        "{notify}"
    );
    phone
        .send(&dialtone_tests::sip::answer_to(&notify, 200, ""))
        .await?;
    ensure!(rebooting.await?? == 202, "reboot answered otherwise");
    Ok(())
}

/// `method` `path` with `token`; the JSON answer of a 2xx.
async fn rest_as(
    url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let (status, text) = call(url, token, method, path, body).await?;
    ensure!(
        (200..300).contains(&status),
        "{method} {path}: {status} {text}"
    );
    Ok(serde_json::from_str(&text)?)
}

/// The status of `method` `path` with `token`.
async fn rest_status(url: &str, token: &str, method: &str, path: &str) -> anyhow::Result<u16> {
    Ok(call(url, token, method, path, None).await?.0)
}

/// `method` `path` with `token` and `body`: status and body.
async fn call(
    url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let auth = format!("Bearer {token}");
    // Listings that read the whole fleet (a filter over 25,000 phones) take seconds on a
    // loaded machine.
    http_request_within(
        url.trim_start_matches("http://"),
        method,
        path,
        &[("Authorization", &auth)],
        body,
        std::time::Duration::from_secs(20),
    )
    .await
    .context("no answer")
}

/// Pages walk a fleet of 25,000 phones: every phone once, in name order (case-folded, as
/// the read-everything path with a filter sorts them too), links to the next page until
/// the last, and nothing past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_walk_a_fleet_of_25000_phones() -> anyhow::Result<()> {
    const N: usize = 25_000;
    let sb = ClusterSandbox::with_etcd(1, &["config"]).await?;
    let node = &sb.nodes[0];
    let mut c = node.config_client(ADMIN_TOKEN).await?;
    fleet::seed_site(&mut c, pb::PhoneSettings::default()).await?;
    let phones = fleet::import(&mut c, N, "p").await?;
    // Upper case sorts as lower case: "Q upper" after every "p ...".
    fleet::update_phone(&mut c, &phones[7].0, |p| p.name = "Q upper".into()).await?;
    let url = node.api_url();
    const PHONES: &str = "/api/v2/telephony/providers/edges/phones";

    let mut next = Some(format!("{PHONES}?pageSize=500&pageNumber=1"));
    let mut names = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut pages = 0;
    while let Some(path) = next {
        let page = rest(&url, "GET", &path, None).await?;
        ensure!(
            page["total"] == N && page["pageCount"] == 50,
            "{path}: {}",
            page["total"]
        );
        for p in page["entities"].as_array().context("entities")? {
            names.push(p["name"].as_str().context("name")?.to_owned());
            ensure!(ids.insert(p["id"].to_string()), "{} listed twice", p["id"]);
        }
        pages += 1;
        next = page["nextUri"].as_str().map(str::to_owned);
    }
    ensure!(
        pages == 50 && names.len() == N,
        "{pages} pages, {} phones",
        names.len()
    );
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    ensure!(names == sorted, "the pages are not in name order");
    ensure!(
        names.last().map(String::as_str) == Some("Q upper"),
        "last: {:?}",
        names.last()
    );

    // The same order through the path that reads and sorts (a filter), and backwards.
    let first = rest(&url, "GET", &format!("{PHONES}?pageSize=500"), None).await?;
    let filtered = rest(
        &url,
        "GET",
        &format!("{PHONES}?pageSize=500&site.id=hq"),
        None,
    )
    .await?;
    ensure!(
        first["entities"] == filtered["entities"],
        "the filtered first page differs"
    );
    let back = rest(
        &url,
        "GET",
        &format!("{PHONES}?pageSize=3&sortOrder=DESC"),
        None,
    )
    .await?;
    let back: Vec<&str> = back["entities"]
        .as_array()
        .context("entities")?
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let tail: Vec<&str> = names.iter().rev().take(3).map(String::as_str).collect();
    ensure!(back == tail, "DESC: {back:?} vs {tail:?}");
    let past = rest(
        &url,
        "GET",
        &format!("{PHONES}?pageSize=500&pageNumber=51"),
        None,
    )
    .await?;
    ensure!(
        past["entities"].as_array().is_some_and(Vec::is_empty) && past["total"] == N,
        "past the last page: {past}"
    );
    Ok(())
}
