//! `/healthz` (the process is alive) and `/readyz` (its store and bus answer).

use crate::api::ApiState;
use crate::problem::Problem;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::time::Duration;

/// How long each backend may take to answer a readiness check.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `200 {"store":"ok","bus":"ok"}`, or `503` problem+json naming what does not answer.
pub(crate) async fn readyz(State(state): State<ApiState>) -> Response {
    let readiness = state.host.readiness(READY_TIMEOUT).await;
    if readiness.is_ready() {
        return Json(json!({"store": "ok", "bus": "ok"})).into_response();
    }
    let mut failing = Vec::new();
    if let Err(why) = &readiness.store {
        failing.push(format!("the store: {why}"));
    }
    if let Err(why) = &readiness.bus {
        failing.push(format!("the message bus: {why}"));
    }
    tracing::warn!(failing = %failing.join("; "), "not ready");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {}", failing.join("; ")),
    )
    .into_response()
}
