//! How ManMan's exchanges, queues and bindings are declared in AMQP.
//!
//! - exchanges: durable, never auto-deleted;
//! - named queues ([`QueueSpec::durable`]): durable, not exclusive, not auto-deleted;
//! - temporary queues ([`QueueSpec::temporary`]): exclusive to the connection, auto-deleted with
//!   their consumer. The adapter names them (`{connection name}.temporary.{random}`) rather than
//!   the broker, because a broker-chosen `amq.gen-…` name cannot be declared again when the
//!   connection is recovered;
//! - a queue's dead-letter exchange: argument `x-dead-letter-exchange`;
//! - a queue's length limit ([`QueueSpec::max_length`], every temporary queue has one):
//!   arguments `x-max-length` and `x-overflow: drop-head` (the oldest is dropped; publishers are
//!   never refused). Of the durable queues only the dead letters have one, from their first
//!   declaration: a queue declared again with other arguments is refused by the broker
//!   (`PRECONDITION_FAILED`, a [`BusError::Conflict`]).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind as AmqpKind};
use manman_core::ports::{BusError, ExchangeKind, QueueSpec};

/// The AMQP argument naming a queue's dead-letter exchange.
const DEAD_LETTER_EXCHANGE: &str = "x-dead-letter-exchange";
/// The AMQP argument limiting how many ready messages a queue holds.
const MAX_LENGTH: &str = "x-max-length";
/// The AMQP argument saying what a full queue does with one more message.
const OVERFLOW: &str = "x-overflow";
/// Drop the oldest message (dead-lettered when the queue has a dead-letter exchange).
const DROP_HEAD: &str = "drop-head";

/// One declaration, kept to be made again after a recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Declaration {
    /// An exchange.
    Exchange {
        /// Its name.
        name: String,
        /// Its kind.
        kind: ExchangeKind,
    },
    /// A queue (its spec's name is the declared name).
    Queue(QueueSpec),
    /// A binding.
    Binding(Binding),
}

/// A queue bound to an exchange.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub struct Binding {
    /// The queue.
    pub queue: String,
    /// The exchange.
    pub exchange: String,
    /// The routing key (or pattern).
    pub routing_key: String,
}

impl Binding {
    /// `queue` bound to `exchange` with `routing_key`.
    pub(crate) fn new(queue: &str, exchange: &str, routing_key: &str) -> Self {
        Self {
            queue: queue.to_owned(),
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
        }
    }
}

impl Declaration {
    /// What it is about, for errors and logs.
    pub(crate) fn what(&self) -> String {
        match self {
            Self::Exchange { name, .. } => exchange_what(name),
            Self::Queue(spec) => queue_what(&spec.name),
            Self::Binding(b) => binding_what(b),
        }
    }

    /// Declares it on `channel`.
    pub(crate) async fn apply(&self, channel: &Channel) -> Result<(), lapin::Error> {
        match self {
            Self::Exchange { name, kind } => exchange(channel, name, *kind).await,
            Self::Queue(spec) => queue(channel, spec).await.map(drop),
            Self::Binding(b) => bind(channel, b).await,
        }
    }
}

/// `exchange "name"`.
pub(crate) fn exchange_what(name: &str) -> String {
    format!("exchange {name:?}")
}

/// `queue "name"`.
pub(crate) fn queue_what(name: &str) -> String {
    format!("queue {name:?}")
}

/// `binding of queue "q" to exchange "x" with key "k"`.
pub(crate) fn binding_what(b: &Binding) -> String {
    format!(
        "binding of queue {:?} to exchange {:?} with key {:?}",
        b.queue, b.exchange, b.routing_key
    )
}

/// A name as an AMQP short string (at most 255 bytes).
pub(crate) fn short(name: &str, what: &str) -> Result<ShortString, BusError> {
    ShortString::try_new(name).map_err(|e| BusError::Encode {
        detail: format!("{what}: the name is too long for AMQP: {e}"),
    })
}

/// Declares a durable exchange.
pub(crate) async fn exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), lapin::Error> {
    let kind = match kind {
        ExchangeKind::Direct => AmqpKind::Direct,
        ExchangeKind::Fanout => AmqpKind::Fanout,
        ExchangeKind::Topic => AmqpKind::Topic,
    };
    channel
        .exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Declares a queue (named: its spec's name must not be empty); returns its name.
pub(crate) async fn queue(channel: &Channel, spec: &QueueSpec) -> Result<String, lapin::Error> {
    let options = if spec.temporary {
        QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        }
    } else {
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        }
    };
    let mut arguments = FieldTable::default();
    if let Some(dlx) = &spec.dead_letter_exchange {
        arguments.insert(
            DEAD_LETTER_EXCHANGE.into(),
            AMQPValue::LongString(dlx.as_str().into()),
        );
    }
    if let Some(max_length) = spec.max_length {
        arguments.insert(
            MAX_LENGTH.into(),
            AMQPValue::LongLongInt(i64::from(max_length)),
        );
        arguments.insert(OVERFLOW.into(), AMQPValue::LongString(DROP_HEAD.into()));
    }
    let queue = channel
        .queue_declare(spec.name.as_str().into(), options, arguments)
        .await?;
    Ok(queue.name().as_str().to_owned())
}

/// Binds a queue to an exchange.
pub(crate) async fn bind(channel: &Channel, binding: &Binding) -> Result<(), lapin::Error> {
    channel
        .queue_bind(
            binding.queue.as_str().into(),
            binding.exchange.as_str().into(),
            binding.routing_key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Checks that every name of a declaration fits AMQP, before anything is sent.
pub(crate) fn check(declaration: &Declaration) -> Result<(), BusError> {
    let what = declaration.what();
    match declaration {
        Declaration::Exchange { name, .. } => short(name, &what).map(drop),
        Declaration::Queue(spec) => {
            short(&spec.name, &what)?;
            if let Some(dlx) = &spec.dead_letter_exchange {
                short(dlx, &what)?;
            }
            Ok(())
        }
        Declaration::Binding(b) => {
            short(&b.queue, &what)?;
            short(&b.exchange, &what)?;
            short(&b.routing_key, &what).map(drop)
        }
    }
}
