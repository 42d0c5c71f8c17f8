//! The worker-facing routes under `/api/v1/worker`: register, heartbeat, config fetch. Each
//! needs a worker token, and a worker acts for itself only: registering under another name,
//! heartbeating as another worker (whose instances the heartbeat would reconcile) or fetching a
//! config none of its instances runs is refused (403).

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

pub(crate) async fn register(
    worker: WorkerAccess,
    State(state): State<ApiState>,
    ApiJson(registration): ApiJson<WorkerRegistration>,
) -> Result<Json<Registered>, ApiError> {
    worker.check(&registration.name, "the name")?;
    Ok(Json(state.host.register_worker(&registration).await?))
}

/// `204` when recorded; `409` when a newer registration superseded this epoch.
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
