//! Who changed what: every change made through the console or the REST API, with the
//! name of the token that made it, kept on the node that served it (the last
//! [`AuditLog::CAPACITY`] entries, shown on the console's Audit page) and written to the
//! log as `audit` events for a log pipeline to keep.

use std::collections::VecDeque;

use parking_lot::Mutex;

/// One change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// When, in ms since the epoch.
    pub at_ms: i64,
    /// The token's name.
    pub who: String,
    /// `console` or `rest`.
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

#[cfg(test)]
mod tests {
    use super::*;

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
