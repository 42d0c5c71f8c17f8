//! Errors as `application/problem+json` (RFC 9457), mapped from [`HostError`] in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use manman_core::host::HostError;

pub(crate) use manman_client::{PROBLEM_JSON, Problem};

/// A [`Problem`] as an HTTP response: its status, the `application/problem+json` media type,
/// `Retry-After` on a 503 and `WWW-Authenticate: Bearer` on a 401. ([`Problem`] itself lives in
/// `manman-client`, which links no web framework.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemResponse(pub Problem);

impl From<Problem> for ProblemResponse {
    fn from(problem: Problem) -> Self {
        Self(problem)
    }
}

impl IntoResponse for ProblemResponse {
    fn into_response(self) -> Response {
        let Self(problem) = self;
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&problem)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// `problem.into_response()` for a [`Problem`], through [`ProblemResponse`].
pub(crate) trait ProblemExt {
    /// The problem as an HTTP response.
    fn into_response(self) -> Response;
}

impl ProblemExt for Problem {
    fn into_response(self) -> Response {
        ProblemResponse(self).into_response()
    }
}

/// A [`HostError`] as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub HostError);

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        Self(e)
    }
}

impl From<ApiError> for Problem {
    fn from(ApiError(error): ApiError) -> Self {
        match error {
            HostError::Invalid(v) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, v.to_string()).with_errors(v.errors)
            }
            HostError::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, error.to_string()),
            HostError::Unauthenticated { .. } => {
                Self::new(StatusCode::UNAUTHORIZED, error.to_string())
            }
            HostError::Forbidden { .. } => Self::new(StatusCode::FORBIDDEN, error.to_string()),
            HostError::Conflict { .. } | HostError::NoWorker { .. } => {
                Self::new(StatusCode::CONFLICT, error.to_string())
            }
            HostError::Unavailable { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
            }
            other => {
                // Logged once here; the client sees no internals.
                tracing::error!(error = %other, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the host failed to handle this request; see its log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        ProblemResponse(Problem::from(self)).into_response()
    }
}
