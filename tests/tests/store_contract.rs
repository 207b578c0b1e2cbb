//! One contract, every backend: the embedded store, a single etcd member, and a
//! three-member etcd cluster that loses a member in the middle of the run.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use dialtone_store::{
    Compare, EmbeddedStore, Follow, Follower, KeyValue, Op, Store, StoreError, WatchBatch,
    WatchEvent,
};
use dialtone_tests::EtcdCluster;
use parking_lot::Mutex;

fn put(key: &str, v: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: v.as_bytes().to_vec(),
        lease: None,
    }
}

/// Key/value, ranges, transactions: everything but watches and leases.
async fn contract_kv(s: &Store) {
    let r1 = s.put("a", b"1".to_vec(), None).await.unwrap();
    let a = s.get("a").await.unwrap().unwrap();
    assert_eq!(
        (
            a.value.as_slice(),
            a.version,
            a.create_revision,
            a.mod_revision
        ),
        (&b"1"[..], 1, r1, r1)
    );
    let r2 = s.put("a", b"2".to_vec(), None).await.unwrap();
    let a = s.get("a").await.unwrap().unwrap();
    assert!(r2 > r1);
    assert_eq!((a.version, a.create_revision, a.mod_revision), (2, r1, r2));
    assert!(s.get("missing").await.unwrap().is_none());

    for i in 1..=5 {
        s.put(&format!("p/{i}"), vec![i as u8], None).await.unwrap();
    }
    s.put("pp/x", b"other prefix".to_vec(), None).await.unwrap();
    let page = s.range("p/", None, 2).await.unwrap();
    assert_eq!(
        page.kvs.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(),
        ["p/1", "p/2"]
    );
    assert!(page.more);
    let page = s.range("p/", Some("p/2"), 10).await.unwrap();
    assert_eq!(
        page.kvs.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(),
        ["p/3", "p/4", "p/5"]
    );
    assert!(!page.more);
    assert_eq!(s.count("p/").await.unwrap(), 5);
    let many = s
        .get_many(&["p/2".into(), "nope".into(), "a".into()])
        .await
        .unwrap();
    assert_eq!(
        many.iter()
            .map(|k| k.as_ref().map(|k| k.key.clone()))
            .collect::<Vec<_>>(),
        [Some("p/2".into()), None, Some("a".into())]
    );
    // Several prefixes at once, each bounded, each in key order; "p/" does not take "pp/".
    let ranges = s
        .range_many(&["p/".into(), "pp/".into(), "none/".into()], 3)
        .await
        .unwrap();
    assert_eq!(
        ranges
            .iter()
            .map(|r| r.iter().map(|k| k.key.as_str()).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        [vec!["p/1", "p/2", "p/3"], vec!["pp/x"], vec![]]
    );

    // create-if-absent
    let t = s
        .txn(vec![Compare::Absent("u".into())], vec![put("u", "first")])
        .await
        .unwrap();
    assert!(t.succeeded);
    let t = s
        .txn(vec![Compare::Absent("u".into())], vec![put("u", "second")])
        .await
        .unwrap();
    assert!(!t.succeeded);
    assert_eq!(s.get("u").await.unwrap().unwrap().value, b"first");
    // compare mod revision: stale loses and changes nothing (not even the other ops)
    let u = s.get("u").await.unwrap().unwrap();
    let stale = Compare::ModRevision {
        key: "u".into(),
        revision: u.mod_revision - 1,
    };
    let t = s
        .txn(vec![stale], vec![put("u", "x"), put("side", "effect")])
        .await
        .unwrap();
    assert!(!t.succeeded);
    assert!(s.get("side").await.unwrap().is_none());
    let fresh = Compare::ModRevision {
        key: "u".into(),
        revision: u.mod_revision,
    };
    assert!(
        s.txn(
            vec![fresh, Compare::Exists("a".into())],
            vec![put("u", "y"), Op::Delete("a".into())]
        )
        .await
        .unwrap()
        .succeeded
    );
    assert!(s.get("a").await.unwrap().is_none());
    // empty prefix
    assert!(
        s.txn(vec![Compare::PrefixEmpty("q/".into())], vec![])
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        !s.txn(vec![Compare::PrefixEmpty("p/".into())], vec![])
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        !s.txn(vec![Compare::PrefixEmpty("p/3".into())], vec![])
            .await
            .unwrap()
            .succeeded
    );
    assert!(s.delete("p/5").await.unwrap());
    assert!(!s.delete("p/5").await.unwrap());
    let too_many: Vec<Op> = (0..200).map(|i| put(&format!("m/{i}"), "v")).collect();
    assert!(matches!(
        s.txn(vec![], too_many).await,
        Err(StoreError::TooManyOps { .. })
    ));
}

/// A listing in pages holds every key under the prefix once, in key order, whatever the
/// keys look like (it walks windows of hex ids past the first page).
async fn contract_list_pages(s: &Store) {
    let mut want: Vec<String> = (0..600u32)
        .map(|i| format!("l/{:08x}-{i}", i.wrapping_mul(0x9e37_79b9)))
        .collect();
    for odd in [
        "-first", "0g", "AB", "sim-1", "zz", "ff", "ffff", "00", "fe", "01",
    ] {
        want.push(format!("l/{odd}"));
    }
    for chunk in want.chunks(100) {
        let ops = chunk.iter().map(|k| put(k, "v")).collect();
        assert!(s.txn(vec![], ops).await.unwrap().succeeded);
    }
    // Neighbours outside the prefix.
    s.put("l0", b"x".to_vec(), None).await.unwrap();
    s.put("k/ff", b"x".to_vec(), None).await.unwrap();
    want.sort();
    // Pages of 1 end the first page at `-first` (not hex: the rest in one walk); of 2 and 3
    // page within windows (up to 4 keys each); of 7 cross them; of 1,000 hold all.
    for page in [1, 2, 3, 7, 1000] {
        let mut got = Vec::new();
        let rev = s
            .list_pages("l/", page, |kvs| {
                got.extend(kvs.into_iter().map(|kv| kv.key));
            })
            .await
            .unwrap();
        assert_eq!(got, want, "pages of {page}");
        assert!(rev <= s.revision().await.unwrap());
    }
    let mut none = 0;
    s.list_pages("nothing/", 7, |kvs| none += kvs.len())
        .await
        .unwrap();
    assert_eq!(none, 0);
}

/// Watches from now and from a past revision, and leases.
async fn contract_watch_lease(s: &Store) {
    let start = s.revision().await.unwrap() + 1;
    let mut w = s.watch("w/", start).await.unwrap();
    s.put("w/1", b"a".to_vec(), None).await.unwrap();
    s.put("other", b"x".to_vec(), None).await.unwrap();
    s.txn(vec![], vec![put("w/2", "b"), Op::Delete("w/1".into())])
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let b = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("watch stalled")
            .unwrap()
            .unwrap();
        seen.extend(b.events);
    }
    assert!(matches!(&seen[0], WatchEvent::Put(kv) if kv.key == "w/1"));
    assert!(matches!(&seen[1], WatchEvent::Put(kv) if kv.key == "w/2"));
    assert!(matches!(&seen[2], WatchEvent::Delete { key, .. } if key == "w/1"));
    assert!(seen[1].revision() == seen[2].revision() && seen[0].revision() < seen[1].revision());
    // resume from a past revision: replays the same history
    let mut again = s.watch("w/", start).await.unwrap();
    let b = tokio::time::timeout(Duration::from_secs(5), again.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(b.events[0], seen[0]);

    // leases: keys vanish on revoke and on expiry, and a watcher sees it
    let lease = s.lease_grant(2).await.unwrap();
    s.put("l/revoked", b"1".to_vec(), Some(lease))
        .await
        .unwrap();
    let mut keep = s.lease_keep_alive(lease).await.unwrap();
    assert!(keep.refresh().await.unwrap() > 0);
    s.lease_revoke(lease).await.unwrap();
    assert!(s.get("l/revoked").await.unwrap().is_none());
    assert!(
        s.put("l/x", b"1".to_vec(), Some(lease)).await.is_err(),
        "a revoked lease takes no keys"
    );

    let lease = s.lease_grant(2).await.unwrap();
    let mut lw = s.watch("l/", 0).await.unwrap();
    s.put("l/expiring", b"1".to_vec(), Some(lease))
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let b = tokio::time::timeout(Duration::from_secs(10), lw.next())
            .await
            .expect("lease never expired")
            .unwrap()
            .unwrap();
        if b.events
            .iter()
            .any(|e| matches!(e, WatchEvent::Delete { key, .. } if key == "l/expiring"))
        {
            break;
        }
    }
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "expiry took {:?}",
        t0.elapsed()
    );
    assert!(s.get("l/expiring").await.unwrap().is_none());
}

/// A node leaving its lease for the next process refreshes it first: that process has the
/// whole TTL to start in, not what the keeper's last round left (down to two thirds).
async fn contract_leave_refreshes(s: &Store) {
    use dialtone_store::lifecycle::{NodeLease, Shards, binding_ttl_s};
    // At a 30 s TTL the keeper's first round is 10 s away: nothing else refreshes them here.
    let shards = Shards {
        count: 2,
        key: "node-leases/n-leave",
    };
    let (node, _) = NodeLease::resume(s.clone(), "n-leave", 30, "m/n-leave", shards, "c/n-leave")
        .await
        .unwrap();
    let leases = node.leases();
    let granted: Vec<i64> = std::iter::once(30)
        .chain((0..2).map(|i| binding_ttl_s(30, i, 2)))
        .collect();
    let left = || async {
        let mut out = Vec::new();
        for id in &leases {
            out.push(s.lease_info(*id).await.unwrap().unwrap().ttl_left_s);
        }
        out
    };
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let before = left().await;
    for (left, ttl) in before.iter().zip(&granted) {
        assert!(
            *left <= ttl - 4,
            "{before:?} s left of {granted:?} after 4.1 s"
        );
    }
    node.leave().await;
    let after = left().await;
    for (left, ttl) in after.iter().zip(&granted) {
        assert!(
            *left >= ttl - 2,
            "{after:?} s left of {granted:?} once left: not refreshed"
        );
    }
    for id in leases {
        s.lease_revoke(id).await.unwrap();
    }
}

/// A node's lease left to expire is taken over by the next process with the node's id,
/// with every key on it; a lease granted with another TTL, or gone, is not.
async fn contract_lease_takeover(s: &Store) {
    use dialtone_store::lifecycle::{NodeLease, Shards};
    let (first, left) = NodeLease::resume(s.clone(), "n1", 3, "m/n1", Shards::NONE, "c/n1")
        .await
        .unwrap();
    assert!(left.is_empty(), "a first start finds nothing: {left:?}");
    first.put_owned("m/n1", b"member".to_vec()).await.unwrap();
    s.put("b/p1/0/n1", b"binding".to_vec(), Some(first.lease_id()))
        .await
        .unwrap();
    let info = s.lease_info(first.lease_id()).await.unwrap().unwrap();
    assert_eq!(info.granted_ttl_s, 3);
    assert!(info.ttl_left_s > 0 && info.ttl_left_s <= 3, "{info:?}");
    let mut keys = s.lease_keys(first.lease_id()).await.unwrap();
    keys.sort();
    assert_eq!(keys, ["b/p1/0/n1", "m/n1"]);

    // A restart: the old process leaves the lease; the new one takes it and its keys over,
    // and keeps it alive past the TTL.
    first.leave().await;
    let lease = first.lease_id();
    drop(first);
    let (second, mut left) = NodeLease::resume(s.clone(), "n1", 3, "m/n1", Shards::NONE, "c/n1")
        .await
        .unwrap();
    left.sort();
    assert_eq!(second.lease_id(), lease, "the lease is taken over");
    assert_eq!(left, ["b/p1/0/n1", "m/n1"]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        s.get("b/p1/0/n1").await.unwrap().is_some(),
        "kept alive by the new process"
    );

    // Another TTL (the flag changed): a new lease; the old keys expire with the old one.
    second.leave().await;
    drop(second);
    let (third, left) = NodeLease::resume(s.clone(), "n1", 4, "m/n1", Shards::NONE, "c/n1")
        .await
        .unwrap();
    assert_ne!(third.lease_id(), lease);
    assert!(left.is_empty());
    third.shutdown().await;

    // A revoked lease is gone, from the store's list of leases too.
    assert_eq!(s.lease_keys(lease).await.unwrap().len(), 2);
    let listed = s.lease_ids().await.unwrap();
    assert!(listed.contains(&lease), "{lease:x} listed: {listed:x?}");
    s.lease_revoke(lease).await.unwrap();
    let listed = s.lease_ids().await.unwrap();
    assert!(
        !listed.contains(&lease),
        "{lease:x} not listed: {listed:x?}"
    );
    assert_eq!(s.lease_info(lease).await.unwrap(), None);
    assert!(s.lease_keys(lease).await.unwrap().is_empty());
    assert!(s.get("b/p1/0/n1").await.unwrap().is_none());
}

/// A process that claims a node id fences the one still running with it (a pod replaced
/// while its node was cut off, two processes given one `--node-id`): the old one's writes
/// fail and change nothing, an idle one finds out by itself within a keeper round, and its
/// shutdown revokes nothing, the lease it held being the newer process's now. A process
/// leaving releases its claim; one that finds its claim deleted is fenced too.
async fn contract_fencing(s: &Store) {
    use dialtone_store::lifecycle::{NodeLease, Shards};
    // At a 30 s TTL the keeper's first round is 10 s away: the write finds out first.
    let resume = || NodeLease::resume(s.clone(), "n-f", 30, "m/n-f", Shards::NONE, "c/n-f");
    let (old, _) = resume().await.unwrap();
    old.put_owned("m/n-f", b"old".to_vec()).await.unwrap();
    let fenced = old.fenced();
    assert!(!*fenced.borrow());
    // A compare of the caller's own that fails is not a fence.
    let outdated = Compare::ModRevision {
        key: "m/n-f".into(),
        revision: 1,
    };
    let deleted = old.write_if(vec![outdated], vec![Op::Delete("m/n-f".into())]);
    assert!(!deleted.await.unwrap());
    assert!(!*fenced.borrow());
    assert!(s.get("m/n-f").await.unwrap().is_some());

    let (new, left) = resume().await.unwrap();
    assert_eq!(
        new.lease_id(),
        old.lease_id(),
        "taken over while the old one runs"
    );
    assert_eq!(left, ["m/n-f"]);
    new.put_owned("m/n-f", b"new".to_vec()).await.unwrap();
    let err = old
        .put_owned("m/n-f", b"old again".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::Fenced(n) if n == "n-f"), "{err}");
    assert!(*fenced.borrow(), "told by its own write");
    let stale = Op::Put {
        key: "b/p/0/n-f".into(),
        value: b"stale".to_vec(),
        lease: Some(old.lease_id()),
    };
    let err = old.write(vec![stale]).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");
    assert_eq!(s.get("m/n-f").await.unwrap().unwrap().value, b"new");
    assert!(s.get("b/p/0/n-f").await.unwrap().is_none());
    old.shutdown().await;
    old.leave().await;
    drop(old);
    assert!(
        s.lease_info(new.lease_id()).await.unwrap().is_some(),
        "the fenced process revoked nothing"
    );
    assert!(s.get("m/n-f").await.unwrap().is_some());

    // Leaving (a restart), the newer process releases its claim; the next one claims again
    // and takes the lease over.
    new.leave().await;
    assert!(s.get("c/n-f").await.unwrap().is_none(), "released");
    // What still writes after that (a task finishing) is refused, quietly.
    assert!(new.put_owned("m/n-f", b"late".to_vec()).await.is_err());
    assert!(
        !*new.fenced().borrow(),
        "not taken for a newer process's claim"
    );
    let lease = new.lease_id();
    drop(new);
    let (next, left) = resume().await.unwrap();
    assert_eq!((next.lease_id(), left), (lease, vec!["m/n-f".to_owned()]));
    // A claim found deleted fences too: only its holder deletes it, as it leaves. Taking
    // it back would let an old process that had not noticed yet fence the newest.
    s.delete("c/n-f").await.unwrap();
    let err = next.put_owned("m/n-f", b"next".to_vec()).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");
    next.shutdown().await;
    assert!(
        s.lease_info(lease).await.unwrap().is_some(),
        "nothing revoked"
    );
    s.lease_revoke(lease).await.unwrap();

    // An idle process, which writes nothing, finds out at its keeper's next round (a third
    // of the TTL).
    let resume = || NodeLease::resume(s.clone(), "n-g", 3, "m/n-g", Shards::NONE, "c/n-g");
    let (idle, _) = resume().await.unwrap();
    let mut fenced = idle.fenced();
    let (newer, _) = resume().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), fenced.wait_for(|f| *f))
        .await
        .expect("fenced within a keeper round")
        .unwrap();
    drop(idle);
    newer.shutdown().await;

    // Told to leave before it noticed (nothing written, its keeper's round 10 s away), an
    // old process deletes nothing of the newest one's and learns it is fenced on the way.
    let resume = || NodeLease::resume(s.clone(), "n-h", 30, "m/n-h", Shards::NONE, "c/n-h");
    let (unaware, _) = resume().await.unwrap();
    let (newest, _) = resume().await.unwrap();
    unaware.leave().await;
    assert!(*unaware.fenced().borrow(), "it learns it as it leaves");
    drop(unaware);
    assert!(
        s.get("c/n-h").await.unwrap().is_some(),
        "the newest claim stays"
    );
    newest.put_owned("m/n-h", b"newest".to_vec()).await.unwrap();
    newest.shutdown().await;
    assert!(s.get("c/n-h").await.unwrap().is_none());
}

/// An edge's binding leases are recorded on the last of them, the longest-lived, and taken
/// over by the next process with its node id, every phone on the lease it was on: with the
/// main lease, or alone once the main lease has expired. A binding lease lost meanwhile is
/// replaced by a new one, its keys gone.
async fn contract_binding_lease_takeover(s: &Store) {
    use dialtone_store::lifecycle::{NodeLease, Shards, shards::parse_ids};
    let shards = Shards {
        count: 4,
        key: "nl/n2",
    };
    let (first, left) = NodeLease::resume(s.clone(), "n2", 3, "m/n2", shards, "c/n2")
        .await
        .unwrap();
    assert!(left.is_empty(), "a first start finds nothing: {left:?}");
    first.put_owned("m/n2", b"member".to_vec()).await.unwrap();
    let leases = first.leases();
    assert_eq!(leases.len(), 5, "the main lease and four binding leases");
    let recorded = s.get("nl/n2").await.unwrap().unwrap();
    assert_eq!(
        recorded.lease, leases[4],
        "recorded on the last binding lease"
    );
    let mut ttls = Vec::new();
    for lease in &leases {
        ttls.push(s.lease_info(*lease).await.unwrap().unwrap().granted_ttl_s);
    }
    assert_eq!(
        ttls,
        [3, 39, 69, 99, 129],
        "each binding lease expires apart, the first 2 + 30 + 4 s after the main lease"
    );
    assert_eq!(parse_ids(&recorded.value), leases[1..]);
    let phones: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    let on: Vec<i64> = phones.iter().map(|p| first.binding_lease(p)).collect();
    for (p, lease) in phones.iter().zip(&on) {
        s.put(&format!("b/{p}/0/n2"), b"binding".to_vec(), Some(*lease))
            .await
            .unwrap();
    }
    let used: std::collections::BTreeSet<i64> = on.iter().copied().collect();
    assert_eq!(used.len(), 4, "40 phones spread over every binding lease");
    assert!(!used.contains(&leases[0]), "no binding on the main lease");

    // A restart, with one binding lease lost meanwhile.
    first.leave().await;
    drop(first);
    let lost = leases[1];
    s.lease_revoke(lost).await.unwrap();
    let (second, mut left) = NodeLease::resume(s.clone(), "n2", 3, "m/n2", shards, "c/n2")
        .await
        .unwrap();
    let now = second.leases();
    assert_eq!(now[0], leases[0], "the main lease is taken over");
    assert_eq!(
        now[2..],
        leases[2..],
        "so are the binding leases still alive"
    );
    assert!(
        now[1] != lost && !leases.contains(&now[1]),
        "a new one for the lost one"
    );
    left.sort();
    let mut want: Vec<String> = phones
        .iter()
        .zip(&on)
        .filter(|(_, l)| **l != lost)
        .map(|(p, _)| format!("b/{p}/0/n2"))
        .chain(["m/n2".to_owned(), "nl/n2".to_owned()])
        .collect();
    want.sort();
    assert_eq!(left, want, "every key left on the leases taken over");
    assert_eq!(
        parse_ids(&s.get("nl/n2").await.unwrap().unwrap().value),
        now[1..],
        "the record names the leases now held"
    );
    for (p, lease) in phones.iter().zip(&on).filter(|(_, l)| **l != lost) {
        assert_eq!(second.binding_lease(p), *lease, "{p} stays on its lease");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        s.get("m/n2").await.unwrap().is_some(),
        "the main lease (3 s) kept alive by the new process"
    );

    // A binding lease revoked behind the node's back, nothing told: the keeper finds it
    // missing from the store's leases within a few rounds (its refresh is 30 s away) and
    // replaces it in its shard, its counter moved for the edge to write its bindings again.
    let behind = now[2];
    let counted = second.binding_generations().borrow()[1];
    s.lease_revoke(behind).await.unwrap();
    let revoked_at = std::time::Instant::now();
    while second.leases()[2] == behind || second.binding_generations().borrow()[1] == counted {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(10),
            "a lease revoked behind the node's back not replaced within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = now;
    let now = second.leases();
    assert!(!before.contains(&now[2]), "a new lease in its shard");
    let others = |l: &[i64]| [l[0], l[1], l[3], l[4]];
    assert_eq!(others(&now), others(&before), "the others kept");

    // The last binding lease, which holds the record, lost: the keeper replaces it and
    // writes the record on the new one. Told to look now, as the edge's publisher does when
    // a write finds a lease gone (its listing would find it within two rounds too).
    let last = now[4];
    s.lease_revoke(last).await.unwrap();
    second.check_now();
    let lost_at = std::time::Instant::now();
    let now = loop {
        let held = second.leases();
        let record = s.get("nl/n2").await.unwrap();
        if let Some(r) = record
            && held[4] != last
            && r.lease == held[4]
            && parse_ids(&r.value) == held[1..]
        {
            break held;
        };
        assert!(
            lost_at.elapsed() < Duration::from_secs(5),
            "the record not written again on the new last lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // A restart after the main lease expired (revoked here, with the membership record on
    // it): the binding leases still alive are taken over with their bindings.
    second.leave().await;
    drop(second);
    s.lease_revoke(now[0]).await.unwrap();
    let (third, mut left) = NodeLease::resume(s.clone(), "n2", 3, "m/n2", shards, "c/n2")
        .await
        .unwrap();
    let then = third.leases();
    assert!(!now.contains(&then[0]), "a new main lease");
    assert_eq!(then[1..], now[1..], "the binding leases taken over");
    left.sort();
    let mut want: Vec<String> = phones
        .iter()
        .zip(&on)
        .filter(|(_, l)| **l != lost && **l != behind && **l != last)
        .map(|(p, _)| format!("b/{p}/0/n2"))
        .chain(["nl/n2".to_owned()])
        .collect();
    want.sort();
    assert_eq!(
        left, want,
        "the bindings and their record, the member record gone"
    );
    let record = s.get("nl/n2").await.unwrap().unwrap();
    assert_eq!(parse_ids(&record.value), then[1..]);
    assert_eq!(record.lease, then[4]);

    // A restart without binding leases (`--binding-leases 0`): the main lease is taken
    // over, the binding leases are not, and they are revoked (one at a time) rather than
    // left to live on with bindings this process does not hold.
    third.put_owned("m/n2", b"member".to_vec()).await.unwrap();
    third.leave().await;
    drop(third);
    let (fourth, left) = NodeLease::resume(
        s.clone(),
        "n2",
        3,
        "m/n2",
        Shards {
            count: 0,
            key: "nl/n2",
        },
        "c/n2",
    )
    .await
    .unwrap();
    assert_eq!(fourth.leases(), [then[0]], "the main lease alone");
    assert_eq!(left, ["m/n2".to_owned()]);
    let started = std::time::Instant::now();
    for lease in &then[1..] {
        while s.lease_info(*lease).await.unwrap().is_some() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the binding leases not taken over are revoked"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(s.count("b/").await.unwrap(), 0, "with their bindings");
    assert!(s.get("nl/n2").await.unwrap().is_none(), "and their record");

    fourth.shutdown().await;
    assert_eq!(
        s.lease_info(then[0]).await.unwrap(),
        None,
        "revoked at shutdown"
    );
    assert!(s.get("m/n2").await.unwrap().is_none());
}

/// What a follower was told, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Reset,
    Listed(Vec<String>),
    CaughtUp,
    Put(String),
    Deleted(String),
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Told>>>);

impl Follower for Recorder {
    fn reset(&mut self) {
        self.0.lock().push(Told::Reset);
    }
    fn listed(&mut self, page: Vec<KeyValue>) {
        self.0
            .lock()
            .push(Told::Listed(page.into_iter().map(|kv| kv.key).collect()));
    }
    fn caught_up(&mut self, revision: i64) {
        assert!(revision > 0);
        self.0.lock().push(Told::CaughtUp);
    }
    fn changed(&mut self, batch: WatchBatch) {
        for ev in batch.events {
            self.0.lock().push(match ev {
                WatchEvent::Put(kv) => Told::Put(kv.key),
                WatchEvent::Delete { key, .. } => Told::Deleted(key),
            });
        }
    }
}

impl Recorder {
    fn take(&self) -> Vec<Told> {
        std::mem::take(&mut *self.0.lock())
    }

    /// Waits until `want` was told (everything told so far is returned and forgotten).
    async fn wait_for(&self, want: &Told) -> Vec<Told> {
        let mut seen = Vec::new();
        for _ in 0..200 {
            seen.extend(self.take());
            if seen.contains(want) {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("never told {want:?}; told {seen:?}");
    }
}

/// Empty pages (a backend may end a listing with one) say nothing.
fn said(told: Vec<Told>) -> Vec<Told> {
    told.into_iter()
        .filter(|t| !matches!(t, Told::Listed(v) if v.is_empty()))
        .collect()
}

/// The follower every role's view runs on: list, watch from the listed revision + 1 with
/// only the followed prefixes handed over, list again after compaction, a ready flag.
async fn contract_follow(s: &Store) {
    let listed = |v: &[&str]| Told::Listed(v.iter().map(|k| (*k).to_owned()).collect());
    for k in ["f/a/1", "f/a/2", "f/b/1", "f/c/1"] {
        s.put(k, b"v".to_vec(), None).await.unwrap();
    }
    let rec = Recorder::default();
    let ready = Arc::new(AtomicBool::new(false));
    let task = Follow::listing("contract", &["f/a/", "f/b/"])
        .page(1)
        .start(s.clone(), rec.clone(), ready.clone())
        .await
        .unwrap();
    assert!(ready.load(Ordering::Acquire), "ready once caught up");
    assert_eq!(
        said(rec.take()),
        [
            Told::Reset,
            listed(&["f/a/1"]),
            listed(&["f/a/2"]),
            listed(&["f/b/1"]),
            Told::CaughtUp
        ]
    );
    // Changes after the listing, in order, only under the followed prefixes.
    s.put("f/c/2", b"v".to_vec(), None).await.unwrap();
    s.put("f/a/3", b"v".to_vec(), None).await.unwrap();
    s.delete("f/b/1").await.unwrap();
    let told = rec.wait_for(&Told::Deleted("f/b/1".into())).await;
    assert_eq!(
        said(told),
        [Told::Put("f/a/3".into()), Told::Deleted("f/b/1".into())]
    );
    task.abort();

    // A follower resuming from a revision whose history was compacted away lists again.
    let old = s.revision().await.unwrap();
    s.put("f/a/4", b"v".to_vec(), None).await.unwrap();
    // Compacting at a revision keeps it: watches may start there, not before.
    s.put("f/c/3", b"v".to_vec(), None).await.unwrap();
    s.compact(s.revision().await.unwrap()).await.unwrap();
    let rec = Recorder::default();
    let ready = Arc::new(AtomicBool::new(false));
    let task = Follow::listing("contract", &["f/a/"])
        .resuming_from(old)
        .start(s.clone(), rec.clone(), ready.clone())
        .await
        .unwrap();
    let told = rec.wait_for(&Told::CaughtUp).await;
    assert_eq!(
        said(told),
        [
            Told::Reset,
            listed(&["f/a/1", "f/a/2", "f/a/3", "f/a/4"]),
            Told::CaughtUp
        ]
    );
    assert!(ready.load(Ordering::Acquire));
    s.put("f/a/5", b"v".to_vec(), None).await.unwrap();
    rec.wait_for(&Told::Put("f/a/5".into())).await;
    task.abort();

    // From now on: no listing, only a reset, then the changes.
    let rec = Recorder::default();
    let task = Follow::from_now("contract", &["f/"]).spawn(s.clone(), rec.clone(), Arc::default());
    rec.wait_for(&Told::CaughtUp).await;
    s.put("f/b/2", b"v".to_vec(), None).await.unwrap();
    let told = rec.wait_for(&Told::Put("f/b/2".into())).await;
    assert_eq!(said(told), [Told::Put("f/b/2".into())]);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::Embedded(EmbeddedStore::open(dir.path()).unwrap());
    contract_kv(&s).await;
    contract_watch_lease(&s).await;
    contract_lease_takeover(&s).await;
    contract_leave_refreshes(&s).await;
    contract_binding_lease_takeover(&s).await;
    contract_fencing(&s).await;
    contract_follow(&s).await;
    contract_list_pages(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_restart_and_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (rev, version) = {
        let s = Store::Embedded(EmbeddedStore::open(dir.path()).unwrap());
        s.put("k", b"1".to_vec(), None).await.unwrap();
        s.put("k", b"2".to_vec(), None).await.unwrap();
        s.put("gone", b"x".to_vec(), None).await.unwrap();
        s.delete("gone").await.unwrap();
        let lease = s.lease_grant(30).await.unwrap();
        s.put("leased", b"x".to_vec(), Some(lease)).await.unwrap();
        let kv = s.get("k").await.unwrap().unwrap();
        (
            s.revision().await.unwrap(),
            (kv.version, kv.mod_revision, kv.create_revision),
        )
    };
    // A crash mid-append leaves a partial frame: it was never acknowledged and is dropped.
    let log = dir.path().join("store.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&log, &bytes).unwrap();
    let s = Store::Embedded(EmbeddedStore::open(dir.path()).unwrap());
    assert_eq!(s.revision().await.unwrap(), rev);
    let kv = s.get("k").await.unwrap().unwrap();
    assert_eq!((kv.version, kv.mod_revision, kv.create_revision), version);
    assert_eq!(kv.value, b"2");
    assert!(s.get("gone").await.unwrap().is_none());
    assert!(
        s.get("leased").await.unwrap().is_some(),
        "leases survive a restart with a fresh ttl"
    );
    // History before the restart is gone: a watcher resuming there must re-list.
    let mut w = s.watch("", 2).await.unwrap();
    assert!(matches!(w.next().await, Err(StoreError::Compacted { .. })));
    s.put("k", b"3".to_vec(), None).await.unwrap();
    assert_eq!(s.revision().await.unwrap(), rev + 1);
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode, 0o600, "the log is private");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_refuses_damage_a_crash_cannot_explain() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::Embedded(EmbeddedStore::open(dir.path()).unwrap());
        for i in 0..3 {
            s.put("k", vec![b'0' + i], None).await.unwrap();
        }
    }
    // A bit flipped in the first frame's payload: the acknowledged frames after it would be
    // lost if the damage were taken for a torn tail.
    let log = dir.path().join("store.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[8] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    let e = EmbeddedStore::open(dir.path()).err().expect("refused");
    assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("refusing to start"), "{e}");
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "nothing was truncated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_single_member_meets_the_contract() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    let s = etcd.store("/contract/").await.unwrap();
    contract_kv(&s).await;
    contract_watch_lease(&s).await;
    contract_lease_takeover(&s).await;
    contract_leave_refreshes(&s).await;
    contract_binding_lease_takeover(&s).await;
    contract_fencing(&s).await;
    contract_follow(&s).await;
    contract_list_pages(&s).await;
    // etcd compaction: a watch from before it gets the re-list signal
    let mut c = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let rev = s.revision().await.unwrap();
    c.compact(rev, None).await.unwrap();
    let mut w = s.watch("w/", 2).await.unwrap();
    assert!(matches!(w.next().await, Err(StoreError::Compacted { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_three_members_lose_one_mid_test() {
    let mut etcd = EtcdCluster::start(3).await.unwrap();
    let s = etcd.store("/contract3/").await.unwrap();
    contract_kv(&s).await;
    let before = s.revision().await.unwrap();
    etcd.kill(0);
    // The client fails over to the surviving members; nothing acknowledged is lost.
    let mut ok = false;
    for _ in 0..50 {
        if s.put("after-kill", b"1".to_vec(), None).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ok,
        "the cluster stopped accepting writes after losing one of three members"
    );
    assert_eq!(s.get("u").await.unwrap().unwrap().value, b"y");
    assert_eq!(s.count("p/").await.unwrap(), 4);
    assert!(s.revision().await.unwrap() > before);
    contract_watch_lease(&s).await;
    contract_follow(&s).await;
    contract_fencing(&s).await;
    // Binding leases with a member down: the keeper's listing of the store's leases is
    // answered by whichever member the client holds, its lookups by the leader.
    contract_binding_lease_takeover(&s).await;
}

/// Puts `n` keys named by `key` on `lease`, as many to a transaction as etcd takes.
async fn put_on_lease(
    s: &Store,
    n: usize,
    lease: dialtone_store::LeaseId,
    value: &[u8],
    key: impl Fn(usize) -> String,
) {
    for chunk in (0..n)
        .collect::<Vec<_>>()
        .chunks(dialtone_store::MAX_TXN_OPS)
    {
        let ops = chunk
            .iter()
            .map(|i| Op::Put {
                key: key(*i),
                value: value.to_vec(),
                lease: Some(lease),
            })
            .collect();
        s.txn(Vec::new(), ops).await.unwrap();
    }
}

/// A lease that expires deletes every key on it in one revision, and etcd sends that
/// revision's events in one watch message: with an edge's worth of bindings it is larger
/// than gRPC's default 4 MB, and a watcher must still get it (the status role watches
/// every binding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watchers_get_a_large_lease_expiry() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    let s = etcd.store("/big/").await.unwrap();
    let lease = s.lease_grant(60).await.unwrap();
    const KEYS: usize = 40_000;
    let value = vec![b'x'; 120];
    put_on_lease(&s, KEYS, lease, &value, |i| {
        format!("bindings/{i:08}/0/edge-1")
    })
    .await;
    let mut w = s.watch("bindings/", 0).await.unwrap();
    s.lease_revoke(lease).await.unwrap();
    let mut deleted = 0;
    while deleted < KEYS {
        let batch = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("the deletions within 10 s")
            .expect("the watch survives a message over 4 MB")
            .expect("open");
        deleted += batch
            .events
            .iter()
            .filter(|e| matches!(e, WatchEvent::Delete { .. }))
            .count();
    }
    assert_eq!(deleted, KEYS);
}

/// An edge restarted under its node id takes its lease over with every binding on it. etcd
/// lists a lease's keys in one message, larger than gRPC's default 4 MB past about 50,000
/// keys: the keys are still all found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_restart_takes_over_a_lease_with_more_keys_than_one_message_holds() {
    use dialtone_store::lifecycle::{NodeLease, Shards};
    let etcd = EtcdCluster::start(1).await.unwrap();
    let s = etcd.store("/takeover/").await.unwrap();
    let resume = || {
        NodeLease::resume(
            s.clone(),
            "edge-1",
            30,
            "members/edge/edge-1",
            Shards::NONE,
            "node-claims/edge-1",
        )
    };
    let (first, _) = resume().await.unwrap();
    first
        .put_owned("members/edge/edge-1", b"member".to_vec())
        .await
        .unwrap();
    // 110,000 keys of 66 bytes: about 7 MB listed at once, and more than one page of the
    // scan that finds them instead.
    const KEYS: usize = 110_000;
    put_on_lease(&s, KEYS, first.lease_id(), b"b", |i| {
        format!("bindings/{i:08x}-4f1c-4a2b-9c3d-0123456789ab/0/edge-1")
    })
    .await;
    // Keys of another lease and of none are not the edge's.
    let other = s.lease_grant(30).await.unwrap();
    s.put("bindings/other/0/edge-2", b"b".to_vec(), Some(other))
        .await
        .unwrap();
    s.put("config/phones/other", b"p".to_vec(), None)
        .await
        .unwrap();
    first.leave().await;
    let lease = first.lease_id();
    drop(first);
    let (second, left) = resume().await.unwrap();
    assert_eq!(second.lease_id(), lease, "the lease is taken over");
    assert_eq!(left.len(), KEYS + 1);
    let mut left = left;
    left.sort();
    left.dedup();
    assert_eq!(left.len(), KEYS + 1, "each key once");
    assert!(left.contains(&"members/edge/edge-1".to_owned()));
    assert!(!left.contains(&"bindings/other/0/edge-2".to_owned()));
    assert!(!left.contains(&"config/phones/other".to_owned()));
    second.shutdown().await;
}
