//! [`HttpHostApi`]: the worker's view of a host in another process, over HTTP.

use crate::client::{Client, ClientError};
use crate::messages::TokenRequest;
use async_trait::async_trait;
use manman_core::console::ConsoleTail;
use manman_core::host::WorkerToken;
use manman_core::id::{InstanceId, WorkerId};
use manman_core::ports::{ConfigBundle, HostApi, HostApiError};
use manman_core::worker::{Heartbeat, Registered, WorkerRegistration};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Mutex;

/// A token is exchanged again when it has less than this left.
const RENEW_BEFORE: chrono::Duration = chrono::Duration::seconds(60);

/// A worker's credentials (`MANMAN_WORKER_SA_CLIENT_ID`, `MANMAN_WORKER_SA_CLIENT_SECRET`), created by
/// an admin with `manman workers credentials create <name>`. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkerCredentials {
    /// The client id.
    pub client_id: String,
    /// The secret.
    pub client_secret: String,
}

impl fmt::Debug for WorkerCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The worker-facing routes of a host (`/api/v1/worker`), with a worker token exchanged for the
/// worker's credentials, renewed before it expires and again when the host refuses it (a host
/// that restarted signs with a new key). Once the credentials are revoked, the host refuses the
/// token and the exchange alike: every call fails with [`HostApiError::Unauthorized`] naming the
/// revocation (the worker's heartbeat loop logs it and keeps trying; the host marks it `lost`).
#[derive(Debug, Clone)]
pub struct HttpHostApi {
    client: Client,
    credentials: WorkerCredentials,
    token: Arc<Mutex<Option<WorkerToken>>>,
}

impl HttpHostApi {
    /// The host at `base_url` (e.g. `http://manman-host:8000`), as the worker `credentials`
    /// act for.
    pub fn new(base_url: &str, credentials: WorkerCredentials) -> Self {
        Self {
            client: Client::new(base_url),
            credentials,
            token: Arc::default(),
        }
    }

    /// A client with a current worker token.
    async fn authorized(&self) -> Result<Client, ClientError> {
        let mut token = self.token.lock().await;
        let current = token
            .as_ref()
            .filter(|t| t.expires_at - chrono::Utc::now() > RENEW_BEFORE);
        let access_token = match current {
            Some(t) => t.access_token.clone(),
            None => {
                let request = TokenRequest {
                    client_id: self.credentials.client_id.clone(),
                    client_secret: self.credentials.client_secret.clone(),
                };
                let fresh = self.client.exchange(&request).await?;
                let access_token = fresh.access_token.clone();
                *token = Some(fresh);
                access_token
            }
        };
        Ok(self.client.clone().with_token(access_token))
    }

    /// Calls the host with a current token; when the token is refused, once more with a new one.
    async fn call<T, F, Fut>(&self, request: F) -> Result<T, ClientError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let client = self.authorized().await?;
        match request(client).await {
            Err(ClientError::Problem(problem)) if problem.status == 401 => {
                *self.token.lock().await = None;
                let client = self.authorized().await?;
                request(client).await
            }
            other => other,
        }
    }
}

/// Which call an error answers: a refusal is classified as the [`HostApi`] port says.
#[derive(Debug, Clone, Copy)]
enum Call<'a> {
    /// `register`.
    Register,
    /// `heartbeat`: a `409` is this epoch superseded.
    Heartbeat(&'a Heartbeat),
    /// A call about one instance (config fetch, console tail): a `403` there says the instance
    /// is another worker's, which the port calls `Invalid` (as [`manman_core::host::LocalHostApi`]
    /// does), not a matter of credentials.
    Instance,
}

fn to_api_error(error: ClientError, call: Call<'_>) -> HostApiError {
    match error {
        ClientError::Problem(problem) => {
            let detail = problem.detail.unwrap_or(problem.title);
            match (problem.status, call) {
                (409, Call::Heartbeat(beat)) => HostApiError::Superseded {
                    worker_id: beat.worker_id,
                    epoch: beat.epoch,
                },
                (404, _) => HostApiError::NotFound { what: detail },
                (403, Call::Instance) => HostApiError::Invalid { detail },
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
        self.call(
            |client| async move { client.post("/api/v1/worker/register", registration).await },
        )
        .await
        .map_err(|e| to_api_error(e, Call::Register))
    }

    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), HostApiError> {
        self.call(|client| async move {
            client
                .post_no_content("/api/v1/worker/heartbeat", heartbeat)
                .await
        })
        .await
        .map_err(|e| to_api_error(e, Call::Heartbeat(heartbeat)))
    }

    async fn fetch_instance_config(
        &self,
        _worker: WorkerId,
        instance: InstanceId,
    ) -> Result<ConfigBundle, HostApiError> {
        // The worker token says which worker asks.
        let path = format!("/api/v1/worker/instances/{}/config", instance.get());
        self.call(|client| {
            let path = path.clone();
            async move { client.get(&path).await }
        })
        .await
        .map_err(|e| to_api_error(e, Call::Instance))
    }

    async fn keep_console_tail(
        &self,
        _worker: WorkerId,
        instance: InstanceId,
        tail: &ConsoleTail,
    ) -> Result<(), HostApiError> {
        let path = format!("/api/v1/worker/instances/{}/console-tail", instance.get());
        self.call(|client| {
            let path = path.clone();
            async move { client.put_no_content(&path, tail).await }
        })
        .await
        .map_err(|e| to_api_error(e, Call::Instance))
    }
}
