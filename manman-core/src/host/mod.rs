//! The host's services: orchestration ([`HostService`]), the [`StatusProcessor`], the
//! [`ConsoleHub`] (console backlog and live lines), the [`EventHub`] (events for the SSE
//! stream), the [`Authenticator`] (tokens and worker credentials), and [`LocalHostApi`] for an
//! in-process worker.

mod authenticator;
mod bus_keys;
mod command_sweep;
mod console_history;
mod console_hub;
mod consumption;
mod dead_commands;
mod dead_letters;
mod error;
mod event_hub;
mod lease_sweep;
mod local_host_api;
mod metrics;
mod placement;
mod reconcile;
mod retention;
mod sender_check;
mod service;
mod status_processor;

pub use authenticator::{
    Authenticator, CACHE_TTL, MIN_SIGNING_KEY, SigningKey, WORKER_TOKEN_TTL, WorkerToken,
};
pub use bus_keys::BusKeys;
pub use command_sweep::{CommandExpiry, CommandSweep, EXPIRED_UNTAKEN};
pub use console_hub::{
    ASK_TAIL_EVERY, BACKLOG_LINES, CLOSE_AFTER_END, ConsoleHub, ConsoleItem, ConsoleSubscription,
    KEEP_AFTER_END, READ_CHUNK, SharedLine,
};
pub use consumption::Consumption;
pub use dead_commands::DeadCommands;
pub use dead_letters::{DEAD_LETTER_RECORD, DeadLetter, DeadLetterReason, DeadLetters};
pub use error::HostError;
pub use event_hub::{EVENT_BUFFER, EventHub, EventItem, EventSubscription, SharedEvent};
pub use lease_sweep::{Lease, LeaseSweep};
pub use local_host_api::LocalHostApi;
pub use metrics::{Metrics, StoreSnapshot};
pub use retention::{Pruned, Retention, RetentionPolicy};
pub use service::{HostService, RECONCILIATION, Readiness, StartRequest, Started};
pub use status_processor::StatusProcessor;
