//! Instances: start, list, get, stop, kill, stdin, history.

use crate::api::{ApiState, CommandAccepted};
use crate::auth::{Access, OperateScope, ReadScope};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use manman_core::host::{StartRequest, Started};
use manman_core::id::InstanceId;
use manman_core::instance::{Instance, InstanceFilter};
use manman_core::status::{Entity, StatusEvent};
use serde::{Deserialize, Serialize};

pub(crate) async fn start(
    access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<StartRequest>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(state.host.start(&request, access.origin()).await?),
    ))
}

pub(crate) async fn list(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiQuery(filter): ApiQuery<InstanceFilter>,
) -> Result<Json<Vec<Instance>>, ApiError> {
    Ok(Json(state.host.list_instances(&filter).await?))
}

pub(crate) async fn get(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<Json<Instance>, ApiError> {
    Ok(Json(state.host.get_instance(id).await?))
}

fn accepted(command_id: uuid::Uuid) -> (StatusCode, Json<CommandAccepted>) {
    (StatusCode::ACCEPTED, Json(CommandAccepted { command_id }))
}

pub(crate) async fn stop(
    access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    Ok(accepted(state.host.stop(id, access.origin()).await?))
}

pub(crate) async fn restart(
    access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    Ok(accepted(state.host.restart(id, access.origin()).await?))
}

pub(crate) async fn kill(
    access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    Ok(accepted(state.host.kill(id, access.origin()).await?))
}

/// A console line to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinRequest {
    /// The line, without a newline.
    pub line: String,
}

pub(crate) async fn stdin(
    access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
    ApiJson(request): ApiJson<StdinRequest>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    Ok(accepted(
        state.host.stdin(id, &request.line, access.origin()).await?,
    ))
}

/// A page of history.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    pub(crate) after: Option<i64>,
    pub(crate) limit: Option<u32>,
}

pub(crate) async fn history(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<Vec<StatusEvent>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    Ok(Json(
        state
            .host
            .status_history(Entity::Instance(id), query.after, limit)
            .await?,
    ))
}
