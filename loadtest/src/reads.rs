//! A config read (GetPhone) every 20 ms while something happens, as an operator's console
//! would keep reading: how long each took, and whether it failed (cut off at the client's
//! 5 s call timeout, or refused).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use dialtone_proto::config::v1 as pb;
use dialtone_tests::ConfigClient;

/// Reads running in the background until [`Reads::stop`].
pub struct Reads {
    reading: Arc<AtomicBool>,
    /// Each read: when it started, how long it took, whether it was answered.
    task: tokio::task::JoinHandle<Vec<(Instant, Duration, bool)>>,
}

impl Reads {
    /// Reads phone `id` through `cfg` every 20 ms from now.
    pub fn start(mut cfg: ConfigClient, id: String) -> Self {
        let reading = Arc::new(AtomicBool::new(true));
        let on = reading.clone();
        let task = tokio::spawn(async move {
            let mut took = Vec::new();
            while on.load(Relaxed) {
                let t = Instant::now();
                let ok = cfg
                    .get_phone(pb::GetRequest { id: id.clone() })
                    .await
                    .is_ok();
                took.push((t, t.elapsed(), ok));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            took
        });
        Reads { reading, task }
    }

    /// Stops reading: how many reads there were, their p50, p99 and max, and how many
    /// failed, as a line's end.
    pub async fn stop(self) -> anyhow::Result<String> {
        self.reading.store(false, Relaxed);
        Ok(summary(timings(self.task.await?)))
    }

    /// Stops reading: [`Reads::stop`]'s line for the reads started before `at`, and for
    /// those started from it (a read started before `at` and answered after counts in the
    /// first).
    pub async fn stop_split(self, at: Instant) -> anyhow::Result<(String, String)> {
        self.reading.store(false, Relaxed);
        let (before, after): (Vec<_>, Vec<_>) =
            self.task.await?.into_iter().partition(|(t, ..)| *t < at);
        Ok((summary(timings(before)), summary(timings(after))))
    }
}

/// Reads as [`summary`] takes them: their start left out.
fn timings(reads: Vec<(Instant, Duration, bool)>) -> Vec<(Duration, bool)> {
    reads.into_iter().map(|(_, d, ok)| (d, ok)).collect()
}

/// `reads` (time taken, answered) summed up: their count, p50 / p99 / max, failures.
pub fn summary(mut reads: Vec<(Duration, bool)>) -> String {
    let failed = reads.iter().filter(|(_, ok)| !ok).count();
    reads.sort();
    let at = |p: f64| {
        reads
            .get(((reads.len() as f64 * p) as usize).min(reads.len().saturating_sub(1)))
            .map_or(f64::NAN, |(d, _)| d.as_secs_f64() * 1000.0)
    };
    format!(
        "{}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, failed {failed}",
        reads.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_names_the_percentiles_and_the_failures() {
        let ms = Duration::from_millis;
        let reads: Vec<_> = (1..=100).map(|i| (ms(i), i != 100)).collect();
        assert_eq!(
            summary(reads),
            "100, p50 51.0 ms, p99 100.0 ms, max 100.0 ms, failed 1"
        );
        assert_eq!(
            summary(vec![]),
            "0, p50 NaN ms, p99 NaN ms, max NaN ms, failed 0"
        );
    }
}
