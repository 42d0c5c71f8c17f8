//! [`Bus`]: typed sending and receiving over the message ports, on the topology of spec §3.

use crate::command::CommandEnvelope;
use crate::console::ConsoleLine;
use crate::event::Event;
use crate::id::{InstanceId, WorkerId};
use crate::ports::{BusError, Consumer, Message, MessagePublisher, MessageSubscriber, QueueSpec};
use crate::signing::{Purpose, WorkerKey};
use crate::topology::{
    ALL_CONSOLES, DEAD_LETTERS_MAX_LENGTH, KIND_COMMAND, KIND_CONSOLE_LINE, KIND_RECORDED,
    Topology, console_routing_key, worker_routing_key,
};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The message ports with ManMan's topology: what the host and the worker send and receive.
#[derive(Debug, Clone)]
pub struct Bus {
    publisher: Arc<dyn MessagePublisher>,
    subscriber: Arc<dyn MessageSubscriber>,
    topology: Topology,
    declared_workers: Arc<Mutex<HashSet<WorkerId>>>,
}

impl Bus {
    /// A bus on these ports with the names of spec §3.
    pub fn new(
        publisher: Arc<dyn MessagePublisher>,
        subscriber: Arc<dyn MessageSubscriber>,
    ) -> Self {
        Self::with_topology(publisher, subscriber, Topology::new())
    }

    /// A bus of its own in this process ([`crate::memory::MemoryBus`]), its topology declared:
    /// for the all-in-one mode, embedding and tests.
    #[cfg(feature = "memory")]
    pub async fn in_memory() -> Result<Self, BusError> {
        let memory = crate::memory::MemoryBus::new();
        let bus = Self::new(Arc::new(memory.clone()), Arc::new(memory));
        bus.declare().await?;
        Ok(bus)
    }

    /// A bus with its own (e.g. prefixed) names.
    pub fn with_topology(
        publisher: Arc<dyn MessagePublisher>,
        subscriber: Arc<dyn MessageSubscriber>,
        topology: Topology,
    ) -> Self {
        Self {
            publisher,
            subscriber,
            topology,
            declared_workers: Arc::default(),
        }
    }

    /// The names in use.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The publisher port.
    pub fn publisher(&self) -> &Arc<dyn MessagePublisher> {
        &self.publisher
    }

    /// The subscriber port.
    pub fn subscriber(&self) -> &Arc<dyn MessageSubscriber> {
        &self.subscriber
    }

    /// Declares the exchanges, the dead-letter queue (at most [`DEAD_LETTERS_MAX_LENGTH`]
    /// messages, the oldest dropped) and the status processor's queue, with their bindings.
    /// Idempotent: every side calls it at start, so start order does not matter.
    ///
    /// A dead-letter queue declared by an older version, without the limit, cannot be declared
    /// again with it (the broker refuses other arguments for an existing queue): it is used as
    /// it is, with a warning that says how to bound it (`docs/operations.md`).
    pub async fn declare(&self) -> Result<(), BusError> {
        let t = &self.topology;
        for (name, kind) in t.exchanges() {
            self.publisher.declare_exchange(&name, kind).await?;
        }
        let dead = self
            .declare_dead_letter_queue(&t.dead_letters_queue())
            .await?;
        self.subscriber
            .bind_queue(&dead, &t.dead_exchange(), "")
            .await?;
        self.declare_status_queue().await?;
        Ok(())
    }

    /// Declares the status processor's queue and binds it to `manman.events`; returns its name.
    async fn declare_status_queue(&self) -> Result<String, BusError> {
        let t = &self.topology;
        let status = self
            .subscriber
            .declare_queue(
                &QueueSpec::durable(t.status_processor_queue()).dead_letter_to(t.dead_exchange()),
            )
            .await?;
        self.subscriber
            .bind_queue(&status, &t.events_exchange(), "")
            .await?;
        Ok(status)
    }

    /// Declares a durable queue of dead letters holding at most [`DEAD_LETTERS_MAX_LENGTH`];
    /// one that exists without that limit (declared by an older version) is kept as it is, with
    /// a warning. Returns its name.
    async fn declare_dead_letter_queue(&self, name: &str) -> Result<String, BusError> {
        let spec = QueueSpec::durable(name).with_max_length(DEAD_LETTERS_MAX_LENGTH);
        match self.subscriber.declare_queue(&spec).await {
            Err(BusError::Conflict { what, detail }) => {
                tracing::warn!(
                    queue = name,
                    %detail,
                    "{what} exists without the length limit of this version                      ({DEAD_LETTERS_MAX_LENGTH} messages, oldest dropped) and cannot be declared                      again with it: it is used as it is, unbounded. Bound it with a broker policy                      (rabbitmqctl set_policy … '{{\"max-length\":{DEAD_LETTERS_MAX_LENGTH},\"overflow\":\"drop-head\"}}'                      --apply-to queues) or delete it after reading it, and it is declared again                      with the limit: see docs/operations.md, \"Dead letters\""
                );
                Ok(name.to_owned())
            }
            other => other,
        }
    }

    /// Whether the broker answers: declares the first of the topology's exchanges again, as
    /// [`Bus::declare`] does (idempotent, one round trip on a broker).
    pub async fn probe(&self) -> Result<(), BusError> {
        let [(name, kind), ..] = self.topology.exchanges();
        self.publisher.declare_exchange(&name, kind).await
    }

    /// Declares and binds `worker.{id}.commands` (durable, dead-lettering into `manman.dead`).
    pub async fn declare_worker_queue(&self, worker: WorkerId) -> Result<String, BusError> {
        let t = &self.topology;
        let queue = self
            .subscriber
            .declare_queue(
                &QueueSpec::durable(t.worker_commands_queue(worker))
                    .dead_letter_to(t.dead_exchange()),
            )
            .await?;
        self.subscriber
            .bind_queue(&queue, &t.commands_exchange(), &worker_routing_key(worker))
            .await?;
        self.declared_workers
            .lock()
            .expect("declared-workers lock poisoned")
            .insert(worker);
        Ok(queue)
    }

    /// Sends a command to one worker registration, sealed with its key; it expires in its queue
    /// at `expires_at`. A worker queue that was deleted is declared and bound again, and the
    /// command published into it.
    pub async fn send_command(
        &self,
        to: &WorkerKey,
        envelope: &CommandEnvelope,
    ) -> Result<(), BusError> {
        let worker = to.worker_id();
        let known = self
            .declared_workers
            .lock()
            .expect("declared-workers lock poisoned")
            .contains(&worker);
        if !known {
            self.declare_worker_queue(worker).await?;
        }
        let mut message = Message::json(KIND_COMMAND, envelope, envelope.issued_at)?;
        message.id = envelope.id;
        message.expires_at = Some(envelope.expires_at);
        message.correlation_id.clone_from(&envelope.correlation_id);
        to.seal(Purpose::Command, &mut message);
        let exchange = self.topology.commands_exchange();
        let key = worker_routing_key(worker);
        match self
            .publisher
            .publish(&exchange, &key, message.clone())
            .await
        {
            // The worker's queue was deleted (and the worker has not declared it again yet):
            // declared and bound again here, it keeps the command for the worker.
            Err(BusError::Unroutable { .. }) => {
                tracing::warn!(
                    worker_id = worker.get(),
                    command_id = %envelope.id,
                    "the worker's command queue is gone: declaring and binding it again"
                );
                self.declare_worker_queue(worker).await?;
                self.publisher.publish(&exchange, &key, message).await
            }
            other => other,
        }
    }

    /// Publishes an event on `manman.events`, sealed by the worker registration that sends
    /// it; returns its message id.
    pub async fn publish_event(
        &self,
        event: &Event,
        now: DateTime<Utc>,
        from: &WorkerKey,
    ) -> Result<uuid::Uuid, BusError> {
        let mut message = Message::json(event.kind(), event, now)?;
        from.seal(Purpose::Event, &mut message);
        let id = message.id;
        self.publisher
            .publish(&self.topology.events_exchange(), "", message)
            .await?;
        Ok(id)
    }

    /// Publishes the events a host recorded (one batch of its status processor, in order) on
    /// `manman.recorded` as one message of kind [`KIND_RECORDED`], sealed with the hosts' key
    /// ([`crate::signing::BusSecret::host_key`]): one publish confirm per batch, and the order
    /// kept. Nobody watching (no host's event hub bound) is not an error.
    pub async fn publish_recorded(
        &self,
        events: &[Event],
        now: DateTime<Utc>,
        host: &WorkerKey,
    ) -> Result<(), BusError> {
        let mut message = Message::json(KIND_RECORDED, events, now)?;
        host.seal(Purpose::Recorded, &mut message);
        match self
            .publisher
            .publish(&self.topology.recorded_exchange(), "", message)
            .await
        {
            Err(BusError::Unroutable { .. }) => Ok(()),
            other => other,
        }
    }

    /// Publishes a console line on `manman.console` under `instance.{id}`, sealed by the worker
    /// registration that sends it.
    pub async fn publish_console(
        &self,
        line: &ConsoleLine,
        from: &WorkerKey,
    ) -> Result<(), BusError> {
        let mut message = Message::json(KIND_CONSOLE_LINE, line, line.at)?;
        from.seal(Purpose::Console, &mut message);
        match self
            .publisher
            .publish(
                &self.topology.console_exchange(),
                &console_routing_key(line.instance_id),
                message,
            )
            .await
        {
            // Nobody watches this console now: a live line with no watcher is not lost, the
            // worker's log file has it.
            Err(BusError::Unroutable { .. }) => Ok(()),
            other => other,
        }
    }

    /// Consumes a worker's command queue.
    pub async fn consume_commands(
        &self,
        worker: WorkerId,
        prefetch: u16,
    ) -> Result<Box<dyn Consumer>, BusError> {
        let queue = self.declare_worker_queue(worker).await?;
        self.subscriber.consume(&queue, prefetch).await
    }

    /// Consumes the status processor's shared queue (competing consumers across replicas),
    /// declaring it and binding it to `manman.events` first: a queue that was deleted is back,
    /// bound, before anything is consumed from it.
    pub async fn consume_status_events(
        &self,
        prefetch: u16,
    ) -> Result<Box<dyn Consumer>, BusError> {
        let queue = self.declare_status_queue().await?;
        self.subscriber.consume(&queue, prefetch).await
    }

    /// Consumes the host's copy of the dead letters (a durable queue of its own on
    /// `manman.dead`, at most [`DEAD_LETTERS_MAX_LENGTH`] messages), declaring and binding it
    /// first.
    pub async fn consume_dead_commands(
        &self,
        prefetch: u16,
    ) -> Result<Box<dyn Consumer>, BusError> {
        let t = &self.topology;
        let queue = self
            .declare_dead_letter_queue(&t.dead_commands_queue())
            .await?;
        self.subscriber
            .bind_queue(&queue, &t.dead_exchange(), "")
            .await?;
        self.subscriber.consume(&queue, prefetch).await
    }

    /// Consumes the dead letters.
    pub async fn consume_dead_letters(&self, prefetch: u16) -> Result<Box<dyn Consumer>, BusError> {
        self.subscriber
            .consume(&self.topology.dead_letters_queue(), prefetch)
            .await
    }

    /// A live watcher of every event (a temporary queue, holding at most
    /// [`crate::ports::bus::TEMPORARY_QUEUE_MAX_LENGTH`] events: a watcher that falls further
    /// behind loses the oldest).
    pub async fn watch_events(&self) -> Result<Box<dyn Consumer>, BusError> {
        let queue = self
            .subscriber
            .declare_queue(&QueueSpec::temporary())
            .await?;
        self.subscriber
            .bind_queue(&queue, &self.topology.events_exchange(), "")
            .await?;
        self.subscriber.consume(&queue, 256).await
    }

    /// A live watcher of what the hosts recorded (`manman.recorded`; a temporary queue, bounded
    /// like [`Self::watch_events`]'s).
    pub async fn watch_recorded(&self) -> Result<Box<dyn Consumer>, BusError> {
        let queue = self
            .subscriber
            .declare_queue(&QueueSpec::temporary())
            .await?;
        self.subscriber
            .bind_queue(&queue, &self.topology.recorded_exchange(), "")
            .await?;
        self.subscriber.consume(&queue, 256).await
    }

    /// A live watcher of one instance's console, or of all of them (a temporary queue, holding
    /// at most [`crate::ports::bus::TEMPORARY_QUEUE_MAX_LENGTH`] lines: a watcher that falls
    /// further behind loses the oldest; the worker's log file keeps every line).
    pub async fn watch_console(
        &self,
        instance: Option<InstanceId>,
    ) -> Result<Box<dyn Consumer>, BusError> {
        let queue = self
            .subscriber
            .declare_queue(&QueueSpec::temporary())
            .await?;
        let key = instance.map_or_else(|| ALL_CONSOLES.to_owned(), console_routing_key);
        self.subscriber
            .bind_queue(&queue, &self.topology.console_exchange(), &key)
            .await?;
        self.subscriber.consume(&queue, 1024).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::ConsoleStream;
    use crate::memory::MemoryBus;
    use crate::ports::bus::TEMPORARY_QUEUE_MAX_LENGTH;

    #[tokio::test]
    async fn a_slow_console_watcher_keeps_the_newest_lines_up_to_the_limit() {
        let memory = MemoryBus::new();
        let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory.clone()));
        bus.declare().await.unwrap();
        let instance = InstanceId(7);
        let mut watcher = bus.watch_console(Some(instance)).await.unwrap();
        let limit = u64::from(TEMPORARY_QUEUE_MAX_LENGTH);
        let key = crate::signing::BusSecret::generate().worker_key(WorkerId(1), 1);
        for seq in 1..=limit + 5 {
            let line = ConsoleLine {
                instance_id: instance,
                seq,
                stream: ConsoleStream::Stdout,
                text: format!("line {seq}"),
                at: Utc::now(),
            };
            bus.publish_console(&line, &key).await.unwrap();
        }
        // The first temporary queue of a fresh memory bus.
        assert_eq!(
            memory.queue_len("amq.gen-memory-1"),
            Some(TEMPORARY_QUEUE_MAX_LENGTH as usize),
            "the watcher's queue stays at its limit"
        );
        let first = watcher.next().await.unwrap().unwrap();
        let line: ConsoleLine = first.message.decode().unwrap();
        assert_eq!(line.seq, 6, "the five oldest lines were dropped");
    }
}
