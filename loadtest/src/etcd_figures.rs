//! What an etcd member's `/metrics` says of its keys, its database and its writes so far.

use anyhow::Context as _;

/// An etcd member's figures at one moment.
#[derive(Debug, Default)]
pub struct EtcdFigures {
    pub keys: u64,
    pub db_bytes: u64,
    pub db_in_use_bytes: u64,
    pub puts: u64,
    pub deletes: u64,
    /// Its write-ahead log's fsyncs so far.
    pub wal_fsyncs: u64,
    /// Their histogram: (upper bound in seconds, fsyncs that took at most that), rising.
    pub wal_fsync_buckets: Vec<(f64, u64)>,
}

impl EtcdFigures {
    /// Puts and deletes so far: a rate is the difference of two readings.
    pub fn writes(&self) -> u64 {
        self.puts + self.deletes
    }

    /// The WAL's fsyncs that took longer than `secs` (a bucket bound: 0.001 × 2ⁿ): a
    /// disk stall. etcd applies nothing meanwhile, and leases shorter than it expire.
    /// None when etcd has no such bucket.
    pub fn wal_fsyncs_over(&self, secs: f64) -> Option<u64> {
        self.wal_fsync_buckets
            .iter()
            .find(|(le, _)| (*le - secs).abs() < 1e-9)
            .map(|(_, within)| self.wal_fsyncs.saturating_sub(*within))
    }

    /// A bound on the slowest WAL fsync: the lowest bucket holding them all (none when
    /// there was none, infinite past the last bucket).
    pub fn slowest_wal_fsync_within(&self) -> Option<f64> {
        (self.wal_fsyncs > 0).then(|| {
            self.wal_fsync_buckets
                .iter()
                .find(|(_, n)| *n >= self.wal_fsyncs)
                .map_or(f64::INFINITY, |(le, _)| *le)
        })
    }

    /// A line's end: how many fsyncs, how many over 1 s, and the slowest's bound.
    pub fn wal_fsync_summary(&self) -> String {
        let slowest = self
            .slowest_wal_fsync_within()
            .map_or("none".to_owned(), |s| format!("at most {s} s"));
        let over = self
            .wal_fsyncs_over(1.024)
            .map_or("?".to_owned(), |n| n.to_string());
        format!(
            "{} WAL fsyncs, {over} over 1 s, the slowest {slowest}",
            self.wal_fsyncs,
        )
    }
}

/// Reads the figures of the member whose client URL is `client_url` (`http://…`).
pub async fn etcd_metrics(client_url: &str) -> anyhow::Result<EtcdFigures> {
    let addr = client_url.trim_start_matches("http://");
    let (_, text) = dialtone_tests::http_get(addr, "/metrics")
        .await
        .context("etcd's /metrics did not answer")?;
    Ok(parse(&text))
}

fn parse(text: &str) -> EtcdFigures {
    let mut f = EtcdFigures::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value = value.parse::<f64>().unwrap_or(0.0) as u64;
        if let Some(le) = name
            .strip_prefix("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"")
            .and_then(|rest| rest.strip_suffix("\"}"))
        {
            if let Ok(le) = le.parse::<f64>() {
                f.wal_fsync_buckets.push((le, value));
            }
            continue;
        }
        match name {
            "etcd_debugging_mvcc_keys_total" => f.keys = value,
            "etcd_mvcc_db_total_size_in_bytes" => f.db_bytes = value,
            "etcd_mvcc_db_total_size_in_use_in_bytes" => f.db_in_use_bytes = value,
            "etcd_mvcc_put_total" => f.puts = value,
            "etcd_mvcc_delete_total" => f.deletes = value,
            "etcd_disk_wal_fsync_duration_seconds_count" => f.wal_fsyncs = value,
            _ => {}
        }
    }
    f
}

/// Bytes as MiB, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_are_read_off_their_lines_and_comments_are_skipped() {
        let text = "# HELP etcd_debugging_mvcc_keys_total Total number of keys.\n\
                    # TYPE etcd_debugging_mvcc_keys_total gauge\n\
                    etcd_debugging_mvcc_keys_total 8.000016e+06\n\
                    etcd_mvcc_db_total_size_in_bytes 1.918e+09\n\
                    etcd_mvcc_db_total_size_in_use_in_bytes 1024\n\
                    etcd_mvcc_put_total 12\n\
                    etcd_mvcc_delete_total 3\n\
                    etcd_mvcc_range_total 99\n";
        let f = parse(text);
        assert_eq!(f.keys, 8_000_016);
        assert_eq!(f.db_bytes, 1_918_000_000);
        assert_eq!(f.db_in_use_bytes, 1024);
        assert_eq!(f.writes(), 15);
        assert_eq!(f.slowest_wal_fsync_within(), None);
    }

    #[test]
    fn a_disk_stall_shows_in_the_wal_fsync_buckets() {
        let text = "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 900\n\
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.512\"} 995\n\
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"1.024\"} 998\n\
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"2.048\"} 999\n\
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"4.096\"} 1000\n\
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 1000\n\
                    etcd_disk_wal_fsync_duration_seconds_count 1000\n";
        let f = parse(text);
        assert_eq!(f.wal_fsyncs_over(1.024), Some(2));
        assert_eq!(f.wal_fsyncs_over(0.256), None, "no such bucket");
        assert_eq!(f.slowest_wal_fsync_within(), Some(4.096));
        assert_eq!(
            f.wal_fsync_summary(),
            "1000 WAL fsyncs, 2 over 1 s, the slowest at most 4.096 s"
        );
    }
}
