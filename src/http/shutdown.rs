//! Cutting open streams when a graceful stop runs out of time.
//!
//! A graceful stop lets in-flight requests finish for up to
//! `server.shutdown_timeout`. Streams still open then are cut by the gateway
//! itself, not left for actix to drop: each relay sends the client-format
//! error event (`server_shutting_down`), ends its stream and records the
//! request as cut by the server. actix's own shutdown timeout is set a
//! little longer ([`ACTIX_MARGIN`]) so those last bytes get out; a dropped
//! connection would look like a client leaving (499).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Set for the drain period after SIGTERM (`server.drain_period`): while it
/// is set `/readyz` answers 503 `draining` and everything else is served
/// as usual, so that a load balancer takes the instance out of rotation
/// before its listener closes.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// How much longer than `server.shutdown_timeout` actix waits before it
/// drops the connections that are still open.
pub const ACTIX_MARGIN: Duration = Duration::from_secs(2);

/// Fired once, when the graceful stop's time is up; every relay listens.
#[derive(Clone, Debug)]
pub struct StreamCutoff {
    sender: watch::Sender<bool>,
}

impl Default for StreamCutoff {
    fn default() -> Self {
        Self {
            sender: watch::Sender::new(false),
        }
    }
}

impl StreamCutoff {
    /// Tells every open relay (and any started later) to end now.
    pub fn fire(&self) {
        self.sender.send_replace(true);
    }

    /// Resolves once [`StreamCutoff::fire`] was called, even if before this.
    pub fn wait(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        let mut receiver = self.sender.subscribe();
        Box::pin(async move {
            // An error means the sender is gone: the server is gone too.
            let _ = receiver.wait_for(|fired| *fired).await;
        })
    }

    /// Fires `timeout` after the call, unless the returned task is aborted
    /// first (the stop finished in time).
    pub fn fire_after(&self, timeout: Duration) -> actix_rt::task::JoinHandle<()> {
        let cutoff = self.clone();
        actix_rt::spawn(async move {
            actix_rt::time::sleep(timeout).await;
            cutoff.fire();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn waiters_see_a_cutoff_fired_before_or_after_they_wait() {
        let cutoff = StreamCutoff::default();
        let early = cutoff.wait();
        cutoff.fire();
        early.await;
        cutoff.wait().await;
    }
}
