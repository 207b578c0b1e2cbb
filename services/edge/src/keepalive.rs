//! OPTIONS keep-alives to every carrier trunk target (RFC 3261 §11: a request any live SIP
//! server answers), each at its trunk's interval, over the edge's UDP listener. What they
//! find goes to the delivery's [`TrunkHealth`](crate::delivery::trunk_health::TrunkHealth)
//! (a call out skips DOWN targets) and, whenever it changes, to `trunk-health/{node}` on the
//! node's lease, where the status role reads it.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use dialtone_common::clock::unix_ms;
use dialtone_domain::keys;
use dialtone_store::lifecycle::NodeLease;
use prost::Message;
use tokio::{task::JoinHandle, time::Instant};
use tracing::{info, warn};

use crate::{
    credentials::trunks::TargetRec,
    dispatch::Dispatcher,
    flow::Transport,
    replies::{Local, OutRequest, new_branch},
};

/// How long a keep-alive waits for its answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(4);

/// Starts the keep-alive task; what it finds is published on `lease`.
pub(crate) fn spawn(h: Arc<Dispatcher>, lease: Arc<NodeLease>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut next: HashMap<(Arc<str>, SocketAddr), Instant> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let key = keys::trunk_health(&h.settings.node_id);
        let mut published: Option<Vec<u8>> = None;
        loop {
            tick.tick().await;
            let found = h.delivery.trunk_health.snapshot().encode_to_vec();
            // An edge that never probed a trunk publishes nothing.
            let first_empty = published.is_none() && found.is_empty();
            if published.as_ref() != Some(&found) && !first_empty {
                match lease.put_owned(&key, found.clone()).await {
                    Ok(()) => published = Some(found),
                    Err(e) => warn!(error = %e, "publishing trunk health failed; retrying"),
                }
            }
            let targets = h.cache.read().trunk_targets();
            let now = Instant::now();
            let configured = |t: &Arc<str>, a: SocketAddr| {
                targets.iter().any(|(tt, x, _)| tt == t && x.flow.addr == a)
            };
            next.retain(|(t, a), _| configured(t, *a));
            h.delivery.trunk_health.retain(configured);
            for (trunk, target, interval_s) in targets {
                let due = next.entry((trunk.clone(), target.flow.addr)).or_insert(now);
                if *due > now {
                    continue;
                }
                *due = now + Duration::from_secs(u64::from(interval_s));
                tokio::spawn(probe(h.clone(), trunk, target));
            }
        }
    })
}

/// One keep-alive to `target` of `trunk` (over TCP or TLS, the connection is opened when
/// there is none: a target that cannot be connected to has not answered).
async fn probe(h: Arc<Dispatcher>, trunk: Arc<str>, target: TargetRec) {
    let TargetRec { flow, tls_name } = target;
    let (addr, transport) = (flow.addr, flow.transport);
    // Without a listener of the target's transport the edge cannot name itself in the
    // Via and Record-Route: calls skip the target, so it is DOWN here too.
    let local = h.local.of(transport);
    if local.is_none() {
        warn!(trunk = %trunk, target = %addr, transport = transport.name(), "no listener of the trunk target's transport");
    }
    let code = match (local, h.flows.reach(flow, tls_name).await) {
        (Some(local), Some((_, replier))) => ask(&h, &local, addr, transport, replier).await,
        _ => 408,
    };
    // Our own timeout is 408 with no answer; anything the target said means it is alive.
    let answered = code != 408;
    let now_ms = unix_ms() as i64;
    if h.delivery
        .trunk_health
        .observe(&trunk, addr, answered, now_ms)
    {
        if answered {
            info!(trunk = %trunk, target = %addr, "trunk target up");
        } else {
            warn!(trunk = %trunk, target = %addr, "trunk target down: keep-alives unanswered");
        }
    }
}

/// An OPTIONS to `addr` over `replier`: the status of its answer (408: none).
async fn ask(
    h: &Dispatcher,
    local: &Local,
    addr: SocketAddr,
    transport: Transport,
    replier: crate::flow::Replier,
) -> u16 {
    let branch = new_branch();
    let uri = match transport {
        Transport::Udp => format!("sip:{addr}"),
        t => format!("sip:{addr};transport={}", t.name()),
    };
    let via = local.via();
    let from = format!(
        "<sip:{}@{}>;tag={:08x}",
        h.settings.node_id,
        local.addr,
        rand::random::<u32>()
    );
    let to = format!("<{uri}>");
    let call_id = format!("{:016x}@dialtone", rand::random::<u64>());
    let req = OutRequest {
        method: "OPTIONS",
        uri: &uri,
        via: &via,
        branch: &branch,
        from: &from,
        to: &to,
        call_id: &call_id,
        cseq: 1,
        extra: Vec::new(),
        body: b"",
    };
    let (code, _) = h
        .uac
        .request(req.to_bytes(), branch, transport, replier, ANSWER_WITHIN)
        .await;
    code
}
