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
    /// marks it `delivered` if it is still `pending` (one statement; a state the worker's answer
    /// already recorded stays), or `failed` with the reason when the bus refused it.
    pub async fn send(
        &self,
        (worker, epoch): (WorkerId, i64),
        command: Command,
        origin: Origin,
    ) -> Result<Uuid, HostError> {
        let envelope = self.envelope(command, origin);
        self.store
            .commands
            .insert_command(&CommandRecord::pending(worker, envelope.clone()))
            .await?;
        self.publish_recorded((worker, epoch), &envelope).await
    }

    /// A new command's envelope: issued now, expiring after the commands' time to live.
    pub fn envelope(&self, command: Command, origin: Origin) -> CommandEnvelope {
        let now = self.clock.now();
        let mut envelope = CommandEnvelope::new(command, origin.issued_by, now);
        envelope.correlation_id = origin.correlation_id;
        envelope.expires_at = now + self.ttl;
        envelope
    }

    /// Publishes a command recorded [`CommandRecord::pending`] (by [`Self::send`], or with what
    /// it is about) to registration `epoch` of `worker`, then marks it `delivered` if it is still
    /// `pending`, or `failed` with the reason when the bus refused it.
    pub async fn publish_recorded(
        &self,
        (worker, epoch): (WorkerId, i64),
        envelope: &CommandEnvelope,
    ) -> Result<Uuid, HostError> {
        let id = envelope.id;
        let key = self.keys.worker_key(worker, epoch).await?;
        match self.bus.send_command(&key, envelope).await {
            Ok(()) => {
                // One statement, conditional on `pending`: when the worker has already answered
                // (a stdin line's echo often beats this), its later state stays as it is. The
                // command is on its way whatever the store says, so a store that cannot record
                // `delivered` fails nothing: the record stays `pending` until the worker's
                // answer or the command sweep moves it on.
                if let Err(e) = self
                    .store
                    .commands
                    .mark_delivered(id, self.clock.now())
                    .await
                {
                    tracing::warn!(command_id = %id, error = %e, "could not record the command delivered; it was sent");
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandRecord;
    use crate::memory::{MemoryBus, MemoryStore};
    use crate::ports::{
        BusError, CommandRepository, ExchangeKind, Message, MessagePublisher, StoreError,
        SystemClock,
    };
    use crate::testing::fixture;
    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use std::sync::Mutex;

    /// The command records of a store, naming each call made to them.
    #[derive(Debug)]
    struct CountedCommands {
        inner: Arc<dyn CommandRepository>,
        calls: Mutex<Vec<&'static str>>,
    }

    impl CountedCommands {
        fn call(&self, name: &'static str) {
            self.calls.lock().expect("calls lock").push(name);
        }
    }

    #[async_trait]
    impl CommandRepository for CountedCommands {
        async fn insert_command(&self, record: &CommandRecord) -> Result<(), StoreError> {
            self.call("insert_command");
            self.inner.insert_command(record).await
        }

        async fn get_command(&self, id: Uuid) -> Result<CommandRecord, StoreError> {
            self.call("get_command");
            self.inner.get_command(id).await
        }

        async fn transition_command(
            &self,
            id: Uuid,
            to: CommandState,
            detail: Option<&str>,
            at: DateTime<Utc>,
        ) -> Result<CommandRecord, StoreError> {
            self.call("transition_command");
            self.inner.transition_command(id, to, detail, at).await
        }

        async fn mark_delivered(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
            self.call("mark_delivered");
            self.inner.mark_delivered(id, at).await
        }

        async fn prune_commands(
            &self,
            before: DateTime<Utc>,
            limit: u32,
        ) -> Result<u64, StoreError> {
            self.call("prune_commands");
            self.inner.prune_commands(before, limit).await
        }

        async fn expire_commands(
            &self,
            before: DateTime<Utc>,
            detail: &str,
            at: DateTime<Utc>,
            limit: u32,
        ) -> Result<Vec<CommandRecord>, StoreError> {
            self.call("expire_commands");
            self.inner.expire_commands(before, detail, at, limit).await
        }
    }

    /// A bus on which the worker answers a command before its publish returns: the answer is
    /// recorded (`succeeded`, as the status processor would) while the host still waits for the
    /// broker's confirm.
    #[derive(Debug)]
    struct AnsweredBeforeTheConfirm {
        inner: Arc<dyn MessagePublisher>,
        commands: Arc<dyn CommandRepository>,
    }

    #[async_trait]
    impl MessagePublisher for AnsweredBeforeTheConfirm {
        async fn declare_exchange(&self, name: &str, kind: ExchangeKind) -> Result<(), BusError> {
            self.inner.declare_exchange(name, kind).await
        }

        async fn publish(
            &self,
            exchange: &str,
            routing_key: &str,
            message: Message,
        ) -> Result<(), BusError> {
            let command = (message.kind == crate::topology::KIND_COMMAND).then_some(message.id);
            self.inner.publish(exchange, routing_key, message).await?;
            if let Some(id) = command {
                self.commands
                    .transition_command(id, CommandState::Succeeded, Some("written"), Utc::now())
                    .await
                    .expect("the worker's answer is recorded");
            }
            Ok(())
        }
    }

    /// A sender over a memory store whose command records count their calls, on a bus that
    /// answers each command at once when `answered_first`; and a stdin command to send.
    async fn sender(
        answered_first: bool,
    ) -> (
        CommandSender,
        Arc<CountedCommands>,
        Command,
        (WorkerId, i64),
    ) {
        let mut store = Store::from_adapter(MemoryStore::new());
        let (instance, worker) = fixture::instance(&store).await;
        let counted = Arc::new(CountedCommands {
            inner: Arc::clone(&store.commands),
            calls: Mutex::default(),
        });
        let memory = MemoryBus::new();
        let publisher: Arc<dyn MessagePublisher> = if answered_first {
            Arc::new(AnsweredBeforeTheConfirm {
                inner: Arc::new(memory.clone()),
                commands: Arc::clone(&store.commands),
            })
        } else {
            Arc::new(memory.clone())
        };
        let bus = Bus::new(publisher, Arc::new(memory));
        bus.declare().await.expect("topology");
        store.commands = counted.clone();
        let command = Command::Stdin {
            instance_id: instance.id,
            line: "status".to_owned(),
        };
        (
            CommandSender::new(store, bus, Arc::new(SystemClock)),
            counted,
            command,
            (worker.id, worker.epoch),
        )
    }

    #[tokio::test]
    async fn a_sent_command_is_marked_delivered_with_one_call() {
        let (sender, counted, command, to) = sender(false).await;
        let id = sender.send(to, command, "test".into()).await.expect("send");
        assert_eq!(
            *counted.calls.lock().expect("calls lock"),
            ["insert_command", "mark_delivered"]
        );
        let record = counted.inner.get_command(id).await.expect("get");
        assert_eq!(record.state, CommandState::Delivered, "command {id}");
    }

    #[tokio::test]
    async fn a_command_the_worker_answered_first_stays_answered_and_costs_no_more_calls() {
        let (sender, counted, command, to) = sender(true).await;
        let id = sender.send(to, command, "test".into()).await.expect("send");
        assert_eq!(
            *counted.calls.lock().expect("calls lock"),
            ["insert_command", "mark_delivered"],
            "no second query to learn why command {id} was not pending"
        );
        let record = counted.inner.get_command(id).await.expect("get");
        assert_eq!(
            (record.state, record.detail.as_deref()),
            (CommandState::Succeeded, Some("written")),
            "command {id}: the worker's answer stays"
        );
    }
}
