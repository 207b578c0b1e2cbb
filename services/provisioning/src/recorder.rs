//! Records fetches under `provision/{phone}` without slowing them: the HTTPS path hands a
//! fetch to a channel and answers; one task writes a phone's state when something in it
//! changed (version, file, source, problems) or its last write is a minute old. A full
//! channel drops the record (the state is informational; the next fetch records again).

use std::collections::HashMap;

use dialtone_domain::keys;
use dialtone_proto::provisioning::v1::ProvisionState;
use dialtone_store::Store;
use prost::Message;
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::warn;

/// Milliseconds after which an unchanged state is written again (to refresh its time).
pub const REFRESH_MS: i64 = 60_000;
/// Records waiting to be written before new ones are dropped.
const QUEUE: usize = 8192;
/// Phones whose last written state is remembered (past it, the memory starts over).
const REMEMBERED: usize = 200_000;

/// One successful fetch.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Phone id.
    pub phone_id: String,
    /// Version of the phone's files.
    pub version: String,
    /// The file.
    pub file: String,
    /// `ip:port` of the phone.
    pub source: String,
    /// Its User-Agent.
    pub user_agent: String,
    /// Problems rendering its files (empty: none).
    pub problems: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
}

/// The sending side, cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Fetch>,
}

/// The state a fetch leads to, from the last one written (if any).
pub fn next_state(last: Option<&ProvisionState>, f: &Fetch) -> ProvisionState {
    let mut s = last.cloned().unwrap_or_default();
    s.phone_id = f.phone_id.clone();
    s.applied_version = f.version.clone();
    // What was served is what the phone should run now.
    s.desired_version = f.version.clone();
    s.last_fetch_ms = f.at_ms;
    s.last_file = f.file.clone();
    s.source = f.source.clone();
    s.user_agent = f.user_agent.clone();
    if f.problems != s.last_error {
        s.last_error = f.problems.clone();
        s.last_error_ms = if f.problems.is_empty() { 0 } else { f.at_ms };
    }
    s
}

/// Whether `next` must be written after `last`.
pub fn worth_writing(last: Option<&ProvisionState>, next: &ProvisionState) -> bool {
    let Some(last) = last else { return true };
    last.applied_version != next.applied_version
        || last.desired_version != next.desired_version
        || last.last_file != next.last_file
        || last.source != next.source
        || last.last_error != next.last_error
        || last.user_agent != next.user_agent
        || next.last_fetch_ms - last.last_fetch_ms >= REFRESH_MS
}

impl Recorder {
    /// Starts the writer.
    pub fn spawn(store: Store) -> (Self, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Fetch>(QUEUE);
        let task = tokio::spawn(async move {
            let mut written: HashMap<String, ProvisionState> = HashMap::new();
            while let Some(f) = rx.recv().await {
                let last = written.get(&f.phone_id);
                let next = next_state(last, &f);
                if !worth_writing(last, &next) {
                    continue;
                }
                match store
                    .put(&keys::provision(&f.phone_id), next.encode_to_vec(), None)
                    .await
                {
                    Ok(_) => {
                        if written.len() >= REMEMBERED {
                            written.clear();
                        }
                        written.insert(f.phone_id.clone(), next);
                    }
                    Err(e) => warn!(phone_id = %f.phone_id, error = %e, "recording a fetch failed"),
                }
            }
        });
        (Self { tx }, task)
    }

    /// Queues a fetch; never waits.
    pub fn record(&self, f: Fetch) {
        let _ = self.tx.try_send(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(at_ms: i64, version: &str, problems: &str) -> Fetch {
        Fetch {
            phone_id: "p".into(),
            version: version.into(),
            file: "f.cfg".into(),
            source: "127.0.0.1:5000".into(),
            user_agent: "ua".into(),
            problems: problems.into(),
            at_ms,
        }
    }

    #[test]
    fn writes_only_what_changed_or_aged() {
        let s1 = next_state(None, &fetch(1_000, "v1", ""));
        assert!(worth_writing(None, &s1));
        assert_eq!((s1.applied_version.as_str(), s1.last_error_ms), ("v1", 0));
        // Polling the same version: nothing to write until a minute passed.
        let s2 = next_state(Some(&s1), &fetch(30_000, "v1", ""));
        assert!(!worth_writing(Some(&s1), &s2));
        let s3 = next_state(Some(&s1), &fetch(61_000, "v1", ""));
        assert!(worth_writing(Some(&s1), &s3));
        // A new version or a problem is written at once; the problem keeps its first time.
        let s4 = next_state(
            Some(&s1),
            &fetch(2_000, "v2", "edge e offers no TLS address"),
        );
        assert!(worth_writing(Some(&s1), &s4));
        assert_eq!(s4.last_error_ms, 2_000);
        let s5 = next_state(
            Some(&s4),
            &fetch(3_000, "v2", "edge e offers no TLS address"),
        );
        assert_eq!(s5.last_error_ms, 2_000);
        let s6 = next_state(Some(&s5), &fetch(4_000, "v2", ""));
        assert!(worth_writing(Some(&s5), &s6));
        assert_eq!((s6.last_error.as_str(), s6.last_error_ms), ("", 0));
    }
}
