//! Extractors whose rejections are problem documents that say what was wrong.

use crate::problem::{Problem, ProblemResponse};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A JSON body; malformed JSON, wrong types and unknown fields are 4xx problems. An integer may
/// be written as a number with a zero fraction or an exponent (`522.0`, `5.22e2`): JSON Schema
/// counts those as integers, and so does the API.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Serialize> FromRequest<S> for ApiJson<T> {
    type Rejection = ProblemResponse;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(mut value) = axum::Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(|rejection| json_problem(&rejection))?;
        integral_numbers_as_integers(&mut value);
        let does_not_fit = |detail: String| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the JSON body does not fit this request: {detail}"),
            )
        };
        let parsed: T =
            serde_path_to_error::deserialize(&value).map_err(|e| does_not_fit(e.to_string()))?;
        // Serde reads an object's fields from an array too, by position; the API takes objects
        // as objects only.
        let read_back = serde_json::to_value(&parsed).unwrap_or_default();
        if let Some(path) = array_for_object(&value, &read_back, ".") {
            return Err(does_not_fit(format!(
                "{path}: invalid type: sequence, expected an object"
            ))
            .into());
        }
        Ok(Self(parsed))
    }
}

/// Where `sent` has an array that was read as an object (what `read` serializes to), if
/// anywhere.
fn array_for_object(
    sent: &serde_json::Value,
    read: &serde_json::Value,
    path: &str,
) -> Option<String> {
    use serde_json::Value;
    match (sent, read) {
        (Value::Array(_), Value::Object(_)) => Some(path.to_owned()),
        (Value::Object(sent), Value::Object(read)) => sent.iter().find_map(|(key, sent)| {
            let path = if path == "." {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            read.get(key)
                .and_then(|read| array_for_object(sent, read, &path))
        }),
        (Value::Array(sent), Value::Array(read)) => sent
            .iter()
            .zip(read)
            .enumerate()
            .find_map(|(i, (sent, read))| array_for_object(sent, read, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// The largest integer a JSON number with a fraction or an exponent (an `f64`) holds exactly.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0; // 2^53

/// Numbers written with a zero fraction or an exponent that are whole (`522.0`, `1e3`) become
/// integers, when an `f64` holds them exactly (up to 2^53); other numbers stay as they are.
fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64())
                && float.fract() == 0.0
                && float.abs() <= MAX_EXACT_INTEGER
            {
                // Exact: whole and within ±2^53.
                #[allow(clippy::cast_possible_truncation)]
                let integer = float as i64;
                *number = integer.into();
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(integral_numbers_as_integers)
        }
        _ => {}
    }
}

fn json_problem(rejection: &JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonDataError(e) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the JSON body does not fit this request: {}",
                std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string)
            ),
        ),
        JsonRejection::JsonSyntaxError(e) => Problem::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the body is not valid JSON: {}",
                std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string)
            ),
        ),
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as JSON with `Content-Type: application/json`",
        ),
        other => Problem::new(other.status(), other.body_text()),
    }
}

/// Path parameters; a malformed id is a 400 problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ProblemResponse;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|e: PathRejection| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("bad path: {}", e.body_text()),
                )
                .into()
            })
    }
}

/// Query parameters; bad ones are a 400 problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ProblemResponse;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|e: QueryRejection| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("bad query: {}", e.body_text()),
                )
                .into()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_array_read_as_an_object_is_found() {
        let read = json!({"steam": {"branch": null, "validate": false}, "args": ["a"]});
        assert_eq!(
            array_for_object(&json!({"steam": [null, false]}), &read, "."),
            Some("steam".to_owned())
        );
        assert_eq!(
            array_for_object(&json!([null, false]), &read, "."),
            Some(".".to_owned())
        );
        let sent = json!({"steam": {"branch": null}, "args": ["a"]});
        assert_eq!(array_for_object(&sent, &read, "."), None);
    }

    #[test]
    fn whole_numbers_with_a_fraction_or_an_exponent_are_integers() {
        let mut value = json!({"a": 522.0, "b": [1e3, 2.5, -0.0, 7], "c": 1e300, "d": "9.0"});
        integral_numbers_as_integers(&mut value);
        assert_eq!(
            value,
            json!({"a": 522, "b": [1000, 2.5, 0, 7], "c": 1e300, "d": "9.0"})
        );
        assert!(value["a"].is_u64());
    }
}
