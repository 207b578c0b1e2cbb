//! The real `dialtonectl` binary against a real dev-mode node: it finds the server and the
//! generated token in the data dir, prints tables or JSON, and exits non-zero with the
//! server's reason on errors.

use std::{os::unix::fs::PermissionsExt, process::Command};

use dialtone_tests::{ClusterSandbox, binary};

struct Ctl<'a> {
    data_dir: &'a std::path::Path,
}

impl Ctl<'_> {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        dialtone_tests::dialtonectl(self.data_dir, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "dialtonectl {args:?} failed: {err}");
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialtonectl_drives_a_dev_node() {
    let sb = ClusterSandbox::embedded().await.unwrap();
    let ctl = Ctl {
        data_dir: &sb.nodes[0].data_dir,
    };

    ctl.ok(&[
        "edge-groups",
        "create",
        "main",
        "--edge",
        "edge-1=udp://127.0.0.1:5060,tcp://127.0.0.1:5060",
    ]);
    let out = ctl.ok(&[
        "sites",
        "create",
        "hq",
        "--edge-group",
        "main",
        "--name",
        "Head office",
    ]);
    assert!(out.contains("Head office"), "{out}");
    ctl.ok(&[
        "base-settings",
        "create",
        "desk",
        "--meta-base",
        "generic-sip",
        "--settings",
        r#"{"codecs": ["audio/PCMU"]}"#,
    ]);
    // Digest Authentication: admin / 1234 until a random password is generated, printed
    // once, and shown again by whoever may read the profile ("Show Password").
    let (ok, _, err) = ctl.run(&[
        "base-settings",
        "create",
        "locked",
        "--meta-base",
        "yealink",
        "--generate-digest-password",
    ]);
    assert!(ok, "{err}");
    let generated = err
        .lines()
        .find_map(|l| l.strip_prefix("digest authentication password: "))
        .expect("the password is printed")
        .to_owned();
    assert_eq!(generated.len(), 24, "{err}");
    let shown = ctl.ok(&["-o", "json", "base-settings", "get", "locked"]);
    assert!(shown.contains(&generated), "{shown}");
    // A softphone profile's device rules, explained for a device set: with use_headset
    // off and auto-answer on, no speaker means nothing to answer with.
    ctl.ok(&[
        "base-settings",
        "create",
        "agents",
        "--meta-base",
        "desktop-softphone",
        "--settings",
        r#"{"softphone": {"auto_answer": true}}"#,
    ]);
    let explained = |args: &[&str]| {
        let mut all = vec!["-o", "json", "base-settings", "explain", "agents"];
        all.extend_from_slice(args);
        let out = ctl.ok(&all);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let both = explained(&["--microphone", "USB Mic", "--speaker", "USB Speaker"]);
    assert_eq!(both["should_answer"], "yes", "{both}");
    let mute = explained(&["--microphone", "USB Mic"]);
    assert_eq!(mute["should_answer"], "unknown", "{mute}");
    assert_eq!(mute["incoming"], "ring", "{mute}");

    let out = ctl.ok(&[
        "phones",
        "create",
        "--name",
        "Desk 1",
        "--kind",
        "unmanaged",
        "--site",
        "hq",
        "--base-settings",
        "desk",
        "--line",
        "1001",
    ]);
    assert!(out.contains("SIP credentials (shown only now"), "{out}");
    assert!(out.contains("-1001"), "{out}");

    // JSON output is canonical proto3 JSON with the proto field names
    let json: serde_json::Value =
        serde_json::from_str(&ctl.ok(&["-o", "json", "phones", "list"])).unwrap();
    let phones = json.as_array().unwrap();
    assert_eq!(phones.len(), 1);
    assert_eq!(phones[0]["kind"], "PHONE_KIND_UNMANAGED");
    assert!(
        phones[0]["lines"][0].get("credentials").is_none(),
        "credentials never leave the server"
    );

    // disabling changes only that field and shows in the table
    let id = phones[0]["id"].as_str().unwrap().to_owned();
    ctl.ok(&["phones", "update", &id, "--disabled", "true"]);
    let one: serde_json::Value =
        serde_json::from_str(&ctl.ok(&["-o", "json", "phones", "get", &id])).unwrap();
    assert_eq!(
        (&one["disabled"], &one["name"]),
        (&true.into(), &"Desk 1".into())
    );
    assert!(ctl.ok(&["phones", "list"]).contains("unmanaged (disabled)"));
    ctl.ok(&["phones", "update", &id, "--disabled", "false"]);

    // status: configured, not registered (the view follows the store within moments)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let out = loop {
        let out = ctl.ok(&["status", "--once"]);
        if out.contains("offline  ") || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        out.contains("Desk 1") && out.contains("edge-1(primary,0/1"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("hq")
            && l.split_whitespace().collect::<Vec<_>>() == ["hq", "1", "0", "0", "1", "0"]),
        "{out}"
    );
    let out = ctl.ok(&["status", "get", &id]);
    assert!(out.contains("-1001") && out.contains("false"), "{out}");
    // The edge's calls: none up yet; a phone that does not exist is refused, named.
    let out = ctl.ok(&["edge", "calls", "--phone", &id]);
    assert!(out.contains("CALLER") && out.contains("DIALLED"), "{out}");
    assert_eq!(out.lines().count(), 1, "a header and no call: {out}");
    let (ok, _, err) = ctl.run(&["edge", "calls", "--phone", "no-such-phone"]);
    assert!(!ok && err.contains("no-such-phone"), "{err}");
    let out = ctl.ok(&["phones", "how-to-register", &id]);
    assert!(
        out.contains("primary")
            && out.contains("edge-1")
            && out.contains("sip:127.0.0.1:5060;transport=udp"),
        "{out}"
    );
    assert!(
        !out.contains("secondary  "),
        "one edge: one registrar\n{out}"
    );
    let (ok, _, err) = ctl.run(&["phones", "how-to-register", "nope"]);
    assert!(!ok && err.contains("NotFound"), "{err}");
    let (ok, _, err) = ctl.run(&["phones", "restart", &id]);
    assert!(
        !ok && err.contains("FailedPrecondition") && err.contains("no live registration"),
        "{err}"
    );
    let (ok, _, err) = ctl.run(&["phones", "logout", &id, "--timeout", "99"]);
    assert!(!ok && err.contains("99"), "{err}");
    let (ok, _, err) = ctl.run(&["status", "--status", "sideways"]);
    assert!(
        !ok && err.contains("expected operational, degraded"),
        "{err}"
    );

    // errors: the server's reason, exit code non-zero
    let (ok, _, err) = ctl.run(&[
        "base-settings",
        "create",
        "bad",
        "--meta-base",
        "yealink",
        "--settings",
        r#"{"sip_dscp": 64}"#,
    ]);
    assert!(!ok);
    assert!(
        err.contains(
            "error: InvalidArgument: base_settings.settings.sip_dscp: must be 0-63 (got 64)"
        ),
        "{err}"
    );
    let (ok, _, err) = ctl.run(&["sites", "delete", "hq"]);
    assert!(!ok && err.contains("used by 1 phones"), "{err}");

    // import: report with passwords, private, per-row outcome; failures make the exit code 1
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("phones.csv");
    std::fs::write(&csv, "name,kind,site_id,base_settings_id,lines\nA,unmanaged,hq,desk,2001\nB,unmanaged,hq,nope,2002\n").unwrap();
    let report = dir.path().join("report.csv");
    let (ok, out, err) = ctl.run(&[
        "phones",
        "import",
        csv.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(!ok, "a failed row fails the command");
    assert!(out.contains("created 1, existing 0, failed 1"), "{out}");
    assert!(
        err.contains("row 3: base_settings_id: base settings 'nope' does not exist"),
        "{err}"
    );
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("2,created,") && l.contains("-2001,")),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(&report).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // export round-trips through import as "existing"
    let export = dir.path().join("export.csv");
    ctl.ok(&[
        "phones",
        "export",
        "--site",
        "hq",
        "-f",
        export.to_str().unwrap(),
    ]);
    let out = ctl.ok(&[
        "phones",
        "import",
        export.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.contains("created 0, existing 2, failed 0"), "{out}");

    let out = ctl.ok(&["members"]);
    assert!(out.contains("config") && out.contains("solo"), "{out}");
    let help = Command::new(binary("dialtonectl"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for cmd in [
        "edge-groups",
        "sites",
        "base-settings",
        "phones",
        "status",
        "members",
    ] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn serve_refuses_invalid_values_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dialtone.toml");
    std::fs::write(&file, "lease-ttl = 0\n").unwrap();
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--roles=dns".into()],
            vec![],
            "invalid value 'dns' for '--roles'",
        ),
        (
            vec![],
            vec![("DIALTONE_LISTEN_GRPC", "nowhere")],
            "invalid value 'nowhere' for '--listen-grpc",
        ),
        (
            vec!["--roles=config".into(), "--listen-api=0.0.0.0:7702".into()],
            vec![],
            "invalid value '0.0.0.0:7702' for '--listen-api': a plaintext REST API",
        ),
        (
            vec![format!("--config={}", file.display())],
            vec![],
            "'--lease-ttl",
        ),
        (
            vec!["--etcd=http://127.0.0.1:1".into()],
            vec![],
            "'--api-tokens' is required",
        ),
    ];
    for (args, env, want) in cases {
        let out = Command::new(binary("dialtone"))
            .arg("serve")
            .arg(format!("--data-dir={}", dir.path().display()))
            .args(&args)
            .envs(env)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!dir.path().join("store").exists(), "nothing started");
}

/// `-o yaml` and `-o name` print the document as YAML or its ids, `--no-headers` drops a
/// table's header, each kind of failure has its exit status, and `completion` needs no server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialtonectl_prints_for_scripts_and_says_why_it_failed() {
    let sb = ClusterSandbox::embedded().await.unwrap();
    let data_dir = sb.nodes[0].data_dir.clone();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let out = Command::new(binary("dialtonectl"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .env_remove("DIALTONE_SERVER")
            .env_remove("DIALTONE_TOKEN")
            .env_remove("DIALTONE_CONTEXT")
            .env("DIALTONE_CONTEXTS_FILE", data_dir.join("no-contexts.toml"))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let ok = |args: &[&str]| {
        let (code, out) = run(&[], args);
        assert_eq!(code, Some(0), "{args:?}");
        out
    };
    ok(&[
        "edge-groups",
        "create",
        "main",
        "--edge",
        "edge-1=udp://127.0.0.1:5060",
    ]);
    for site in ["hq", "branch"] {
        ok(&[
            "sites",
            "create",
            site,
            "--edge-group",
            "main",
            "--name",
            site,
        ]);
    }
    // A phone found by its SIP user or its MAC address, in any spelling.
    ok(&["base-settings", "create", "desk", "--meta-base", "poly-vvx"]);
    ok(&[
        "phones",
        "create",
        "--name",
        "Desk 1",
        "--kind",
        "managed",
        "--site",
        "hq",
        "--base-settings",
        "desk",
        "--hardware-id",
        "00:04:f2:aa:bb:01",
        "--line",
        "1001",
    ]);
    let id = ok(&["-o", "name", "phones", "list"]);
    let phone: serde_json::Value =
        serde_json::from_str(&ok(&["-o", "json", "phones", "get", id.trim()])).unwrap();
    let user = phone["lines"][0]["sip_user"].as_str().unwrap().to_owned();
    assert_eq!(
        ok(&["-o", "name", "phones", "list", "--sip-user", &user]),
        id
    );
    assert_eq!(
        ok(&["-o", "name", "phones", "list", "--mac", "0004F2AABB01"]),
        id
    );
    assert_eq!(
        ok(&["-o", "name", "phones", "list", "--sip-user", "nobody"]),
        ""
    );
    let yaml = ok(&["-o", "yaml", "sites", "get", "hq"]);
    assert!(
        yaml.contains("id: hq\n") && yaml.contains("edge_group_id: main\n"),
        "{yaml}"
    );
    assert_eq!(ok(&["-o", "name", "sites", "list"]), "branch\nhq\n");
    let table = ok(&["sites", "list"]);
    let bare = ok(&["--no-headers", "sites", "list"]);
    assert_eq!(table.lines().count(), 3, "{table}");
    assert_eq!(
        bare.lines().collect::<Vec<_>>(),
        table.lines().skip(1).collect::<Vec<_>>()
    );

    /// (what, environment, arguments, exit status)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str], i32);
    let cases: &[Case] = &[
        ("not found", &[], &["sites", "get", "nowhere"], 3),
        (
            "conflict",
            &[],
            &[
                "sites",
                "create",
                "hq",
                "--edge-group",
                "main",
                "--name",
                "again",
            ],
            5,
        ),
        (
            "a value the server refuses",
            &[],
            &[
                "sites",
                "create",
                "Bad Id!",
                "--edge-group",
                "main",
                "--name",
                "x",
            ],
            2,
        ),
        (
            "an unknown token",
            &[("DIALTONE_TOKEN", "dt_nobody")],
            &["sites", "list"],
            4,
        ),
        (
            "no server there",
            &[("DIALTONE_SERVER", "http://127.0.0.1:9")],
            &["sites", "list"],
            6,
        ),
        (
            "a value dialtonectl refuses",
            &[],
            &["phones", "update", id.trim(), "--assign", "desk:1"],
            2,
        ),
        (
            "flags dialtonectl refuses together",
            &[("DIALTONE_CA", "/etc/hostname")],
            &["sites", "list"],
            2,
        ),
    ];
    for (what, env, args, want) in cases {
        assert_eq!(run(env, args).0, Some(*want), "{what}");
    }
    // Members by node id; the wide phone table has the version and edges columns.
    let members = ok(&["-o", "name", "members"]);
    assert!(!members.is_empty() && !members.contains(' '), "{members}");
    let wide = ok(&["-o", "wide", "phones", "list"]);
    let header = wide.lines().next().unwrap_or_default();
    assert!(
        header.contains("VERSION") && header.contains("USER AGENT"),
        "{wide}"
    );
    assert!(!ok(&["phones", "list"]).contains("VERSION"));
    let (code, script) = run(
        &[("DIALTONE_SERVER", "http://127.0.0.1:9")],
        &["completion", "bash"],
    );
    assert_eq!(code, Some(0));
    assert!(
        script.contains("dialtonectl") && script.contains("complete"),
        "{script}"
    );
}

/// Named contexts: `context set` saves the connection flags, a command then needs none (not
/// even a local data dir), each API goes to its own endpoint, flags win over the context,
/// and an unknown context or a token on the command line is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialtonectl_contexts_name_clusters() {
    let sb = ClusterSandbox::embedded().await.unwrap();
    let node = &sb.nodes[0];
    let endpoint = std::fs::read_to_string(node.data_dir.join("endpoint")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let contexts = home.path().join("config/dialtone/config.toml");
    // An empty data dir: without a context there is no server to find.
    let empty = home.path().join("data");
    let run = |args: &[&str]| {
        let out = Command::new(binary("dialtonectl"))
            .arg("--data-dir")
            .arg(&empty)
            .args(args)
            .env_remove("DIALTONE_SERVER")
            .env_remove("DIALTONE_TOKEN")
            .env_remove("DIALTONE_CONTEXT")
            .env_remove("DIALTONE_CA")
            .env("DIALTONE_CONTEXTS_FILE", &contexts)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = |args: &[&str]| {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        out
    };
    let (code, _, err) = run(&["sites", "list"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no --server, --context or current context"),
        "{err}"
    );

    let token = node.data_dir.join("admin-token");
    let token = token.to_str().unwrap();
    ok(&[
        "context",
        "set",
        "lab",
        "--server",
        endpoint.trim(),
        "--token-file",
        token,
    ]);
    let mode = std::fs::metadata(&contexts).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The first context is the current one: no connection flags needed.
    ok(&[
        "edge-groups",
        "create",
        "main",
        "--edge",
        "e1=udp://127.0.0.1:5060",
    ]);
    assert_eq!(ok(&["-o", "name", "edge-groups", "list"]), "main\n");
    // A second context whose status node is elsewhere (nothing listens there): the config
    // API still answers, status commands go to the dead node.
    ok(&[
        "context",
        "set",
        "split",
        "--server",
        endpoint.trim(),
        "--token-file",
        token,
        "--status-server",
        "http://127.0.0.1:9",
    ]);
    let listed = ok(&["context", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with('*') && l.contains("lab")),
        "{listed}"
    );
    assert_eq!(
        ok(&["--context", "split", "-o", "name", "sites", "list"]),
        ""
    );
    assert_eq!(run(&["--context", "split", "status", "summary"]).0, Some(6));
    ok(&["context", "use", "split"]);
    assert_eq!(run(&["status", "summary"]).0, Some(6));
    // A flag wins over the context; --server alone uses no context (so its token is not
    // sent to another server): here the empty data dir has none.
    ok(&[
        "--context",
        "split",
        "--server",
        endpoint.trim(),
        "status",
        "summary",
    ]);
    assert_eq!(
        run(&["--server", endpoint.trim(), "status", "summary"]).0,
        Some(1)
    );
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["-o", "json", "context", "show"])).unwrap();
    assert_eq!(shown["name"], "split");
    assert_eq!(shown["status"], "http://127.0.0.1:9");
    assert_eq!(shown["token-file"], token);
    // Refused: an unknown context, a token kept in the file, a file that does not parse.
    assert_eq!(run(&["--context", "nope", "sites", "list"]).0, Some(2));
    assert_eq!(
        run(&[
            "context",
            "set",
            "x",
            "--server",
            "http://a:1",
            "--token",
            "t"
        ])
        .0,
        Some(2)
    );
    assert_eq!(run(&["context", "use", "nope"]).0, Some(2));
    ok(&["context", "delete", "split"]);
    // The current context deleted: none is used, and this data dir has no server.
    assert_eq!(run(&["edge-groups", "list"]).0, Some(1));
    ok(&["--context", "lab", "edge-groups", "list"]);
    std::fs::write(&contexts, "[contexts.a]\ntoken = \"secret\"\n").unwrap();
    let (code, _, err) = run(&["sites", "list"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("invalid contexts file") && err.contains("token"),
        "{err}"
    );
}
