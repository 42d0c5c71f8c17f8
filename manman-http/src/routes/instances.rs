//! Instances: start, list, get, stop, kill, stdin, history.

use crate::api::{ApiState, CommandAccepted};
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

/// Who issues commands until operator tokens exist.
pub(crate) const ISSUED_BY: &str = "operator";

pub(crate) async fn start(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<StartRequest>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(state.host.start(&request, ISSUED_BY).await?),
    ))
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    ApiQuery(filter): ApiQuery<InstanceFilter>,
) -> Result<Json<Vec<Instance>>, ApiError> {
    Ok(Json(state.host.list_instances(&filter).await?))
}

pub(crate) async fn get(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<Json<Instance>, ApiError> {
    Ok(Json(state.host.get_instance(id).await?))
}

fn accepted(command_id: uuid::Uuid) -> (StatusCode, Json<CommandAccepted>) {
    (StatusCode::ACCEPTED, Json(CommandAccepted { command_id }))
}

pub(crate) async fn stop(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    Ok(accepted(state.host.stop(id, ISSUED_BY).await?))
}

pub(crate) async fn kill(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    Ok(accepted(state.host.kill(id, ISSUED_BY).await?))
}

/// A console line to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinRequest {
    /// The line, without a newline.
    pub line: String,
}

pub(crate) async fn stdin(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
    ApiJson(request): ApiJson<StdinRequest>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    Ok(accepted(
        state.host.stdin(id, &request.line, ISSUED_BY).await?,
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
