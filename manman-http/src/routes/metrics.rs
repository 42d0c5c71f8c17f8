//! `/metrics`: Prometheus text, and the layer that counts HTTP requests for it.

use crate::api::ApiState;
use crate::problem::ApiError;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The Prometheus text exposition of the host's counters and the store's gauges.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition 0.0.4", body = String, content_type = "text/plain")
    ),
)]
pub(crate) async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let snapshot = state.host.store_snapshot().await?;
    let mut response = state.metrics.render(&snapshot).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// Counts each answered request by method, route (the pattern, not the path: ids do not make
/// new series) and status code.
pub(crate) async fn count_requests(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .http_request(&method, &route, response.status().as_u16());
    response
}
