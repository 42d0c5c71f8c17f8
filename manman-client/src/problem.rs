//! Problem documents (`application/problem+json`, RFC 9457): what the host answers when a request
//! fails, and what [`Client`](crate::Client) parses from it.

use manman_core::validation::FieldError;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem document: what went wrong, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

    /// The problem document of a failed answer: its body when that is one, else one made from its
    /// status and body (a proxy's error page, say).
    pub fn from_answer(status: StatusCode, body: &[u8]) -> Self {
        serde_json::from_slice::<Self>(body)
            .unwrap_or_else(|_| Self::new(status, String::from_utf8_lossy(body).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_document_parses_and_anything_else_becomes_one() {
        let body = br#"{"title":"Conflict","status":409,"detail":"instance 3 is complete"}"#;
        let problem = Problem::from_answer(StatusCode::CONFLICT, body);
        assert_eq!(problem.kind, "about:blank");
        assert_eq!(problem.detail.as_deref(), Some("instance 3 is complete"));

        let problem = Problem::from_answer(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert_eq!(problem.status, 502);
        assert_eq!(problem.title, "Bad Gateway");
        assert_eq!(problem.detail.as_deref(), Some("<html>bad gateway</html>"));
    }
}
