//! Requests over the documented size limits are answered 414 (URI) or 431 (header fields) with
//! a problem document, before any handler (or the token check) sees them. The HTTP parser's own
//! limits are set well above these, so a normal client always gets a problem document and a
//! bare 431 is only for heads no client sends.

use crate::http_limits::{MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_URI_BYTES};
use crate::problem::Problem;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The middleware: 414 or 431 problem+json for a request over the limits.
pub(crate) async fn check(request: Request, next: Next) -> Response {
    if let Some(problem) = too_large(request.uri(), request.headers()) {
        return problem.into_response();
    }
    next.run(request).await
}

/// The problem with a request of this URI and these headers, if it is over a limit.
fn too_large(uri: &Uri, headers: &HeaderMap) -> Option<Problem> {
    let uri_bytes = uri.scheme_str().map_or(0, |scheme| scheme.len() + 3)
        + uri
            .authority()
            .map_or(0, |authority| authority.as_str().len())
        + uri.path_and_query().map_or(0, |path| path.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return Some(Problem::new(
            StatusCode::URI_TOO_LONG,
            format!(
                "the request URI is {uri_bytes} bytes long; the host reads at most \
                 {MAX_URI_BYTES}: shorten the path and query (fewer or shorter parameters)"
            ),
        ));
    }
    let fields = headers.len();
    // On the wire each field is `name: value\r\n`.
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if fields > MAX_HEADER_FIELDS || header_bytes > MAX_HEADER_BYTES {
        return Some(Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request has {fields} header fields of {header_bytes} bytes in all; the host \
                 reads at most {MAX_HEADER_FIELDS} fields of {MAX_HEADER_BYTES} bytes: send \
                 fewer or smaller headers (a large cookie?)"
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_uri_at_the_limit_passes_and_one_byte_more_is_414() {
        let at = format!(
            "/healthz?q={}",
            "a".repeat(MAX_URI_BYTES - "/healthz?q=".len())
        );
        let uri: Uri = at.parse().expect("uri");
        assert!(too_large(&uri, &HeaderMap::new()).is_none());
        let over: Uri = format!("{at}a").parse().expect("uri");
        let problem = too_large(&over, &HeaderMap::new()).expect("too long");
        assert_eq!(problem.status, 414);
    }

    #[test]
    fn too_many_or_too_large_header_fields_are_431() {
        let uri = Uri::from_static("/healthz");
        let mut headers = HeaderMap::new();
        for n in 0..MAX_HEADER_FIELDS {
            headers.append(
                axum::http::HeaderName::from_bytes(format!("x-h{n}").as_bytes()).expect("name"),
                HeaderValue::from_static("v"),
            );
        }
        assert!(too_large(&uri, &headers).is_none());
        headers.append("x-one-more", HeaderValue::from_static("v"));
        assert_eq!(too_large(&uri, &headers).expect("too many").status, 431);

        let mut headers = HeaderMap::new();
        let big = HeaderValue::from_str(&"c".repeat(MAX_HEADER_BYTES)).expect("value");
        headers.insert("cookie", big);
        assert_eq!(too_large(&uri, &headers).expect("too large").status, 431);
    }
}
