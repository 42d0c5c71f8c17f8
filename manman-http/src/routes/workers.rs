//! Workers.

use crate::api::ApiState;
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use manman_core::worker::Worker;

pub(crate) async fn list_workers(
    State(state): State<ApiState>,
) -> Result<Json<Vec<Worker>>, ApiError> {
    Ok(Json(state.host.list_workers().await?))
}
