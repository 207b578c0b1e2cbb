//! The edge's counters and gauges, rendered as Prometheus text on the admin port's
//! `/metrics`. Plain atomics: the REGISTER path only increments.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use dialtone_sip::digest::Algorithm;

pub mod transactions;

/// Why a registration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    BadCredentials,
    Banned,
    Replay,
    IntervalTooBrief,
    Invalid,
    OutOfOrder,
    TooManyBindings,
    UnknownDomain,
    /// A request for a phone from no authenticated line, edge or trusted peer (a forged
    /// forwarding marker, a check-sync NOTIFY from outside).
    Untrusted,
    /// Shed: more bindings waiting for the store than it takes in the backlog limit (503
    /// with Retry-After).
    Overloaded,
}

impl Reason {
    const ALL: [Reason; 10] = [
        Reason::BadCredentials,
        Reason::Banned,
        Reason::Replay,
        Reason::IntervalTooBrief,
        Reason::Invalid,
        Reason::OutOfOrder,
        Reason::TooManyBindings,
        Reason::UnknownDomain,
        Reason::Untrusted,
        Reason::Overloaded,
    ];

    fn label(self) -> &'static str {
        match self {
            Reason::BadCredentials => "bad_credentials",
            Reason::Banned => "banned",
            Reason::Replay => "replay",
            Reason::IntervalTooBrief => "interval_too_brief",
            Reason::Invalid => "invalid",
            Reason::OutOfOrder => "out_of_order",
            Reason::TooManyBindings => "too_many_bindings",
            Reason::UnknownDomain => "unknown_domain",
            Reason::Untrusted => "untrusted",
            Reason::Overloaded => "overloaded",
        }
    }
}

/// SIP methods counted (and timed) by name; others count as "other", at index
/// `METHODS.len()`.
pub(crate) const METHODS: [&str; 13] = [
    "REGISTER",
    "OPTIONS",
    "SUBSCRIBE",
    "NOTIFY",
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "MESSAGE",
    "INFO",
    "REFER",
    "UPDATE",
    "PRACK",
];

/// `method`'s index in [`METHODS`], or `METHODS.len()` for any other.
pub(crate) fn method_index(method: &str) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len())
}

/// Responses the edge sent itself, by class (1xx-6xx): process-wide, as one process runs
/// at most one edge. Relayed answers of phones are counted with the deliveries.
pub static RESPONSES: ResponseClasses = ResponseClasses([const { AtomicU64::new(0) }; 6]);

/// UDP receive loops reading on a clock now, not woken by their socket
/// (`flow::udp_pace`): process-wide, as [`RESPONSES`].
pub static UDP_LOOPS_TICKING: AtomicI64 = AtomicI64::new(0);

/// Reads UDP receive loops made on their clock (see [`UDP_LOOPS_TICKING`]).
pub static UDP_TICKS: AtomicU64 = AtomicU64::new(0);

/// One UDP receive loop in [`UDP_LOOPS_TICKING`], until dropped (held while the loop
/// reads on its clock, so however that ends it is counted out).
pub struct LoopTicking(());

impl LoopTicking {
    /// Counts a loop as reading on its clock until the guard drops.
    pub fn start() -> Self {
        UDP_LOOPS_TICKING.fetch_add(1, Relaxed);
        LoopTicking(())
    }
}

impl Drop for LoopTicking {
    fn drop(&mut self) {
        UDP_LOOPS_TICKING.fetch_sub(1, Relaxed);
    }
}

/// See [`RESPONSES`].
pub struct ResponseClasses([AtomicU64; 6]);

impl ResponseClasses {
    /// Counts one response with status `code` (codes outside 100-699 are not counted).
    pub fn count(&self, code: u16) {
        if let Some(c) = self.0.get((code / 100).wrapping_sub(1) as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    fn render(&self, node: &str, o: &mut String) {
        o.push_str(
            "# HELP dialtone_sip_responses_total SIP responses the edge sent, by status class.
# TYPE dialtone_sip_responses_total counter
",
        );
        for (i, n) in self.0.iter().enumerate() {
            o.push_str(&format!(
                "dialtone_sip_responses_total{{node=\"{node}\",class=\"{}xx\"}} {}\n",
                i + 1,
                n.load(Relaxed)
            ));
        }
    }
}

/// Transports a binding can have come over, as metric labels, in the order of
/// `Transport::ALL` (a binding counts at `source.transport.index()`).
pub const TRANSPORTS: [&str; 5] = ["udp", "tcp", "tls", "ws", "wss"];

#[derive(Default)]
pub struct Stats {
    requests: [AtomicU64; METHODS.len() + 1],
    malformed: AtomicU64,
    registered: AtomicU64,
    rejected: [AtomicU64; Reason::ALL.len()],
    challenges: AtomicU64,
    /// Successful digests, MD5 then SHA-256: how much of the fleet still needs MD5.
    authenticated: [AtomicU64; 2],
    retransmissions: AtomicU64,
    bans: AtomicU64,
    bindings_by_transport: [AtomicI64; TRANSPORTS.len()],
    /// Stream connections accepted and open now, by transport.
    connections_by_transport: [AtomicI64; TRANSPORTS.len()],
    phones: AtomicI64,
    sleeping: AtomicI64,
}

/// One accepted connection in [`Stats`]' count of open ones, until dropped (held by the
/// connection's task, so however it ends it is counted out).
pub struct OpenConnection {
    stats: std::sync::Arc<Stats>,
    index: usize,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.stats.connections_by_transport[self.index].fetch_sub(1, Relaxed);
    }
}

impl Stats {
    /// Counts a connection accepted over `transport` as open until the guard drops.
    pub fn connection_opened(
        self: &std::sync::Arc<Self>,
        transport: dialtone_sip::transport::Transport,
    ) -> OpenConnection {
        let index = transport.index();
        self.connections_by_transport[index].fetch_add(1, Relaxed);
        OpenConnection {
            stats: self.clone(),
            index,
        }
    }

    pub fn request(&self, method: &str) {
        self.requests[method_index(method)].fetch_add(1, Relaxed);
    }
    pub fn malformed(&self) {
        self.malformed.fetch_add(1, Relaxed);
    }
    pub fn registered(&self) {
        self.registered.fetch_add(1, Relaxed);
    }
    pub fn rejected(&self, r: Reason) {
        let i = Reason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.rejected[i].fetch_add(1, Relaxed);
    }
    pub fn challenge(&self) {
        self.challenges.fetch_add(1, Relaxed);
    }
    pub fn authenticated(&self, alg: Algorithm) {
        self.authenticated[alg as usize].fetch_add(1, Relaxed);
    }
    pub fn retransmission(&self) {
        self.retransmissions.fetch_add(1, Relaxed);
    }
    pub fn banned(&self) {
        self.bans.fetch_add(1, Relaxed);
    }
    /// Applies a change of the bindings' counts per transport (indexes of
    /// `Transport::index`).
    pub fn bindings_changed(
        &self,
        before: &[i64; TRANSPORTS.len()],
        after: &[i64; TRANSPORTS.len()],
    ) {
        for (i, (b, a)) in before.iter().zip(after).enumerate() {
            if a != b {
                self.bindings_by_transport[i].fetch_add(a - b, Relaxed);
            }
        }
    }
    /// Phones asleep now.
    #[cfg(test)]
    pub fn sleeping_phones(&self) -> i64 {
        self.sleeping.load(Relaxed)
    }

    pub fn sleeping_changed(&self, d: i64) {
        self.sleeping.fetch_add(d, Relaxed);
    }
    pub fn phones_changed(&self, d: i64) {
        self.phones.fetch_add(d, Relaxed);
    }
    /// Registered phones (with at least one binding here).
    pub fn phones(&self) -> i64 {
        self.phones.load(Relaxed)
    }
    /// Live bindings over every transport.
    #[cfg(test)]
    pub fn bindings(&self) -> i64 {
        self.bindings_by_transport
            .iter()
            .map(|n| n.load(Relaxed))
            .sum()
    }

    /// Prometheus text exposition.
    pub fn render(&self, node: &str, lines_cached: usize, active_bans: (usize, usize)) -> String {
        let mut o = String::new();
        o.push_str("# HELP dialtone_sip_requests_total SIP requests the edge received, by method.\n# TYPE dialtone_sip_requests_total counter\n");
        for (i, m) in METHODS.iter().chain(["other"].iter()).enumerate() {
            o.push_str(&format!(
                "dialtone_sip_requests_total{{node=\"{node}\",method=\"{m}\"}} {}\n",
                self.requests[i].load(Relaxed)
            ));
        }
        RESPONSES.render(node, &mut o);
        transactions::render(node, &mut o);
        o.push_str(&format!(
            "# HELP dialtone_sip_malformed_total SIP messages the edge could not parse (answered 400 or dropped).\n# TYPE dialtone_sip_malformed_total counter\ndialtone_sip_malformed_total{{node=\"{node}\"}} {}\n",
            self.malformed.load(Relaxed)
        ));
        o.push_str(&format!(
            "# HELP dialtone_registrations_accepted_total REGISTERs answered 200.\n# TYPE dialtone_registrations_accepted_total counter\ndialtone_registrations_accepted_total{{node=\"{node}\"}} {}\n",
            self.registered.load(Relaxed)
        ));
        o.push_str("# HELP dialtone_registrations_rejected_total REGISTERs refused, by reason.\n# TYPE dialtone_registrations_rejected_total counter\n");
        for (i, r) in Reason::ALL.iter().enumerate() {
            o.push_str(&format!(
                "dialtone_registrations_rejected_total{{node=\"{node}\",reason=\"{}\"}} {}\n",
                r.label(),
                self.rejected[i].load(Relaxed)
            ));
        }
        o.push_str("# HELP dialtone_auth_successes_total Digest authentications that succeeded, by algorithm.\n# TYPE dialtone_auth_successes_total counter\n");
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            o.push_str(&format!(
                "dialtone_auth_successes_total{{node=\"{node}\",algorithm=\"{}\"}} {}\n",
                alg.name(),
                self.authenticated[alg as usize].load(Relaxed)
            ));
        }
        for (name, kind, help, v) in [
            (
                "dialtone_auth_challenges_total",
                "counter",
                "Digest challenges sent (401 and 407).",
                self.challenges.load(Relaxed) as i64,
            ),
            (
                "dialtone_sip_retransmissions_absorbed_total",
                "counter",
                "Retransmitted requests answered from their transaction, not handled again.",
                self.retransmissions.load(Relaxed) as i64,
            ),
            (
                "dialtone_auth_bans_total",
                "counter",
                "Temporary bans of a source or a SIP user for repeated authentication failures.",
                self.bans.load(Relaxed) as i64,
            ),
            (
                "dialtone_edge_udp_ticks_total",
                "counter",
                "Reads of UDP sockets made on a clock (a tick about each millisecond, and at once again after a tick that read many) while datagrams came too fast to be woken for each.",
                UDP_TICKS.load(Relaxed) as i64,
            ),
            (
                "dialtone_edge_udp_loops_ticking",
                "gauge",
                "UDP receive loops reading on a clock now (one a thread), not woken by their socket.",
                UDP_LOOPS_TICKING.load(Relaxed),
            ),
            (
                "dialtone_edge_registered_phones",
                "gauge",
                "Phones with at least one live binding on this edge.",
                self.phones(),
            ),
            (
                "dialtone_edge_sleeping_phones",
                "gauge",
                "Registered phones kept as compact state until their next message.",
                self.sleeping.load(Relaxed),
            ),
            (
                "dialtone_edge_cached_lines",
                "gauge",
                "Lines in the credentials cache (phones' SIP users the edge can authenticate).",
                lines_cached as i64,
            ),
            (
                "dialtone_auth_active_source_bans",
                "gauge",
                "Sources banned now.",
                active_bans.0 as i64,
            ),
            (
                "dialtone_auth_active_user_bans",
                "gauge",
                "SIP users banned now.",
                active_bans.1 as i64,
            ),
        ] {
            o.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{node=\"{node}\"}} {v}\n"
            ));
        }
        o.push_str("# HELP dialtone_edge_connections_open Stream connections accepted and open now, by transport.\n# TYPE dialtone_edge_connections_open gauge\n");
        for (t, n) in TRANSPORTS
            .iter()
            .zip(&self.connections_by_transport)
            .skip(1)
        {
            o.push_str(&format!(
                "dialtone_edge_connections_open{{node=\"{node}\",transport=\"{t}\"}} {}\n",
                n.load(Relaxed)
            ));
        }
        o.push_str("# HELP dialtone_edge_bindings Live bindings (registered contacts), by the transport they registered over.\n# TYPE dialtone_edge_bindings gauge\n");
        for (t, n) in TRANSPORTS.iter().zip(&self.bindings_by_transport) {
            o.push_str(&format!(
                "dialtone_edge_bindings{{node=\"{node}\",transport=\"{t}\"}} {}\n",
                n.load(Relaxed)
            ));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::ResponseClasses;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn bindings_are_counted_by_transport() {
        for t in dialtone_sip::transport::Transport::ALL {
            assert_eq!(super::TRANSPORTS[t.index()], t.name());
        }
        let s = super::Stats::default();
        s.bindings_changed(&[0, 0, 0, 0, 0], &[2, 1, 0, 0, 0]);
        s.bindings_changed(&[2, 1, 0, 0, 0], &[1, 1, 0, 0, 3]);
        assert_eq!(s.bindings(), 5);
        let out = s.render("e", 0, (0, 0));
        for line in [
            "transport=\"udp\"} 1\n",
            "transport=\"tcp\"} 1\n",
            "transport=\"wss\"} 3\n",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
    }

    #[test]
    fn responses_count_by_class() {
        let r = ResponseClasses([const { AtomicU64::new(0) }; 6]);
        for code in [100, 200, 202, 401, 403, 699, 99, 700, 0] {
            r.count(code);
        }
        let mut out = String::new();
        r.render("e", &mut out);
        for (class, n) in [("1xx", 1), ("2xx", 2), ("3xx", 0), ("4xx", 2), ("6xx", 1)] {
            let line =
                format!("dialtone_sip_responses_total{{node=\"e\",class=\"{class}\"}} {n}\n");
            assert!(out.contains(&line), "{line} in {out}");
        }
    }
}
