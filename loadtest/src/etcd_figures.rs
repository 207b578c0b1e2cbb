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
}

impl EtcdFigures {
    /// Puts and deletes so far: a rate is the difference of two readings.
    pub fn writes(&self) -> u64 {
        self.puts + self.deletes
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
        match name {
            "etcd_debugging_mvcc_keys_total" => f.keys = value,
            "etcd_mvcc_db_total_size_in_bytes" => f.db_bytes = value,
            "etcd_mvcc_db_total_size_in_use_in_bytes" => f.db_in_use_bytes = value,
            "etcd_mvcc_put_total" => f.puts = value,
            "etcd_mvcc_delete_total" => f.deletes = value,
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
    }
}
