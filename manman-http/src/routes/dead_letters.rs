//! Dead letters (`admin`): the newest messages this host replica dead-lettered or saw
//! dead-lettered, with their reasons.

use crate::api::ApiState;
use crate::auth::{Access, AdminScope};
use axum::Json;
use axum::extract::State;
use manman_core::host::DeadLetter;

#[utoipa::path(
    get,
    path = "/api/v1/dead-letters",
    operation_id = "list_dead_letters",
    tag = "dead letters",
    responses(
        (status = 200, description = "the newest dead letters this replica recorded (at most 1,000), newest first", body = Vec<DeadLetter>),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin token: dead letters may name workers and show what was forged", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
) -> Json<Vec<DeadLetter>> {
    Json(state.dead_letters.recent())
}
