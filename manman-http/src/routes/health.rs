//! `/healthz` (the process is alive) and `/readyz` (its store and bus answer, and its status
//! processor consumes its bound queue).

use crate::api::ApiState;
use crate::problem::{Problem, ProblemExt};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// How long each backend may take to answer a readiness check.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses(
        (status = 200, description = "the process is alive", body = String)
    ),
)]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Both backends answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    /// `ok`.
    store: &'static str,
    /// `ok`.
    bus: &'static str,
}

/// `200 {"store":"ok","bus":"ok"}`, or `503` problem+json naming what does not answer — or
/// that the status processor is not consuming its queue (declared and bound to
/// `manman.events`), e.g. while it declares again a queue someone deleted.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "the store and the bus answer, and the status processor consumes its bound queue", body = Ready),
        (status = 503, description = "the detail names what does not answer, or why the status processor is not consuming", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
)]
pub(crate) async fn readyz(State(state): State<ApiState>) -> Response {
    let readiness = state.host.readiness(READY_TIMEOUT).await;
    if readiness.is_ready() {
        return Json(Ready {
            store: "ok",
            bus: "ok",
        })
        .into_response();
    }
    let mut failing = Vec::new();
    if let Err(why) = &readiness.store {
        failing.push(format!("the store: {why}"));
    }
    if let Err(why) = &readiness.bus {
        failing.push(format!("the message bus: {why}"));
    }
    if let Err(why) = &readiness.status_processor {
        failing.push(why.clone());
    }
    tracing::warn!(failing = %failing.join("; "), "not ready");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {}", failing.join("; ")),
    )
    .into_response()
}
