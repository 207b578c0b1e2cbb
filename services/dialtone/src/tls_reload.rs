//! Serves renewed certificates without a restart: every `--tls-reload-interval` seconds,
//! the certificate files of every TLS listener of this process (SIP over TLS and WSS,
//! provisioning HTTPS, the gRPC and REST ports) are looked at, and a pair whose files
//! changed is read again and served from the next handshake (`dialtone_tls::reload`).

use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

/// Looks every `every` until `stop` changes.
pub async fn run(every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        // File reads and PEM parsing: off the runtime's threads.
        let Ok(changed) = tokio::task::spawn_blocking(dialtone_tls::reload::reload_changed).await
        else {
            continue;
        };
        for r in changed {
            let cert = r.cert.display();
            match r.result {
                Ok(expires_at) => {
                    info!(%cert, expires_at = expires_at.unwrap_or(0), "tls certificate reloaded")
                }
                Err(e) => warn!(
                    %cert,
                    error = %e,
                    "tls certificate files changed but do not load; the previous certificate still serves"
                ),
            }
        }
    }
}
