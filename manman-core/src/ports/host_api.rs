//! The host as a worker sees it: register, heartbeat, fetch configs, hand over console tails. In-process for
//! `manman up` ([`crate::host::LocalHostApi`]), HTTP between machines (`manman-http`).

use crate::config::GameServerConfig;
use crate::console::ConsoleTail;
use crate::game_server::GameServer;
use crate::id::{InstanceId, WorkerId};
use crate::worker::{Heartbeat, Registered, WorkerRegistration};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// A config with its game: all a worker needs to start it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigBundle {
    /// The game.
    pub game: GameServer,
    /// The config.
    pub config: GameServerConfig,
}

/// The worker-facing side of the host.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait HostApi: Send + Sync + Debug + 'static {
    /// Registers this worker (a new epoch).
    async fn register(&self, registration: &WorkerRegistration)
    -> Result<Registered, HostApiError>;
    /// Reports liveness and inventory. [`HostApiError::Superseded`] when a newer epoch exists.
    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), HostApiError>;
    /// The config of an instance placed on `worker`'s current registration and not ended yet,
    /// with its game: what the worker starts it with. Anything else is refused (`NotFound`,
    /// `Invalid`): a worker starts only what the host confirms is its own to start.
    async fn fetch_instance_config(
        &self,
        worker: WorkerId,
        instance: InstanceId,
    ) -> Result<ConfigBundle, HostApiError>;
    /// Hands the host the last lines of an ended instance's console (read from the worker's
    /// log), so that its console can be read after any restart. Only for an instance placed on
    /// `worker` (any registration of it); else `Invalid` or `NotFound`.
    async fn keep_console_tail(
        &self,
        worker: WorkerId,
        instance: InstanceId,
        tail: &ConsoleTail,
    ) -> Result<(), HostApiError>;
}

/// What can go wrong talking to the host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostApiError {
    /// A newer registration of this worker exists: this one must stop.
    #[error("{worker_id} epoch {epoch} was superseded by a newer registration")]
    Superseded {
        /// The worker.
        worker_id: WorkerId,
        /// The old epoch.
        epoch: i64,
    },
    /// It does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// What.
        what: String,
    },
    /// The request was refused as invalid.
    #[error("the host refused the request: {detail}")]
    Invalid {
        /// Why.
        detail: String,
    },
    /// The worker's credentials were refused.
    #[error("the host refused this worker's credentials: {detail}")]
    Unauthorized {
        /// Why.
        detail: String,
    },
    /// The host cannot be reached now: retry later.
    #[error("the host is unavailable: {detail}")]
    Unavailable {
        /// Why.
        detail: String,
    },
}

impl HostApiError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}
