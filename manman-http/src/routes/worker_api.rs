//! The worker-facing routes under `/api/v1/worker`: register, heartbeat, config fetch.

use crate::api::ApiState;
use crate::extract::{ApiJson, ApiPath};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use manman_core::id::ConfigId;
use manman_core::ports::ConfigBundle;
use manman_core::worker::{Heartbeat, Registered, WorkerRegistration};

pub(crate) async fn register(
    State(state): State<ApiState>,
    ApiJson(registration): ApiJson<WorkerRegistration>,
) -> Result<Json<Registered>, ApiError> {
    Ok(Json(state.host.register_worker(&registration).await?))
}

/// `204` when recorded; `409` when a newer registration superseded this epoch.
pub(crate) async fn heartbeat(
    State(state): State<ApiState>,
    ApiJson(heartbeat): ApiJson<Heartbeat>,
) -> Result<StatusCode, ApiError> {
    state.host.heartbeat(&heartbeat).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn config(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<ConfigId>,
) -> Result<Json<ConfigBundle>, ApiError> {
    Ok(Json(state.host.config_bundle(id).await?))
}
