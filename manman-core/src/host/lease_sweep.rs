//! [`LeaseSweep`]: a worker that has not heartbeated within its lease is `lost`, with its
//! active instances. Safe with several host replicas (the store marks each worker once).

use crate::ports::Clock;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The lease, and how often it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// A worker silent for longer is `lost` (default 6 s: three heartbeats of 2 s).
    pub duration: Duration,
    /// Time between sweeps (default 1 s).
    pub interval: Duration,
}

impl Default for Lease {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(6),
            interval: Duration::from_secs(1),
        }
    }
}

/// Marks silent workers `lost` on a schedule.
#[derive(Debug, Clone)]
pub struct LeaseSweep {
    store: Store,
    clock: Arc<dyn Clock>,
    lease: Lease,
}

impl LeaseSweep {
    /// A sweep of `store` with `lease`.
    pub fn new(store: Store, clock: Arc<dyn Clock>, lease: Lease) -> Self {
        Self {
            store,
            clock,
            lease,
        }
    }

    /// Sweeps every interval until `shutdown`; failures are logged and retried next time.
    pub async fn run(&self, shutdown: CancellationToken) {
        let lease =
            chrono::Duration::from_std(self.lease.duration).unwrap_or(chrono::Duration::MAX);
        loop {
            let now = self.clock.now();
            match self.store.workers.expire_leases(now - lease, now).await {
                Ok(lost) if !lost.is_empty() => {
                    tracing::warn!(?lost, "workers stopped heartbeating: lost")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the lease sweep failed; trying again"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.lease.interval) => {}
            }
        }
    }
}
