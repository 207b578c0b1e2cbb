//! Pings every configured media server over `ng` once a second and reports what it finds
//! to the delivery's [`MediaHealth`](crate::delivery::media_health::MediaHealth), so new
//! calls skip a server that stopped answering within a few seconds.

use std::{sync::Arc, time::Duration};

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::dispatch::Dispatcher;

/// Time between rounds of pings.
pub const INTERVAL: Duration = Duration::from_secs(1);

pub(crate) fn spawn(h: Arc<Dispatcher>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(client) = h.delivery.ng.clone() else {
            return;
        };
        loop {
            let servers = h.cache.read().media_servers();
            let health = &h.delivery.media_health;
            health.retain(|id| servers.iter().any(|s| s.id == id));
            let pings = servers.iter().map(|s| {
                let client = client.clone();
                async move { (s, client.ping(s.ng).await) }
            });
            for (s, answered) in futures::future::join_all(pings).await {
                if health.observe(&s.id, answered) {
                    if answered {
                        info!(media_server = %s.id, ng = %s.ng, "media server up");
                    } else {
                        warn!(media_server = %s.id, ng = %s.ng, "media server down");
                    }
                }
            }
            tokio::time::sleep(INTERVAL).await;
        }
    })
}
