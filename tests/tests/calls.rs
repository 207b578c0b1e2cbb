//! Calls between the phones of a site, through real processes: etcd, a config+status node
//! and two edges; a simulated phone (loadtest/phonesim) registered to its primary and
//! secondary edge; a caller proving one of our lines. A site-assigned phone answers to its
//! extension within its site: dialled through either edge, it rings once; extensions are
//! unique within a site, follow the phone when it changes, and reach a caller of another
//! site only behind the site's code. Numbers outside the fleet follow the site's number
//! plan and restrictions.

use std::{
    net::SocketAddr,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use dialtone_phonesim::{Sim, SimConfig};
use dialtone_proto::config::v1 as pb;
use dialtone_tests::{
    ADMIN_TOKEN, ClusterSandbox, VIEWER_TOKEN,
    fleet::{at_extension, import, softphones_at, update_phone, wait_operational, wait_routable},
    sip::{Caller, call, headers, in_dialog, status},
    softphones::Softphone,
};

/// One simulated phone registering every 30 s to its edges, answering calls.
async fn one_phone(spec: &dialtone_phonesim::PhoneSpec) -> Sim {
    Sim::start(
        SimConfig {
            expires: 30,
            sockets: 1,
            ..SimConfig::default()
        },
        vec![spec.clone()],
    )
    .await
    .unwrap()
}

/// The final code of an INVITE for `dialled` sent through `edge`, with every code seen.
async fn dial(caller: &Caller, dialled: &str, edge: SocketAddr) -> Vec<u16> {
    call(caller, dialled, edge)
        .await
        .1
        .iter()
        .map(|r| status(r))
        .collect()
}

/// Dials `dialled` through `edge` until the final code is `code` (a change on its way to
/// the edges), within 5 s; `what` says what did not happen.
async fn until_final(caller: &Caller, dialled: &str, edge: SocketAddr, code: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while dial(caller, dialled, edge).await.last() != Some(&code) {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Dials `dialled` through `edge`: answered, and the phone got one more INVITE.
async fn answered_once(caller: &Caller, sim: &Sim, dialled: &str, edge: SocketAddr) {
    let before = sim.stats().received[0].load(Relaxed);
    assert_eq!(
        dial(caller, dialled, edge).await.last(),
        Some(&200),
        "{dialled}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sim.stats().received[0].load(Relaxed),
        before + 1,
        "{dialled}: one INVITE"
    );
}

/// `n` phones imported as `{prefix}-*`, the first at extension 201 (the caller's line) and
/// the second at 202 (the callee).
async fn at_201_and_202(
    cfg: &mut dialtone_tests::ConfigClient,
    n: usize,
    prefix: &str,
) -> Vec<(String, String, String)> {
    let phones = import(cfg, n, prefix).await.unwrap();
    for (phone, extension) in phones.iter().zip(["201", "202"]) {
        update_phone(cfg, &phone.0, at_extension(extension))
            .await
            .unwrap();
    }
    phones
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_dials_an_extension_of_its_site_through_either_edge() {
    let (sb, mut cfg) = ClusterSandbox::two_edges(&[]).await.unwrap();
    let phones = at_201_and_202(&mut cfg, 3, "ext").await;
    let (caller_line, callee, other) = (&phones[0], &phones[1], &phones[2]);

    // Extensions are unique within a site: the config API says who holds one.
    let taken = update_phone(&mut cfg, &other.0, at_extension("202"))
        .await
        .unwrap_err();
    let refusal = taken
        .downcast_ref::<tonic::Status>()
        .expect("a gRPC status");
    assert_eq!(refusal.code(), tonic::Code::AlreadyExists, "{refusal:?}");
    assert!(
        refusal.message().contains("202") && refusal.message().contains(&callee.0),
        "{refusal:?}"
    );

    let spec = sb.dual_registered(&[1, 2], callee);
    let sim = one_phone(&spec).await;
    let mut st = sb.nodes[0].status_client(VIEWER_TOKEN).await.unwrap();
    let stats = sim.stats();
    assert!(
        wait_operational(&mut st, 1, Duration::from_secs(10)).await,
        "never registered: {} registrations, failures {:?}",
        stats.registered.load(Relaxed),
        stats
            .failed
            .iter()
            .map(|f| f.load(Relaxed))
            .collect::<Vec<_>>()
    );
    let caller = Caller::line(&caller_line.1, &caller_line.2).await.unwrap();
    let invites = || sim.stats().received[0].load(Relaxed);

    // 202 through the primary, then through the secondary (handed to the primary's flow):
    // each call rings the phone once and is answered; each edge on the path record-routes
    // it, and the caller's ACK and BYE come back along that route to the phone.
    for (n, edge) in [spec.registrars[0], spec.registrars[1]]
        .into_iter()
        .enumerate()
    {
        let (invite, responses) = call(&caller, "202", edge).await;
        let codes: Vec<u16> = responses.iter().map(|r| status(r)).collect();
        assert_eq!(codes.first(), Some(&100), "{codes:?}");
        assert_eq!(codes.last(), Some(&200), "{codes:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(invites(), n as u64 + 1, "one INVITE per call");
        let ok = responses.last().unwrap();
        assert_eq!(
            headers(ok, "record-route").len(),
            n + 1,
            "edges on the path: {ok}"
        );
        let target = format!("sip:{}@127.0.0.1", callee.1);
        let others = sim.stats().received[4].load(Relaxed);
        let (ack, hop) = in_dialog(&invite, ok, "ACK", 1, &target);
        assert_eq!(
            hop, edge,
            "the caller's first hop is the edge it called through"
        );
        caller.send_raw(&ack, hop).await;
        let (bye, hop) = in_dialog(&invite, ok, "BYE", 2, &target);
        caller.send_raw(&bye, hop).await;
        assert_eq!(
            caller.codes("BYE", Duration::from_secs(5)).await.last(),
            Some(&200),
            "the phone answers the BYE"
        );
        assert_eq!(
            sim.stats().received[4].load(Relaxed),
            others + 2,
            "ACK and BYE, once each"
        );
    }
    // An extension nobody holds: 404, and nothing rings.
    assert_eq!(
        dial(&caller, "299", spec.registrars[0]).await.last(),
        Some(&404)
    );

    // The phone moves to 203: the edges follow (202 is free, 203 rings).
    update_phone(&mut cfg, &callee.0, at_extension("203"))
        .await
        .unwrap();
    let edge = spec.registrars[1];
    until_final(&caller, "202", edge, 404, "202 still rings after the move").await;
    answered_once(&caller, &sim, "203", edge).await;
    // ... and 202 is free for another phone of the site.
    update_phone(&mut cfg, &other.0, at_extension("202"))
        .await
        .unwrap();

    // Numbers outside the fleet follow the site's number plan and restrictions: with
    // NANP and national calls allowed, a national number is allowed (and has no trunk
    // yet), an international one is refused with a Warning that says why.
    let mut hq = cfg
        .get_site(pb::GetRequest { id: "hq".into() })
        .await
        .unwrap()
        .into_inner();
    hq.number_plan = "nanp".into();
    hq.site_code = "81".into();
    hq.call_restrictions = Some(pb::CallRestrictions {
        allow_external: true,
        ..Default::default()
    });
    cfg.update_site(pb::UpdateSiteRequest {
        update_mask: dialtone_tests::whole(),
        site: Some(hq),
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let national = loop {
        let (_, r) = call(&caller, "2125551234", spec.registrars[0]).await;
        let last = r.last().cloned().unwrap_or_default();
        if status(&last) == 404 && last.contains("No Outbound Route") {
            break last;
        }
        assert!(
            Instant::now() < deadline,
            "the number plan never reached the edge: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        national.contains("national calls (+12125551234)"),
        "{national}"
    );
    // The other edge watches the same site on its own clock: wait for it too.
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let (_, r) = call(&caller, "011442071234567", spec.registrars[1]).await;
        let last = r.last().cloned().unwrap_or_default();
        if status(&last) != 404 || !last.contains("not in this site's number plan") {
            break last;
        }
        assert!(
            Instant::now() < deadline,
            "the number plan never reached the second edge: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status(&refused), 403, "{refused}");
    assert!(
        refused.contains("international calls are restricted at this site"),
        "{refused}"
    );

    // A site-assigned phone may set its own restrictions: the caller may call abroad.
    update_phone(&mut cfg, &caller_line.0, |p| {
        if let Some(pb::assignment::Mode::Site(s)) =
            p.assignment.as_mut().and_then(|a| a.mode.as_mut())
        {
            s.call_restrictions = Some(pb::CallRestrictions {
                allow_external: true,
                allow_international: true,
                allow_premium: false,
            });
        }
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, r) = call(&caller, "011442071234567", spec.registrars[1]).await;
        let last = r.last().cloned().unwrap_or_default();
        if last.contains("No Outbound Route") {
            assert!(
                last.contains("international calls (+442071234567)"),
                "{last}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the phone's own restrictions never applied: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its call patterns name kinds or rules of its site's plan, nothing else.
    let bad = update_phone(&mut cfg, &caller_line.0, |p| {
        if let Some(pb::assignment::Mode::Site(s)) =
            p.assignment.as_mut().and_then(|a| a.mode.as_mut())
        {
            s.call_patterns = vec!["national".into(), "premium-1900".into()];
        }
    })
    .await
    .unwrap_err();
    let bad = bad.downcast_ref::<tonic::Status>().expect("a gRPC status");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(
        bad.message()
            .contains("phone.assignment.site.call_patterns[1]"),
        "{bad:?}"
    );

    // A caller of another site dialling 203 reaches no one (extensions are per site).
    dialtone_tests::fleet::create_site(&mut cfg, "branch", "Branch", "eg")
        .await
        .unwrap();
    update_phone(&mut cfg, &caller_line.0, |p| {
        p.site_id = "branch".into();
        at_extension("201")(p);
    })
    .await
    .unwrap();
    let edge = spec.registrars[0];
    until_final(&caller, "203", edge, 404, "203 rings from another site").await;
    // ... but reaches it with hq's site code before the extension.
    answered_once(&caller, &sim, "81203", edge).await;
    // Site codes are unique among sites.
    let mut branch = cfg
        .get_site(pb::GetRequest {
            id: "branch".into(),
        })
        .await
        .unwrap()
        .into_inner();
    branch.site_code = "81".into();
    let taken = cfg
        .update_site(pb::UpdateSiteRequest {
            update_mask: dialtone_tests::whole(),
            site: Some(branch),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), tonic::Code::AlreadyExists, "{taken:?}");
    assert!(taken.message().contains("site hq"), "{taken:?}");
    sim.stop(true, 1).await;
}

/// Whether baresip and linphonec both reached the established state of their `n`th call.
async fn established(baresip: &Softphone, linphonec: &Softphone, n: usize) -> bool {
    baresip
        .wait_log("Call established", n, Duration::from_secs(10))
        .await
        && linphonec
            .wait_log("to LinphoneCallStreamsRunning", n, Duration::from_secs(5))
            .await
}

/// The sum over the edges (nodes 1 and up) of metric `name`'s series labelled `label`.
async fn edges_total(sb: &ClusterSandbox, name: &str, label: &str) -> i64 {
    let mut n = 0;
    for node in &sb.nodes[1..] {
        n += node.metric(name, label).await.unwrap_or(0);
    }
    n
}

/// Whether [`edges_total`] meets `want` within 5 s, and the last total seen.
async fn edges_reach(
    sb: &ClusterSandbox,
    name: &str,
    label: &str,
    want: impl Fn(i64) -> bool,
) -> (bool, i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = edges_total(sb, name, label).await;
        if want(n) || Instant::now() > deadline {
            return (want(n), n);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Real softphones, each registered to its own edge, call each other by extension: baresip
/// (on edge 1) dials linphonec's extension, linphonec (on edge 2) answers by itself, both
/// reach the established state, and the caller's hang-up (a BYE along the Record-Route of
/// both edges) ends the call on both sides; then the other way round. baresip answers only
/// MD5 challenges, so the edges offer MD5 alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_and_linphonec_call_each_other_by_extension_across_two_edges() {
    let (sb, mut cfg) = ClusterSandbox::two_edges(&["--sip-digest-algorithms=md5"])
        .await
        .unwrap();
    let phones = softphones_at(&mut cfg, &["201", "202"], "soft")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = sb.dir().join("softphones");
    let edge = |i: usize| format!("127.0.0.1:{}", sb.nodes[i].sip.udp);
    let mut baresip = Softphone::baresip(&dir, &edge(1), &phones[0], 60).unwrap();
    let mut linphonec = Softphone::linphonec(&dir, &edge(2), &phones[1], "MD5", 60).unwrap();
    linphonec.auto_answer().unwrap();
    // Each call enters through the other edge, which finds the callee in the store.
    for (node, p, phone) in [(1, &phones[0], &baresip), (2, &phones[1], &linphonec)] {
        assert!(
            wait_routable(&sb, node, &p.phone_id, Duration::from_secs(15))
                .await
                .unwrap(),
            "never registered where the other edge sees it:\n{}",
            phone.log_text()
        );
    }
    let logs = |b: &Softphone, l: &Softphone| {
        format!("baresip:\n{}\nlinphonec:\n{}", b.log_text(), l.log_text())
    };
    let relayed = "dialtone_edge_deliveries_total";
    let in_dialog = "outcome=\"in_dialog\"";

    // baresip calls 202 through edge 1; edge 1 hands it to edge 2, which holds linphonec.
    baresip.dial("sip:202@127.0.0.1").unwrap();
    assert!(
        established(&baresip, &linphonec, 1).await,
        "the call was not established:\n{}",
        logs(&baresip, &linphonec)
    );
    // Both edges on the path count the call as up.
    let (up, active) = edges_reach(&sb, "dialtone_calls_active", "node=", |n| n == 2).await;
    assert!(up, "calls active on the edges: {active}");
    let before = edges_total(&sb, relayed, in_dialog).await;
    baresip.hang_up().unwrap();
    assert!(
        linphonec
            .wait_log("to LinphoneCallEnd", 1, Duration::from_secs(10))
            .await,
        "the hang-up did not end the call:\n{}",
        logs(&baresip, &linphonec)
    );
    // The BYE and its 200 went through both edges (edge 1, then edge 2), not phone to
    // phone: each edge counts a relayed in-dialog request once its final answer is back.
    let (both, after) = edges_reach(&sb, relayed, in_dialog, |n| n >= before + 2).await;
    assert!(both, "in-dialog requests relayed: {before} -> {after}");
    let (down, active) = edges_reach(&sb, "dialtone_calls_active", "node=", |n| n == 0).await;
    assert!(down, "calls still active after the BYE: {active}");

    // And back: linphonec calls 201, baresip answers by itself, linphonec hangs up.
    linphonec.dial("sip:201@127.0.0.1").unwrap();
    assert!(
        established(&baresip, &linphonec, 2).await,
        "the call back was not established:\n{}",
        logs(&baresip, &linphonec)
    );
    linphonec.hang_up().unwrap();
    assert!(
        // baresip 1.0 says so of a call the other side hung up.
        baresip
            .wait_log("session closed", 1, Duration::from_secs(10))
            .await
            && linphonec
                .wait_log("to LinphoneCallEnd", 2, Duration::from_secs(5))
                .await,
        "the hang-up did not end the call back:\n{}",
        logs(&baresip, &linphonec)
    );
    baresip.stop().unwrap();
    linphonec.stop().unwrap();
}

/// When an edge dies, new calls to its phones go through the other edge at once: the
/// phone is registered to both, and the dead edge's binding, still listed until its lease
/// expires, is passed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_calls_go_through_the_living_edge_when_one_dies() {
    let (mut sb, mut cfg) = ClusterSandbox::two_edges(&[]).await.unwrap();
    let phones = at_201_and_202(&mut cfg, 2, "die").await;
    let (caller_line, callee) = (&phones[0], &phones[1]);
    let spec = sb.dual_registered(&[1, 2], callee);
    let index = |addr: SocketAddr| if addr == sb.udp(1) { 1 } else { 2 };
    let primary = index(spec.registrars[0]);
    let sim = Sim::start(
        SimConfig {
            expires: 30,
            sockets: 1,
            ..SimConfig::default()
        },
        vec![spec.clone()],
    )
    .await
    .unwrap();
    let mut st = sb.nodes[0].status_client(VIEWER_TOKEN).await.unwrap();
    assert!(
        wait_operational(&mut st, 1, Duration::from_secs(10)).await,
        "never registered on both edges"
    );
    let caller = Caller::line(&caller_line.1, &caller_line.2).await.unwrap();
    let living = spec.registrars[1];
    assert_eq!(dial(&caller, "202", living).await.last(), Some(&200));

    sb.nodes[primary].kill9();
    let t0 = Instant::now();
    let codes = dial(&caller, "202", living).await;
    assert_eq!(codes.last(), Some(&200), "{codes:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "answered after {:?}",
        t0.elapsed()
    );
    assert_eq!(
        sim.stats().received[0].load(Relaxed),
        2,
        "one INVITE per call"
    );
    sim.stop(false, 1).await;
}

/// Behind a load balancer or NAT (`--sip-external-address`): the Record-Route of a call
/// names each edge by the address phones reach it at, not its listener, and the caller's
/// ACK and BYE, arriving at the listener with those routes (as a load balancer delivers
/// them), are routed to the phone. Edge-to-edge hand-offs still use the member records.
/// The second edge's is given as a DNS name (a cloud load balancer's hostname), resolved
/// at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_behind_a_load_balancer_route_calls_by_their_external_address() {
    // Addresses nobody listens on: only the headers name them.
    let external = ["192.0.2.11:30060", "127.0.0.1:30062"];
    let (udp1, udp2) = (
        format!("udp={}", external[0]),
        "udp=localhost:30062".to_owned(),
    );
    let sb = ClusterSandbox::with_etcd_env(
        1,
        &["config,status", "edge", "edge"],
        &["--sip-min-expires=10"],
        &[
            &[],
            &[("DIALTONE_SIP_EXTERNAL_ADDRESS", udp1.as_str())],
            &[("DIALTONE_SIP_EXTERNAL_ADDRESS", udp2.as_str())],
        ],
    )
    .await
    .unwrap();
    let mut cfg = sb.nodes[0].config_client(ADMIN_TOKEN).await.unwrap();
    dialtone_tests::fleet::seed_site_on(
        &mut cfg,
        pb::PhoneSettings::default(),
        &sb.udp_edges(&[1, 2]),
    )
    .await
    .unwrap();
    let phones = at_201_and_202(&mut cfg, 2, "lb").await;
    let (caller_line, callee) = (&phones[0], &phones[1]);
    let spec = sb.dual_registered(&[1, 2], callee);
    let sim = one_phone(&spec).await;
    let mut st = sb.nodes[0].status_client(VIEWER_TOKEN).await.unwrap();
    assert!(wait_operational(&mut st, 1, Duration::from_secs(10)).await);
    let caller = Caller::line(&caller_line.1, &caller_line.2).await.unwrap();
    let real = |ext: &str| {
        if ext == external[0] {
            sb.udp(1)
        } else {
            sb.udp(2)
        }
    };
    for edge in [spec.registrars[0], spec.registrars[1]] {
        let (invite, responses) = call(&caller, "202", edge).await;
        let ok = responses.last().unwrap();
        assert_eq!(status(ok), 200, "{responses:?}");
        let routes = headers(ok, "record-route").join(",");
        let named: Vec<&str> = external
            .iter()
            .copied()
            .filter(|e| routes.contains(e))
            .collect();
        assert!(!named.is_empty(), "an external address in {routes}");
        for e in [sb.udp(1), sb.udp(2)] {
            assert!(!routes.contains(&e.to_string()), "a listener in {routes}");
        }
        let target = format!("sip:{}@127.0.0.1", callee.1);
        let others = sim.stats().received[4].load(Relaxed);
        // The first route names the external address; the load balancer delivers to the
        // listener behind it.
        let (ack, hop) = in_dialog(&invite, ok, "ACK", 1, &target);
        let hop = real(&hop.to_string());
        caller.send_raw(&ack, hop).await;
        let (bye, _) = in_dialog(&invite, ok, "BYE", 2, &target);
        caller.send_raw(&bye, hop).await;
        assert_eq!(
            caller.codes("BYE", Duration::from_secs(5)).await.last(),
            Some(&200),
            "the phone answers the BYE through {edge}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            sim.stats().received[4].load(Relaxed),
            others + 2,
            "ACK and BYE"
        );
    }
}
