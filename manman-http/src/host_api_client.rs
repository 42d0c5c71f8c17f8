//! [`HttpHostApi`]: the worker's view of a host in another process, over HTTP.

use crate::client::{Client, ClientError};
use async_trait::async_trait;
use manman_core::id::ConfigId;
use manman_core::ports::{ConfigBundle, HostApi, HostApiError};
use manman_core::worker::{Heartbeat, Registered, WorkerRegistration};

/// The worker-facing routes of a host (`/api/v1/worker`).
#[derive(Debug, Clone)]
pub struct HttpHostApi {
    client: Client,
}

impl HttpHostApi {
    /// The host at `base_url` (e.g. `http://manman-host:8000`).
    pub fn new(base_url: &str) -> Self {
        Self {
            client: Client::new(base_url),
        }
    }
}

fn to_api_error(error: ClientError, heartbeat: Option<&Heartbeat>) -> HostApiError {
    match error {
        ClientError::Problem(problem) => {
            let detail = problem.detail.unwrap_or(problem.title);
            match (problem.status, heartbeat) {
                (409, Some(beat)) => HostApiError::Superseded {
                    worker_id: beat.worker_id,
                    epoch: beat.epoch,
                },
                (404, _) => HostApiError::NotFound { what: detail },
                (401 | 403, _) => HostApiError::Unauthorized { detail },
                (status, _) if status >= 500 || status == 429 => {
                    HostApiError::Unavailable { detail }
                }
                _ => HostApiError::Invalid { detail },
            }
        }
        other => HostApiError::Unavailable {
            detail: other.to_string(),
        },
    }
}

#[async_trait]
impl HostApi for HttpHostApi {
    async fn register(
        &self,
        registration: &WorkerRegistration,
    ) -> Result<Registered, HostApiError> {
        self.client
            .post("/api/v1/worker/register", registration)
            .await
            .map_err(|e| to_api_error(e, None))
    }

    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), HostApiError> {
        self.client
            .post_no_content("/api/v1/worker/heartbeat", heartbeat)
            .await
            .map_err(|e| to_api_error(e, Some(heartbeat)))
    }

    async fn fetch_config(&self, id: ConfigId) -> Result<ConfigBundle, HostApiError> {
        self.client
            .get(&format!("/api/v1/worker/configs/{}", id.get()))
            .await
            .map_err(|e| to_api_error(e, None))
    }
}
