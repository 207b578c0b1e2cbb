//! The worst inputs an attacker can put in one 64 KB datagram cost the parser (and the
//! verdict, and the salvage of a broken request) at most twice their size in memory held at
//! once, and at most four times in bytes allocated over the whole call. A counting
//! allocator measures this test's thread: deterministic, unlike a timing. (The folded
//! header that once cost 400 MB per datagram is the first case.)

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

struct Counting;

thread_local! {
    /// Bytes asked for, in all.
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    /// Bytes held now (may go below zero for memory allocated before a measurement).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The most held at once since the last reset.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn held(delta: isize) {
    LIVE.with(|l| {
        l.set(l.get() + delta);
        PEAK.with(|p| p.set(p.get().max(l.get())));
    });
}

// SAFETY: defers to the system allocator; the thread-local is a const-initialised Cell
// without a destructor, so touching it never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.with(|a| a.set(a.get() + layout.size()));
        held(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        held(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.with(|a| a.set(a.get() + new_size));
        held(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated by `f` on this thread: (in all, most held at once).
fn allocated_by(f: impl FnOnce()) -> (usize, usize) {
    let before = ALLOCATED.with(Cell::get);
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    f();
    let peak = PEAK.with(Cell::get) - live;
    (ALLOCATED.with(Cell::get) - before, peak.max(0) as usize)
}

const HEAD: &str = "OPTIONS sip:e SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@e>;tag=1\r\nTo: <sip:a@e>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n";

/// Fills a message up to just under 64 KB with `line` repeated, then ends the head.
fn filled(start: &str, line: &str) -> Vec<u8> {
    let mut m = String::from(start);
    while m.len() + line.len() + 2 < dialtone_sip::message::MAX_MESSAGE {
        m.push_str(line);
    }
    m.push_str("\r\n");
    m.into_bytes()
}

#[test]
fn worst_case_datagrams_cost_at_most_twice_their_size() {
    let long_name = format!("X-{}", "n".repeat(120));
    let named = format!("{long_name}: {}\r\n", "v".repeat(100));
    let body = {
        let mut m = format!("{HEAD}Content-Length: 60000\r\n\r\n").into_bytes();
        m.resize(m.len() + 60_000, b'x');
        m
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "folded header",
            filled(&format!("{HEAD}X-Fold: a\r\n"), " b\r\n"),
        ),
        (
            "folded header, LF only",
            filled(&format!("{HEAD}X-Fold: a\r\n"), " b\n"),
        ),
        ("many short headers", filled(HEAD, "a:b\r\n")),
        ("many unknown long names", filled(HEAD, &named)),
        (
            "many vias",
            filled(
                HEAD,
                &format!("Via: {}\r\n", ["SIP/2.0/UDP h"; 8].join(",")),
            ),
        ),
        (
            "many contacts",
            filled(HEAD, &format!("m: {}\r\n", ["<sip:a@b>"; 8].join(","))),
        ),
        (
            "broken request line",
            filled(
                "INVITE a b c\r\nVia: SIP/2.0/UDP h\r\n",
                "Via: SIP/2.0/UDP h\r\n",
            ),
        ),
        (
            "compact contacts, bad",
            filled(HEAD, "m: <<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<\r\n"),
        ),
        ("big body", body),
    ];
    for (name, input) in &cases {
        assert!(input.len() <= dialtone_sip::message::MAX_MESSAGE, "{name}");
        let (total, peak) = allocated_by(|| {
            let judged = dialtone_sip::judge(input);
            std::hint::black_box(&judged);
        });
        assert!(
            peak <= 2 * input.len() && total <= 4 * input.len(),
            "{name}: {peak} bytes held at once, {total} in all, for a {}-byte datagram",
            input.len()
        );
    }
}
