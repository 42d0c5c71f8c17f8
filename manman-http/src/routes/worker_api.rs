//! The worker-facing routes under `/api/v1/worker`: register, heartbeat, config fetch. Each
//! needs a worker token, and a worker acts for itself only: registering under another name,
//! heartbeating as another worker (whose instances the heartbeat would reconcile) or fetching a
//! config none of its instances runs is refused (403). A token whose credentials were revoked
//! after it was made is refused (401, naming the revocation), so a revoked worker stops at its
//! next heartbeat ([`WorkerAccess`] asks the store).

use crate::api::ApiState;
use crate::auth::WorkerAccess;
use crate::extract::{ApiJson, ApiPath};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use manman_core::host::HostError;
use manman_core::id::ConfigId;
use manman_core::instance::InstanceFilter;
use manman_core::ports::ConfigBundle;
use manman_core::worker::{Heartbeat, Registered, WorkerRegistration};

#[utoipa::path(
    post,
    path = "/api/v1/worker/register",
    tag = "worker API",
    request_body = WorkerRegistration,
    responses(
        (status = 200, description = "registered: a new epoch", body = Registered),
        (status = 401, description = "no valid worker token, or its credentials were revoked (the detail says so)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not this worker token's name", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field fails validation (`errors` names it)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn register(
    worker: WorkerAccess,
    State(state): State<ApiState>,
    ApiJson(registration): ApiJson<WorkerRegistration>,
) -> Result<Json<Registered>, ApiError> {
    worker.check(&registration.name, "the name")?;
    Ok(Json(state.host.register_worker(&registration).await?))
}

/// `204` when recorded; `409` when a newer registration superseded this epoch.
#[utoipa::path(
    post,
    path = "/api/v1/worker/heartbeat",
    tag = "worker API",
    request_body = Heartbeat,
    responses(
        (status = 204, description = "recorded"),
        (status = 401, description = "no valid worker token, or its credentials were revoked (the detail says so)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "another worker's heartbeat", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "superseded by a newer registration", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn heartbeat(
    worker: WorkerAccess,
    State(state): State<ApiState>,
    ApiJson(heartbeat): ApiJson<Heartbeat>,
) -> Result<StatusCode, ApiError> {
    let registered = state.host.get_worker(heartbeat.worker_id).await?;
    worker.check(&registered.name, &heartbeat.worker_id.to_string())?;
    state.host.heartbeat(&heartbeat).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/worker/configs/{id}",
    tag = "worker API",
    params(("id" = i64, Path, description = "the config")),
    responses(
        (status = 200, description = "the config and its game", body = ConfigBundle),
        (status = 401, description = "no valid worker token, or its credentials were revoked (the detail says so)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "none of this worker's instances runs it", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn config(
    worker: WorkerAccess,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<ConfigId>,
) -> Result<Json<ConfigBundle>, ApiError> {
    let mut runs_it = false;
    for registered in state.host.list_workers().await? {
        if registered.name != worker.worker_name {
            continue;
        }
        let filter = InstanceFilter {
            worker_id: Some(registered.id),
            config_id: Some(id),
            limit: Some(1),
            ..InstanceFilter::default()
        };
        if !state.host.list_instances(&filter).await?.is_empty() {
            runs_it = true;
            break;
        }
    }
    if !runs_it {
        return Err(ApiError(HostError::Forbidden {
            detail: format!(
                "no instance of {id} is on worker {:?}: a worker fetches the configs it was told to run",
                worker.worker_name
            ),
        }));
    }
    Ok(Json(state.host.config_bundle(id).await?))
}
