//! [`Retention`]: old status history, command records and the console tails of instances that
//! ended long ago are pruned, in batches, so the tables
//! do not grow without end and no stdin line a command record holds is kept longer than the
//! retention period, whatever the command's state (see
//! [`crate::ports::CommandRepository::prune_commands`]).

use crate::ports::{Clock, StoreError};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long history is kept, and how it is pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Status history and command records (with their stdin lines) older than this are
    /// deleted, and the console tails of instances that ended before it.
    pub keep: Duration,
    /// Rows deleted per statement (short transactions, no long locks).
    pub batch: u32,
    /// Time between prunings.
    pub interval: Duration,
}

impl Default for RetentionPolicy {
    /// 30 days kept, 1,000 rows a batch, once an hour.
    fn default() -> Self {
        Self {
            keep: Duration::from_secs(30 * 24 * 3600),
            batch: 1_000,
            interval: Duration::from_secs(3600),
        }
    }
}

/// How much one pruning deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Status history rows.
    pub status_events: u64,
    /// Command records.
    pub command_records: u64,
    /// Console tails (of instances that ended before the retention period).
    pub console_tails: u64,
}

/// Prunes the store's history on a schedule.
#[derive(Debug, Clone)]
pub struct Retention {
    store: Store,
    clock: Arc<dyn Clock>,
    policy: RetentionPolicy,
}

impl Retention {
    /// Retention of `store` by `policy`.
    pub fn new(store: Store, clock: Arc<dyn Clock>, policy: RetentionPolicy) -> Self {
        Self {
            store,
            clock,
            policy,
        }
    }

    /// Deletes everything older than the policy allows, batch by batch.
    pub async fn prune_once(&self) -> Result<Pruned, StoreError> {
        let keep = chrono::Duration::from_std(self.policy.keep).unwrap_or(chrono::Duration::MAX);
        let before = self.clock.now() - keep;
        let mut pruned = Pruned::default();
        loop {
            let n = self
                .store
                .status
                .prune_history(before, self.policy.batch)
                .await?;
            pruned.status_events += n;
            if n < u64::from(self.policy.batch) {
                break;
            }
        }
        loop {
            let n = self
                .store
                .commands
                .prune_commands(before, self.policy.batch)
                .await?;
            pruned.command_records += n;
            if n < u64::from(self.policy.batch) {
                break;
            }
        }
        loop {
            let n = self
                .store
                .console_tails
                .prune_console_tails(before, self.policy.batch)
                .await?;
            pruned.console_tails += n;
            if n < u64::from(self.policy.batch) {
                break;
            }
        }
        Ok(pruned)
    }

    /// Prunes every `interval` until `shutdown`. A failed pruning is logged and tried again at
    /// the next interval.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            match self.prune_once().await {
                Ok(pruned) if pruned != Pruned::default() => {
                    tracing::info!(?pruned, "retention pruned old history")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "retention could not prune; trying again later")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.policy.interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::ports::SystemClock;

    #[tokio::test]
    async fn prunes_everything_older_than_kept_and_nothing_newer() {
        let store = Store::from_adapter(MemoryStore::new());
        let registration = crate::worker::WorkerRegistration {
            name: "w".into(),
            version: "1".into(),
            capacity: 1,
            labels: Default::default(),
            taken_up: Vec::new(),
        };
        let long_ago = chrono::Utc::now() - chrono::Duration::days(40);
        for n in 0..5 {
            let mut r = registration.clone();
            r.name = format!("w{n}");
            store.workers.register_worker(&r, long_ago).await.unwrap();
        }
        store
            .workers
            .register_worker(&registration, chrono::Utc::now())
            .await
            .unwrap();
        let retention = Retention::new(
            store.clone(),
            Arc::new(SystemClock),
            RetentionPolicy {
                batch: 2,
                ..RetentionPolicy::default()
            },
        );
        let pruned = retention.prune_once().await.unwrap();
        assert_eq!(
            pruned.status_events, 5,
            "in batches of 2 until none is left"
        );
        let recent = store
            .workers
            .list_workers()
            .await
            .unwrap()
            .into_iter()
            .find(|w| w.name == "w")
            .unwrap();
        let kept = store
            .status
            .status_history(crate::status::Entity::Worker(recent.id), None, 10)
            .await
            .unwrap();
        assert_eq!(kept.len(), 1);
    }
}
