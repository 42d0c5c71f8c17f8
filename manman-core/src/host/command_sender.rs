//! [`CommandSender`]: how the host sends a command to a worker — recorded `pending`, sealed for
//! the worker's registration, published, then recorded `delivered` (or `failed`).

use crate::bus::Bus;
use crate::command::{Command, CommandEnvelope, CommandRecord, CommandState, Origin};
use crate::host::{BusKeys, HostError};
use crate::id::WorkerId;
use crate::ports::Clock;
use crate::store::Store;
use std::sync::Arc;
use uuid::Uuid;

/// Sends commands to workers and keeps their records. Cloning shares the bus keys.
#[derive(Debug, Clone)]
pub struct CommandSender {
    store: Store,
    bus: Bus,
    clock: Arc<dyn Clock>,
    keys: BusKeys,
    ttl: chrono::Duration,
}

impl CommandSender {
    /// Sends over `bus`, records in `store`, commands live [`crate::command::DEFAULT_COMMAND_TTL`].
    pub fn new(store: Store, bus: Bus, clock: Arc<dyn Clock>) -> Self {
        Self {
            keys: BusKeys::new(&store),
            store,
            bus,
            clock,
            ttl: crate::command::DEFAULT_COMMAND_TTL,
        }
    }

    /// How long a command stays deliverable; then it is dead-lettered and recorded `expired`.
    pub fn with_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.ttl = chrono::Duration::from_std(ttl).unwrap_or(crate::command::DEFAULT_COMMAND_TTL);
        self
    }

    /// How long a command stays deliverable.
    pub fn ttl(&self) -> std::time::Duration {
        self.ttl.to_std().unwrap_or_default()
    }

    /// The bus commands go out on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The keys commands are sealed with.
    pub fn keys(&self) -> &BusKeys {
        &self.keys
    }

    /// Records a command `pending`, publishes it to registration `epoch` of `worker`, then
    /// marks it `delivered` (or `failed` with the reason when the bus refused it).
    pub async fn send(
        &self,
        (worker, epoch): (WorkerId, i64),
        command: Command,
        origin: Origin,
    ) -> Result<Uuid, HostError> {
        let key = self.keys.worker_key(worker, epoch).await?;
        let now = self.clock.now();
        let mut envelope = CommandEnvelope::new(command, origin.issued_by, now);
        envelope.correlation_id = origin.correlation_id;
        envelope.expires_at = now + self.ttl;
        let id = envelope.id;
        self.store
            .commands
            .insert_command(&CommandRecord {
                id,
                worker_id: worker,
                envelope: envelope.clone(),
                state: CommandState::Pending,
                detail: None,
                updated_at: now,
            })
            .await?;
        match self.bus.send_command(&key, &envelope).await {
            Ok(()) => {
                // The worker may already have answered: a final state stays as it is.
                let _ = self
                    .store
                    .commands
                    .transition_command(id, CommandState::Delivered, None, self.clock.now())
                    .await;
                Ok(id)
            }
            Err(e) => {
                let detail = format!("could not be sent to {worker}: {e}");
                match self
                    .store
                    .commands
                    .transition_command(id, CommandState::Failed, Some(&detail), self.clock.now())
                    .await
                {
                    // Already final: the command sweep expired it while the bus kept it waiting.
                    Ok(_) | Err(crate::ports::StoreError::Conflict { .. }) => {}
                    Err(store) => return Err(store.into()),
                }
                Err(e.into())
            }
        }
    }
}
