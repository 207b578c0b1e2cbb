//! Re-reduces many phones of the view at once. A departed edge touches every phone bound
//! to it (666,000 at a million phones), so: the phones' entries are found by one walk over
//! the view in id order, not a lookup each; they are re-reduced in place on several
//! threads, each its own share ([`Context::rereduce`] reads nothing another phone's
//! re-reduction writes); then, on the caller's thread and in id order, what the phones
//! share is finished (per-site counts, names, entries left empty) and each change handed
//! on. A few phones, or phones scattered over a large view, are looked up one by one on
//! the caller's thread.

use std::{
    collections::BTreeMap,
    ops::Bound::{Excluded, Included, Unbounded},
    sync::{Arc, OnceLock},
};

use rayon_core::{ThreadPool, ThreadPoolBuilder};
use tracing::warn;

use crate::{
    entry::{Counts, PhoneEntry},
    intern::Interner,
    prefetch,
    reduce::{Context, Form, Handed, Rereduced, Tally},
};

/// The view's phones by id.
pub(crate) type Phones = BTreeMap<Arc<str>, Box<PhoneEntry>>;

/// Fewest phones worth a share of their own (waking a pool thread costs microseconds; a
/// phone's re-reduction a few).
const SHARE: usize = 512;
/// Entries a walk may pass over for each phone it finds before looking the phones up
/// instead: passing an entry costs nanoseconds, a lookup in a view of a million about a
/// microsecond.
const PASSED_PER_PHONE: usize = 32;
/// Most threads phones are re-reduced on.
const MOST_THREADS: usize = 8;

/// The threads phones are re-reduced on: one a core up to [`MOST_THREADS`], named
/// `status-reduce-{i}`, started by the first re-reduction of many phones; none on one
/// core, or when they could not be started (everything then runs on the caller's thread).
fn pool() -> Option<&'static ThreadPool> {
    static POOL: OnceLock<Option<ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.min(MOST_THREADS);
        if threads < 2 {
            return None;
        }
        ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("status-reduce-{i}"))
            .build()
            .inspect_err(|e| warn!(error = %e, "no threads to re-reduce phones on: using one"))
            .ok()
    })
    .as_ref()
}

/// How many threads [`run_all`] runs jobs on at once.
fn threads() -> usize {
    pool().map_or(1, ThreadPool::current_num_threads)
}

/// Runs `jobs` at once on the pool and returns when all are done; one after another on
/// the caller's thread when there is no pool or a single job.
fn run_all<'a>(jobs: Vec<impl FnOnce() + Send + 'a>) {
    match pool() {
        Some(pool) if jobs.len() > 1 => pool.scope(|s| {
            for job in jobs {
                s.spawn(move |_| job());
            }
        }),
        _ => jobs.into_iter().for_each(|job| job()),
    }
}

/// Re-reduces phones `ids` (sorted, no repeats) in place; returns what each changed, in
/// the order of `ids` (none for a phone the view does not hold).
pub(crate) fn rereduce(
    context: &Context<'_>,
    phones: &mut Phones,
    ids: &[Arc<str>],
    revision: i64,
    now_ms: i64,
    form: Form,
) -> (Vec<Option<Rereduced>>, Tally) {
    debug_assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids sorted, no repeats"
    );
    let one = |id: &Arc<str>, entry: Option<&mut PhoneEntry>, tally: &mut Tally| {
        entry.map(|e| context.rereduce(id, e, revision, now_ms, form, tally))
    };
    if ids.len() < SHARE || !dense(phones, ids) {
        let mut tally = Tally::default();
        let out = ids
            .iter()
            .map(|id| one(id, phones.get_mut(&**id).map(|e| &mut **e), &mut tally))
            .collect();
        return (out, tally);
    }
    let mut entries = walk(phones, ids);
    let shares = threads().min(ids.len() / SHARE).max(1);
    let per = ids.len().div_ceil(shares);
    let run = &|(ids, entries): (&[Arc<str>], &mut [Option<&mut PhoneEntry>])| {
        let mut tally = Tally::default();
        let mut out = Vec::with_capacity(ids.len());
        for i in 0..ids.len() {
            let ahead = |n: usize| entries.get(i + n).and_then(Option::as_deref);
            if let Some(e) = ahead(prefetch::ENTRY) {
                prefetch::entry(e);
            }
            if let Some(e) = ahead(prefetch::OWNED) {
                prefetch::owned(e);
            }
            if let Some(e) = ahead(prefetch::NESTED) {
                prefetch::nested(e);
            }
            out.push(one(&ids[i], entries[i].as_deref_mut(), &mut tally));
        }
        (out, tally)
    };
    let mut parts: Vec<(Vec<Option<Rereduced>>, Tally)> = Vec::new();
    parts.resize_with(shares, Default::default);
    let jobs: Vec<_> = ids
        .chunks(per)
        .zip(entries.chunks_mut(per))
        .zip(parts.iter_mut())
        .map(|(share, out)| move || *out = run(share))
        .collect();
    run_all(jobs);
    let mut tally = Tally::default();
    let mut out = Vec::with_capacity(ids.len());
    for (part, t) in parts {
        out.extend(part);
        tally.merge(t);
    }
    (out, tally)
}

/// The phones with a binding on one of `edges`, in id order. A million phones are looked
/// through in ranges, one a thread: reading each phone's bindings is a few cache misses.
pub(crate) fn bound_to(phones: &Phones, edges: &[Arc<str>]) -> Vec<Arc<str>> {
    bound_to_in_ranges(phones, edges, threads().min(phones.len() / (SHARE * 16)))
}

/// [`bound_to`], the view cut into `ranges` ranges.
fn bound_to_in_ranges(phones: &Phones, edges: &[Arc<str>], ranges: usize) -> Vec<Arc<str>> {
    let bound = |id: &Arc<str>, e: &PhoneEntry| {
        e.bindings
            .iter()
            .any(|b| edges.contains(&b.node_id))
            .then(|| id.clone())
    };
    // Each range's list is given room for every phone of the range up front (16 bytes a
    // phone of the view, until the phones found are re-reduced; memory nobody writes to
    // is not touched): one of three edges that dies has two thirds of a dual-registered
    // fleet bound to it, and a list grown by doubling copied itself over and over.
    if ranges < 2 {
        let mut out = Vec::with_capacity(phones.len());
        out.extend(prefetched(phones.range::<str, _>(..)).filter_map(|(id, e)| bound(id, e)));
        return out;
    }
    // Where each range starts: walking the keys alone touches no phone's entry.
    let per = phones.len().div_ceil(ranges);
    let starts: Vec<&Arc<str>> = phones.keys().step_by(per).collect();
    let mut parts: Vec<Vec<Arc<str>>> = vec![Vec::new(); starts.len()];
    let jobs: Vec<_> = parts
        .iter_mut()
        .enumerate()
        .map(|(i, out)| {
            let from = Included(&**starts[i]);
            let to = starts.get(i + 1).map_or(Unbounded, |k| Excluded(&***k));
            let bound = &bound;
            move || {
                out.reserve_exact(per);
                out.extend(
                    prefetched(phones.range::<str, _>((from, to)))
                        .filter_map(|(id, e)| bound(id, e)),
                );
            }
        })
        .collect();
    run_all(jobs);
    // Moved into one list, not cloned: a clone and a drop of each id are two writes to
    // its count, a cache miss each.
    let mut all = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for part in parts {
        all.extend(part);
    }
    all
}

/// The view's entries in `range`, each asked of the CPU a few entries before it is read,
/// and its bindings after that ([`prefetch`]).
fn prefetched<'v>(
    range: std::collections::btree_map::Range<'v, Arc<str>, Box<PhoneEntry>>,
) -> impl Iterator<Item = (&'v Arc<str>, &'v PhoneEntry)> {
    let mut entries = range.clone().skip(prefetch::ENTRY);
    let mut bindings = range.clone().skip(prefetch::OWNED);
    range.map(move |(id, e)| {
        if let Some((_, ahead)) = entries.next() {
            prefetch::entry(ahead);
        }
        if let Some((_, ahead)) = bindings.next() {
            prefetch::bindings(ahead);
        }
        (id, &**e)
    })
}

/// Whether the view's entries from the first of `ids` to the last are few enough to walk.
fn dense(phones: &Phones, ids: &[Arc<str>]) -> bool {
    let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
        return false;
    };
    let most = ids.len() * PASSED_PER_PHONE;
    phones
        .range::<str, _>((Included(&**first), Included(&**last)))
        .take(most + 1)
        .count()
        <= most
}

/// The entries of `ids` (sorted, no repeats), found by walking the view once.
fn walk<'v>(phones: &'v mut Phones, ids: &[Arc<str>]) -> Vec<Option<&'v mut PhoneEntry>> {
    let mut out = Vec::with_capacity(ids.len());
    let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
        return out;
    };
    let mut entries = phones
        .range_mut::<str, _>((Included(&**first), Included(&**last)))
        .peekable();
    // The ids are mostly the view's own (`bound_to`'s, `absorb_part`'s): the same
    // address is the same id, matched without reading either's bytes (entries passed
    // over are still compared by value).
    let same = |k: &Arc<str>, id: &Arc<str>| Arc::ptr_eq(k, id) || **k == **id;
    for id in ids {
        while entries
            .next_if(|(k, _)| !Arc::ptr_eq(k, id) && ***k < **id)
            .is_some()
        {}
        out.push(entries.next_if(|(k, _)| same(k, id)).map(|(_, e)| &mut **e));
    }
    out
}

/// Finishes what re-reducing `ids` changed (in the order of `ids`, with `tally` its
/// counts) and hands each change to `sink`; says whether a phone's status was removed,
/// and which sites phones moved from.
pub(crate) fn finish(
    phones: &mut Phones,
    counts: &mut BTreeMap<String, Counts>,
    names: &mut Interner,
    ids: &[Arc<str>],
    (rereduced, tally): (Vec<Option<Rereduced>>, Tally),
    sink: &mut dyn FnMut(&Arc<str>, Handed),
) -> Departures {
    let mut departures = Departures::default();
    for (site, by) in tally.0 {
        count(counts, &site, by);
    }
    for (id, r) in ids.iter().zip(rereduced) {
        let Some(r) = r else { continue };
        departures.removed |= r.removed;
        if let Some(site) = r.left
            && !departures.left.contains(&site)
        {
            departures.left.push(site);
        }
        if r.empty {
            phones.remove(&**id);
        } else if r.needs_interning
            && let Some(published) = phones.get_mut(&**id).and_then(|e| e.published.as_mut())
        {
            for (node, ..) in &mut published.edges {
                *node = names.get(node);
            }
        }
        if let Some(handed) = r.handed {
            sink(id, handed);
        }
    }
    departures
}

/// What a re-reduction did that a watcher resuming from before it cannot read from the
/// view ([`finish`]).
#[derive(Debug, Default)]
pub(crate) struct Departures {
    /// A phone's status was removed.
    pub(crate) removed: bool,
    /// The sites phones' statuses moved from (to another site), each once.
    pub(crate) left: Vec<Arc<str>>,
}

/// Adds `by` (by status, in [`crate::reduce::slot`]'s order) to a site's counts; a site
/// counting no phone is dropped.
fn count(counts: &mut BTreeMap<String, Counts>, site: &str, by: [i64; 5]) {
    if by.iter().all(|n| *n == 0) {
        return;
    }
    if !counts.contains_key(site) {
        counts.insert(site.to_owned(), Counts::default());
    }
    let c = counts.get_mut(site).expect("inserted above");
    for (n, b) in c.iter_mut().zip(by) {
        *n = u32::try_from((i64::from(*n) + b).max(0)).unwrap_or(u32::MAX);
    }
    if c.iter().all(|n| *n == 0) {
        counts.remove(site);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(ids: &[&str]) -> Phones {
        ids.iter()
            .map(|id| (Arc::<str>::from(*id), Box::default()))
            .collect()
    }

    fn ids(ids: &[&str]) -> Vec<Arc<str>> {
        ids.iter().map(|id| Arc::from(*id)).collect()
    }

    #[test]
    fn a_walk_finds_each_phone_the_view_holds() {
        let mut phones = view(&["a", "b", "c", "d", "e"]);
        // (asked for, which were found)
        let cases: [(&[&str], &[bool]); 5] = [
            (&["a", "c", "e"], &[true, true, true]),
            (&["b"], &[true]),
            (&["a", "bb", "d", "z"], &[true, false, true, false]),
            (&["0", "a"], &[false, true]),
            (&[], &[]),
        ];
        for (asked, found) in cases {
            let got: Vec<bool> = walk(&mut phones, &ids(asked))
                .iter()
                .map(Option::is_some)
                .collect();
            assert_eq!(got, found, "{asked:?}");
        }
    }

    #[test]
    fn only_phones_close_together_are_walked() {
        let all: Vec<String> = (0..1_000).map(|i| format!("p{i:04}")).collect();
        let phones = view(&all.iter().map(String::as_str).collect::<Vec<_>>());
        let every = |step: usize| -> Vec<Arc<str>> {
            all.iter()
                .step_by(step)
                .map(|id| Arc::from(id.as_str()))
                .collect()
        };
        assert!(dense(&phones, &every(1)));
        assert!(dense(&phones, &every(PASSED_PER_PHONE)));
        // Two phones 999 apart: a walk would pass 500 entries for each.
        assert!(!dense(&phones, &every(999)));
        assert!(!dense(&phones, &[]));
    }

    #[test]
    fn the_phones_bound_to_an_edge_are_found_in_every_range() {
        // Enough phones for several ranges (SHARE * 16 a thread); phone i is bound to edge
        // i % 3, and every seventh also to edge 3.
        let edges: Vec<Arc<str>> = (0..4).map(|e| Arc::from(format!("edge-{e}"))).collect();
        let binding = |node: &Arc<str>| crate::entry::BindingFacts {
            line: 0,
            node_id: node.clone(),
            contacts: Box::default(),
            user_agent: Arc::from(""),
            updated_at_ms: 0,
        };
        let phones: Phones = (0..SHARE * 16 * 3 + 5)
            .map(|i| {
                let mut bindings = vec![binding(&edges[i % 3])];
                if i % 7 == 0 {
                    bindings.push(binding(&edges[3]));
                }
                let entry = PhoneEntry {
                    bindings: bindings.into_boxed_slice(),
                    ..Default::default()
                };
                (Arc::from(format!("p{i:06}")), Box::new(entry))
            })
            .collect();
        let cases: [&[usize]; 4] = [&[0], &[3], &[1, 3], &[]];
        for wanted in cases {
            let asked: Vec<Arc<str>> = wanted.iter().map(|e| edges[*e].clone()).collect();
            let want: Vec<Arc<str>> = phones
                .iter()
                .filter(|(_, e)| e.bindings.iter().any(|b| asked.contains(&b.node_id)))
                .map(|(id, _)| id.clone())
                .collect();
            for ranges in [1, 2, 4, 7] {
                let got = bound_to_in_ranges(&phones, &asked, ranges);
                assert_eq!(got, want, "edges {wanted:?}, {ranges} ranges");
            }
        }
    }

    #[test]
    fn counts_take_sums_and_drop_sites_counting_nobody() {
        let mut counts = BTreeMap::new();
        // (site, change by status, that site's counts after; none when dropped)
        let cases: [(&str, [i64; 5], Option<Counts>); 5] = [
            ("hq", [3, 1, 0, 0, 0], Some([3, 1, 0, 0, 0])),
            ("hq", [-1, 1, 0, 0, 0], Some([2, 2, 0, 0, 0])),
            ("hq", [0; 5], Some([2, 2, 0, 0, 0])),
            ("branch", [0; 5], None),
            ("hq", [-2, -2, 0, 0, 0], None),
        ];
        for (site, by, want) in cases {
            count(&mut counts, site, by);
            assert_eq!(counts.get(site).copied(), want, "{site} {by:?}");
        }
    }
}
