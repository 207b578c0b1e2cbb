//! The contexts file and the resolution, table-tested.

use super::*;

fn file() -> ContextFile {
    parse(
        r#"
current-context = "prod"
[contexts.prod]
config = "https://config:7700"
status = "https://status:7700"
token-file = "prod-token"
ca = "/etc/dialtone/ca.pem"
[contexts.lab]
config = "http://127.0.0.1:7700"
"#,
    )
    .unwrap()
}

fn given() -> Given {
    Given::default()
}

#[test]
fn endpoints_tokens_and_files_resolve() {
    let f = file();
    let base = Path::new("/home/a/.config/dialtone");
    struct Case {
        what: &'static str,
        given: Given,
        api: Api,
        server: Option<&'static str>,
        token: Option<Token>,
        ca: Option<&'static str>,
    }
    let cases = [
        Case {
            what: "the current context's config API",
            given: given(),
            api: Api::Config,
            server: Some("https://config:7700"),
            token: Some(Token::File(base.join("prod-token"))),
            ca: Some("/etc/dialtone/ca.pem"),
        },
        Case {
            what: "its own status endpoint",
            given: given(),
            api: Api::Status,
            server: Some("https://status:7700"),
            token: Some(Token::File(base.join("prod-token"))),
            ca: Some("/etc/dialtone/ca.pem"),
        },
        Case {
            what: "no edge endpoint: the config one",
            given: given(),
            api: Api::Edge,
            server: Some("https://config:7700"),
            token: Some(Token::File(base.join("prod-token"))),
            ca: Some("/etc/dialtone/ca.pem"),
        },
        Case {
            what: "--context picks another",
            given: Given {
                context: Some("lab".into()),
                ..given()
            },
            api: Api::Status,
            server: Some("http://127.0.0.1:7700"),
            token: None,
            ca: None,
        },
        Case {
            what: "flags win over the context",
            given: Given {
                context: Some("prod".into()),
                server: Some("https://other:1".into()),
                token: Some("t0k".into()),
                ..given()
            },
            api: Api::Status,
            server: Some("https://other:1"),
            token: Some(Token::Inline("t0k".into())),
            ca: Some("/etc/dialtone/ca.pem"),
        },
        Case {
            what: "--server alone: no context (its token is not sent elsewhere)",
            given: Given {
                server: Some("https://other:1".into()),
                ..given()
            },
            api: Api::Config,
            server: Some("https://other:1"),
            token: None,
            ca: None,
        },
    ];
    for c in cases {
        let t = resolve(&c.given, Some(&f), base, c.api).unwrap();
        assert_eq!(t.server.as_deref(), c.server, "{}", c.what);
        assert_eq!(t.token, c.token, "{}", c.what);
        assert_eq!(t.ca.as_deref(), c.ca.map(Path::new), "{}", c.what);
    }
}

#[test]
fn no_file_and_no_context_is_the_local_server() {
    let t = resolve(&given(), None, Path::new("/x"), Api::Config).unwrap();
    assert_eq!(t, Target::default());
    let f = ContextFile::default();
    let t = resolve(&given(), Some(&f), Path::new("/x"), Api::Config).unwrap();
    assert_eq!(t, Target::default());
}

#[test]
fn refusals_name_the_value() {
    let f = file();
    let cases: [(Given, Option<&ContextFile>, &str); 3] = [
        (
            Given {
                context: Some("nope".into()),
                ..given()
            },
            Some(&f),
            "invalid context 'nope': the contexts file has lab, prod",
        ),
        (
            Given {
                context: Some("prod".into()),
                ..given()
            },
            None,
            "invalid --context 'prod': there is no contexts file",
        ),
        (
            Given {
                token: Some("a".into()),
                token_file: Some("b".into()),
                ..given()
            },
            None,
            "'--token' and '--token-file' exclude each other",
        ),
    ];
    for (g, file, want) in cases {
        let e = resolve(&g, file, Path::new("/"), Api::Config).unwrap_err();
        assert!(e.to_string().starts_with(want), "{e} / {want}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    let e = parse("[contexts.a]\ntoken = \"secret\"\n").unwrap_err();
    assert!(e.to_string().contains("token"), "{e}");
}

#[test]
fn set_updates_what_is_given_and_round_trips() {
    let mut f = ContextFile::default();
    set(
        &mut f,
        "prod",
        Context {
            config: Some("https://c:7700".into()),
            ca: Some("ca.pem".into()),
            ..Context::default()
        },
    )
    .unwrap();
    set(
        &mut f,
        "prod",
        Context {
            status: Some("https://s:7700".into()),
            ..Context::default()
        },
    )
    .unwrap();
    let c = &f.contexts["prod"];
    assert_eq!(c.config.as_deref(), Some("https://c:7700"));
    assert_eq!(c.status.as_deref(), Some("https://s:7700"));
    assert_eq!(c.ca.as_deref(), Some(Path::new("ca.pem")));
    assert_eq!(f.current_context.as_deref(), Some("prod"));
    let text = toml::to_string(&f).unwrap();
    assert_eq!(parse(&text).unwrap(), f);
    assert!(set(&mut f, "", Context::default()).is_err());
}
