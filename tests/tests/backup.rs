//! `dialtonectl backup create` and `backup restore` with the real binary, across both
//! backends: a seeded embedded node's configuration is backed up, restored into an empty
//! node on etcd (a dry run first, which writes nothing), backed up there again and found
//! identical entry for entry, and that backup restored into an empty embedded node; a
//! second restore changes nothing, and one over a changed store is refused, whole.

use std::{collections::BTreeMap, path::Path, process::Command};

use dialtone_proto::config::v1 as pb;
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, binary,
    fleet::{import, seed_site},
};
use prost::Message;

/// Runs dialtonectl against `server` (gRPC URL) with `token`: (exit status, stdout, with
/// stderr after it when it failed).
fn ctl((server, token): (&str, &str), args: &[&str]) -> (i32, String) {
    let out = Command::new(binary("dialtonectl"))
        .args(args)
        .env("DIALTONE_SERVER", server)
        .env("DIALTONE_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some(),
        "dialtonectl {args:?} was killed"
    );
    let code = out.status.code().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if code != 0 {
        text += &String::from_utf8_lossy(&out.stderr);
    }
    (code, text)
}

/// `backup restore -f file` into `node`, which must succeed: its JSON report.
fn restored(node: (&str, &str), file: &Path) -> serde_json::Value {
    let (code, out) = ctl(
        node,
        &[
            "-o",
            "json",
            "backup",
            "restore",
            "-f",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap()
}

/// A backup file's entries and revision.
fn read_backup(file: &Path) -> (i64, BTreeMap<String, Vec<u8>>) {
    let bytes = std::fs::read(file).unwrap();
    let mut rest = bytes.as_slice();
    let (mut revision, mut entries) = (0, BTreeMap::new());
    while !rest.is_empty() {
        let c = pb::BackupChunk::decode_length_delimited(&mut rest).unwrap();
        revision = c.revision;
        for e in c.entries {
            entries.insert(e.key, e.value);
        }
    }
    (revision, entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_an_empty_store_on_either_backend() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a.backup"), dir.path().join("b.backup"));

    // The source: an embedded node with a site, a profile and 200 phones.
    let source = ClusterSandbox::embedded().await.unwrap();
    let source_token = source.nodes[0].admin_token();
    let mut c = source.nodes[0].config_client(&source_token).await.unwrap();
    seed_site(&mut c, pb::PhoneSettings::default())
        .await
        .unwrap();
    import(&mut c, 200, "bk").await.unwrap();
    let src = (source.nodes[0].grpc_url.as_str(), source_token.as_str());
    let (code, out) = ctl(src, &["backup", "create", "-f", first.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&first).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "a backup holds password hashes");
    let (_, taken) = read_backup(&first);
    let phones = taken
        .keys()
        .filter(|k| k.starts_with("config/phones/"))
        .count();
    assert_eq!(phones, 200, "every phone is in it");
    assert!(taken.keys().any(|k| k.starts_with("index/sip-user/")));
    assert!(
        taken
            .keys()
            .all(|k| !k.starts_with("bindings/") && !k.starts_with("members/")),
        "no live state"
    );

    // The target: a config node on an empty etcd.
    let target = ClusterSandbox::with_etcd(1, &["config"]).await.unwrap();
    let dst = (target.nodes[0].grpc_url.as_str(), ADMIN_TOKEN);
    let (code, out) = ctl(
        dst,
        &[
            "backup",
            "restore",
            "-f",
            first.to_str().unwrap(),
            "--dry-run",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would write"), "{out}");
    let (_, out) = ctl(dst, &["-o", "name", "phones", "list"]);
    assert_eq!(out.trim(), "", "a dry run writes nothing");

    let r = restored(dst, &first);
    assert_eq!(r["entries_by_kind"]["phones"], 200, "{r}");
    let (_, listed) = ctl(dst, &["-o", "name", "phones", "list", "--all"]);
    assert_eq!(listed.lines().count(), 200, "{listed}");
    let mut d = target.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    let one = listed.lines().next().unwrap();
    let phone = d
        .get_phone(pb::GetRequest { id: one.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(phone.site_id, "hq");

    // Backed up again on etcd: every entry of the first backup, byte for byte.
    let (code, out) = ctl(dst, &["backup", "create", "-f", second.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let (_, again) = read_backup(&second);
    for (k, v) in &taken {
        assert_eq!(again.get(k), Some(v), "{k} did not survive the round trip");
    }

    // And back into an empty embedded node: the same 200 phones.
    let third = ClusterSandbox::embedded().await.unwrap();
    let third_token = third.nodes[0].admin_token();
    let emb = (third.nodes[0].grpc_url.as_str(), third_token.as_str());
    let (code, out) = ctl(emb, &["backup", "restore", "-f", second.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let (_, listed_there) = ctl(emb, &["-o", "name", "phones", "list", "--all"]);
    assert_eq!(listed_there, listed);

    // A second restore writes nothing.
    let r = restored(dst, &first);
    let count = |field: &str| r[field].as_u64().unwrap_or(0);
    assert_eq!(
        (count("written"), count("unchanged")),
        (0, taken.len() as u64),
        "{r}"
    );

    // Over a changed store: refused whole (exit status 5, conflict), nothing written.
    let (code, out) = ctl(
        dst,
        &[
            "sites",
            "update",
            "hq",
            "--edge-group",
            "eg",
            "--name",
            "Renamed",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = ctl(dst, &["backup", "restore", "-f", first.to_str().unwrap()]);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("config/sites/hq"), "{out}");
    let (_, site) = ctl(dst, &["-o", "json", "sites", "get", "hq"]);
    assert!(site.contains("Renamed"), "{site}");

    // A file that is not a backup: a clear error, nothing sent.
    std::fs::write(&second, b"not a backup").unwrap();
    let (code, out) = ctl(dst, &["backup", "restore", "-f", second.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is not a Dialtone backup"), "{out}");
}
