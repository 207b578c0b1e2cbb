//! Asks the CPU for a phone's entry before it is re-reduced (and before `bound_to` reads
//! its bindings; the history asks for the id it will drop). A million phones' entries
//! are far bigger than the caches and are reached in id order, not memory order: each of
//! the dozen allocations a phone's status is built from (its entry, name, lines,
//! bindings, contacts, provisioning record) would be a cache miss taken one after another.
//! Asked for a few phones ahead, level by level (a pointer can only be followed once the
//! memory holding it has arrived), those misses overlap.

use std::sync::Arc;

use crate::entry::PhoneEntry;

/// Phones ahead whose entry itself is asked for.
pub(crate) const ENTRY: usize = 12;
/// Phones ahead whose entry's own allocations are asked for (the entry has arrived).
pub(crate) const OWNED: usize = 6;
/// Phones ahead whose contacts' strings are asked for.
pub(crate) const NESTED: usize = 3;

/// Asks for the cache line at `p`; never faults, whatever `p` is.
#[inline(always)]
fn line<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and never faults, whatever the
    // address; SSE, which it needs, is part of x86_64.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The entry's own memory.
#[inline]
pub(crate) fn entry(e: &PhoneEntry) {
    let p = std::ptr::from_ref(e).cast::<u8>();
    // Every line the entry spans, its last included (it need not start on a line).
    for at in (0..size_of::<PhoneEntry>()).step_by(64) {
        line(p.wrapping_add(at));
    }
    line(p.wrapping_add(size_of::<PhoneEntry>() - 1));
}

/// What the entry points to (read from the entry, which must have arrived).
#[inline]
pub(crate) fn owned(e: &PhoneEntry) {
    if let Some(c) = &e.config {
        line(c.name.as_ptr());
        line(c.sip_users.as_ptr());
    }
    line(e.bindings.as_ptr());
    if let Some(p) = &e.provision {
        line(&raw const **p);
    }
    if let Some(p) = &e.published {
        line(p.edges.as_ptr());
    }
}

/// The entry's bindings alone (read from the entry, which must have arrived).
#[inline]
pub(crate) fn bindings(e: &PhoneEntry) {
    line(e.bindings.as_ptr());
}

/// What the entry's allocations point to.
#[inline]
pub(crate) fn nested(e: &PhoneEntry) {
    if let Some(c) = &e.config {
        for user in &c.sip_users {
            line(user.as_ptr());
        }
    }
    for b in &e.bindings {
        line(b.contacts.as_ptr());
        for c in &b.contacts {
            line(c.uri.as_ptr());
            line(c.source.as_ptr());
        }
    }
    if let Some(p) = &e.provision {
        line(p.applied_version.as_ptr());
        line(p.desired_version.as_ptr());
    }
}

/// An id's reference counts: std keeps them (privately) just before the value, two
/// `usize`s, with no padding for a `str`. Were that ever to change, the line asked for
/// would be the wrong one: a wasted hint, never a fault.
#[inline]
pub(crate) fn arc(a: &Arc<str>) {
    line(
        Arc::as_ptr(a)
            .cast::<u8>()
            .wrapping_sub(2 * size_of::<usize>()),
    );
}
