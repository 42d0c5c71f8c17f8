//! The message topology of spec §3: exchange, queue and routing-key names.
//!
//! | exchange | type | routing key | carries |
//! |---|---|---|---|
//! | `manman.commands` | direct | `worker.{worker_id}` | commands to one worker |
//! | `manman.events` | fanout | none | status reports, command results (from workers) |
//! | `manman.recorded` | fanout | none | the events a host recorded, after its store committed them (to every host's event hub) |
//! | `manman.console` | topic | `instance.{instance_id}` | numbered console lines |
//! | `manman.dead` | fanout | none | dead letters (rejected, expired) |
//!
//! A [`Topology`] may carry a prefix so that tests sharing one broker never see each other's
//! messages; production uses the names above as they are.

use crate::id::{InstanceId, WorkerId};
use crate::ports::ExchangeKind;

/// The names of every exchange and queue, optionally prefixed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// The names of spec §3, unprefixed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every name starts with `prefix` (e.g. `test-3f2a.`).
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// `manman.commands` (direct).
    pub fn commands_exchange(&self) -> String {
        self.name("manman.commands")
    }

    /// `manman.events` (fanout).
    pub fn events_exchange(&self) -> String {
        self.name("manman.events")
    }

    /// `manman.recorded` (fanout): what a host's status processor recorded, once its store
    /// committed it, sealed by the host — what every replica's `/events` stream carries.
    pub fn recorded_exchange(&self) -> String {
        self.name("manman.recorded")
    }

    /// `manman.console` (topic).
    pub fn console_exchange(&self) -> String {
        self.name("manman.console")
    }

    /// `manman.dead` (fanout).
    pub fn dead_exchange(&self) -> String {
        self.name("manman.dead")
    }

    /// `manman.dead-letters`, bound to `manman.dead`, holding at most
    /// [`DEAD_LETTERS_MAX_LENGTH`] (the oldest are dropped).
    pub fn dead_letters_queue(&self) -> String {
        self.name("manman.dead-letters")
    }

    /// `host.status-processor.events`: the status processor's shared queue.
    pub fn status_processor_queue(&self) -> String {
        self.name("host.status-processor.events")
    }

    /// `host.dead-letters.commands`: the host's copy of the dead letters, to record commands
    /// that expired or were refused (`manman.dead-letters` stays for inspection); it holds at
    /// most [`DEAD_LETTERS_MAX_LENGTH`] too.
    pub fn dead_commands_queue(&self) -> String {
        self.name("host.dead-letters.commands")
    }

    /// `worker.{id}.commands`.
    pub fn worker_commands_queue(&self, worker: WorkerId) -> String {
        self.name(&format!("worker.{}.commands", worker.get()))
    }

    /// Every exchange with its kind, in declaration order.
    pub fn exchanges(&self) -> [(String, ExchangeKind); 5] {
        [
            (self.dead_exchange(), ExchangeKind::Fanout),
            (self.commands_exchange(), ExchangeKind::Direct),
            (self.events_exchange(), ExchangeKind::Fanout),
            (self.recorded_exchange(), ExchangeKind::Fanout),
            (self.console_exchange(), ExchangeKind::Topic),
        ]
    }
}

/// The most dead letters `manman.dead-letters` and the host's copy `host.dead-letters.commands`
/// each hold. One more makes the queue drop its oldest (AMQP `x-max-length` with
/// `x-overflow: drop-head`): whoever floods the dead letters pushes out old ones, never fills
/// the broker. 10,000 is days of dead letters of a healthy system and far more than anyone reads.
pub const DEAD_LETTERS_MAX_LENGTH: u32 = 10_000;

/// The routing key of a worker's commands: `worker.{id}`.
pub fn worker_routing_key(worker: WorkerId) -> String {
    format!("worker.{}", worker.get())
}

/// The routing key of an instance's console lines: `instance.{id}`.
pub fn console_routing_key(instance: InstanceId) -> String {
    format!("instance.{}", instance.get())
}

/// The binding pattern for every instance's console: `instance.*`.
pub const ALL_CONSOLES: &str = "instance.*";

/// Message `type` of a command.
pub const KIND_COMMAND: &str = "command";
/// Message `type` of a console line.
pub const KIND_CONSOLE_LINE: &str = "console_line";
/// The message `type` of a batch of recorded events on `manman.recorded` (a JSON array of
/// events, in the order they were recorded).
pub const KIND_RECORDED: &str = "recorded";
