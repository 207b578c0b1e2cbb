//! A phone's registration state, and its compact form while the phone sleeps.
//!
//! An awake phone is a [`crate::registrar::phone::Phone`] with its lines, bindings and
//! nonce counts as Rust values. Most registered phones are idle between refreshes, so after
//! a quiet spell its state is written into one byte string; the next message for the phone
//! decodes it again. Pure: bytes in, state out, no IO.

mod bytes;

use dialtone_sip::{digest::NonceCounts, registration::Binding};

use bytes::{Reader, Writer};

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
    /// [`wake_at`] without decoding the rest), then every field. Nonces older than
    /// `lifetime_s` are left out.
    ///
    /// Compact because every registered phone keeps one: numbers are LEB128 varints, times
    /// are distances from the wake-up time (a binding's expiry is mostly that time
    /// itself), an absent string is one byte, the source is binary (7 bytes for IPv4
    /// where its text took 20-25), and a Contact URI that starts with `sip:` and the
    /// line's SIP user, as most phones' do, leaves them out. A phone of a few dozen bytes
    /// of strings takes about 100 bytes less than fixed-width fields and text did.
    pub fn encode(&self, now_s: u64, lifetime_s: u64) -> Box<[u8]> {
        let wake = self.earliest_expiry().unwrap_or(u64::MAX);
        let mut w = Writer(Vec::with_capacity(256));
        w.uint(wake);
        w.uint(self.lines.len() as u64);
        for l in &self.lines {
            w.uint(l.index.into());
            w.str(Some(&l.sip_user));
            w.time(l.published_at, wake);
            w.uint(l.republish_after);
            w.uint(l.bindings.len() as u64);
            for b in &l.bindings {
                w.contact(&b.uri, &l.sip_user);
                w.str(b.instance.as_deref());
                // 0 for none, else the id plus one.
                w.uint(b.reg_id.map_or(0, |r| u64::from(r) + 1));
                w.str(Some(&b.call_id));
                w.uint(b.cseq.into());
                w.time(b.expires_at, wake);
                w.str(b.q.as_deref());
                w.uint(b.path.len() as u64);
                for p in &b.path {
                    w.str(Some(p));
                }
                w.source(b.source);
                w.str(b.user_agent.as_deref());
            }
        }
        let nonces: Vec<_> = self.nonce_counts.entries(now_s, lifetime_s).collect();
        w.uint(nonces.len() as u64);
        for (hash, nc, at) in nonces {
            w.0.extend_from_slice(&hash.to_le_bytes());
            w.uint(nc.into());
            w.time(at, wake);
        }
        // Copied into an allocation of its own size: shrinking the vector instead would
        // leave it in its larger block (mimalloc keeps a block shrunk by less than half).
        w.0.as_slice().into()
    }

    /// The state back from [`PhoneState::encode`]; `None` if the bytes are not such a form.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        let wake = r.uint()?;
        // Fields are read in the order `encode` wrote them: a struct expression evaluates its
        // fields in source order.
        let lines = r.list(|r| {
            let index = r.u32()?;
            let sip_user = r.string()?;
            Some(LineState {
                index,
                published_at: r.time(wake)?,
                republish_after: r.uint()?,
                bindings: r.list(|r| {
                    Some(Binding {
                        uri: r.contact(&sip_user)?,
                        instance: r.opt_string()?,
                        reg_id: match r.uint()? {
                            0 => None,
                            id => Some(u32::try_from(id - 1).ok()?),
                        },
                        call_id: r.string()?,
                        cseq: r.u32()?,
                        expires_at: r.time(wake)?,
                        q: r.opt_string()?,
                        path: r.list(Reader::string)?,
                        source: r.source()?,
                        user_agent: r.opt_string()?,
                    })
                })?,
                sip_user,
            })
        })?;
        let nonces = r.list(|r| Some((r.u64()?, r.u32()?, r.time(wake)?)))?;
        r.0.is_empty().then_some(PhoneState {
            lines,
            nonce_counts: NonceCounts::from_entries(nonces),
        })
    }
}

/// When a sleeping phone must wake (its earliest expiry), read from its encoded form.
pub fn wake_at(bytes: &[u8]) -> u64 {
    Reader(bytes).uint().unwrap_or(0)
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
        for cut in 0..bytes.len() {
            assert!(PhoneState::decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        // Any byte changed decodes to something or to nothing, never to a panic.
        for at in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut b = bytes.to_vec();
                b[at] ^= flip;
                let _ = PhoneState::decode(&b);
            }
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(PhoneState::decode(&long).is_none(), "trailing bytes");
        let mut huge = bytes.to_vec();
        // The line count, after the wake time's two bytes (2000).
        huge.splice(2..3, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(PhoneState::decode(&huge).is_none(), "absurd count");
        let mut bad_source = PhoneState {
            lines: vec![line(vec![binding("sip:a@h", 2000)])],
            ..PhoneState::default()
        }
        .encode(1000, 300)
        .to_vec();
        let tag = bad_source.len() - 9; // the source: a tag, 4 + 2 bytes; no UA, no nonce
        assert_eq!(bad_source[tag], 0, "udp over IPv4");
        bad_source[tag] = 9;
        assert!(
            PhoneState::decode(&bad_source).is_none(),
            "no such transport"
        );
    }

    fn line(bindings: Vec<Binding>) -> LineState {
        LineState {
            index: 0,
            sip_user: "u".into(),
            bindings,
            published_at: 1000,
            republish_after: 1800,
        }
    }

    #[test]
    fn every_field_round_trips_at_its_limits() {
        let v6 = |s: &str| s.parse().unwrap();
        let state = PhoneState {
            lines: vec![
                line(vec![
                    Binding {
                        reg_id: Some(u32::MAX),
                        cseq: u32::MAX,
                        source: v6("wss:[fe80::1%7]:443"),
                        ..binding("sips:u@[2001:db8::1]", u64::MAX - 1)
                    },
                    Binding {
                        reg_id: Some(0),
                        cseq: 0,
                        source: v6("tcp:[2001:db8::2]:0"),
                        ..binding("sip:u@", 0)
                    },
                ]),
                LineState {
                    index: u32::MAX,
                    published_at: u64::MAX,
                    republish_after: u64::MAX,
                    ..line(Vec::new())
                },
            ],
            ..PhoneState::default()
        };
        let bytes = state.encode(0, 300);
        assert_eq!(wake_at(&bytes), 0);
        assert_eq!(PhoneState::decode(&bytes).unwrap().lines, state.lines);
        // Lines with no binding under a wake-up that never comes.
        let asleep = PhoneState {
            lines: vec![line(Vec::new())],
            ..PhoneState::default()
        };
        let bytes = asleep.encode(0, 300);
        assert_eq!(wake_at(&bytes), u64::MAX);
        assert_eq!(PhoneState::decode(&bytes).unwrap().lines, asleep.lines);
    }

    /// A phone as `stream-bench`'s simulator registers one over TCP (`phonesim`'s Call-ID
    /// and Contact, a line `fleet::import` names), and what its sleeping form takes: 132
    /// bytes, in mimalloc's size class of 160, where the fixed-width form took 239 (256).
    #[test]
    fn a_typical_phone_sleeps_in_160_bytes() {
        let mut nc = NonceCounts::default();
        assert!(nc.accept("nonce", 1, 1_800_000_000, 300));
        let state = PhoneState {
            lines: vec![LineState {
                index: 0,
                sip_user: "k7q2x-user000001".into(),
                bindings: vec![Binding {
                    uri: "sip:k7q2x-user000001@127.0.0.12:40001;transport=tcp".into(),
                    call_id: "5f0c2a9e3b1d7c44-0@phonesim".into(),
                    cseq: 2,
                    source: "tcp:127.0.0.12:40001".parse().unwrap(),
                    user_agent: Some("dialtone-phonesim".into()),
                    ..binding("", 1_800_003_600)
                }],
                published_at: 1_800_000_000,
                republish_after: 1800,
            }],
            nonce_counts: nc,
        };
        let bytes = state.encode(1_800_000_000, 300);
        assert_eq!(bytes.len(), 132);
        assert_eq!(PhoneState::decode(&bytes).unwrap().lines, state.lines);
    }
}
