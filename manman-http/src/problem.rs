//! Errors as `application/problem+json` (RFC 9457), mapped from [`HostError`] in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use manman_core::host::HostError;
use manman_core::validation::FieldError;
use serde::{Deserialize, Serialize};

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem document: what went wrong, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` when the title says it all).
    #[serde(rename = "type", default = "about_blank")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened here and what to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The fields that failed validation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

impl Problem {
    /// A problem with a status, a title and a detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: about_blank(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: Some(detail.into()),
            errors: Vec::new(),
        }
    }

    /// With field-level errors.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
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
        Problem::from(self).into_response()
    }
}
