//! The router: every route of the host's HTTP API.

use crate::problem::{Problem, ProblemResponse};
use crate::routes::{
    catalogue, commands, console, dead_letters, events, health, instances, metrics, tokens,
    worker_api, worker_credentials, workers,
};
use crate::stream_guard::StreamSlots;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
pub(crate) use manman_client::CommandAccepted;
use manman_core::host::{Authenticator, ConsoleHub, DeadLetters, EventHub, HostService, Metrics};
use tokio_util::sync::CancellationToken;
use utoipa_swagger_ui::SwaggerUi;

/// The largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The host's services.
    pub host: HostService,
    /// Console backlog and live lines.
    pub console: ConsoleHub,
    /// Tokens and worker credentials.
    pub auth: Authenticator,
    /// What `/metrics` reports.
    pub metrics: Metrics,
    /// Cancelled when the server shuts down: long-lived streams (SSE) end then, so a graceful
    /// shutdown does not wait for watchers to hang up.
    pub shutdown: CancellationToken,
    /// Events for the SSE event stream, fanned out from one consumer of the bus: someone must
    /// [`run`](EventHub::run) it (the `event hub` service of a
    /// [`HostRuntime`](manman_core::host::HostRuntime) does), else `/events` answers 503.
    pub events: EventHub,
    /// The open SSE streams, capped per token and in all.
    pub streams: StreamSlots,
    /// The dead letters the host's consumers recorded (`GET /api/v1/dead-letters`).
    pub dead_letters: DeadLetters,
}

/// The host's HTTP API. Everything under `/api/v1` needs a bearer token but the worker's token
/// exchange (`POST /api/v1/auth/token`).
pub fn router(state: ApiState) -> Router {
    build_router(state, true, Router::new())
}

/// The host's HTTP API without the operator routes (`MANMAN_ENABLE_EXPERIENCE_API=false`): the
/// worker routes, the token exchange, health, readiness, metrics and the OpenAPI document — for
/// a replica that only serves workers.
pub fn worker_router(state: ApiState) -> Router {
    build_router(state, false, Router::new())
}

/// The API ([`router`], or [`worker_router`] without `experience_api`) with `extra` routes
/// beside it, all through the same layers.
pub(crate) fn build_router(state: ApiState, experience_api: bool, extra: Router) -> Router {
    let authenticated = if experience_api {
        operator_routes().merge(worker_routes())
    } else {
        worker_routes()
    };
    build(state, authenticated, extra)
}

/// What operators use: catalogue, workers, instances, commands, events, tokens.
fn operator_routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/games",
            post(catalogue::create_game).get(catalogue::list_games),
        )
        .route(
            "/games/{id}",
            get(catalogue::get_game)
                .put(catalogue::update_game)
                .delete(catalogue::delete_game),
        )
        .route(
            "/games/{id}/configs",
            post(catalogue::create_config).get(catalogue::list_game_configs),
        )
        .route("/configs", get(catalogue::list_configs))
        .route(
            "/configs/{id}",
            get(catalogue::get_config)
                .put(catalogue::update_config)
                .delete(catalogue::delete_config),
        )
        .route("/workers", get(workers::list_workers))
        .route("/workers/{id}", get(workers::get_worker))
        .route("/workers/{id}/shutdown", post(workers::shutdown))
        .route("/workers/{id}/history", get(workers::history))
        .route("/dead-letters", get(dead_letters::list))
        .route("/events", get(events::stream))
        .route("/instances", post(instances::start).get(instances::list))
        .route("/instances/{id}", get(instances::get))
        .route("/instances/{id}/stop", post(instances::stop))
        .route("/instances/{id}/kill", post(instances::kill))
        .route("/instances/{id}/restart", post(instances::restart))
        .route("/instances/{id}/stdin", post(instances::stdin))
        .route("/instances/{id}/history", get(instances::history))
        .route("/instances/{id}/console", get(console::stream))
        .route("/commands/{id}", get(commands::get))
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{id}", delete(tokens::revoke))
        .route(
            "/worker-credentials",
            post(worker_credentials::create).get(worker_credentials::list),
        )
        .route(
            "/worker-credentials/{client_id}",
            delete(worker_credentials::revoke),
        )
}

/// What workers use (with worker tokens).
fn worker_routes() -> Router<ApiState> {
    Router::new()
        .route("/worker/register", post(worker_api::register))
        .route("/worker/heartbeat", post(worker_api::heartbeat))
        .route(
            "/worker/instances/{id}/config",
            get(worker_api::instance_config),
        )
        .route(
            "/worker/instances/{id}/console-tail",
            put(worker_api::keep_console_tail)
                .layer(DefaultBodyLimit::max(worker_api::TAIL_BODY_LIMIT)),
        )
}

/// `authenticated` under `/api/v1` behind the token check, with the public routes, the
/// `extra` routes and the layers every request goes through.
fn build(state: ApiState, authenticated: Router<ApiState>, extra: Router) -> Router {
    let api = authenticated
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .route("/auth/token", post(worker_credentials::exchange));
    let docs = Router::from(
        SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", crate::openapi::document()),
    )
    .layer(axum::middleware::from_fn(crate::security_headers::docs));
    // The last layer added is the first a request meets.
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .nest("/api/v1", api)
        .merge(docs)
        .fallback(not_found)
        .with_state(state.clone())
        .merge(extra)
        .layer(axum::middleware::from_fn(crate::body_deadline::enforce))
        .layer(axum::middleware::from_fn(crate::request_size::check))
        .layer(axum::middleware::from_fn_with_state(
            state,
            metrics::count_requests,
        ))
        .layer(axum::middleware::from_fn(crate::request_id::assign))
        .layer(axum::middleware::from_fn(crate::security_headers::nosniff))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

async fn not_found(uri: axum::http::Uri) -> ProblemResponse {
    ProblemResponse(Problem::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {}: see /api/v1 in docs/architecture.md",
            uri.path()
        ),
    ))
}
