//! [`RabbitBus`]: the message ports on RabbitMQ.

use crate::connection::{FIRST_PAUSE, Link};
use crate::consumer::RabbitConsumer;
use crate::declarations::{self, Binding, Declaration};
use crate::error::{ConnectError, bus_error, is_transient};
use crate::publisher::{self, PublisherChannel};
use crate::settings::RabbitSettings;
use crate::topology_record::{DeclaredTopology, TopologyRecord};
use async_trait::async_trait;
use futures::StreamExt;
use lapin::{Channel, Connection, Event};
use manman_core::ports::{
    BusError, Consumer, ExchangeKind, Message, MessagePublisher, MessageSubscriber, QueueSpec,
};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest pause between two attempts while the broker is away.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// How long [`RabbitBus::close`] waits for its tasks.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// How long [`RabbitBus::close`] waits for a connection being recovered to come back, before
/// leaving its closing to a task.
const LINK_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// RabbitMQ as ManMan's message bus: one connection per process, a channel per role.
///
/// It implements both [`MessagePublisher`] and [`MessageSubscriber`]; cloning shares the
/// connection. Publishing is confirmed by the broker (and waits, up to
/// [`RabbitSettings::publish_wait`], while the broker is away); each consumer has its own
/// channel and prefetch; everything declared through it is declared again after a recovery.
/// See the crate documentation for the topology and the guarantees.
#[derive(Clone)]
pub struct RabbitBus {
    shared: Arc<Shared>,
}

/// What every handle and consumer of one bus shares.
pub(crate) struct Shared {
    pub(crate) link: Link,
    pub(crate) record: TopologyRecord,
    pub(crate) publisher: PublisherChannel,
    /// Cancelled when the bus is closed or dropped: waits end, tasks stop.
    pub(crate) closed: CancellationToken,
    /// The tasks the bus spawned (connection event watchers, late channel closes).
    pub(crate) tasks: TaskTracker,
}

impl RabbitBus {
    /// Connects to the broker of `settings.url`, trying until `settings.connect_timeout`.
    pub async fn connect(settings: &RabbitSettings) -> Result<Self, ConnectError> {
        let link = Link::connect(settings).await?;
        let shared = Arc::new(Shared {
            link,
            record: TopologyRecord::default(),
            publisher: PublisherChannel::default(),
            closed: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        if let Ok((connection, _)) = shared.link.connection().await {
            shared.watch(&connection);
        }
        tracing::info!(url = %settings.redacted_url(), connection_name = %settings.connection_name, "connected to RabbitMQ");
        Ok(Self { shared })
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &RabbitSettings {
        self.shared.link.settings()
    }

    /// Whether the connection is up right now (for readiness checks): `false` while it
    /// recovers.
    pub fn is_connected(&self) -> bool {
        self.shared.link.is_connected()
    }

    /// What was declared through this bus and is declared again after a recovery (temporary
    /// queues aside).
    pub fn declared(&self) -> DeclaredTopology {
        self.shared.record.snapshot()
    }

    /// Closes the connection: publishing then fails with [`BusError::Closed`] and consumers
    /// end. Waits (a few seconds at most) for the broker and the bus's tasks. A connection that
    /// lapin is recovering is closed as soon as it is back (by a task, if that takes longer),
    /// so that nothing consumes for a closed bus.
    pub async fn close(&self) {
        self.shared.closed.cancel();
        self.shared.tasks.close();
        let _ = tokio::time::timeout(CLOSE_WAIT, self.shared.tasks.wait()).await;
        self.shared
            .link
            .close(LINK_CLOSE_WAIT, &self.shared.tasks)
            .await;
    }
}

impl fmt::Debug for RabbitBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitBus")
            .field("settings", self.settings())
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("link", &self.link)
            .field("closed", &self.closed.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Ends the watchers and closes the connection (once it is back, if it is recovering).
        self.closed.cancel();
        self.tasks.close();
        self.link.close_soon(&self.tasks);
    }
}

impl Shared {
    /// The connection; after a new one had to be opened, the topology is declared on it first.
    pub(crate) async fn connection(self: &Arc<Self>) -> Result<Arc<Connection>, BusError> {
        if self.closed.is_cancelled() {
            return Err(BusError::Closed);
        }
        let (connection, new) = self.link.connection().await?;
        if new {
            self.watch(&connection);
            self.replay().await;
        }
        Ok(connection)
    }

    /// Sleeps `pause` (or until `deadline`, if sooner); `false` when the deadline had passed
    /// already or the bus closes.
    pub(crate) async fn pause(&self, pause: Duration, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep_until((now + pause).min(deadline)) => true,
            () = self.closed.cancelled() => false,
        }
    }

    /// The next pause after `pause`.
    pub(crate) fn longer(pause: Duration) -> Duration {
        (pause * 2).min(MAX_PAUSE)
    }

    /// Logs the connection's events and declares the topology again after each recovery.
    fn watch(self: &Arc<Self>, connection: &Connection) {
        let events = connection.events_listener();
        let generation = self.link.generation();
        let shared = Arc::downgrade(self);
        let closed = self.closed.clone();
        self.tasks.spawn(async move {
            futures::pin_mut!(events);
            loop {
                let event = tokio::select! {
                    event = events.next() => event,
                    () = closed.cancelled() => break,
                };
                let (Some(event), Some(shared)) = (event, shared.upgrade()) else {
                    break;
                };
                if shared.link.generation() != generation {
                    // This connection was replaced; its successor has its own watcher.
                    break;
                }
                match event {
                    Event::Connected => {
                        tracing::info!("the connection to RabbitMQ is recovered; declaring the topology again");
                        shared.replay().await;
                    }
                    Event::Error(error) => {
                        tracing::warn!(%error, "RabbitMQ connection error: recovering");
                    }
                    Event::ConnectionBlocked(reason) => {
                        tracing::warn!(%reason, "RabbitMQ blocks publishing (resource alarm): publishers wait");
                    }
                    Event::ConnectionUnblocked => {
                        tracing::info!("RabbitMQ accepts publishing again");
                    }
                    other => tracing::debug!(event = ?other, "RabbitMQ connection event"),
                }
            }
        });
    }

    /// Declares the recorded topology again (after a recovery or on a new connection). Each
    /// failure is logged and the rest goes on.
    async fn replay(self: &Arc<Self>) {
        let plan = self.record.replay();
        if plan.is_empty() {
            return;
        }
        let mut channel: Option<Channel> = None;
        let mut failures = 0_usize;
        for declaration in &plan {
            let usable = channel.as_ref().is_some_and(|c| c.status().connected());
            if !usable {
                channel = match self.link.connection().await {
                    Ok((connection, new)) => {
                        if new {
                            self.watch(&connection);
                        }
                        connection.create_channel().await.ok()
                    }
                    Err(_) => None,
                };
            }
            let Some(current) = &channel else {
                tracing::warn!(
                    "cannot declare the topology again now: no channel; it is declared on the next recovery"
                );
                return;
            };
            if let Err(error) = declaration.apply(current).await {
                failures += 1;
                tracing::warn!(what = %declaration.what(), %error, "could not declare again after a recovery");
            }
        }
        if let Some(channel) = channel {
            let _ = channel.close(200, "OK".into()).await;
        }
        tracing::debug!(
            declarations = plan.len(),
            failures,
            "topology declared again"
        );
    }

    /// Makes a declaration on a short-lived channel, waiting (up to the publish wait) while the
    /// broker is away, and records it. Returns the declared queue's name for a queue.
    ///
    /// A short-lived channel, not a long-lived one: lapin replays what was declared on a channel
    /// when it recovers it, in no set order with the other channels, and a failed replay ends the
    /// whole connection. The record replays instead, in order and failure by failure.
    pub(crate) async fn declare(
        self: &Arc<Self>,
        declaration: &Declaration,
    ) -> Result<String, BusError> {
        declarations::check(declaration)?;
        let what = declaration.what();
        let deadline = Instant::now() + self.link.settings().publish_wait;
        let mut pause = FIRST_PAUSE;
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.declare_once(declaration))
                .await
                .unwrap_or_else(|_| {
                    Err(Attempt::Final(BusError::Unavailable {
                        source: format!(
                            "{what}: no answer from the broker within the publish wait"
                        )
                        .into(),
                    }))
                });
            let error = match attempt {
                Ok(name) => {
                    self.record.remember(declaration);
                    return Ok(name);
                }
                Err(Attempt::Final(error)) => return Err(error),
                Err(Attempt::Retry(error)) => error,
            };
            if !self.pause(pause, deadline).await {
                if self.closed.is_cancelled() {
                    return Err(BusError::Closed);
                }
                return Err(BusError::Unavailable {
                    source: format!("{what}: the broker stayed away: {error}").into(),
                });
            }
            pause = Self::longer(pause);
        }
    }

    async fn declare_once(self: &Arc<Self>, declaration: &Declaration) -> Result<String, Attempt> {
        let what = declaration.what();
        // A binding of a temporary queue that a consumer reads goes on that consumer's channel,
        // so that the channel's recovery binds it again.
        if let Declaration::Binding(binding) = declaration
            && let Some(owner) = self.record.owner(&binding.queue)
        {
            return declarations::bind(&owner, binding)
                .await
                .map(|()| binding.queue.clone())
                .map_err(|e| Attempt::from_lapin(e, &what));
        }
        let connection = self.connection().await.map_err(Attempt::from_bus)?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| Attempt::from_lapin(e, &what))?;
        let result = match declaration {
            Declaration::Queue(spec) => declarations::queue(&channel, spec).await,
            other => other.apply(&channel).await.map(|()| String::new()),
        };
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
        result.map_err(|e| {
            let what = binding_aware_what(declaration, &e);
            Attempt::from_lapin(e, &what)
        })
    }
}

/// For a failed binding, which side is missing.
fn binding_aware_what(declaration: &Declaration, error: &lapin::Error) -> String {
    if let Declaration::Binding(b) = declaration
        && let Some((_, text)) = crate::error::soft_error(error)
    {
        if text.contains("no exchange") {
            return declarations::exchange_what(&b.exchange);
        }
        if text.contains("no queue") {
            return declarations::queue_what(&b.queue);
        }
    }
    declaration.what()
}

/// The outcome of one attempt at something the broker may be away for.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Failed for good.
    Final(BusError),
    /// The broker or the link is away: try again.
    Retry(BusError),
}

impl Attempt {
    pub(crate) fn from_lapin(error: lapin::Error, what: &str) -> Self {
        let transient = is_transient(&error);
        let mapped = bus_error(error, what);
        if transient {
            Self::Retry(mapped)
        } else {
            Self::Final(mapped)
        }
    }

    pub(crate) fn from_bus(error: BusError) -> Self {
        if error.is_transient() {
            Self::Retry(error)
        } else {
            Self::Final(error)
        }
    }
}

#[async_trait]
impl MessagePublisher for RabbitBus {
    async fn declare_exchange(&self, name: &str, kind: ExchangeKind) -> Result<(), BusError> {
        self.shared
            .declare(&Declaration::Exchange {
                name: name.to_owned(),
                kind,
            })
            .await
            .map(drop)
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Message,
    ) -> Result<(), BusError> {
        publisher::publish(&self.shared, exchange, routing_key, &message).await
    }
}

#[async_trait]
impl MessageSubscriber for RabbitBus {
    async fn declare_queue(&self, spec: &QueueSpec) -> Result<String, BusError> {
        let mut spec = spec.clone();
        if spec.name.is_empty() {
            spec.name = format!(
                "{}.temporary.{}",
                self.settings().connection_name,
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            );
        }
        self.shared.declare(&Declaration::Queue(spec)).await
    }

    async fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), BusError> {
        self.shared
            .declare(&Declaration::Binding(Binding::new(
                queue,
                exchange,
                routing_key,
            )))
            .await
            .map(drop)
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, BusError> {
        let consumer = RabbitConsumer::start(Arc::clone(&self.shared), queue, prefetch).await?;
        Ok(Box::new(consumer))
    }
}
