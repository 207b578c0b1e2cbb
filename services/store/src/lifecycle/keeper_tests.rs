//! The keeper's pure parts: which binding leases are refreshed together, and a lease's fate.

use super::*;

#[test]
fn binding_leases_with_room_are_refreshed_together_as_seldom_as_the_least_allows() {
    let s = |n: u64| Some(Duration::from_secs(n));
    let d = Duration::from_secs;
    // (binding leases' TTLs at a 3 s main TTL, how long the group goes unrefreshed,
    // which are in it)
    type Case = (&'static str, Vec<Option<Duration>>, Duration, Vec<bool>);
    let cases: Vec<Case> = vec![
        ("none", vec![], Duration::ZERO, vec![]),
        ("not refreshed yet", vec![None], Duration::ZERO, vec![false]),
        ("shard 0: 3 + 2 + 30 + 4", vec![s(39)], d(30), vec![true]),
        (
            "spread: as long as the shortest-lived allows",
            vec![s(158), s(39), s(99)],
            d(30),
            vec![true, true, true],
        ),
        (
            "one not known yet: every round until it is",
            vec![s(39), None],
            d(30),
            vec![true, false],
        ),
        (
            "taken over from a release without the room: 5 s every round, 65 s in",
            vec![s(5), s(20), s(24), s(65), s(39)],
            d(15),
            vec![false, false, true, true, true],
        ),
    ];
    for (name, ttls, gap, together) in cases {
        assert_eq!(binding_schedule(&ttls, 3), (gap, together), "{name}");
    }
}

#[test]
fn a_lease_is_lost_only_when_etcd_says_it_expired() {
    let ttl = Duration::from_secs(3);
    let s = Duration::from_secs;
    let cases: Vec<(&str, Option<i64>, Duration, Fate)> = vec![
        ("refreshed", Some(3), s(1), Fate::Kept),
        ("refreshed late", Some(1), s(10), Fate::Kept),
        ("expired", Some(0), s(0), Fate::Lost),
        ("failed, refreshed a second ago", None, s(1), Fate::Failed),
        (
            "failed for a whole ttl: kept, etcd may be slow",
            None,
            s(3),
            Fate::Stale,
        ),
    ];
    for (name, refresh, since_ok, want) in cases {
        assert_eq!(fate(refresh, since_ok, ttl), want, "{name}");
    }
}
