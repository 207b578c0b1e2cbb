//! Whether each media server answers its `ng` pings (`media_pings.rs`, a floor above,
//! pings them every second), and how many calls this edge anchored at each. A server is
//! DOWN after a ping goes unanswered (the client retransmits within its 2 s timeout, so
//! one unanswered ping is three lost datagrams) and UP at its next `pong`; one never
//! pinged yet counts as UP, so calls are anchored before the first ping.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write,
    net::SocketAddr,
};

use dialtone_proto::edge::v1::{MediaHealth as MediaHealthRecord, MediaServerHealth};
use parking_lot::Mutex;

/// One media server's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ServerState {
    down: bool,
    /// When it last turned UP or DOWN (Unix ms; 0: not yet).
    changed_at_ms: i64,
    /// Calls this edge anchored there.
    anchored: u64,
    /// Round trip of its last answered ping, ms bucket (`select::rtt_bucket`; 0: none).
    rtt_ms: u32,
}

/// Every media server's state, by id.
#[derive(Default)]
pub struct MediaHealth {
    states: Mutex<BTreeMap<String, ServerState>>,
}

impl MediaHealth {
    /// Whether media server `id` takes calls.
    pub fn is_up(&self, id: &str) -> bool {
        self.states.lock().get(id).is_none_or(|s| !s.down)
    }

    /// A ping of `id` was `answered` (within `rtt_ms`, a bucket) or not, at `now_ms`;
    /// returns whether its state changed.
    pub fn observe(&self, id: &str, answered: Option<u32>, now_ms: i64) -> bool {
        let mut states = self.states.lock();
        let s = states.entry(id.to_owned()).or_default();
        if let Some(rtt) = answered {
            s.rtt_ms = rtt;
        }
        let answered = answered.is_some();
        let changed = s.down == answered;
        s.down = !answered;
        if changed {
            s.changed_at_ms = now_ms;
        }
        changed
    }

    /// What this edge finds of `servers` (id, ng address), with the calls up it anchored
    /// at each (`active`, by ng address), for `media-health/{node}`.
    pub fn snapshot(
        &self,
        servers: &[(String, SocketAddr)],
        active: &HashMap<SocketAddr, u32>,
    ) -> MediaHealthRecord {
        let states = self.states.lock();
        MediaHealthRecord {
            servers: servers
                .iter()
                .map(|(id, ng)| {
                    let s = states.get(id).copied().unwrap_or_default();
                    MediaServerHealth {
                        media_server_id: id.clone(),
                        ng_address: ng.to_string(),
                        up: !s.down,
                        changed_at_ms: s.changed_at_ms,
                        active_calls: active.get(ng).copied().unwrap_or(0),
                        rtt_ms: s.rtt_ms,
                    }
                })
                .collect(),
        }
    }

    /// The lowest round trip (ms bucket) to a server of `ids` that is up; none when none
    /// was measured.
    pub fn lowest_rtt<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Option<u32> {
        let states = self.states.lock();
        ids.filter_map(|id| states.get(id))
            .filter(|s| !s.down && s.rtt_ms > 0)
            .map(|s| s.rtt_ms)
            .min()
    }

    /// A call was anchored at `id`.
    pub fn anchored(&self, id: &str) {
        self.states
            .lock()
            .entry(id.to_owned())
            .or_default()
            .anchored += 1;
    }

    /// Forgets media servers no longer configured.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.states.lock().retain(|id, _| keep(id));
    }

    /// Prometheus text: `dialtone_media_server_up{media_server}` and
    /// `dialtone_media_anchored_total{media_server}`.
    pub fn render(&self, node: &str, out: &mut String) {
        let states = self.states.lock().clone();
        dialtone_metrics::header(
            out,
            "dialtone_media_server_up",
            "gauge",
            "Whether a media server (rtpengine) answers its ng pings (1: UP, 0: DOWN).",
        );
        for (id, s) in &states {
            let id = dialtone_metrics::escape(id);
            let _ = writeln!(
                out,
                "dialtone_media_server_up{{node=\"{node}\",media_server=\"{id}\"}} {}",
                u8::from(!s.down)
            );
        }
        dialtone_metrics::header(
            out,
            "dialtone_media_anchored_total",
            "counter",
            "Calls (branches) this edge anchored at a media server.",
        );
        for (id, s) in &states {
            let id = dialtone_metrics::escape(id);
            let _ = writeln!(
                out,
                "dialtone_media_anchored_total{{node=\"{node}\",media_server=\"{id}\"}} {}",
                s.anchored
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_up_until_a_ping_goes_unanswered() {
        let h = MediaHealth::default();
        assert!(h.is_up("rtp-1"), "never pinged");
        // (answered within a round trip of, changed, up after)
        let cases = [
            (Some(1), false, true),
            (None, true, false),
            (None, false, false),
            (Some(4), true, true),
        ];
        for (i, (answered, changed, up)) in cases.into_iter().enumerate() {
            assert_eq!(h.observe("rtp-1", answered, i as i64), changed, "step {i}");
            assert_eq!(h.is_up("rtp-1"), up, "step {i}");
        }
        let ng: SocketAddr = "127.0.0.1:2223".parse().unwrap();
        let snap = h.snapshot(&[("rtp-1".into(), ng)], &HashMap::from([(ng, 2)]));
        let s = &snap.servers[0];
        assert_eq!((s.up, s.changed_at_ms, s.active_calls), (true, 3, 2));
        assert_eq!(s.rtt_ms, 4, "the last answered ping's round trip");
        // The lowest round trip of the servers up among some.
        h.observe("rtp-2", Some(2), 5);
        h.observe("rtp-3", Some(1), 5);
        h.observe("rtp-3", None, 6);
        assert_eq!(
            h.lowest_rtt(["rtp-1", "rtp-2", "rtp-3"].into_iter()),
            Some(2)
        );
        assert_eq!(h.lowest_rtt(["rtp-3", "rtp-9"].into_iter()), None);
        h.anchored("rtp-1");
        let mut out = String::new();
        h.render("edge-1", &mut out);
        assert!(out.contains("dialtone_media_server_up{node=\"edge-1\",media_server=\"rtp-1\"} 1"));
        assert!(
            out.contains("dialtone_media_anchored_total{node=\"edge-1\",media_server=\"rtp-1\"} 1")
        );
        h.retain(|_| false);
        assert!(h.is_up("rtp-1"));
    }
}
