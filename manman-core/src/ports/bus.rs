//! The message ports: AMQP-shaped exchanges, queues and deliveries with ack, requeue and
//! dead-lettering. The topology itself is in [`crate::topology`]; typed sending in [`crate::bus`].

use crate::signing::Seal;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use uuid::Uuid;

/// A message: JSON body plus the AMQP properties ManMan sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unique id (AMQP `message_id`); consumers deduplicate by it.
    pub id: Uuid,
    /// What the body is (AMQP `type`), e.g. `command`, `status`, `console_line`.
    pub kind: String,
    /// When it was sent (AMQP `timestamp`).
    pub timestamp: DateTime<Utc>,
    /// The request it belongs to (AMQP `correlation_id`).
    pub correlation_id: Option<String>,
    /// After this it is dead-lettered instead of delivered (AMQP per-message `expiration`).
    pub expires_at: Option<DateTime<Utc>>,
    /// The JSON body (`content_type=application/json`).
    pub body: Vec<u8>,
    /// Who vouches for it: the worker registration it is for (a command) or from (an event, a
    /// console line), with its signature ([`crate::signing`]). `None`: unsigned, and refused by
    /// every receiver.
    pub seal: Option<Seal>,
}

impl Message {
    /// A message of `kind` whose body is `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(
        kind: impl Into<String>,
        value: &T,
        timestamp: DateTime<Utc>,
    ) -> Result<Self, BusError> {
        let body = serde_json::to_vec(value).map_err(|e| BusError::Encode {
            detail: e.to_string(),
        })?;
        Ok(Self {
            id: Uuid::new_v4(),
            kind: kind.into(),
            timestamp,
            correlation_id: None,
            expires_at: None,
            body,
            seal: None,
        })
    }

    /// The body parsed as `T`; the error names the message id and what did not parse.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, BusError> {
        serde_json::from_slice(&self.body).map_err(|e| BusError::Malformed {
            message_id: self.id,
            detail: format!("{} body does not parse: {e}", self.kind),
        })
    }
}

/// How an exchange routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// To queues bound with exactly the routing key.
    Direct,
    /// To every bound queue.
    Fanout,
    /// To queues whose binding pattern matches (`*` one word, `#` zero or more).
    Topic,
}

/// The most messages a temporary queue holds waiting for its watcher
/// ([`QueueSpec::temporary`]): a watcher that falls this far behind loses the oldest.
pub const TEMPORARY_QUEUE_MAX_LENGTH: u32 = 10_000;

/// A queue to declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// Its name; empty for a server-named queue.
    pub name: String,
    /// Temporary: exclusive to this connection and deleted with its consumer.
    /// Otherwise durable and kept when nobody consumes.
    pub temporary: bool,
    /// Where rejected and expired messages go.
    pub dead_letter_exchange: Option<String>,
    /// The most messages it holds ready for delivery (unsettled deliveries do not count); a
    /// message published to a full queue makes it drop its oldest (dead-lettered, when the
    /// queue has a dead-letter exchange). Publishers are never blocked or refused by it: AMQP
    /// `x-max-length` with `x-overflow: drop-head`. `None`: no limit.
    pub max_length: Option<u32>,
}

impl QueueSpec {
    /// A durable, named queue.
    pub fn durable(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            temporary: false,
            dead_letter_exchange: None,
            max_length: None,
        }
    }

    /// A server-named, exclusive, auto-delete queue for a live watcher, holding at most
    /// [`TEMPORARY_QUEUE_MAX_LENGTH`] messages: a slow watcher loses the oldest, and never
    /// holds up publishers or grows the broker.
    pub fn temporary() -> Self {
        Self {
            name: String::new(),
            temporary: true,
            dead_letter_exchange: None,
            max_length: Some(TEMPORARY_QUEUE_MAX_LENGTH),
        }
    }

    /// Holds at most `max_length` ready messages, dropping the oldest beyond.
    pub fn with_max_length(mut self, max_length: u32) -> Self {
        self.max_length = Some(max_length);
        self
    }

    /// Dead-letters into `exchange`.
    pub fn dead_letter_to(mut self, exchange: impl Into<String>) -> Self {
        self.dead_letter_exchange = Some(exchange.into());
        self
    }
}

/// Publishes messages and declares exchanges. Declarations are idempotent.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessagePublisher: Send + Sync + Debug + 'static {
    /// Declares an exchange (durable); a no-op when it exists with the same kind.
    async fn declare_exchange(&self, name: &str, kind: ExchangeKind) -> Result<(), BusError>;

    /// Publishes persistently and waits until the bus has accepted it. A message that reaches no
    /// queue is [`BusError::Unroutable`], never dropped silently.
    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Message,
    ) -> Result<(), BusError>;
}

/// Declares queues and consumes them. Declarations are idempotent.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessageSubscriber: Send + Sync + Debug + 'static {
    /// Declares a queue and returns its name (the server's choice for a temporary one).
    async fn declare_queue(&self, spec: &QueueSpec) -> Result<String, BusError>;

    /// Binds a queue to an exchange with a routing key (or pattern, for topic exchanges).
    async fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), BusError>;

    /// Starts consuming; at most `prefetch` deliveries are unsettled at once (0: no limit).
    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, BusError>;
}

/// A stream of deliveries from one queue.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Consumer: Send + Debug {
    /// The next delivery; `None` once the consumer is closed or its queue was deleted (by an
    /// operator or another client). A consumer that must go on declares its queue and binds
    /// it again, then consumes anew ([`crate::bus::Bus`]'s `consume_…` methods do both).
    async fn next(&mut self) -> Option<Result<Delivery, BusError>>;
}

/// Settles a delivery; each delivery is settled at most once.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Acker: Send + Sync + Debug {
    /// Handled: remove it.
    async fn ack(&self) -> Result<(), BusError>;
    /// Not handled now: deliver it again (marked redelivered).
    async fn requeue(&self) -> Result<(), BusError>;
    /// Never handleable: send it to the queue's dead-letter exchange.
    async fn dead_letter(&self) -> Result<(), BusError>;
}

/// One message handed to a consumer, to be settled after handling.
#[derive(Debug)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// How many times it has been delivered, this one included (1 the first time). Adapters
    /// whose broker only says "redelivered" (RabbitMQ classic queues) count what they can see,
    /// at least 2 for a redelivery.
    pub delivery_count: u32,
    /// Settles it.
    pub acker: Box<dyn Acker>,
}

impl Delivery {
    /// Whether it was delivered before.
    pub fn redelivered(&self) -> bool {
        self.delivery_count > 1
    }

    /// Acknowledges it.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }

    /// Puts it back for redelivery.
    pub async fn requeue(self) -> Result<(), BusError> {
        self.acker.requeue().await
    }

    /// Sends it to the dead-letter exchange.
    pub async fn dead_letter(self) -> Result<(), BusError> {
        self.acker.dead_letter().await
    }
}

/// What can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// No queue is bound for the message: nobody would receive it.
    #[error(
        "message {message_id} to exchange {exchange:?} with key {routing_key:?} reached no queue: \
         is the receiver registered and its queue declared?"
    )]
    Unroutable {
        /// The message.
        message_id: Uuid,
        /// Its exchange.
        exchange: String,
        /// Its routing key.
        routing_key: String,
    },
    /// The bus refused the message (negative publisher confirm).
    #[error("the bus refused message {message_id}")]
    Rejected {
        /// The message.
        message_id: Uuid,
    },
    /// An exchange or queue does not exist.
    #[error("{what} does not exist: declare the topology first")]
    NotFound {
        /// What is missing, e.g. `queue "worker.3.commands"`.
        what: String,
    },
    /// A declaration contradicts an existing one.
    #[error("{what}: {detail}")]
    Conflict {
        /// The exchange or queue.
        what: String,
        /// How it differs.
        detail: String,
    },
    /// A message body does not parse; it is dead-lettered, never retried.
    #[error("message {message_id} is malformed: {detail}")]
    Malformed {
        /// The message.
        message_id: Uuid,
        /// What did not parse.
        detail: String,
    },
    /// A value could not be encoded as JSON.
    #[error("could not encode a message: {detail}")]
    Encode {
        /// Why.
        detail: String,
    },
    /// The bus is unreachable for now: retry later.
    #[error("the message bus is unavailable: {source}")]
    Unavailable {
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The consumer or connection was closed.
    #[error(
        "the message bus connection is closed: the service using it stops; check the broker and restart it"
    )]
    Closed,
}

impl BusError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}
