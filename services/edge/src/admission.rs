//! Admission of what a source can hold open on the edge: stream connections (TCP, TLS, WS,
//! WSS) and requests being delivered to phones. A cap in all and one per source address,
//! so that neither one address nor a flood of them can hold the edge's memory, file
//! descriptors or tasks. What is admitted holds a [`Permit`] for as long as it lives.
//! State: one small count per source holding something (the map never holds an address
//! without one).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use parking_lot::Mutex;

/// The caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLimits {
    /// Held at once, all sources together.
    pub total: usize,
    /// Held at once by one IP address (an IPv6 /64); offices behind one NAT address need
    /// one connection per phone.
    pub per_source: u32,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The edge holds [`SourceLimits::total`] connections.
    Full,
    /// The source holds [`SourceLimits::per_source`] connections.
    SourceFull,
}

/// The counts of open connections.
#[derive(Debug)]
pub struct Admission {
    limits: SourceLimits,
    open: Mutex<(usize, HashMap<IpAddr, u32>)>,
    /// Connections refused, by [`Refused`] (total, per source).
    refused: [AtomicU64; 2],
}

/// One admitted connection or request: released when dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    /// The source it counts against (none: the total only).
    ip: Option<IpAddr>,
}

impl Admission {
    pub fn new(limits: SourceLimits) -> Arc<Self> {
        Arc::new(Admission {
            limits,
            open: Mutex::new((0, HashMap::new())),
            refused: Default::default(),
        })
    }

    /// Admits a connection from `ip`, or says why not. An IPv6 source counts by its /64
    /// (one subscriber's prefix: its addresses are the attacker's to pick).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let ip = dialtone_auth::bans::source_key(ip);
        let mut open = self.open.lock();
        let (total, by_source) = &mut *open;
        let refused = if *total >= self.limits.total {
            Some(Refused::Full)
        } else if by_source.get(&ip).copied().unwrap_or(0) >= self.limits.per_source {
            Some(Refused::SourceFull)
        } else {
            None
        };
        if let Some(r) = refused {
            self.refused[r as usize].fetch_add(1, Ordering::Relaxed);
            return Err(r);
        }
        *total += 1;
        *by_source.entry(ip).or_default() += 1;
        Ok(Permit {
            admission: self.clone(),
            ip: Some(ip),
        })
    }

    /// Admits something from a source trusted to carry many others' traffic (another edge
    /// of the group, a trusted peer): it counts against the total only.
    pub fn admit_trusted(self: &Arc<Self>) -> Result<Permit, Refused> {
        let mut open = self.open.lock();
        if open.0 >= self.limits.total {
            self.refused[Refused::Full as usize].fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Full);
        }
        open.0 += 1;
        Ok(Permit {
            admission: self.clone(),
            ip: None,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().0
    }

    /// Connections refused since start: (edge full, source full).
    pub fn refused(&self) -> (u64, u64) {
        (
            self.refused[0].load(Ordering::Relaxed),
            self.refused[1].load(Ordering::Relaxed),
        )
    }
}

impl Admission {
    /// Prometheus text: what is held now and what was refused, as `{name}_open` and
    /// `{name}_refused_total{reason}`.
    pub fn render(&self, name: &str, what: &str, node: &str, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "# HELP {name}_open {what} open now.\n# TYPE {name}_open gauge\n{name}_open{{node=\"{node}\"}} {}\n",
            self.open()
        );
        self.render_refused(name, what, node, out);
    }

    /// Only the refusals (where the open count is kept elsewhere, by transport).
    pub fn render_refused(&self, name: &str, what: &str, node: &str, out: &mut String) {
        use std::fmt::Write;
        let (full, source_full) = self.refused();
        let _ = write!(
            out,
            "# HELP {name}_refused_total {what} refused: every slot taken (full), or the source's (source_full).\n# TYPE {name}_refused_total counter\n\
             {name}_refused_total{{node=\"{node}\",reason=\"full\"}} {full}\n\
             {name}_refused_total{{node=\"{node}\",reason=\"source_full\"}} {source_full}\n",
        );
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock();
        let (total, by_source) = &mut *open;
        *total -= 1;
        if let Some(ip) = self.ip
            && let Some(n) = by_source.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                by_source.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_permits_give_back() {
        let a = Admission::new(SourceLimits {
            total: 3,
            per_source: 2,
        });
        let (x, y, z): (IpAddr, IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        );
        let x1 = a.admit(x).unwrap();
        let _x2 = a.admit(x).unwrap();
        assert_eq!(a.admit(x).err(), Some(Refused::SourceFull));
        let _y1 = a.admit(y).unwrap();
        assert_eq!(a.admit(z).err(), Some(Refused::Full));
        assert_eq!(a.open(), 3);
        drop(x1);
        assert_eq!(a.open(), 2);
        let _z1 = a.admit(z).unwrap();
        assert_eq!(a.admit(y).err(), Some(Refused::Full));
        assert_eq!(a.refused(), (2, 1));
        drop(_x2);
        assert!(
            !a.open.lock().1.contains_key(&x),
            "no count kept for a closed source"
        );
    }
}
