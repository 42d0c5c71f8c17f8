//! Instances: start, list, get, stop, kill, stdin, history.

use crate::api::{ApiState, CommandAccepted};
use crate::auth::{Access, OperateScope, ReadScope};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use manman_client::StdinRequest;
use manman_core::host::{HostError, StartRequest, Started};
use manman_core::id::InstanceId;
use manman_core::instance::{Instance, InstanceFilter};
use manman_core::status::{Entity, StatusEvent};
use manman_core::validation::ValidationError;
use serde::Deserialize;

#[utoipa::path(
    post,
    path = "/api/v1/instances",
    operation_id = "start_instance",
    tag = "instances",
    request_body = StartRequest,
    responses(
        (status = 202, description = "placed; follow the command", body = Started),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token may not do this", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "no worker can take it (why)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field fails validation (`errors` names it)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the store or the bus is unavailable (with Retry-After)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn start(
    access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<StartRequest>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(
            state
                .host
                .instances()
                .start(&request, access.origin())
                .await?,
        ),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/instances",
    operation_id = "list_instances",
    tag = "instances",
    params(InstanceFilter),
    responses(
        (status = 200, description = "a page, by id (`after` is the cursor)", body = Vec<Instance>),
        (status = 400, description = "malformed JSON, path or query", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiQuery(filter): ApiQuery<InstanceFilter>,
) -> Result<Json<Vec<Instance>>, ApiError> {
    page_limit(filter.limit, InstanceFilter::MAX_LIMIT)?;
    Ok(Json(state.host.instances().list_instances(&filter).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}",
    operation_id = "get_instance",
    tag = "instances",
    params(("id" = i64, Path, description = "the instance")),
    responses(
        (status = 200, description = "the instance", body = Instance),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<Json<Instance>, ApiError> {
    Ok(Json(state.host.instances().get_instance(id).await?))
}

fn accepted(command_id: uuid::Uuid) -> (StatusCode, Json<CommandAccepted>) {
    (StatusCode::ACCEPTED, Json(CommandAccepted { command_id }))
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/stop",
    operation_id = "stop_instance",
    tag = "instances",
    params(("id" = i64, Path, description = "the instance")),
    responses(
        (status = 202, description = "the stop command", body = CommandAccepted),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token may not do this", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it has ended", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn stop(
    access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    Ok(accepted(
        state.host.instances().stop(id, access.origin()).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/restart",
    operation_id = "restart_instance",
    tag = "instances",
    params(("id" = i64, Path, description = "the instance")),
    responses(
        (status = 202, description = "the restart command", body = CommandAccepted),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token may not do this", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it has ended", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn restart(
    access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    Ok(accepted(
        state.host.instances().restart(id, access.origin()).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/kill",
    operation_id = "kill_instance",
    tag = "instances",
    params(("id" = i64, Path, description = "the instance")),
    responses(
        (status = 202, description = "the kill command", body = CommandAccepted),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token may not do this", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it has ended", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn kill(
    access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    Ok(accepted(
        state.host.instances().kill(id, access.origin()).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/stdin",
    operation_id = "send_stdin",
    tag = "instances",
    params(("id" = i64, Path, description = "the instance")),
    request_body = StdinRequest,
    responses(
        (status = 202, description = "the stdin command", body = CommandAccepted),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token may not do this", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it has ended", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field fails validation (`errors` names it)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn stdin(
    access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
    ApiJson(request): ApiJson<StdinRequest>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    Ok(accepted(
        state
            .host
            .instances()
            .stdin(id, &request.line, access.origin())
            .await?,
    ))
}

/// The size of a page a query asks for, `default` when it does not: 1 to
/// [`InstanceFilter::MAX_LIMIT`], else 422 naming `limit` — never silently clamped.
pub(crate) fn page_limit(limit: Option<u32>, default: u32) -> Result<u32, ApiError> {
    const MAX: u32 = InstanceFilter::MAX_LIMIT;
    match limit {
        None => Ok(default),
        Some(limit @ 1..=MAX) => Ok(limit),
        Some(limit) => Err(ApiError(HostError::Invalid(ValidationError::field(
            "limit",
            format!("is {limit}: a page is 1 to {MAX} long; ask for the next one with `after`"),
        )))),
    }
}

/// A page of history.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    /// Only events after this position (the cursor: the last `id` seen).
    pub(crate) after: Option<i64>,
    /// At most this many, 1 to 500 (default 100); outside that range is 422.
    pub(crate) limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/history",
    operation_id = "instance_history",
    tag = "instances",
    params(("id" = i64, Path, description = "the instance"), HistoryQuery),
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
    ApiPath(id): ApiPath<InstanceId>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<Vec<StatusEvent>>, ApiError> {
    let limit = page_limit(query.limit, 100)?;
    Ok(Json(
        state
            .host
            .instances()
            .status_history(Entity::Instance(id), query.after, limit)
            .await?,
    ))
}
