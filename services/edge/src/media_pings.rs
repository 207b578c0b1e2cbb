//! Pings every configured media server over `ng` once a second and reports what it finds
//! to the delivery's [`MediaHealth`](crate::delivery::media_health::MediaHealth), so new
//! calls skip a server that stopped answering within a few seconds, and, whenever it
//! changes, to `media-health/{node}` on the node's lease, where the status role reads it
//! (with the calls up this edge anchored at each server).

use std::{sync::Arc, time::Duration};

use dialtone_common::clock::unix_ms;
use dialtone_domain::keys;
use dialtone_media::select;
use dialtone_store::lifecycle::NodeLease;
use prost::Message;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::dispatch::Dispatcher;

/// Time between rounds of pings.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// How long a round waits for the store to take what it found.
const PUBLISH_WITHIN: Duration = Duration::from_millis(500);

pub(crate) fn spawn(h: Arc<Dispatcher>, lease: Arc<NodeLease>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(client) = h.delivery.ng.clone() else {
            return;
        };
        let key = keys::media_health(&h.settings.node_id);
        let mut published: Option<Vec<u8>> = None;
        loop {
            let servers = h.cache.read().media_servers();
            let health = &h.delivery.media_health;
            health.retain(|id| servers.iter().any(|s| s.id == id));
            // Each ping's round trip, for the sites that use their regions lowest latency
            // first.
            let pings = servers.iter().map(|s| {
                let client = client.clone();
                async move {
                    let sent = std::time::Instant::now();
                    let answered = client.ping(s.ng).await;
                    let rtt = select::rtt_bucket(sent.elapsed().as_micros() as u64);
                    (s, answered.map(|up| up.then_some(rtt)))
                }
            });
            for (s, answered) in futures::future::join_all(pings).await {
                let Some(answered) = answered else {
                    continue;
                };
                if health.observe(&s.id, answered, unix_ms() as i64) {
                    if answered.is_some() {
                        info!(media_server = %s.id, ng = %s.ng, "media server up");
                    } else {
                        warn!(media_server = %s.id, ng = %s.ng, "media server down");
                    }
                }
            }
            let ids: Vec<_> = servers.iter().map(|s| (s.id.clone(), s.ng)).collect();
            let active = h.delivery.calls.by_media_server();
            let found = health.snapshot(&ids, &active).encode_to_vec();
            // An edge that never knew a media server publishes nothing.
            let first_empty = published.is_none() && found.is_empty();
            // A slow store (an etcd outage) delays the next round of pings by at most
            // PUBLISH_WITHIN: failover to the next media server never waits on the store.
            if published.as_ref() != Some(&found) && !first_empty {
                let put = lease.put_owned(&key, found.clone());
                match tokio::time::timeout(PUBLISH_WITHIN, put).await {
                    Ok(Ok(())) => published = Some(found),
                    Ok(Err(e)) => warn!(error = %e, "publishing media health failed; retrying"),
                    Err(_) => warn!("publishing media health timed out; retrying"),
                }
            }
            tokio::time::sleep(INTERVAL).await;
        }
    })
}
