//! Command records.

use crate::api::ApiState;
use crate::auth::{Access, ReadScope};
use crate::extract::ApiPath;
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use manman_core::command::CommandRecord;
use uuid::Uuid;

#[utoipa::path(
    get,
    path = "/api/v1/commands/{id}",
    operation_id = "get_command",
    tag = "commands",
    params(("id" = uuid::Uuid, Path, description = "the command")),
    responses(
        (status = 200, description = "its record", body = CommandRecord),
        (status = 400, description = "malformed JSON, path or query", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CommandRecord>, ApiError> {
    Ok(Json(state.host.instances().get_command(id).await?))
}
