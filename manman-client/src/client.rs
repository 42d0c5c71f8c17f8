//! [`Client`]: the host's HTTP API for the CLI and for [`HttpHostApi`](crate::HttpHostApi).

use crate::messages::{
    CommandAccepted, CreatedToken, CreatedWorkerCredential, NewToken, NewWorkerCredential,
    StdinRequest, TokenRequest,
};
use crate::problem::Problem;
use futures::stream::{self, Stream, StreamExt};
use manman_core::auth::{ApiToken, WorkerCredential};
use manman_core::command::CommandRecord;
use manman_core::config::{ConfigSpec, GameServerConfig};
use manman_core::console::ConsoleLine;
use manman_core::event::Event;
use manman_core::game_server::{GameServer, NewGameServer};
use manman_core::host::{DeadLetter, WorkerToken};
use manman_core::host::{StartRequest, Started};
use manman_core::id::TokenId;
use manman_core::id::{ConfigId, GameServerId, InstanceId, WorkerId};
use manman_core::instance::{Instance, InstanceFilter};
use manman_core::status::StatusEvent;
use manman_core::worker::Worker;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// Longest wait for one request (not for the console stream, which lasts): longer than the
/// host waits for its broker to take a command (30 s, `manman-rabbit`'s publish wait) plus its
/// wait for a database connection (5 s), so that a host waiting on its broker answers — 503,
/// naming the broker — before the client gives up.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

/// The largest page of status history the host gives.
pub const HISTORY_PAGE_MAX: u32 = 500;

/// How a problem reads: a 503 says which of the host's backends is away (the host itself
/// answered).
fn describe(problem: &Problem) -> String {
    let detail = problem.detail.as_deref().unwrap_or("no detail");
    if problem.status == 503 {
        let backend = if detail.contains("the message bus") {
            Some("its message broker (RabbitMQ)")
        } else if detail.contains("the store") {
            Some("its database")
        } else {
            None
        };
        if let Some(backend) = backend {
            return format!(
                "the host is up but {backend} is unavailable; try again later ({detail})"
            );
        }
    }
    format!("{}: {detail}", problem.title)
}

/// What can go wrong calling the host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The host answered with a problem document (a 503 says which backend is away).
    #[error("{}", describe(.0))]
    Problem(Problem),
    /// The host could not be reached or the connection broke.
    #[error("could not reach the host at {url}: {detail}")]
    Transport {
        /// The URL called.
        url: String,
        /// Why.
        detail: String,
    },
    /// The host's answer did not parse.
    #[error("the host's answer to {url} did not parse: {detail}")]
    Decode {
        /// The URL called.
        url: String,
        /// Why.
        detail: String,
    },
}

/// A client of one host.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    timeout: std::time::Duration,
}

impl Client {
    /// A client for the host at `base_url` (e.g. `http://127.0.0.1:8000`).
    pub fn new(base_url: &str) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            token: None,
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// The same client, giving up on a request after `timeout` (default [`REQUEST_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same client, sending `token` as its bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The host's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request (bounded by the client's timeout, [`REQUEST_TIMEOUT`] by default); the body of a success, else the
    /// problem the host answered.
    async fn send_raw(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<bytes::Bytes, ClientError> {
        let transport = |e: reqwest::Error| ClientError::Transport {
            url: url.to_owned(),
            detail: if e.is_timeout() {
                format!(
                    "no answer within {:?} (the host may be overloaded or stuck)",
                    self.timeout
                )
            } else {
                e.to_string()
            },
        };
        let response = self
            .authorized(request)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(ClientError::Problem(Problem::from_answer(status, &body)));
        }
        Ok(body)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: String,
    ) -> Result<T, ClientError> {
        let body = self.send_raw(request, &url).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url,
            detail: e.to_string(),
        })
    }

    /// POSTs `body` and expects no content back.
    pub(crate) async fn post_no_content<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(), ClientError> {
        let url = self.url(path);
        self.send_raw(self.http.post(&url).json(body), &url)
            .await
            .map(|_| ())
    }

    /// PUTs `body` and expects no content back.
    pub(crate) async fn put_no_content<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(), ClientError> {
        let url = self.url(path);
        self.send_raw(self.http.put(&url).json(body), &url)
            .await
            .map(|_| ())
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        self.send(self.http.get(&url), url).await
    }

    pub(crate) async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        self.send(self.http.post(&url).json(body), url).await
    }

    pub(crate) async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        self.send(self.http.delete(&url), url).await
    }

    async fn delete_no_content(&self, path: &str) -> Result<(), ClientError> {
        let url = self.url(path);
        self.send_raw(self.http.delete(&url), &url)
            .await
            .map(|_| ())
    }

    async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        self.send(self.http.put(&url).json(body), url).await
    }

    /// Renames a game or changes its type.
    pub async fn update_game(
        &self,
        id: GameServerId,
        game: &NewGameServer,
    ) -> Result<GameServer, ClientError> {
        self.put(&format!("/api/v1/games/{}", id.get()), game).await
    }

    /// Deletes a game without configs.
    pub async fn delete_game(&self, id: GameServerId) -> Result<(), ClientError> {
        self.delete_no_content(&format!("/api/v1/games/{}", id.get()))
            .await
    }

    /// Replaces a config's spec.
    pub async fn update_config(
        &self,
        id: ConfigId,
        spec: &ConfigSpec,
    ) -> Result<GameServerConfig, ClientError> {
        self.put(&format!("/api/v1/configs/{}", id.get()), spec)
            .await
    }

    /// Deletes a config without active instances (and its ended instances' records).
    pub async fn delete_config(&self, id: ConfigId) -> Result<(), ClientError> {
        self.delete_no_content(&format!("/api/v1/configs/{}", id.get()))
            .await
    }

    /// Creates an operator token (`admin`); its secret is in the answer, once.
    pub async fn create_token(&self, new: &NewToken) -> Result<CreatedToken, ClientError> {
        self.post("/api/v1/tokens", new).await
    }

    /// Every operator token (`admin`).
    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, ClientError> {
        self.get("/api/v1/tokens").await
    }

    /// Revokes an operator token (`admin`).
    pub async fn revoke_token(&self, id: TokenId) -> Result<ApiToken, ClientError> {
        self.delete(&format!("/api/v1/tokens/{}", id.get())).await
    }

    /// Creates worker credentials (`admin`); the secret is in the answer, once.
    pub async fn create_worker_credential(
        &self,
        worker_name: &str,
    ) -> Result<CreatedWorkerCredential, ClientError> {
        let new = NewWorkerCredential {
            worker_name: worker_name.to_owned(),
        };
        self.post("/api/v1/worker-credentials", &new).await
    }

    /// Every worker credential (`admin`).
    pub async fn list_worker_credentials(&self) -> Result<Vec<WorkerCredential>, ClientError> {
        self.get("/api/v1/worker-credentials").await
    }

    /// Revokes worker credentials (`admin`).
    pub async fn revoke_worker_credential(
        &self,
        client_id: &str,
    ) -> Result<WorkerCredential, ClientError> {
        self.delete(&format!("/api/v1/worker-credentials/{client_id}"))
            .await
    }

    /// Exchanges worker credentials for a worker token (no token needed).
    pub async fn exchange(&self, request: &TokenRequest) -> Result<WorkerToken, ClientError> {
        self.post("/api/v1/auth/token", request).await
    }

    /// Whether the host answers `/healthz`.
    pub async fn healthy(&self) -> bool {
        let response = self.http.get(self.url("/healthz")).send().await;
        response.is_ok_and(|r| r.status().is_success())
    }

    /// Adds a game.
    pub async fn create_game(&self, game: &NewGameServer) -> Result<GameServer, ClientError> {
        self.post("/api/v1/games", game).await
    }

    /// Every game.
    pub async fn list_games(&self) -> Result<Vec<GameServer>, ClientError> {
        self.get("/api/v1/games").await
    }

    /// Adds a config to a game.
    pub async fn create_config(
        &self,
        game: GameServerId,
        spec: &ConfigSpec,
    ) -> Result<GameServerConfig, ClientError> {
        self.post(&format!("/api/v1/games/{}/configs", game.get()), spec)
            .await
    }

    /// Configs of a game, or of all games.
    pub async fn list_configs(
        &self,
        game: Option<GameServerId>,
    ) -> Result<Vec<GameServerConfig>, ClientError> {
        match game {
            Some(game) => {
                self.get(&format!("/api/v1/games/{}/configs", game.get()))
                    .await
            }
            None => self.get("/api/v1/configs").await,
        }
    }

    /// Every worker.
    pub async fn list_workers(&self) -> Result<Vec<Worker>, ClientError> {
        self.get("/api/v1/workers").await
    }

    /// The newest dead letters the host recorded, newest first (`admin`).
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, ClientError> {
        self.get("/api/v1/dead-letters").await
    }

    /// Starts a config.
    pub async fn start(&self, request: &StartRequest) -> Result<Started, ClientError> {
        self.post("/api/v1/instances", request).await
    }

    /// A page of instances.
    pub async fn list_instances(
        &self,
        filter: &InstanceFilter,
    ) -> Result<Vec<Instance>, ClientError> {
        let url = self.url("/api/v1/instances");
        self.send(self.http.get(&url).query(filter), url).await
    }

    /// One instance.
    pub async fn get_instance(&self, id: InstanceId) -> Result<Instance, ClientError> {
        self.get(&format!("/api/v1/instances/{}", id.get())).await
    }

    /// Status history of an instance (its first page: the oldest 100 changes).
    pub async fn instance_history(&self, id: InstanceId) -> Result<Vec<StatusEvent>, ClientError> {
        self.get(&format!("/api/v1/instances/{}/history", id.get()))
            .await
    }

    /// A page of an instance's status history, oldest first: at most `limit` (1 to
    /// [`HISTORY_PAGE_MAX`]) changes after the one whose `id` is `after`.
    pub async fn instance_history_page(
        &self,
        id: InstanceId,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StatusEvent>, ClientError> {
        let mut path = format!("/api/v1/instances/{}/history?limit={limit}", id.get());
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        self.get(&path).await
    }

    /// An instance's whole status history, oldest first (page after page).
    pub async fn instance_history_all(
        &self,
        id: InstanceId,
    ) -> Result<Vec<StatusEvent>, ClientError> {
        let mut all: Vec<StatusEvent> = Vec::new();
        loop {
            let after = all.last().map(|e| e.id);
            let page = self
                .instance_history_page(id, after, HISTORY_PAGE_MAX)
                .await?;
            let done = page.len() < HISTORY_PAGE_MAX as usize;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// One config.
    pub async fn get_config(&self, id: ConfigId) -> Result<GameServerConfig, ClientError> {
        self.get(&format!("/api/v1/configs/{}", id.get())).await
    }

    /// One game.
    pub async fn get_game(&self, id: GameServerId) -> Result<GameServer, ClientError> {
        self.get(&format!("/api/v1/games/{}", id.get())).await
    }

    /// One worker.
    pub async fn get_worker(&self, id: WorkerId) -> Result<Worker, ClientError> {
        self.get(&format!("/api/v1/workers/{}", id.get())).await
    }

    /// Stops an instance gracefully.
    pub async fn stop(&self, id: InstanceId) -> Result<CommandAccepted, ClientError> {
        self.post(&format!("/api/v1/instances/{}/stop", id.get()), &())
            .await
    }

    /// Restarts an instance in place (stopped gracefully, started again).
    pub async fn restart(&self, id: InstanceId) -> Result<CommandAccepted, ClientError> {
        self.post(&format!("/api/v1/instances/{}/restart", id.get()), &())
            .await
    }

    /// Kills an instance.
    pub async fn kill(&self, id: InstanceId) -> Result<CommandAccepted, ClientError> {
        self.post(&format!("/api/v1/instances/{}/kill", id.get()), &())
            .await
    }

    /// Sends a console line.
    pub async fn stdin(&self, id: InstanceId, line: &str) -> Result<CommandAccepted, ClientError> {
        let body = StdinRequest {
            line: line.to_owned(),
        };
        self.post(&format!("/api/v1/instances/{}/stdin", id.get()), &body)
            .await
    }

    /// A command's record.
    pub async fn get_command(&self, id: Uuid) -> Result<CommandRecord, ClientError> {
        self.get(&format!("/api/v1/commands/{id}")).await
    }

    /// Follows an instance's console like [`Client::console`], with each event's `id` and the
    /// `lagged` notices: what a reader that resumes (`Last-Event-ID`) after a broken connection
    /// needs.
    pub async fn console_followed(
        &self,
        id: InstanceId,
        after: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Followed<ConsoleLine>, ClientError>> + use<>, ClientError>
    {
        let url = self.url(&format!("/api/v1/instances/{}/console", id.get()));
        let mut request = self.http.get(&url).header("accept", "text/event-stream");
        if let Some(after) = after {
            request = request.header("last-event-id", after.to_string());
        }
        self.follow_all(request, url, Some("line")).await
    }

    /// Follows every event like [`Client::events`], with each event's `id` and the `lagged`
    /// notices. `last_event_id` is sent as `Last-Event-ID` (a host that numbers its events
    /// resumes after it; one that does not ignores it).
    pub async fn events_followed(
        &self,
        last_event_id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<Followed<Event>, ClientError>> + use<>, ClientError> {
        let url = self.url("/api/v1/events");
        let mut request = self.http.get(&url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        self.follow_all(request, url, None).await
    }

    /// Follows an instance's console: the backlog after `after`, then live lines.
    pub async fn console(
        &self,
        id: InstanceId,
        after: Option<u64>,
    ) -> Result<impl Stream<Item = Result<ConsoleLine, ClientError>> + use<>, ClientError> {
        let url = self.url(&format!("/api/v1/instances/{}/console", id.get()));
        let mut request = self.http.get(&url).header("accept", "text/event-stream");
        if let Some(after) = after {
            request = request.header("last-event-id", after.to_string());
        }
        self.follow(request, url, Some("line")).await
    }

    /// Follows every event (status reports, command results, install progress), live.
    pub async fn events(
        &self,
    ) -> Result<impl Stream<Item = Result<Event, ClientError>> + use<>, ClientError> {
        let url = self.url("/api/v1/events");
        let request = self.http.get(&url).header("accept", "text/event-stream");
        self.follow(request, url, None).await
    }

    /// The data of a Server-Sent Events stream (only events named `only`, when given), decoded;
    /// `lagged` notices are left out.
    async fn follow<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: String,
        only: Option<&'static str>,
    ) -> Result<impl Stream<Item = Result<T, ClientError>> + use<T>, ClientError> {
        let all = self.follow_all(request, url, only).await?;
        Ok(all.filter_map(|item| async move {
            match item {
                Ok(Followed::Item { value, .. }) => Some(Ok(value)),
                Ok(Followed::Lagged { .. } | Followed::Gap) => None,
                Err(e) => Some(Err(e)),
            }
        }))
    }

    /// Every event of a Server-Sent Events stream (only events named `only`, and `lagged`
    /// notices), decoded, with its `id`.
    async fn follow_all<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: String,
        only: Option<&'static str>,
    ) -> Result<impl Stream<Item = Result<Followed<T>, ClientError>> + use<T>, ClientError> {
        let response =
            self.authorized(request)
                .send()
                .await
                .map_err(|e| ClientError::Transport {
                    url: url.clone(),
                    detail: e.to_string(),
                })?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.bytes().await.unwrap_or_default();
            return Err(ClientError::Problem(Problem::from_answer(status, &body)));
        }
        let bytes = response.bytes_stream();
        let state = (bytes, crate::sse::SseParser::default(), url);
        Ok(stream::unfold(
            state,
            move |(mut bytes, mut parser, url)| async move {
                loop {
                    if let Some(event) = parser.next_event() {
                        // A `lagged` notice: the host skipped this watcher past some.
                        if event.event == "lagged" {
                            let missed =
                                serde_json::from_str::<Missed>(&event.data).map_or(0, |m| m.missed);
                            let item = Followed::Lagged {
                                id: event.id,
                                missed,
                            };
                            return Some((Ok(item), (bytes, parser, url)));
                        }
                        // A `gap` notice: events were missed that nobody can count.
                        if event.event == "gap" {
                            return Some((Ok(Followed::Gap), (bytes, parser, url)));
                        }
                        if only.is_some_and(|name| event.event != name) {
                            continue;
                        }
                        let item = serde_json::from_str::<T>(&event.data)
                            .map(|value| Followed::Item {
                                id: event.id,
                                value,
                            })
                            .map_err(|e| ClientError::Decode {
                                url: url.clone(),
                                detail: e.to_string(),
                            });
                        return Some((item, (bytes, parser, url)));
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => parser.push(&chunk),
                        Some(Err(e)) => {
                            let error = ClientError::Transport {
                                url: url.clone(),
                                detail: e.to_string(),
                            };
                            return Some((Err(error), (bytes, parser, url)));
                        }
                        None => return None,
                    }
                }
            },
        ))
    }
}

/// One event of a followed stream ([`Client::console_followed`], [`Client::events_followed`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Followed<T> {
    /// An event: its `id` (when the host gave one) and its data.
    Item {
        /// The SSE `id`: what to send as `Last-Event-ID` to resume after it.
        id: Option<String>,
        /// The decoded data.
        value: T,
    },
    /// The host skipped this reader past `missed` events (it fell behind); `id` is that of the
    /// last one missed, when the host numbers them.
    Lagged {
        /// The SSE `id`.
        id: Option<String>,
        /// How many were skipped.
        missed: u64,
    },
    /// The reader resumed after an event the host no longer knows (it restarted or lost its
    /// bus since): events were missed that nobody can count.
    Gap,
}

impl<T> Followed<T> {
    /// The SSE `id` of this event, if the host gave one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Item { id, .. } | Self::Lagged { id, .. } => id.as_deref(),
            Self::Gap => None,
        }
    }
}

/// The data of a `lagged` event.
#[derive(serde::Deserialize)]
struct Missed {
    missed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn an_unavailable_broker_is_named_as_such() {
        let problem = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily unavailable: the message bus: the message bus is unavailable: no confirm",
        );
        let said = ClientError::Problem(problem).to_string();
        assert!(
            said.starts_with("the host is up but its message broker (RabbitMQ) is unavailable"),
            "{said}"
        );
        let problem = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily unavailable: the store: pool timed out",
        );
        let said = ClientError::Problem(problem).to_string();
        assert!(said.contains("its database is unavailable"), "{said}");
        let said =
            ClientError::Problem(Problem::new(StatusCode::CONFLICT, "instance 3 is complete"))
                .to_string();
        assert_eq!(said, "Conflict: instance 3 is complete");
    }
}
