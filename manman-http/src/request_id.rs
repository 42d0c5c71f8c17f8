//! Request ids: each request gets one (the caller's `x-request-id` when it is a sensible one,
//! else a new UUID), answered in `x-request-id`, carried by the request's log span, and given
//! to the commands it causes as their correlation id.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header that carries it.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The longest request id taken from a caller.
const MAX_LEN: usize = 64;

/// A request's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// A caller's id when it is 1 to 64 letters, digits, `-`, `_` or `.`.
fn sensible(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty()
        && text.len() <= MAX_LEN
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then(|| text.to_owned())
}

/// Gives the request its id and runs it in a span that carries it.
pub(crate) async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(sensible)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path()
    );
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}
