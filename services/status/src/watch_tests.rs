//! Tests of `watch.rs`: snapshot pages, resumes, and a watcher behind a batch.

use dialtone_domain::keys;
use dialtone_proto::config::v1::{EdgeGroup, Line, Phone, Site};

use super::*;

/// A fleet of `n` configured phones, every third at site "b", the rest at "a".
fn fleet(n: usize) -> Fleet {
    let mut f = Fleet::new("example.com");
    let mut kvs: Vec<(String, Vec<u8>)> = ["a", "b"]
        .iter()
        .map(|s| {
            let site = Site {
                id: (*s).into(),
                edge_group_id: "g".into(),
                ..Default::default()
            };
            (format!("{}{s}", keys::SITES), site.encode_to_vec())
        })
        .collect();
    let group = EdgeGroup {
        id: "g".into(),
        ..Default::default()
    };
    kvs.push((format!("{}g", keys::EDGE_GROUPS), group.encode_to_vec()));
    for i in 0..n {
        let p = Phone {
            id: format!("p{i:05}"),
            name: format!("phone {i}"),
            site_id: if i % 3 == 0 { "b" } else { "a" }.into(),
            lines: vec![Line {
                sip_user: format!("u{i}"),
                ..Default::default()
            }],
            ..Default::default()
        };
        kvs.push((keys::phone(&p.id), p.encode_to_vec()));
    }
    f.load(kvs.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    f.settle(1, 0);
    f
}

/// Every phone the pages hold, in order, and the pages' sizes.
fn page_through(f: &Fleet, site: &str) -> (Vec<String>, Vec<usize>) {
    page_through_from(f, site, 0)
}

/// [`page_through`], of the phones changed at or after `from` (every phone: 0).
fn page_through_from(f: &Fleet, site: &str, from: i64) -> (Vec<String>, Vec<usize>) {
    let (mut ids, mut sizes, mut after) = (Vec::new(), Vec::new(), String::new());
    loop {
        let (page, more) = snapshot_page(f, &after, site, from);
        sizes.push(page.len());
        assert!(
            page.iter()
                .all(|c| c.snapshot == (from == 0) && c.status.is_some())
        );
        ids.extend(page.into_iter().map(|c| c.phone_id));
        match more {
            Some(last) => after = last,
            None => return (ids, sizes),
        }
    }
}

#[test]
fn a_snapshot_in_pages_holds_every_phone_once_in_order() {
    let f = fleet(2 * SNAPSHOT_PAGE + 100);
    let (ids, sizes) = page_through(&f, "");
    assert_eq!(sizes, [SNAPSHOT_PAGE, SNAPSHOT_PAGE, 100]);
    let want: Vec<String> = (0..2 * SNAPSHOT_PAGE + 100)
        .map(|i| format!("p{i:05}"))
        .collect();
    assert_eq!(ids, want);

    // A site's watcher: pages still read SNAPSHOT_PAGE phones, and keep that site's.
    let (ids, sizes) = page_through(&f, "b");
    assert_eq!(sizes.len(), 3);
    let want: Vec<String> = (0..2 * SNAPSHOT_PAGE + 100)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("p{i:05}"))
        .collect();
    assert_eq!(ids, want);

    // A fleet of exactly one page ends with an empty one.
    let (ids, sizes) = page_through(&fleet(SNAPSHOT_PAGE), "");
    assert_eq!((ids.len(), sizes), (SNAPSHOT_PAGE, vec![SNAPSHOT_PAGE, 0]));
}

#[test]
fn a_watcher_behind_is_sent_only_the_phones_changed_since() {
    let mut f = fleet(2 * SNAPSHOT_PAGE + 100);
    assert_eq!(f.last_removal(), 0);
    // Phones renamed at revisions 5 and 7 (every phone's status is at 1 before).
    let renamed = |i: usize| {
        let p = Phone {
            id: format!("p{i:05}"),
            name: format!("renamed {i}"),
            site_id: if i.is_multiple_of(3) { "b" } else { "a" }.into(),
            lines: vec![Line {
                sip_user: format!("u{i}"),
                ..Default::default()
            }],
            ..Default::default()
        };
        (keys::phone(&p.id), p.encode_to_vec())
    };
    let at5 = [renamed(3), renamed(700)];
    let at7 = [renamed(4), renamed(1_000)];
    f.apply(at5.iter().map(|(k, v)| (k.as_str(), Some(&v[..]))), 5, 0);
    f.apply(at7.iter().map(|(k, v)| (k.as_str(), Some(&v[..]))), 7, 0);
    // (from, site, the phones sent)
    let cases: [(i64, &str, &[&str]); 5] = [
        (5, "", &["p00003", "p00004", "p00700", "p01000"]),
        (6, "", &["p00004", "p01000"]),
        (7, "", &["p00004", "p01000"]),
        (8, "", &[]),
        (5, "b", &["p00003"]),
    ];
    for (from, site, want) in cases {
        let (ids, _) = page_through_from(&f, site, from);
        assert_eq!(ids, want, "from {from}, site {site:?}");
    }
    // A removal cannot be read from the view: whoever resumes from before it is sent
    // the whole fleet.
    f.apply([(keys::phone("p00010").as_str(), None)], 9, 0);
    assert_eq!(f.last_removal(), 9);
}

#[test]
fn a_watch_resumes_from_the_history_else_the_changed_phones_else_everything() {
    let many = RESUME_MOST + 1;
    // (changes the history holds since, after, the latest removal, the latest move
    // out of the watcher's site, how it starts)
    let cases = [
        (Some(10), 40, 0, 0, Resumed::History),
        (Some(RESUME_MOST), 40, 0, 0, Resumed::History),
        (Some(many), 40, 0, 0, Resumed::Changed),
        (Some(many), 40, 40, 0, Resumed::History),
        (None, 40, 0, 0, Resumed::Changed),
        (None, 40, 39, 0, Resumed::Changed),
        (None, 40, 40, 0, Resumed::Snapshot),
        (None, 40, 45, 0, Resumed::Snapshot),
        (None, 0, 0, 0, Resumed::Snapshot),
        (Some(10), 40, 0, 39, Resumed::History),
        (Some(10), 40, 0, 40, Resumed::Snapshot),
        (None, 40, 0, 45, Resumed::Snapshot),
        (None, 0, 0, 5, Resumed::Snapshot),
    ];
    for (held, after, removal, moved, want) in cases {
        assert_eq!(
            plan(held, after, removal, moved),
            want,
            "{held:?} held since {after}, removal at {removal}, move at {moved}"
        );
    }
}

#[test]
fn a_removal_is_held_back_only_when_a_page_showed_it() {
    // Pages: (.., "m"] read at 10, the rest at 12.
    let pages = |changed_only| {
        let mut s = SentPages {
            changed_only,
            ..Default::default()
        };
        s.page("m".into(), 10);
        s.end(12);
        s
    };
    // (pages of changed phones only, gone from the watcher's view (removed, or moved
    // out of its site), in its view now, held back)
    let cases = [
        (false, false, true, true),
        (false, true, false, true),
        (true, false, true, true),
        (true, true, true, true),
        (true, true, false, false),
    ];
    for (changed_only, gone, present, held) in cases {
        assert_eq!(
            pages(changed_only).hides("c", 9, gone, || present),
            held,
            "changed only {changed_only}, gone {gone}, present {present}"
        );
    }
    // Not shown by a page: never held back.
    assert!(!pages(true).hides("c", 11, true, || true));
}

#[test]
fn a_change_a_page_already_showed_is_not_sent_again() {
    // Pages: (.., "c"] read at 10, (.., "f"] at 12, the rest at 15.
    let pages = || {
        let mut s = SentPages::default();
        s.page("c".into(), 10);
        s.page("f".into(), 12);
        s.end(15);
        s
    };
    for (phone, revision, shown) in [
        ("a", 9, true),
        ("c", 10, false),
        ("c", 11, false),
        ("d", 11, true),
        ("f", 12, false),
        ("f", 13, false),
        ("g", 14, true),
        ("g", 15, false),
        ("z", 14, true),
        ("z", 16, false),
    ] {
        assert_eq!(
            pages().shown(phone, revision),
            shown,
            "{phone} at {revision}"
        );
    }
}

#[test]
fn pages_are_forgotten_once_changes_pass_them() {
    let mut s = SentPages::default();
    s.page("m".into(), 10);
    s.end(12);
    assert!(s.shown("a", 9));
    assert!(!s.shown("x", 13), "after every page");
    assert!(!s.shown("a", 9), "forgotten: nothing is held back any more");
}

/// A watcher that fell behind waits for the batch being applied: until it is in, at
/// most `SETTLE_MOST`, and not once its token stops granting View.
#[tokio::test(start_paused = true)]
async fn a_watcher_behind_resumes_once_the_batch_is_in() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::{sync::watch, time::Instant};

    // (case, applying at first, cleared after, the token revoked after, resumes,
    // waited); a clear is followed at once by the next batch's mark.
    let s = Duration::from_secs;
    let cases = [
        ("nothing being applied", false, None, None, true, s(0)),
        (
            "a batch in after 2 s, the next marked at once",
            true,
            Some(s(2)),
            None,
            true,
            s(2),
        ),
        ("a batch never in", true, None, None, true, SETTLE_MOST),
        (
            "the token revoked at 3 s",
            true,
            None,
            Some(s(3)),
            false,
            s(3),
        ),
        (
            "the token revoked after the batch",
            true,
            Some(s(1)),
            Some(s(3)),
            true,
            s(1),
        ),
    ];
    for (case, busy, cleared, revoked, resumes, waited) in cases {
        let (applying, applying_rx) = watch::channel(busy);
        let (token_tx, mut token_changes) = watch::channel(0u64);
        let allowed = Arc::new(AtomicBool::new(true));
        let started = Instant::now();
        let flip = {
            let allowed = allowed.clone();
            tokio::spawn(async move {
                let mut at = [(cleared, true), (revoked, false)];
                at.sort_by_key(|(t, _)| *t);
                for (t, clears) in at {
                    let Some(t) = t else { continue };
                    tokio::time::sleep_until(started + t).await;
                    if clears {
                        applying.send_replace(false);
                        applying.send_replace(true);
                    } else {
                        allowed.store(false, Ordering::Relaxed);
                        token_tx.send_replace(1);
                    }
                }
                // Kept until the wait is over: a dropped sender ends it too.
                tokio::time::sleep(SETTLE_MOST * 2).await;
                drop((applying, token_tx));
            })
        };
        let got = settle(applying_rx, &mut token_changes, || {
            allowed.load(Ordering::Relaxed)
        })
        .await;
        assert_eq!(got, resumes, "{case}");
        assert_eq!(started.elapsed(), waited, "{case}");
        flip.abort();
    }
}

/// A watch that falls behind while a batch is being applied is resumed (here with the
/// whole, empty fleet and a `synced` marker) only once the batch is in.
#[tokio::test(start_paused = true)]
async fn a_watch_behind_during_a_batch_is_resumed_after_it() {
    let hub = Arc::new(Hub::new(Fleet::new("example.com"), 4));
    let mut tokens = Tokens::default();
    tokens.insert("viewer", "secret", &[Permission::View]);
    let tokens = Arc::new(tokens);
    let (tx, mut out) = mpsc::channel(64);
    let token = ("secret".to_owned(), tokens.changes());
    let watch = tokio::spawn(serve(hub.clone(), tokens, token, 0, String::new(), tx));
    let synced = |w: Option<Result<Wire, Status>>| match w {
        Some(Ok(w)) => w.into_message().expect("decodes").synced,
        _ => false,
    };
    assert!(synced(out.recv().await), "the first snapshot's end");

    hub.applying.send_replace(true);
    let change = StatusChange {
        phone_id: "p1".into(),
        revision: 3,
        ..Default::default()
    };
    for _ in 0..8 {
        let _ = hub.tx.send(change.encode_to_vec().into());
    }
    let early = tokio::time::timeout(SETTLE_MOST / 2, out.recv()).await;
    assert!(
        early.is_err(),
        "resumed while the batch was applied: {early:?}"
    );
    hub.applying.send_replace(false);
    let resumed = tokio::time::timeout(Duration::from_secs(1), out.recv()).await;
    assert!(synced(resumed.expect("resumed once the batch was in")));
    watch.abort();
}

#[test]
fn without_a_snapshot_every_change_is_sent() {
    assert!(!SentPages::default().shown("a", 1));
}
