//! [`LeaseSweep`]: a worker that has not heartbeated within its lease is `lost`, with its
//! active instances. Safe with several host replicas (the store marks each worker once).

use crate::ports::Clock;
use crate::store::Store;
use chrono::{DateTime, Utc};
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
///
/// The lease counts only time the host could take heartbeats. The sweep measures its own reach
/// of the store: when a sweep begins longer than two intervals after the last sweep that reached
/// the store began (the store was down or did not answer, the host was paused), that gap is the
/// host's outage, and every lease is extended by its length for the next lease's time — long
/// enough for every worker to be heard again, after which every lease from before the outage
/// has run out anyway. A host that starts sweeps only after one lease, so that every worker has
/// had a lease's time to reach it. Each replica measures its own outages; the store still marks
/// each worker once.
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
        let lease = to_chrono(self.lease.duration);
        let mut outages = Outages::new(self.clock.now(), self.lease);
        loop {
            let now = self.clock.now();
            if let Some(extension) = outages.extension(now) {
                let stale_before = now - lease - extension;
                match self.store.workers.expire_leases(stale_before, now).await {
                    Ok(lost) => {
                        outages.reached(now);
                        if !lost.is_empty() {
                            tracing::warn!(?lost, "workers stopped heartbeating: lost");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "the lease sweep failed; trying again"),
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.lease.interval) => {}
            }
        }
    }
}

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// What a sweep knows of the host's own outages.
#[derive(Debug)]
struct Outages {
    lease: chrono::Duration,
    interval: chrono::Duration,
    /// No sweep before this (one lease after the host started).
    first_sweep: DateTime<Utc>,
    /// When the last sweep that reached the store began.
    last_reached: DateTime<Utc>,
    /// The extension in force, and until when.
    extension: Option<(chrono::Duration, DateTime<Utc>)>,
}

impl Outages {
    fn new(started: DateTime<Utc>, lease: Lease) -> Self {
        let duration = to_chrono(lease.duration);
        let interval = to_chrono(lease.interval);
        let first_sweep = started + duration;
        Self {
            lease: duration,
            interval,
            first_sweep,
            // As if a sweep had reached the store just before the first: an outage that began
            // during the first lease is counted from there, so every worker heard since the
            // host started is covered.
            last_reached: first_sweep - interval,
            extension: None,
        }
    }

    /// How much every lease is extended for a sweep beginning at `now`; `None`: no sweep yet.
    fn extension(&mut self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        if now < self.first_sweep {
            return None;
        }
        let gap = now - self.last_reached;
        if gap > self.interval * 2 {
            let (extension, until) = self.extension.unwrap_or((chrono::Duration::zero(), now));
            let extension = extension.max(gap);
            let until = until.max(now + self.lease);
            tracing::warn!(
                outage_ms = gap.num_milliseconds(),
                "the lease sweep could not reach the store for a while: every lease is extended by that outage"
            );
            self.extension = Some((extension, until));
        }
        match self.extension {
            Some((extension, until)) if now <= until => Some(extension),
            _ => {
                self.extension = None;
                Some(chrono::Duration::zero())
            }
        }
    }

    /// A sweep that began at `at` reached the store.
    fn reached(&mut self, at: DateTime<Utc>) {
        self.last_reached = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(s: i64) -> chrono::Duration {
        chrono::Duration::seconds(s)
    }

    #[test]
    fn the_first_sweep_waits_one_lease() {
        let t0 = Utc::now();
        let mut outages = Outages::new(t0, Lease::default());
        assert_eq!(outages.extension(t0 + seconds(5)), None);
        assert_eq!(outages.extension(t0 + seconds(6)), Some(seconds(0)));
    }

    #[test]
    fn an_outage_that_begins_in_the_first_lease_is_counted() {
        let t0 = Utc::now();
        let mut outages = Outages::new(t0, Lease::default());
        // The store is out from t0 + 2 s to t0 + 17 s; workers were last heard at t0 + 2 s.
        for s in 6..17 {
            assert!(outages.extension(t0 + seconds(s)).is_some());
        }
        let extension = outages.extension(t0 + seconds(17)).expect("sweeps");
        assert!(
            t0 + seconds(17) - seconds(6) - extension <= t0,
            "every worker heard since the start is covered: {extension}"
        );
    }

    #[test]
    fn an_outage_extends_every_lease_by_its_length_for_one_lease() {
        let t0 = Utc::now();
        let mut outages = Outages::new(t0 - seconds(6), Lease::default());
        assert_eq!(outages.extension(t0), Some(seconds(0)));
        outages.reached(t0);
        assert_eq!(outages.extension(t0 + seconds(1)), Some(seconds(0)));
        outages.reached(t0 + seconds(1));
        // The store is out of reach from t0 + 1 s to t0 + 16 s: sweeps fail.
        for s in 4..16 {
            let extension = outages.extension(t0 + seconds(s)).expect("sweeps");
            assert!(extension >= seconds(s - 1), "{s}: {extension}");
        }
        // Back: a worker last heard at t0 + 1 s is not stale at t0 + 16 s.
        let extension = outages.extension(t0 + seconds(16)).expect("sweeps");
        assert_eq!(extension, seconds(15));
        let stale_before = t0 + seconds(16) - seconds(6) - extension;
        assert!(stale_before < t0 + seconds(1));
        outages.reached(t0 + seconds(16));
        // Still in force for one lease, then gone.
        for s in 17..=22 {
            assert_eq!(outages.extension(t0 + seconds(s)), Some(seconds(15)), "{s}");
            outages.reached(t0 + seconds(s));
        }
        assert_eq!(outages.extension(t0 + seconds(23)), Some(seconds(0)));
    }
}
