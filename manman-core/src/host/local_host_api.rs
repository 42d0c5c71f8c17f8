//! [`LocalHostApi`]: the worker-facing host API, in-process (for `manman up`).

use crate::console::ConsoleTail;
use crate::host::{HostError, HostService};
use crate::id::{InstanceId, WorkerId};
use crate::ports::{ConfigBundle, HostApi, HostApiError};
use crate::worker::{Heartbeat, Registered, WorkerRegistration};
use async_trait::async_trait;

/// A worker in the host's own process talks to the host through this.
#[derive(Debug, Clone)]
pub struct LocalHostApi {
    host: HostService,
}

impl LocalHostApi {
    /// The worker-facing API of `host`.
    pub fn new(host: HostService) -> Self {
        Self { host }
    }
}

fn to_api_error(e: HostError) -> HostApiError {
    match e {
        HostError::NotFound { what } => HostApiError::NotFound { what },
        HostError::Unavailable { detail, .. } => HostApiError::Unavailable { detail },
        other => HostApiError::Invalid {
            detail: other.to_string(),
        },
    }
}

#[async_trait]
impl HostApi for LocalHostApi {
    async fn register(
        &self,
        registration: &WorkerRegistration,
    ) -> Result<Registered, HostApiError> {
        self.host
            .gateway()
            .register_worker(registration)
            .await
            .map_err(to_api_error)
    }

    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), HostApiError> {
        self.host
            .gateway()
            .heartbeat(heartbeat)
            .await
            .map_err(|e| match e {
                HostError::Conflict { .. } => HostApiError::Superseded {
                    worker_id: heartbeat.worker_id,
                    epoch: heartbeat.epoch,
                },
                other => to_api_error(other),
            })
    }

    async fn fetch_instance_config(
        &self,
        worker: WorkerId,
        instance: InstanceId,
    ) -> Result<ConfigBundle, HostApiError> {
        self.host
            .gateway()
            .instance_config(worker, instance)
            .await
            .map_err(to_api_error)
    }

    async fn keep_console_tail(
        &self,
        worker: WorkerId,
        instance: InstanceId,
        tail: &ConsoleTail,
    ) -> Result<(), HostApiError> {
        self.host
            .gateway()
            .keep_console_tail(worker, instance, tail)
            .await
            .map_err(to_api_error)
    }
}
