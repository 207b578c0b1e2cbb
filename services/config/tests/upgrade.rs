//! The one-time indexing of site extensions written before they were unique, on a real
//! embedded store with phone records as an older Dialtone wrote them (no index entries).

use dialtone_config::{Backfill, ConfigCore};
use dialtone_domain::{credentials::CredentialKey, keys};
use dialtone_proto::config::v1::{Assignment, Phone, SiteAssignment, assignment::Mode};
use dialtone_store::{EmbeddedStore, Store};
use prost::Message as _;

fn phone(id: &str, site: &str, extension: Option<&str>) -> Phone {
    Phone {
        id: id.into(),
        site_id: site.into(),
        assignment: extension.map(|e| Assignment {
            mode: Some(Mode::Site(SiteAssignment {
                extension: e.into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn phones_from_before_unique_extensions_get_their_index_and_duplicates_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Embedded(EmbeddedStore::open(dir.path()).unwrap());
    for p in [
        phone("p1", "hq", Some("201")),
        phone("p2", "hq", Some("201")), // the same extension: a duplicate
        phone("p3", "branch", Some("201")), // another site: no conflict
        phone("p4", "hq", None),
    ] {
        store
            .put(&keys::phone(&p.id), p.encode_to_vec(), None)
            .await
            .unwrap();
    }
    let core = ConfigCore::new(store.clone(), "dialtone", CredentialKey::new([1; 32]));
    let report = core.backfill_extensions().await.unwrap();
    assert_eq!(
        report,
        Backfill {
            written: 2,
            duplicates: vec![("p2".into(), "phone/p1".into())],
            skipped: false,
        }
    );
    let held = |site: &str| {
        let store = store.clone();
        let key = keys::extension(site, "201");
        async move { store.get(&key).await.unwrap().map(|kv| kv.value) }
    };
    assert_eq!(held("hq").await.as_deref(), Some(b"phone/p1".as_slice()));
    assert_eq!(
        held("branch").await.as_deref(),
        Some(b"phone/p3".as_slice())
    );
    // Once done, later starts skip it.
    assert!(core.backfill_extensions().await.unwrap().skipped);
}
