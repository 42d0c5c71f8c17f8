//! Workers: list, get, shutdown, history.

use crate::api::{ApiState, CommandAccepted};
use crate::auth::{Access, OperateScope, ReadScope};
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::ApiError;
use crate::routes::instances::HistoryQuery;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use manman_core::id::WorkerId;
use manman_core::status::{Entity, StatusEvent};
use manman_core::worker::Worker;

pub(crate) async fn list_workers(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<Vec<Worker>>, ApiError> {
    Ok(Json(state.host.list_workers().await?))
}

pub(crate) async fn get_worker(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<WorkerId>,
) -> Result<Json<Worker>, ApiError> {
    Ok(Json(state.host.get_worker(id).await?))
}

pub(crate) async fn shutdown(
    access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<WorkerId>,
) -> Result<(StatusCode, Json<CommandAccepted>), ApiError> {
    let command_id = state.host.shutdown_worker(id, access.origin()).await?;
    Ok((StatusCode::ACCEPTED, Json(CommandAccepted { command_id })))
}

pub(crate) async fn history(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<WorkerId>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<Vec<StatusEvent>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    Ok(Json(
        state
            .host
            .status_history(Entity::Worker(id), query.after, limit)
            .await?,
    ))
}
