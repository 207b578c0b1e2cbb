//! What SREs run against Dialtone, for real: Prometheus (Debian) scrapes the admin ports of a
//! config node and an edge node on etcd, evaluates deploy/prometheus/alerts.yml, and answers
//! every query of the Grafana dashboards in deploy/grafana/. A phone registered over SIP
//! shows up in Prometheus.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use dialtone_proto::config::v1 as cpb;
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox,
    fleet::{add_phone, seed_site},
    free_port, http_get,
    sip::UdpPhone,
};
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// A Prometheus server on loopback, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, config_admin: &str, edge_admin: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        std::fs::copy(
            deploy().join("prometheus/alerts.yml"),
            dir.join("alerts.yml"),
        )?;
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [alerts.yml]\n\
             scrape_configs:\n\
             \x20 - job_name: dialtone-config\n    static_configs: [{{targets: ['{config_admin}']}}]\n\
             \x20 - job_name: dialtone-edge\n    static_configs: [{{targets: ['{edge_admin}']}}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("prometheus (apt install prometheus): {e}"))?;
        Ok(Prometheus { child, addr })
    }

    /// An instant query's result vector; Err with Prometheus' error for a bad query.
    async fn query(&self, expr: &str) -> anyhow::Result<Vec<Value>> {
        let (status, body) = http_get(&self.addr, &format!("/api/v1/query?query={}", encode(expr)))
            .await
            .ok_or_else(|| anyhow::anyhow!("prometheus does not answer"))?;
        let v: Value = serde_json::from_str(&body)?;
        anyhow::ensure!(
            status == 200 && v["status"] == "success",
            "{expr}: {status} {}",
            v["error"]
        );
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The first sample's value of `expr`, waiting up to `within` for it to equal `want`.
    async fn wait_value(&self, expr: &str, want: f64, within: Duration) -> Option<f64> {
        let deadline = Instant::now() + within;
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(r) = self.query(expr).await {
                last = r
                    .first()
                    .and_then(|s| s["value"][1].as_str())
                    .and_then(|v| v.parse::<f64>().ok());
                if last == Some(want) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        last
    }
}

/// Percent-encoding for a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every PromQL expression of the dashboards, with the `$node` variable set to all edges.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(deploy().join("grafana")).unwrap() {
        let path = entry.unwrap().path();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                out.push((
                    format!("{} / {}", d["title"], p["title"]),
                    t["expr"].as_str().unwrap().replace("$node", ".*"),
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_evaluates_the_alerts_and_answers_the_dashboards() {
    let sb = ClusterSandbox::with_etcd(1, &["config,status", "edge"])
        .await
        .unwrap();
    let admin = |i: usize| {
        sb.nodes[i]
            .admin_url
            .trim_start_matches("http://")
            .to_owned()
    };
    let prom = Prometheus::start(&sb.dir().join("prometheus"), &admin(0), &admin(1)).unwrap();

    // Both nodes are scraped and up.
    for job in ["dialtone-config", "dialtone-edge"] {
        let up = prom
            .wait_value(
                &format!("up{{job=\"{job}\"}}"),
                1.0,
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(up, Some(1.0), "{job} never scraped");
    }

    // A phone registered over SIP is counted.
    let mut c = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    let mut e = sb.nodes[1].edge_client(ADMIN_TOKEN).await.unwrap();
    seed_site(&mut c, cpb::PhoneSettings::default())
        .await
        .unwrap();
    let p = add_phone(&mut c, &mut e, "desk-1", "1001").await.unwrap();
    let edge_sip = std::net::SocketAddr::from(([127, 0, 0, 1], sb.nodes[1].sip.udp));
    let mut phone = UdpPhone::new(edge_sip, &p.sip_user, &p.password)
        .await
        .unwrap();
    let answer = phone.register(600).await.unwrap();
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    let phones = prom
        .wait_value(
            "sum(dialtone_edge_registered_phones)",
            1.0,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        phones,
        Some(1.0),
        "the registered phone never reached Prometheus"
    );

    // Every dashboard query is valid PromQL and the panels about the edge have data.
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 20,
        "dashboards hold {} queries",
        queries.len()
    );
    let mut empty = Vec::new();
    for (panel, expr) in &queries {
        let r = prom
            .query(expr)
            .await
            .unwrap_or_else(|e| panic!("{panel}: {e}"));
        if r.is_empty() {
            empty.push(panel.clone());
        }
    }
    // Counters need two samples for rate(); everything else must answer now.
    assert!(
        empty.len() <= queries.len() / 2,
        "too many empty panels: {empty:?}"
    );

    // The alert rules load and evaluate without errors, and none fires on a healthy cluster.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get(&prom.addr, "/api/v1/rules").await.unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        let written = include_str!("../../deploy/prometheus/alerts.yml")
            .matches("- alert:")
            .count();
        assert_eq!(rules.len(), written, "{body}");
        let evaluated = rules.iter().all(|r| r["health"] == "ok");
        if evaluated {
            let firing: Vec<&Value> = rules.iter().filter(|r| r["state"] == "firing").collect();
            assert!(
                firing.is_empty(),
                "alerts firing on a healthy cluster: {firing:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rules not all evaluated ok: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
