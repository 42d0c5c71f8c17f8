//! [`CommandSweep`]: commands still `pending` or `delivered` past their `expires_at` are
//! `expired`, and a start among them ends its instance `crashed` (cause `undelivered`).
//!
//! The broker dead-letters a command that expires in a worker's queue, and [`super::DeadCommands`]
//! records it; this sweep catches the rest: a command whose publish never finished (the client
//! gave up on its request while the broker was away, the host stopped mid-request) or whose dead
//! letter was lost. Safe with several host replicas: the store moves each command once
//! ([`crate::ports::CommandRepository::expire_commands`]), and the instance's change is
//! conditional on `created` and keyed by the command id (the same change the dead-letter
//! watcher makes, so the two never record it twice).

use crate::command::{Command, CommandRecord, CommandState};
use crate::host::Metrics;
use crate::id::InstanceId;
use crate::ports::{Clock, StatusChange, StoreError};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The detail of a command the sweep expires.
pub const EXPIRED_UNTAKEN: &str = "expired before a worker took it";

/// Most commands expired by one store call.
const BATCH: u32 = 256;

/// When the sweep runs and how long past its `expires_at` a command is left to its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandExpiry {
    /// Time between sweeps (default 1 s).
    pub interval: Duration,
    /// How long after its `expires_at` an unfinished command is expired (default 5 s): a
    /// worker that took it just in time has that long to have its answer recorded.
    pub grace: Duration,
}

impl Default for CommandExpiry {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            grace: Duration::from_secs(5),
        }
    }
}

/// Expires unfinished commands past their time, on a schedule.
#[derive(Debug, Clone)]
pub struct CommandSweep {
    store: Store,
    clock: Arc<dyn Clock>,
    expiry: CommandExpiry,
    metrics: Metrics,
}

impl CommandSweep {
    /// A sweep of `store`'s command records.
    pub fn new(store: Store, clock: Arc<dyn Clock>, expiry: CommandExpiry) -> Self {
        Self {
            store,
            clock,
            expiry,
            metrics: Metrics::new(),
        }
    }

    /// Counts the commands it expires in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sweeps every interval until `shutdown`; failures are logged and retried next time.
    pub async fn run(&self, shutdown: CancellationToken) {
        // Starts whose command this sweep expired but whose instance it could not end yet (the
        // store failed in between): tried again at each sweep.
        let mut unended = Vec::new();
        loop {
            if let Err(e) = self.sweep(&mut unended).await {
                tracing::warn!(error = %e, "the command sweep failed; trying again");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.expiry.interval) => {}
            }
        }
    }

    /// One sweep: expires what is due (in batches) and ends the instances of expired starts.
    /// `unended` holds the instances still to end (from an earlier sweep that failed midway);
    /// what cannot be ended now is left in it.
    async fn sweep(&self, unended: &mut Vec<(InstanceId, uuid::Uuid)>) -> Result<(), StoreError> {
        let grace = chrono::Duration::from_std(self.expiry.grace).unwrap_or(chrono::Duration::MAX);
        loop {
            let now = self.clock.now();
            let expired = self
                .store
                .commands
                .expire_commands(now - grace, EXPIRED_UNTAKEN, now, BATCH)
                .await?;
            let full = expired.len() == BATCH as usize;
            for record in &expired {
                self.expired(record, unended);
            }
            self.end_instances(unended).await?;
            if !full {
                return Ok(());
            }
        }
    }

    fn expired(&self, record: &CommandRecord, unended: &mut Vec<(InstanceId, uuid::Uuid)>) {
        let envelope = &record.envelope;
        tracing::warn!(command_id = %record.id, command = envelope.command.name(), expires_at = %envelope.expires_at, "a command that never ran: expired");
        self.metrics.command_finished(
            CommandState::Expired,
            (record.updated_at - envelope.issued_at)
                .to_std()
                .unwrap_or_default(),
        );
        if let Command::Start { instance_id, .. } = envelope.command {
            unended.push((instance_id, record.id));
        }
    }

    /// Ends each instance of an expired start that is still `created`.
    async fn end_instances(
        &self,
        unended: &mut Vec<(InstanceId, uuid::Uuid)>,
    ) -> Result<(), StoreError> {
        while let Some(&(instance_id, command_id)) = unended.last() {
            let now = self.clock.now();
            // The dead-letter watcher records the same change under the same id.
            let change = StatusChange::undelivered(
                command_id,
                instance_id,
                format!("its start command {command_id} {EXPIRED_UNTAKEN}"),
                now,
            );
            match self.store.status.apply_status(&change).await {
                // Started after all, already ended, or deleted since: the status stands.
                Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            unended.pop();
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::command::CommandEnvelope;
    use crate::memory::MemoryStore;
    use crate::ports::SystemClock;
    use crate::status::{Cause, Entity, Status};
    use chrono::Utc;

    #[tokio::test]
    async fn an_abandoned_start_expires_and_its_instance_is_undelivered() {
        let store = Store::from_adapter(MemoryStore::new());
        let now = Utc::now();
        let (instance, worker) = crate::testing::fixture::instance(&store).await;
        // Issued 70 s ago with the default 60 s to live, never published (still `pending`).
        let envelope = CommandEnvelope::new(
            Command::Start {
                instance_id: instance.id,
                config_id: instance.config_id,
                bundle: None,
            },
            "test",
            now - chrono::Duration::seconds(70),
        );
        store
            .commands
            .insert_command(&CommandRecord::pending(worker.id, envelope.clone()))
            .await
            .expect("command");
        let metrics = Metrics::new();
        let sweep = CommandSweep::new(
            store.clone(),
            Arc::new(SystemClock),
            CommandExpiry::default(),
        )
        .with_metrics(metrics.clone());
        let mut unended = Vec::new();
        sweep.sweep(&mut unended).await.expect("sweep");
        assert!(unended.is_empty());
        let record = store.commands.get_command(envelope.id).await.expect("get");
        assert_eq!(
            (record.state, record.detail.as_deref()),
            (CommandState::Expired, Some(EXPIRED_UNTAKEN))
        );
        let ended = store
            .instances
            .get_instance(instance.id)
            .await
            .expect("get");
        assert_eq!(ended.status, Status::Crashed);
        assert!(ended.ended_at.is_some());
        let history = store
            .status
            .status_history(Entity::Instance(instance.id), None, 10)
            .await
            .expect("history");
        assert_eq!(
            history.last().map(|e| e.cause),
            Some(Cause::Undelivered),
            "{history:#?}"
        );
        // A second sweep (another replica) finds nothing to do.
        sweep.sweep(&mut unended).await.expect("sweep");
        assert_eq!(
            store
                .status
                .status_history(Entity::Instance(instance.id), None, 10)
                .await
                .expect("history")
                .len(),
            history.len()
        );
    }
}
