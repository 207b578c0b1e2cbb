//! Who changed what: every change asked of the config role through the console, the REST
//! API or gRPC (`dialtonectl`), with the name of the token that asked, kept on the node
//! that served it (the last [`AuditLog::CAPACITY`] entries, shown on the console's Audit
//! page) and written to the log as `audit` events for a log pipeline to keep.

use std::collections::VecDeque;

use parking_lot::Mutex;

/// One change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// When, in ms since the epoch.
    pub at_ms: i64,
    /// The token's name.
    pub who: String,
    /// `console`, `rest` or `grpc`.
    pub via: &'static str,
    /// What was asked (`create phone`, `POST /api/v2/...`).
    pub action: String,
    /// What it was done to (an id, or empty).
    pub object: String,
    /// `ok`, or why it was refused.
    pub outcome: String,
}

/// The node's recent changes.
#[derive(Debug, Default)]
pub struct AuditLog {
    entries: Mutex<VecDeque<AuditEntry>>,
}

impl AuditLog {
    /// Entries kept; older ones are dropped (the log lines stay).
    pub const CAPACITY: usize = 1_000;

    /// Records one change.
    pub fn record(&self, entry: AuditEntry) {
        tracing::info!(
            target: "audit",
            who = %entry.who,
            via = entry.via,
            action = %entry.action,
            object = %entry.object,
            outcome = %entry.outcome,
            "change"
        );
        let mut entries = self.entries.lock();
        if entries.len() == Self::CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The newest `n` entries, newest first.
    pub fn recent(&self, n: usize) -> Vec<AuditEntry> {
        self.entries.lock().iter().rev().take(n).cloned().collect()
    }
}

/// The gRPC service whose calls change configuration.
pub const CONFIG_SERVICE: &str = "/dialtone.config.v1.ConfigService/";

/// The method a gRPC call's path names when it asks for a change (every config method
/// but reads: `Get…`, `List…`, `Export…`).
pub fn grpc_change(path: &str) -> Option<&str> {
    let method = path.strip_prefix(CONFIG_SERVICE)?;
    (!method.is_empty()
        && !["Get", "List", "Export"]
            .iter()
            .any(|read| method.starts_with(read)))
    .then_some(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_changes_are_told_from_reads() {
        let cases = [
            (
                "/dialtone.config.v1.ConfigService/CreatePhone",
                Some("CreatePhone"),
            ),
            (
                "/dialtone.config.v1.ConfigService/ActOnPhones",
                Some("ActOnPhones"),
            ),
            (
                "/dialtone.config.v1.ConfigService/MigrateBaseSettings",
                Some("MigrateBaseSettings"),
            ),
            ("/dialtone.config.v1.ConfigService/GetPhone", None),
            ("/dialtone.config.v1.ConfigService/ListPhones", None),
            ("/dialtone.config.v1.ConfigService/ExportPhones", None),
            ("/dialtone.config.v1.ConfigService/", None),
            ("/dialtone.status.v1.StatusService/WatchPhoneStatuses", None),
        ];
        for (path, want) in cases {
            assert_eq!(grpc_change(path), want, "{path}");
        }
    }

    fn entry(i: usize) -> AuditEntry {
        AuditEntry {
            at_ms: i as i64,
            who: "admin".into(),
            via: "console",
            action: "create phone".into(),
            object: format!("p{i}"),
            outcome: "ok".into(),
        }
    }

    #[test]
    fn keeps_the_newest_entries_newest_first() {
        let log = AuditLog::default();
        for i in 0..AuditLog::CAPACITY + 5 {
            log.record(entry(i));
        }
        let recent = log.recent(usize::MAX);
        assert_eq!(recent.len(), AuditLog::CAPACITY);
        assert_eq!(recent[0].object, format!("p{}", AuditLog::CAPACITY + 4));
        assert_eq!(recent.last().unwrap().object, "p5");
        assert_eq!(log.recent(2).len(), 2);
    }
}
