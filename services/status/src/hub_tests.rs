use dialtone_domain::keys;
use dialtone_proto::config::v1::{Line, Phone};
use prost::Message as _;

use super::*;

#[test]
fn a_batch_is_cut_into_parts_only_between_phones() {
    let b = |phone: &str, line: u32| keys::binding(phone, line, "edge-a");
    let (a0, a1, b0, c0) = (b("a", 0), b("a", 1), b("b", 0), b("c", 0));
    let (pa, pb) = (keys::phone("a"), keys::phone("b"));
    let cases: Vec<(&str, Vec<&str>, usize, Vec<usize>)> = vec![
        ("no keys: one empty part", vec![], 2, vec![0]),
        ("fewer keys than a part", vec![&a0, &b0], 4, vec![2]),
        ("one phone a key", vec![&a0, &b0, &c0], 1, vec![1, 2, 3]),
        (
            "a phone's lines stay together",
            vec![&a0, &a1, &b0, &c0],
            1,
            vec![2, 3, 4],
        ),
        (
            "a phone's configuration and bindings stay together",
            vec![&pa, &a0, &a1, &pb, &b0],
            2,
            vec![3, 5],
        ),
        (
            "keys about no phone cut anywhere",
            vec!["config/sites/hq", "config/sites/lab", &a0],
            1,
            vec![1, 2, 3],
        ),
        ("size 0 counts as 1", vec![&a0, &b0], 0, vec![1, 2]),
    ];
    for (name, keys, size, want) in cases {
        assert_eq!(part_ends(&keys, size), want, "{name}");
    }
}

/// Applies `events` at `revision` to `hub`'s view, as its follower does.
fn apply(hub: &Hub, events: &[WatchEvent], revision: i64) {
    apply_in_parts(&hub.state, hub.feed(), &hub.metrics, events, revision);
}

fn phone_put(i: usize, revision: i64) -> WatchEvent {
    let p = Phone {
        id: format!("p{i:05}"),
        name: format!("phone {i}"),
        site_id: "hq".into(),
        lines: vec![Line {
            sip_user: format!("u{i}"),
            ..Default::default()
        }],
        ..Default::default()
    };
    WatchEvent::Put(KeyValue {
        key: keys::phone(&p.id),
        value: p.encode_to_vec(),
        mod_revision: revision,
        ..Default::default()
    })
}

#[test]
fn a_batch_of_several_parts_is_stamped_with_its_revision_and_resumable_from_it() {
    let phones = PART * 2 + 10;
    let hub = Hub::new(Fleet::new("example.com"), phones * 2);
    let mut watcher = hub.tx.subscribe();
    let first: Vec<WatchEvent> = (0..10).map(|i| phone_put(i, 5)).collect();
    let mut marks = hub.applying.subscribe();
    apply(&hub, &first, 5);
    assert!(!marks.has_changed().unwrap(), "one part is not marked");
    hub.state.write().floor = 5;
    let batch: Vec<WatchEvent> = (10..phones).map(|i| phone_put(i, 7)).collect();
    apply(&hub, &batch, 7);
    assert!(marks.has_changed().unwrap(), "several parts are marked");
    assert!(!*marks.borrow_and_update(), "and the mark is cleared after");

    let mut seen = Vec::new();
    while let Ok(c) = watcher.try_recv() {
        seen.push(StatusChange::decode(&c[..]).expect("encoded change"));
    }
    assert_eq!(seen.len(), phones, "every phone's change sent once");
    assert!(seen[..10].iter().all(|c| c.revision == 5));
    assert!(
        seen[10..].iter().all(|c| c.revision == 7),
        "every part carries the batch's revision"
    );

    let st = hub.state.read();
    assert_eq!(st.fleet.revision(), 7);
    assert_eq!(st.fleet.len(), phones);
    let since = |r| st.since(r).map(|c| c.len());
    assert_eq!(
        since(7),
        Some(phones - 10),
        "resuming from the batch's revision sends every part of it"
    );
    assert_eq!(since(6), Some(phones - 10));
    assert_eq!(since(5), Some(phones));
    assert_eq!(since(8), Some(0));
    assert_eq!(since(4), None, "before the first listing");
}

/// A batch of several parts is marked before it takes the lock: a watcher that fell
/// behind on its first part's changes finds the mark raised.
#[test]
fn a_batch_of_several_parts_is_marked_from_before_its_first_part() {
    let hub = Hub::new(Fleet::new("example.com"), 16);
    let batch: Vec<WatchEvent> = (0..PART + 10).map(|i| phone_put(i, 2)).collect();
    std::thread::scope(|s| {
        let reader = hub.state.read();
        let applier = s.spawn(|| apply(&hub, &batch, 2));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !*hub.applying.borrow() {
            assert!(std::time::Instant::now() < deadline, "never marked");
            std::thread::yield_now();
        }
        assert_eq!(reader.fleet.len(), 0, "marked while the first part waits");
        drop(reader);
        applier.join().expect("applied");
    });
    assert!(!*hub.applying.borrow(), "cleared once in");
    assert_eq!(hub.state.read().fleet.len(), PART + 10);
}

#[test]
fn a_resume_from_a_revision_partly_dropped_from_the_history_is_refused() {
    let hub = Hub::new(Fleet::new("example.com"), 16);
    hub.state.write().floor = 1;
    let full: Vec<WatchEvent> = (0..HISTORY).map(|i| phone_put(i, 2)).collect();
    apply(&hub, &full, 2);
    apply(&hub, &[phone_put(HISTORY, 3)], 3);
    let st = hub.state.read();
    assert_eq!(
        st.since(2).map(|c| c.len()),
        None,
        "one change at 2 was dropped"
    );
    assert_eq!(st.since(3).map(|c| c.len()), Some(1));
}

#[test]
fn a_departed_edge_republishes_its_phones_in_parts_at_the_revision_of_its_record() {
    let phones = PART * 2 + 10;
    let hub = Hub::new(Fleet::new("example.com"), phones * 4);
    let mut watcher = hub.tx.subscribe();
    let member = keys::member("edge", "e1");
    let put = |key: String, value: Vec<u8>| {
        WatchEvent::Put(KeyValue {
            key,
            value,
            mod_revision: 5,
            ..Default::default()
        })
    };
    let binding = dialtone_proto::edge::v1::Binding {
        contacts: vec![dialtone_proto::edge::v1::Contact {
            uri: "sip:u@10.0.0.9".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let mut first = vec![put(member.clone(), b"m".to_vec())];
    for i in 0..phones {
        first.push(phone_put(i, 5));
        first.push(put(
            keys::binding(&format!("p{i:05}"), 0, "e1"),
            binding.clone(),
        ));
    }
    apply(&hub, &first, 5);
    while watcher.try_recv().is_ok() {}

    let gone = [WatchEvent::Delete {
        key: member,
        mod_revision: 9,
    }];
    let mut marks = hub.applying.subscribe();
    apply(&hub, &gone, 9);
    assert!(
        marks.has_changed().unwrap(),
        "one key re-reducing phones in several parts is marked"
    );
    assert!(!*marks.borrow_and_update(), "and the mark is cleared after");
    let mut seen = Vec::new();
    while let Ok(c) = watcher.try_recv() {
        seen.push(StatusChange::decode(&c[..]).expect("encoded change"));
    }
    assert_eq!(seen.len(), phones, "every phone bound to the edge, once");
    assert!(seen.iter().all(|c| c.revision == 9));
    assert!(
        seen.iter()
            .all(|c| c.status.as_ref().unwrap().lines[0].contacts.is_empty()),
        "the departed edge's contacts are not shown"
    );
    let st = hub.state.read();
    assert_eq!(st.fleet.revision(), 9);
    assert_eq!(st.since(9).map(|c| c.len()), Some(phones));
}
