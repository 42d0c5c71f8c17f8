//! Command records.

use crate::api::ApiState;
use crate::auth::{Access, ReadScope};
use crate::extract::ApiPath;
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use manman_core::command::CommandRecord;
use uuid::Uuid;

pub(crate) async fn get(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CommandRecord>, ApiError> {
    Ok(Json(state.host.get_command(id).await?))
}
