//! The host's services: orchestration ([`HostService`]), the [`HostRuntime`] that runs the
//! background ones ([`BackgroundService`]), the [`StatusProcessor`], the
//! [`ConsoleHub`] (console backlog and live lines), the [`EventHub`] (events for the SSE
//! stream), the [`Authenticator`] (tokens and worker credentials), and [`LocalHostApi`] for an
//! in-process worker.

mod authenticator;
mod background_service;
mod bus_keys;
mod catalogue;
mod command_sender;
mod command_sweep;
mod console_hub;
mod consumption;
mod dead_commands;
mod dead_letters;
mod error;
mod event_hub;
mod instances;
mod lease_sweep;
mod local_host_api;
mod metrics;
mod placement;
mod reconcile;
mod retention;
mod runtime;
mod sender_check;
mod service;
mod status_processor;
mod supervision;
mod worker_gateway;
mod workers;

pub use authenticator::{
    Authenticator, CACHE_TTL, MIN_SIGNING_KEY, SigningKey, WORKER_TOKEN_TTL, WorkerToken,
};
pub use background_service::{BackgroundService, FnService, ServiceError, service_fn};
pub use bus_keys::BusKeys;
pub use catalogue::Catalogue;
pub use command_sender::CommandSender;
pub use command_sweep::{CommandExpiry, CommandSweep, EXPIRED_UNTAKEN};
pub use console_hub::{
    ASK_TAIL_EVERY, BACKLOG_LINES, CLOSE_AFTER_END, ConsoleHub, ConsoleItem, ConsoleSubscription,
    KEEP_AFTER_END, READ_CHUNK, SharedLine,
};
pub use consumption::Consumption;
pub use dead_commands::DeadCommands;
pub use dead_letters::{DEAD_LETTER_RECORD, DeadLetter, DeadLetterReason, DeadLetters};
pub use error::{ErrorSource, HostError};
pub use event_hub::{EVENT_BUFFER, EventHub, EventItem, EventSubscription, SharedEvent};
pub use instances::{Instances, StartRequest, Started};
pub use lease_sweep::{Lease, LeaseSweep};
pub use local_host_api::LocalHostApi;
pub use metrics::{Metrics, StoreSnapshot};
pub use retention::{Pruned, Retention, RetentionPolicy};
pub use runtime::{HostRuntime, RunningHost, RuntimeOptions, STOP_TIMEOUT};
pub use service::{HostService, RECONCILIATION, Readiness};
pub use status_processor::StatusProcessor;
pub use supervision::{FIRST_RESTART_PAUSE, MAX_RESTART_PAUSE, SERVICE_GRACE};
pub use worker_gateway::WorkerGateway;
pub use workers::Workers;
