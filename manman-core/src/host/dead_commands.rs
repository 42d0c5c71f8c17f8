//! [`DeadCommands`]: commands that never ran end recorded as such. A command dead-lettered
//! after its `expires_at` is `expired`; one dead-lettered before (a worker could not read it) is
//! `failed`. A start that never ran leaves its instance `crashed` (cause `undelivered`), not
//! `created` for ever.

use crate::bus::Bus;
use crate::command::{Command, CommandEnvelope, CommandState};
use crate::host::{BusKeys, DeadLetterReason, DeadLetters, Metrics};
use crate::ports::{BusError, Clock, StatusChange, StoreError};
use crate::signing::Purpose;
use crate::store::Store;
use crate::topology::KIND_COMMAND;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Records the commands that reach `manman.dead`.
#[derive(Debug, Clone)]
pub struct DeadCommands {
    store: Store,
    bus: Bus,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    keys: BusKeys,
    dead_letters: DeadLetters,
}

impl DeadCommands {
    /// A watcher of `bus`'s dead letters writing to `store`.
    pub fn new(store: Store, bus: Bus, clock: Arc<dyn Clock>) -> Self {
        Self {
            keys: BusKeys::new(&store),
            store,
            bus,
            clock,
            metrics: Metrics::new(),
            dead_letters: DeadLetters::default(),
        }
    }

    /// Records the dead-lettered commands in `dead_letters`.
    pub fn with_dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = dead_letters;
        self
    }

    /// Counts the commands it ends in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Consumes until `shutdown`. Messages that are not commands are acknowledged (they stay in
    /// `manman.dead-letters` for inspection).
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut consumer = self.bus.consume_dead_commands(32).await?;
        loop {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "dead letters: receive failed; retrying in 1 s");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                    None => return Err(BusError::Closed),
                },
            };
            let settled = match self.record(&delivery.message).await {
                Err(e) if e.is_transient() => delivery.requeue().await,
                Err(e) => {
                    tracing::warn!(message_id = %delivery.message.id, error = %e, "could not record a dead-lettered command");
                    delivery.ack().await
                }
                Ok(()) => delivery.ack().await,
            };
            if let Err(e) = settled {
                tracing::warn!(error = %e, "dead letters: could not settle a delivery");
            }
        }
    }

    async fn record(&self, message: &crate::ports::Message) -> Result<(), StoreError> {
        if message.kind != KIND_COMMAND {
            tracing::warn!(message_id = %message.id, kind = %message.kind, "a dead letter (kept in manman.dead-letters)");
            return Ok(());
        }
        let now = self.clock.now();
        // Only the host's own commands are recorded: anyone could dead-letter a forged one
        // naming a real command or instance.
        let Some(seal) = &message.seal else {
            self.dead_letters.record(
                message,
                DeadLetterReason::Unsigned,
                "an unsigned command was dead-lettered: not the host's, nothing recorded",
                now,
            );
            return Ok(());
        };
        let key = self.keys.worker_key(seal.worker_id, seal.epoch).await?;
        if let Err(e) = key.check(Purpose::Command, message) {
            self.dead_letters.record(
                message,
                DeadLetterReason::BadSignature,
                format!("a dead-lettered command is not the host's ({e}): nothing recorded"),
                now,
            );
            return Ok(());
        }
        let Ok(envelope) = message.decode::<CommandEnvelope>() else {
            self.dead_letters.record(
                message,
                DeadLetterReason::Malformed,
                "a malformed command was dead-lettered",
                now,
            );
            return Ok(());
        };
        let (state, detail) = if envelope.is_expired(now) {
            (
                CommandState::Expired,
                format!("expired at {} before a worker took it", envelope.expires_at),
            )
        } else {
            (
                CommandState::Failed,
                "dead-lettered: the worker could not read it, or it was not sealed for the \
                 worker's current registration (the worker restarted since)"
                    .to_owned(),
            )
        };
        self.dead_letters.record(
            message,
            DeadLetterReason::CommandNotRun,
            format!(
                "{} command {} to {}: {detail}",
                envelope.command.name(),
                envelope.id,
                seal.worker_id
            ),
            now,
        );
        match self
            .store
            .commands
            .transition_command(envelope.id, state, Some(&detail), now)
            .await
        {
            Ok(record) => self.metrics.command_finished(
                record.state,
                (record.updated_at - envelope.issued_at)
                    .to_std()
                    .unwrap_or_default(),
            ),
            // Already final (the worker answered it): nothing to record.
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        if let Command::Start { instance_id, .. } = envelope.command {
            let change = StatusChange::undelivered(
                envelope.id,
                instance_id,
                format!("its start command {detail}"),
                now,
            );
            match self.store.status.apply_status(&change).await {
                // Started after all, or already ended: the status stands.
                Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
