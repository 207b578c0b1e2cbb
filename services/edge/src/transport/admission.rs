//! Admission of stream connections (TCP, TLS, WS, WSS): a cap on the connections open at
//! once and one per source address, so that neither one address nor a flood of them can
//! hold the edge's memory and file descriptors. A connection holds a [`Permit`] for as
//! long as it lives. State: one small count per source with an open connection (the map
//! never holds an address without one).

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
pub struct ConnectionLimits {
    /// Connections open at once, all transports together.
    pub total: usize,
    /// Connections open at once from one IP address (offices behind one NAT address need
    /// one per phone).
    pub per_source: u32,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The edge holds [`ConnectionLimits::total`] connections.
    Full,
    /// The source holds [`ConnectionLimits::per_source`] connections.
    SourceFull,
}

/// The counts of open connections.
#[derive(Debug)]
pub struct Admission {
    limits: ConnectionLimits,
    open: Mutex<(usize, HashMap<IpAddr, u32>)>,
    /// Connections refused, by [`Refused`] (total, per source).
    refused: [AtomicU64; 2],
}

/// One admitted connection: released when dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Admission {
            limits,
            open: Mutex::new((0, HashMap::new())),
            refused: Default::default(),
        })
    }

    /// Admits a connection from `ip`, or says why not. An IPv6 source counts by its /64
    /// (one subscriber's prefix: its addresses are the attacker's to pick).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let ip = source_key(ip);
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
            ip,
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

/// The address connections are counted by: an IPv4 address, or an IPv6 address's /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock();
        let (total, by_source) = &mut *open;
        *total -= 1;
        if let Some(n) = by_source.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_source.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_permits_give_back() {
        let a = Admission::new(ConnectionLimits {
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
