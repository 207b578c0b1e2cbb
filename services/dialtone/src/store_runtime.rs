//! A runtime of its own, on a thread of its own, for the store client (etcd's channel and
//! its connection tasks, the embedded store's lease expiry) and the node lease keeper. The
//! SIP edge can keep every thread of the main runtime busy (a flood of requests over
//! streams); the lease must still be refreshed within its TTL, or the node's keys (its
//! membership, every binding it holds) would vanish and come back. A thread of its own gets
//! its share of the CPU from the kernel whatever the main runtime's tasks do.

use std::future::Future;

use anyhow::Context;
use tokio::{runtime::Handle, sync::oneshot};

/// The store's runtime; dropping it stops the thread.
pub struct StoreRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StoreRuntime {
    pub fn start() -> anyhow::Result<Self> {
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("store-io".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .on_thread_park(dialtone_common::idle::parked)
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stopped.await;
                });
                // A hung disk must not hang the process's exit.
                rt.shutdown_timeout(std::time::Duration::from_secs(5));
            })
            .context("starting the store thread")?;
        let handle = handle_rx
            .recv()
            .context("the store thread stopped at once")?
            .context("building the store runtime")?;
        Ok(StoreRuntime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the store's runtime (what it spawns stays there) and waits for it.
    pub async fn run<F>(&self, f: F) -> anyhow::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle
            .spawn(f)
            .await
            .context("the store runtime stopped")
    }

    /// Runs `f` (synchronous, but spawning tasks) inside the store's runtime.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        let _in = self.handle.enter();
        f()
    }
}

impl Drop for StoreRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn tasks_spawned_there_run_while_the_main_runtime_is_busy() {
        let rt = StoreRuntime::start().unwrap();
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let t = ticks.clone();
        rt.run(async move {
            tokio::spawn(async move {
                loop {
                    t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            });
        })
        .await
        .unwrap();
        // The main runtime's only worker spins without yielding for half a second.
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(500) {
            std::hint::spin_loop();
        }
        assert!(ticks.load(std::sync::atomic::Ordering::Relaxed) >= 10);
        let name = rt
            .run(async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("store-io"));
    }
}
