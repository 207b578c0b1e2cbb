//! A phone's registration state, and its compact form while the phone sleeps.
//!
//! An awake phone is an actix actor (about 1.1 KB before any state, measured). Most
//! registered phones are idle between refreshes, so after a quiet spell the actor writes its
//! state into one byte string and stops; the next message for the phone starts an actor
//! from it again. Pure: bytes in, state out, no IO.

use dialtone_sip::{digest::NonceCounts, registration::Binding};

/// One line's bindings on this edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineState {
    pub index: u32,
    pub sip_user: String,
    pub bindings: Vec<Binding>,
    /// When the binding key was last written (its stored expiry is refreshed lazily).
    pub published_at: u64,
    /// Half the registration period: how stale the stored expiry may get.
    pub republish_after: u64,
}

/// What a sleeping phone keeps: its lines and its live nonce counts.
#[derive(Debug, Default)]
pub struct PhoneState {
    pub lines: Vec<LineState>,
    pub nonce_counts: NonceCounts,
}

impl PhoneState {
    /// Unix second of the earliest binding expiry, if there is a binding.
    pub fn earliest_expiry(&self) -> Option<u64> {
        self.lines
            .iter()
            .flat_map(|l| l.bindings.iter().map(|b| b.expires_at))
            .min()
    }

    /// Bindings per transport (the metrics' [`crate::metrics::TRANSPORTS`] order).
    pub fn contacts_by_transport(&self) -> [i64; crate::metrics::TRANSPORTS.len()] {
        let mut n = [0; crate::metrics::TRANSPORTS.len()];
        for b in self.lines.iter().flat_map(|l| &l.bindings) {
            n[b.source.transport.index()] += 1;
        }
        n
    }

    /// The sleeping form: the earliest expiry first (`u64::MAX` with no binding; read by
    /// [`wake_at`] without decoding), then every field. Nonces older than `lifetime_s` are
    /// left out.
    pub fn encode(&self, now_s: u64, lifetime_s: u64) -> Box<[u8]> {
        let mut w = Vec::with_capacity(128);
        let wake = self.earliest_expiry().unwrap_or(u64::MAX);
        w.extend_from_slice(&wake.to_le_bytes());
        put_u32(&mut w, self.lines.len() as u32);
        for l in &self.lines {
            put_u32(&mut w, l.index);
            put_str(&mut w, Some(&l.sip_user));
            w.extend_from_slice(&l.published_at.to_le_bytes());
            w.extend_from_slice(&l.republish_after.to_le_bytes());
            put_u32(&mut w, l.bindings.len() as u32);
            for b in &l.bindings {
                put_str(&mut w, Some(&b.uri));
                put_str(&mut w, b.instance.as_deref());
                put_u32(&mut w, b.reg_id.map_or(NONE, |r| r.min(NONE - 1)));
                put_str(&mut w, Some(&b.call_id));
                put_u32(&mut w, b.cseq);
                w.extend_from_slice(&b.expires_at.to_le_bytes());
                put_str(&mut w, b.q.as_deref());
                put_u32(&mut w, b.path.len() as u32);
                for p in &b.path {
                    put_str(&mut w, Some(p));
                }
                put_str(&mut w, Some(&b.source.to_string()));
                put_str(&mut w, b.user_agent.as_deref());
            }
        }
        let nonces: Vec<_> = self.nonce_counts.entries(now_s, lifetime_s).collect();
        put_u32(&mut w, nonces.len() as u32);
        for (hash, nc, at) in nonces {
            w.extend_from_slice(&hash.to_le_bytes());
            put_u32(&mut w, nc);
            w.extend_from_slice(&at.to_le_bytes());
        }
        w.into_boxed_slice()
    }

    /// The state back from [`PhoneState::encode`]; `None` if the bytes are not such a form.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        r.u64()?;
        // Fields are read in the order `encode` wrote them: a struct expression evaluates its
        // fields in source order.
        let lines = r.list(|r| {
            Some(LineState {
                index: r.u32()?,
                sip_user: r.string()?,
                published_at: r.u64()?,
                republish_after: r.u64()?,
                bindings: r.list(|r| {
                    Some(Binding {
                        uri: r.string()?,
                        instance: r.opt_string()?,
                        reg_id: Some(r.u32()?).filter(|v| *v != NONE),
                        call_id: r.string()?,
                        cseq: r.u32()?,
                        expires_at: r.u64()?,
                        q: r.opt_string()?,
                        path: r.list(Reader::string)?,
                        source: r.string()?.parse().ok()?,
                        user_agent: r.opt_string()?,
                    })
                })?,
            })
        })?;
        let nonces = r.list(|r| Some((r.u64()?, r.u32()?, r.u64()?)))?;
        r.0.is_empty().then_some(PhoneState {
            lines,
            nonce_counts: NonceCounts::from_entries(nonces),
        })
    }
}

/// When a sleeping phone must wake (its earliest expiry), read from its encoded form.
pub fn wake_at(bytes: &[u8]) -> u64 {
    bytes
        .first_chunk::<8>()
        .map_or(0, |b| u64::from_le_bytes(*b))
}

/// Marks an absent optional value.
const NONE: u32 = u32::MAX;

fn put_u32(w: &mut Vec<u8>, v: u32) {
    w.extend_from_slice(&v.to_le_bytes());
}

fn put_str(w: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            put_u32(w, s.len() as u32);
            w.extend_from_slice(s.as_bytes());
        }
        None => put_u32(w, NONE),
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// A length that cannot exceed what is left (so corrupt input never over-allocates).
    fn count(&mut self) -> Option<usize> {
        Some(self.u32()? as usize).filter(|n| *n <= self.0.len())
    }
    fn opt_string(&mut self) -> Option<Option<String>> {
        let n = self.u32()?;
        if n == NONE {
            return Some(None);
        }
        let b = self.take(n as usize)?;
        Some(Some(std::str::from_utf8(b).ok()?.to_owned()))
    }
    fn string(&mut self) -> Option<String> {
        self.opt_string()?
    }
    /// A count, then that many items read by `item`.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let n = self.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(uri: &str, expires_at: u64) -> Binding {
        Binding {
            uri: uri.into(),
            instance: None,
            reg_id: None,
            call_id: "c1@host".into(),
            cseq: 7,
            expires_at,
            q: None,
            path: Vec::new(),
            source: "udp:127.0.0.1:5070".parse().unwrap(),
            user_agent: None,
        }
    }

    fn state() -> PhoneState {
        let mut nc = NonceCounts::default();
        assert!(nc.accept("n1", 1, 1000, 300));
        assert!(nc.accept("n-old", 1, 500, 300));
        let full = Binding {
            instance: Some("\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\"".into()),
            reg_id: Some(1),
            q: Some("0.5".into()),
            path: vec!["<sip:p1.example.com;lr>".into(), "<sip:p2;lr>".into()],
            user_agent: Some("Poly/8.1 ü".into()),
            ..binding("sip:a@10.0.0.1:5060;transport=tcp", 4600)
        };
        PhoneState {
            lines: vec![
                LineState {
                    index: 0,
                    sip_user: "k7q2x-1001".into(),
                    bindings: vec![full, binding("sip:b@10.0.0.2", 2000)],
                    published_at: 1000,
                    republish_after: 1800,
                },
                LineState {
                    index: 3,
                    sip_user: String::new(),
                    bindings: Vec::new(),
                    published_at: 0,
                    republish_after: 0,
                },
            ],
            nonce_counts: nc,
        }
    }

    #[test]
    fn round_trips_and_drops_dead_nonces() {
        let s = state();
        let bytes = s.encode(1000, 300);
        assert_eq!(wake_at(&bytes), 2000);
        let back = PhoneState::decode(&bytes).unwrap();
        assert_eq!(back.lines, s.lines);
        let nonces: Vec<_> = back.nonce_counts.entries(1000, 300).collect();
        assert_eq!(nonces.len(), 1, "the nonce from t=500 is past its lifetime");
        let mut nc = back.nonce_counts;
        assert!(
            !nc.accept("n1", 1, 1001, 300),
            "replay still refused after waking"
        );
        assert!(nc.accept("n1", 2, 1001, 300));
    }

    #[test]
    fn no_bindings_never_wakes_and_corrupt_forms_are_refused() {
        let empty = PhoneState::default().encode(0, 300);
        assert_eq!(wake_at(&empty), u64::MAX);
        assert!(PhoneState::decode(&empty).unwrap().lines.is_empty());
        let bytes = state().encode(1000, 300);
        for cut in [0, 7, 8, 12, bytes.len() - 1] {
            assert!(PhoneState::decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(PhoneState::decode(&long).is_none(), "trailing bytes");
        let mut huge = bytes.to_vec();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(PhoneState::decode(&huge).is_none(), "absurd count");
    }
}
