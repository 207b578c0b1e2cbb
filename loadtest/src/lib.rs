//! Shared pieces of the benchmarks.

pub mod etcd_figures;
pub mod kamailio;
pub mod lag_watch;
pub mod procfs;
pub mod reads;
pub mod sipp_stats;

use std::time::Duration;

/// Waits (up to a minute) until `edge`'s credentials cache holds `lines` lines, as its
/// `dialtone_edge_cached_lines` metric says: a benchmark starts once every user can
/// authenticate.
pub async fn wait_cached_lines(edge: &dialtone_tests::Node, lines: usize) {
    let want = format!(
        "dialtone_edge_cached_lines{{node=\"{}\"}} {lines}",
        edge.node_id
    );
    for _ in 0..600 {
        if edge
            .http_get("/metrics")
            .await
            .is_some_and(|(_, m)| m.contains(&want))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
