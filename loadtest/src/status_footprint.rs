//! Where the status role's memory per phone goes: builds the status view ([`Fleet`]) of
//! PHONES phones as `fleet-bench` makes them (one line each, registered to a primary and a
//! secondary edge, one contact per binding) from the store changes the role would receive,
//! and prints the heap bytes the view holds after each kind of input, counted by a global
//! allocator that wraps mimalloc (the allocator `dialtone` runs with), and what the
//! process's PSS grew by; then, from a second build with the most the hub retains (
//! `hub::CHANNEL` changes in its broadcast channel, as when a watcher lags by all of it,
//! and the last `hub::HISTORY` (revision, phone) pairs), what those hold: bounded costs,
//! whatever the fleet's size.
//!
//! `cargo run --release -p dialtone-loadtest --bin status-footprint -- [PHONES]` (default
//! 100000). No cluster, no clock: the same build and PHONES print the same figures, so a
//! change to the view's layout is compared exactly; `fleet-bench` measures the whole
//! process (PSS) in a live cluster.

use std::{
    alloc::{GlobalAlloc, Layout},
    sync::atomic::{AtomicBool, AtomicI64, Ordering},
};

use dialtone_domain::{keys, placement};
use dialtone_loadtest::procfs::pss;
use dialtone_proto::{
    config::v1::{BaseSettings, Edge, EdgeGroup, Line, MetaBase, Phone, PhoneKind, Site},
    edge::v1::{Binding, Contact, SipTransport},
    provisioning::v1::ProvisionState,
};
use dialtone_status::{
    fleet::Fleet,
    hub::{self, State},
    metrics::Metrics,
};
use dialtone_store::WatchEvent;
use parking_lot::RwLock;
use prost::Message;
use tokio::sync::broadcast;

/// Counts live heap bytes (as requested) and live allocations, allocating with mimalloc.
struct Counting;

static BYTES: AtomicI64 = AtomicI64::new(0);
static BLOCKS: AtomicI64 = AtomicI64::new(0);
/// Off while `revoke` times the hub: the counters are atomics every thread shares, and the
/// threads re-reducing phones at once would contend for them as the role's never do. After
/// that window the counters no longer say what is live (its frees were not subtracted),
/// so every figure printed is a difference between two readings of one phase.
static COUNTING: AtomicBool = AtomicBool::new(true);

static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

// SAFETY: every call is forwarded to mimalloc with the caller's layout unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            BYTES.fetch_add(l.size() as i64, Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded as is.
        unsafe { INNER.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            BYTES.fetch_sub(l.size() as i64, Ordering::Relaxed);
            BLOCKS.fetch_sub(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded as is.
        unsafe { INNER.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            BYTES.fetch_add(new as i64 - l.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: forwarded as is.
        unsafe { INNER.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> (i64, i64) {
    (
        BYTES.load(Ordering::Relaxed),
        BLOCKS.load(Ordering::Relaxed),
    )
}

const EDGES: [&str; 3] = ["edge-a1b2c3", "edge-d4e5f6", "edge-g7h8i9"];

/// A phone id shaped as the config role makes them (a UUID v4).
fn phone_id(i: usize) -> String {
    format!(
        "{:08x}-4f1c-4a2b-9c3d-{:012x}",
        i * 2_654_435_761 % (1 << 32),
        i
    )
}

fn binding(id: &str, user: &str, node: &str, i: usize) -> Vec<u8> {
    let port = 10_000 + i % 50_000;
    Binding {
        phone_id: id.to_owned(),
        line_index: 0,
        sip_user: user.to_owned(),
        node_id: node.to_owned(),
        contacts: vec![Contact {
            uri: format!("sip:{user}@127.0.0.10:{port}"),
            expires_at_s: 1_790_000_000,
            transport: SipTransport::Udp as i32,
            source: format!("127.0.0.10:{port}"),
            user_agent: "dialtone-phonesim".to_owned(),
            ..Default::default()
        }],
        updated_at_ms: 1_790_000_000_000,
        republish_after_s: 1800,
    }
    .encode_to_vec()
}

/// Live heap bytes, live allocations and the process's PSS.
type Reading = (i64, i64, u64);

fn reading() -> Reading {
    let (bytes, blocks) = live();
    (bytes, blocks, pss(&[std::process::id()]))
}

fn report(what: &str, phones: usize, before: Reading, after: Reading) {
    let n = phones.max(1) as f64;
    println!(
        "{what:<36} {:>6.0} B/phone {:>5.1} allocations/phone, PSS {:>6.0} B/phone",
        (after.0 - before.0) as f64 / n,
        (after.1 - before.1) as f64 / n,
        (after.2 as f64 - before.2 as f64) / n
    );
}

/// The inputs of a fleet of `phones`, in the order a registration ramp writes them: the
/// site, its edge group and profile, then each kind of input for every phone in turn.
struct Inputs {
    setup: Vec<KeyValue>,
    phases: Vec<(&'static str, Vec<KeyValue>)>,
}

/// A key and its value, as the store's watch hands them over.
type KeyValue = (String, Vec<u8>);

fn inputs(phones: usize) -> Inputs {
    let group = EdgeGroup {
        id: "main".into(),
        edges: EDGES
            .iter()
            .map(|n| Edge {
                node_id: (*n).into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let site = Site {
        id: "hq".into(),
        edge_group_id: "main".into(),
        ..Default::default()
    };
    let base = BaseSettings {
        id: "desk".into(),
        meta_base: MetaBase::GenericSip as i32,
        ..Default::default()
    };
    let mut setup = vec![
        (format!("{}main", keys::EDGE_GROUPS), group.encode_to_vec()),
        (format!("{}hq", keys::SITES), site.encode_to_vec()),
        (format!("{}desk", keys::BASE_SETTINGS), base.encode_to_vec()),
    ];
    // A binding counts only while its edge has a membership record.
    setup.extend(
        EDGES
            .iter()
            .map(|n| (keys::member("edge", n), b"member".to_vec())),
    );
    let ids: Vec<String> = (0..phones).map(phone_id).collect();
    let users: Vec<String> = (0..phones).map(|i| format!("fleet{i:06}")).collect();
    let config = ids
        .iter()
        .zip(&users)
        .enumerate()
        .map(|(i, (id, user))| {
            let p = Phone {
                id: id.clone(),
                name: format!("fleet {i}"),
                site_id: "hq".into(),
                base_settings_id: "desk".into(),
                kind: PhoneKind::Unmanaged as i32,
                lines: vec![Line {
                    sip_user: user.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            };
            (format!("{}{id}", keys::PHONES), p.encode_to_vec())
        })
        .collect();
    let placed: Vec<(String, String)> = ids
        .iter()
        .map(|id| {
            let p = placement::place(id, &group.edges, true).expect("placed");
            let secondary = p.secondary.expect("dual").node_id.clone();
            (p.primary.node_id.clone(), secondary)
        })
        .collect();
    let on = |secondary: bool| -> Vec<KeyValue> {
        ids.iter()
            .zip(&users)
            .zip(&placed)
            .enumerate()
            .map(|(i, ((id, user), (primary, other)))| {
                let node = if secondary { other } else { primary };
                (keys::binding(id, 0, node), binding(id, user, node, i))
            })
            .collect()
    };
    let provision = ids
        .iter()
        .map(|id| {
            let state = ProvisionState {
                applied_version: "v3".into(),
                desired_version: "v3".into(),
                last_fetch_ms: 1_790_000_000_000,
                ..Default::default()
            };
            (format!("{}{id}", keys::PROVISION), state.encode_to_vec())
        })
        .collect();
    Inputs {
        setup,
        phases: vec![
            ("configured (OFFLINE)", config),
            ("+ primary binding (DEGRADED)", on(false)),
            ("+ secondary binding (OPERATIONAL)", on(true)),
            ("+ provisioning record", provision),
        ],
    }
}

/// Applies every input to a status role's state, one change per batch as the watch
/// delivers a registration ramp; with `tx`, the changes are recorded as the hub records
/// them, else dropped. Prints each phase's growth when `print`; returns the state and the
/// bytes it grew by.
fn build(
    inputs: &Inputs,
    phones: usize,
    tx: Option<&broadcast::Sender<hub::EncodedChange>>,
    print: bool,
) -> (State, i64) {
    let start = reading();
    let mut state = State::new(Fleet::new("dialtone.test"));
    let mut revision = 1;
    let setup = inputs.setup.iter().map(|(k, v)| (k.as_str(), Some(&v[..])));
    drop(state.fleet.apply(setup, revision, 0));
    for (what, changes) in &inputs.phases {
        let before = reading();
        for (key, value) in changes {
            revision += 1;
            let changes = state
                .fleet
                .apply([(key.as_str(), Some(&value[..]))], revision, revision);
            if let Some(tx) = tx {
                state.record(tx, changes);
            }
        }
        state.fleet.take_binding_writes();
        if print {
            report(what, phones, before, reading());
        }
    }
    let end = reading();
    if print {
        report("the view, every input", phones, start, end);
    }
    (state, end.0 - start.0)
}

/// The view's counts by status of its one site.
fn site_counts(state: &State) -> dialtone_status::fleet::Counts {
    state
        .fleet
        .counts()
        .values()
        .next()
        .copied()
        .unwrap_or_default()
}

/// What a killed edge costs the status role before its phones show DEGRADED, through the
/// hub's own `apply_in_parts` with a watcher subscribed (that never reads): the first
/// edge's membership record deleted (its node lease expired), then every binding on it in
/// one batch, as etcd delivers the expiry of the binding lease they hang on, 2 s or more
/// later.
/// Prints how long the view took for each.
fn revoke(state: State, inputs: &Inputs, phones: usize) -> State {
    let edge = format!("/{}", EDGES[0]);
    // In key order, as etcd deletes a revoked lease's keys (it sorts them, so every member
    // deletes them in the same order).
    let mut gone: Vec<&String> = inputs
        .phases
        .iter()
        .flat_map(|(_, changes)| changes)
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(keys::BINDINGS) && k.ends_with(&edge))
        .collect();
    gone.sort();
    let gone: Vec<WatchEvent> = gone
        .into_iter()
        .map(|k| WatchEvent::Delete {
            key: k.clone(),
            mod_revision: i64::MAX / 2,
        })
        .collect();
    let member = [WatchEvent::Delete {
        key: keys::member("edge", EDGES[0]),
        mod_revision: i64::MAX / 2 - 1,
    }];
    let state = RwLock::new(state);
    let (tx, _watcher) = broadcast::channel(hub::CHANNEL);
    let applying = tokio::sync::watch::channel(false).0;
    let feed = hub::Feed {
        tx: &tx,
        applying: &applying,
    };
    let metrics = Metrics::default();
    COUNTING.store(false, Ordering::Relaxed);
    let started = std::time::Instant::now();
    hub::apply_in_parts(&state, feed, &metrics, &member, i64::MAX / 2 - 1);
    let took = started.elapsed();
    let degraded = site_counts(&state.read())[1];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "the membership record of {} deleted: applied in {:.2} s ({:.2} µs a phone re-reduced, wall time on {cores} cores); {degraded} of {phones} phones now DEGRADED",
        EDGES[0],
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / f64::from(degraded.max(1)),
    );
    let started = std::time::Instant::now();
    hub::apply_in_parts(&state, feed, &metrics, &gone, i64::MAX / 2);
    let took = started.elapsed();
    COUNTING.store(true, Ordering::Relaxed);
    let state = state.into_inner();
    let counts = site_counts(&state);
    println!(
        "then its {} bindings deleted in one batch: applied in {:.2} s ({:.2} µs a binding, parts of {}); {} of {phones} phones DEGRADED",
        gone.len(),
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / gone.len().max(1) as f64,
        hub::PART,
        counts[1],
    );
    state
}

fn main() -> anyhow::Result<()> {
    let phones: usize = std::env::args().nth(1).map_or(Ok(100_000), |s| s.parse())?;
    let inputs = inputs(phones);
    let (state, view) = build(&inputs, phones, None, true);
    let counts = site_counts(&state);
    anyhow::ensure!(
        counts[0] as usize == phones,
        "expected {phones} OPERATIONAL phones, the view counts {counts:?}"
    );
    println!("{phones} phones, all OPERATIONAL in the view");
    drop(revoke(state, &inputs, phones));

    // Again, recorded by the hub's own code, with a watcher that never reads: the channel
    // then holds all it can, and the history fills. The view grows as before, so the
    // difference is what the hub retains.
    let (tx, rx) = broadcast::channel(hub::CHANNEL);
    let (state, total) = build(&inputs, phones, Some(&tx), false);
    let retained = total - view;
    println!(
        "the hub's retention at most (a watcher lagging by the whole channel): {} changes in the channel and at most {} in the history hold {:.1} MiB ({:.0} B/phone at {phones} phones, {:.0} B/phone at 1,000,000)",
        rx.len().min(hub::CHANNEL),
        hub::HISTORY,
        retained as f64 / 1_048_576.0,
        retained as f64 / phones.max(1) as f64,
        retained as f64 / 1e6
    );
    drop((state, rx));
    Ok(())
}
