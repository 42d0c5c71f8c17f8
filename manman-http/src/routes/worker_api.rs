//! The worker-facing routes under `/api/v1/worker`: register, heartbeat, config fetch, console
//! tails. Each
//! needs a worker token, and a worker acts for itself only: registering under another name,
//! heartbeating as another worker (whose instances the heartbeat would reconcile) or fetching the
//! config of another worker's instance is refused (403), and an ended instance's config too
//! (409): a worker starts only what the host confirms is its own to start. A token whose credentials were revoked
//! after it was made is refused (401, naming the revocation), so a revoked worker stops at its
//! next heartbeat ([`WorkerAccess`] asks the store).

use crate::api::ApiState;
use crate::auth::WorkerAccess;
use crate::extract::{ApiJson, ApiPath};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use manman_core::console::{ConsoleTail, TAIL_BYTES};
use manman_core::id::InstanceId;
use manman_core::ports::ConfigBundle;
use manman_core::worker::{Heartbeat, Registered, WorkerRegistration};

#[utoipa::path(
    post,
    path = "/api/v1/worker/register",
    operation_id = "register_worker",
    tag = "worker API",
    request_body = WorkerRegistration,
    responses(
        (status = 200, description = "registered: a new epoch", body = Registered),
        (status = 401, description = "no valid worker token, or its credentials were revoked (the detail says so)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not this worker token's name", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field fails validation (`errors` names it)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn register(
    worker: WorkerAccess,
    State(state): State<ApiState>,
    ApiJson(registration): ApiJson<WorkerRegistration>,
) -> Result<Json<Registered>, ApiError> {
    worker.check(&registration.name, "the name")?;
    Ok(Json(
        state.host.gateway().register_worker(&registration).await?,
    ))
}

/// `204` when recorded; `409` when a newer registration superseded this epoch.
#[utoipa::path(
    post,
    path = "/api/v1/worker/heartbeat",
    operation_id = "worker_heartbeat",
    tag = "worker API",
    request_body = Heartbeat,
    responses(
        (status = 204, description = "recorded"),
        (status = 401, description = "no valid worker token, or its credentials were revoked (the detail says so)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "another worker's heartbeat", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "superseded by a newer registration", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn heartbeat(
    worker: WorkerAccess,
    State(state): State<ApiState>,
    ApiJson(heartbeat): ApiJson<Heartbeat>,
) -> Result<StatusCode, ApiError> {
    let registered = state.host.workers().get_worker(heartbeat.worker_id).await?;
    worker.check(&registered.name, &heartbeat.worker_id.to_string())?;
    state.host.gateway().heartbeat(&heartbeat).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/worker/instances/{id}/config",
    operation_id = "get_instance_config",
    tag = "worker API",
    params(("id" = i64, Path, description = "the instance")),
    responses(
        (status = 200, description = "the config the instance runs, and its game", body = ConfigBundle),
        (status = 401, description = "no valid worker token, or its credentials were revoked (the detail says so)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the instance is another worker's", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it has ended, or was placed on an older registration of this worker: not to be started", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn instance_config(
    worker: WorkerAccess,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<Json<ConfigBundle>, ApiError> {
    let instance = state.host.instances().get_instance(id).await?;
    let placed_on = state.host.workers().get_worker(instance.worker_id).await?;
    worker.check(&placed_on.name, &id.to_string())?;
    Ok(Json(
        state
            .host
            .gateway()
            .instance_config(placed_on.id, id)
            .await?,
    ))
}

/// The largest console tail body: a tail is at most [`TAIL_BYTES`] of lines, as JSON.
pub(crate) const TAIL_BODY_LIMIT: usize = TAIL_BYTES + 1024;

#[utoipa::path(
    put,
    path = "/api/v1/worker/instances/{id}/console-tail",
    tag = "worker API",
    params(("id" = i64, Path, description = "the instance")),
    request_body = ConsoleTail,
    responses(
        (status = 204, description = "kept: the console of the instance replays these lines once it ended"),
        (status = 401, description = "no valid worker token, or its credentials were revoked (the detail says so)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the instance is another worker's", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, description = "the body is over 513 KiB", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "not a tail of this instance's console: more than 1,000 lines, lines of another instance, numbers not increasing", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn keep_console_tail(
    worker: WorkerAccess,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
    ApiJson(tail): ApiJson<ConsoleTail>,
) -> Result<StatusCode, ApiError> {
    let instance = state.host.instances().get_instance(id).await?;
    let placed_on = state.host.workers().get_worker(instance.worker_id).await?;
    worker.check(&placed_on.name, &id.to_string())?;
    state
        .host
        .gateway()
        .keep_console_tail(placed_on.id, id, &tail)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
