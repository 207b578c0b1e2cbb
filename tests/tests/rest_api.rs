//! The REST API (`/api/v2/...`): a client written only from Genesys Cloud's published API
//! shapes (`tests/rest/genesys_client.py`) lists, creates, gets, updates, deletes and
//! reboots a phone against a real node unchanged, and every JSON answer it gets is
//! checked against the node's OpenAPI document. What the API writes is what gRPC reads:
//! one core behind both.

use std::{path::Path, process::Command};

use anyhow::{Context, ensure};
use dialtone_proto::config::v1 as pb;
use dialtone_tests::{ADMIN_TOKEN, ClusterSandbox, VIEWER_TOKEN, fleet, http_request};

fn python() -> std::path::PathBuf {
    std::env::var_os("DIALTONE_TEST_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/dialtone/test-venv")
        })
        .join("bin/python")
}

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
    let out = Command::new(python())
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
    let addr = url.trim_start_matches("http://");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (status, text) = http_request(addr, method, path, &[("Authorization", &auth)], body)
        .await
        .context("no answer")?;
    ensure!(
        (200..300).contains(&status),
        "{method} {path}: {status} {text}"
    );
    Ok(serde_json::from_str(&text)?)
}
