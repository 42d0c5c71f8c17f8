//! Workers: list, get, history (`read`), shutdown (`admin`; never the embedded worker of
//! `manman up`, whose shutdown would stop the API).

use crate::api::{ApiState, CommandAccepted};
use crate::auth::{Access, AdminScope, ReadScope};
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::ApiError;
use crate::routes::instances::{HistoryQuery, page_limit};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use manman_core::id::WorkerId;
use manman_core::status::{Entity, StatusEvent};
use manman_core::worker::Worker;

#[utoipa::path(
    get,
    path = "/api/v1/workers",
    operation_id = "list_workers",
    tag = "workers",
    responses(
        (status = 200, description = "every worker", body = Vec<Worker>),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_workers(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<Vec<Worker>>, ApiError> {
    Ok(Json(state.host.workers().list_workers().await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/workers/{id}",
    operation_id = "get_worker",
    tag = "workers",
    params(("id" = i64, Path, description = "the worker")),
    responses(
        (status = 200, description = "the worker", body = Worker),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get_worker(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<WorkerId>,
) -> Result<Json<Worker>, ApiError> {
    Ok(Json(state.host.workers().get_worker(id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/workers/{id}/shutdown",
    operation_id = "shutdown_worker",
    tag = "workers",
    params(("id" = i64, Path, description = "the worker")),
    responses(
        (status = 202, description = "the shutdown command", body = CommandAccepted),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin token: shutting a worker down needs `admin`", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it is not running, or it is the worker inside `manman up` (stop `manman up` instead)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn shutdown(
    access: Access<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<WorkerId>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    let command_id = state
        .host
        .workers()
        .shutdown_worker(id, access.origin())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(CommandAccepted { command_id })))
}

#[utoipa::path(
    get,
    path = "/api/v1/workers/{id}/history",
    operation_id = "worker_history",
    tag = "workers",
    params(("id" = i64, Path, description = "the worker"), HistoryQuery),
    responses(
        (status = 200, description = "status changes, oldest first", body = Vec<StatusEvent>),
        (status = 400, description = "malformed JSON, path or query", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn history(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<WorkerId>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<Vec<StatusEvent>>, ApiError> {
    let limit = page_limit(query.limit, 100)?;
    Ok(Json(
        state
            .host
            .instances()
            .status_history(Entity::Worker(id), query.after, limit)
            .await?,
    ))
}
