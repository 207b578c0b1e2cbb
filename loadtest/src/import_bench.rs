//! Imports N phones from CSV and lists pages at that size, on the embedded store and on a
//! single-member etcd, in one run, and prints both side by side.
//!
//! `cargo run --release -p dialtone-loadtest --bin import-bench -- [PHONES]` (default 100000;
//! needs `cargo build --release --bins` and etcd 3.5: `scripts/deps.sh --bench`). Targets
//! (issue 2): import ≤ 20 s embedded, ≤ 60 s etcd; first-page list p99 ≤ 20 ms.

use std::time::{Duration, Instant};

use anyhow::Context;
use dialtone_proto::config::v1 as pb;
use dialtone_tests::{ADMIN_TOKEN, ClusterSandbox, ConfigClient};

/// List requests timed per backend (after one warm-up).
const SAMPLES: usize = 1000;

struct Figures {
    import: Duration,
    created: usize,
    list_p50: Duration,
    list_p99: Duration,
    site_p99: Duration,
}

fn csv(n: usize) -> String {
    let mut s = String::from("name,kind,site_id,base_settings_id,hardware_id,lines,assignment\n");
    for i in 0..n {
        s.push_str(&format!(
            "Phone {i},managed,hq,vvx,0004f2{i:06x},{i},site:{}\n",
            1000 + i % 9000
        ));
    }
    s
}

async fn seed(c: &mut ConfigClient) -> anyhow::Result<()> {
    let g = pb::EdgeGroup {
        id: "eg".into(),
        edges: vec![pb::Edge {
            node_id: "e1".into(),
            addresses: Some(pb::SipAddresses {
                udp: "127.0.0.1:5060".into(),
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    c.create_edge_group(pb::CreateEdgeGroupRequest {
        edge_group: Some(g),
    })
    .await?;
    let site = pb::Site {
        id: "hq".into(),
        edge_group_id: "eg".into(),
        ..Default::default()
    };
    c.create_site(pb::CreateSiteRequest { site: Some(site) })
        .await?;
    let b = pb::BaseSettings {
        id: "vvx".into(),
        meta_base: pb::MetaBase::PolyVvx as i32,
        ..Default::default()
    };
    c.create_base_settings(pb::CreateBaseSettingsRequest {
        base_settings: Some(b),
    })
    .await?;
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn measure(c: &mut ConfigClient, data: &str) -> anyhow::Result<Figures> {
    seed(c).await?;
    let chunks: Vec<pb::ImportPhonesRequest> = data
        .as_bytes()
        .chunks(1 << 20)
        .map(|b| pb::ImportPhonesRequest { chunk: b.to_vec() })
        .collect();
    let t0 = Instant::now();
    let mut s = c
        .import_phones(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    let mut created = 0;
    while let Some(r) = s.message().await? {
        if r.outcome == pb::ImportOutcome::Created as i32 {
            created += 1;
        }
    }
    let import = t0.elapsed();
    let mut list = Vec::new();
    let mut site = Vec::new();
    for i in 0..=SAMPLES {
        let t = Instant::now();
        c.list_phones(pb::ListPhonesRequest {
            page_size: 100,
            ..Default::default()
        })
        .await?;
        list.push(t.elapsed());
        let f = pb::PhoneFilter {
            site_id: "hq".into(),
            ..Default::default()
        };
        let t = Instant::now();
        c.list_phones(pb::ListPhonesRequest {
            filter: Some(f),
            page_size: 100,
            ..Default::default()
        })
        .await?;
        site.push(t.elapsed());
        if i == 0 {
            list.clear();
            site.clear();
        }
    }
    list.sort();
    site.sort();
    Ok(Figures {
        import,
        created,
        list_p50: pct(&list, 0.5),
        list_p99: pct(&list, 0.99),
        site_p99: pct(&site, 0.99),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("PHONES must be a number")?
        .unwrap_or(100_000);
    let data = csv(n);
    eprintln!("csv: {n} phones, {} bytes", data.len());

    let embedded = {
        let sb = ClusterSandbox::embedded().await?;
        let mut c = sb.nodes[0]
            .config_client(&sb.nodes[0].admin_token())
            .await?;
        measure(&mut c, &data).await?
    };
    let etcd = {
        let sb = ClusterSandbox::with_etcd(1, &["config"]).await?;
        let mut c = sb.nodes[0].config_client(ADMIN_TOKEN).await?;
        measure(&mut c, &data).await?
    };
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!("import of {n} phones from CSV, then {SAMPLES} first-page lists (100 phones/page)");
    println!(
        "{:<28}{:>16}{:>16}{:>10}",
        "", "embedded", "etcd (1 member)", "target"
    );
    println!(
        "{:<28}{:>16}{:>16}{:>10}",
        "import time",
        format!("{:.1} s", embedded.import.as_secs_f64()),
        format!("{:.1} s", etcd.import.as_secs_f64()),
        "20 / 60 s"
    );
    println!(
        "{:<28}{:>16}{:>16}",
        "phones created", embedded.created, etcd.created
    );
    println!(
        "{:<28}{:>16.0}{:>16.0}",
        "import rate (phones/s)",
        n as f64 / embedded.import.as_secs_f64(),
        n as f64 / etcd.import.as_secs_f64()
    );
    println!(
        "{:<28}{:>16}{:>16}",
        "list first page p50",
        ms(embedded.list_p50),
        ms(etcd.list_p50)
    );
    println!(
        "{:<28}{:>16}{:>16}{:>10}",
        "list first page p99",
        ms(embedded.list_p99),
        ms(etcd.list_p99),
        "20 ms"
    );
    println!(
        "{:<28}{:>16}{:>16}{:>10}",
        "list by site p99",
        ms(embedded.site_p99),
        ms(etcd.site_p99),
        "20 ms"
    );
    println!(
        "etcd/embedded import time ratio: {:.2}",
        etcd.import.as_secs_f64() / embedded.import.as_secs_f64()
    );
    Ok(())
}
