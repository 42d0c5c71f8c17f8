//! Requests over the documented size limits are answered 414 (URI) or 431 (header fields) with
//! a problem document, before any handler (or the token check) sees them. The HTTP parser's own
//! limits are set well above these; what it refuses itself (a head over 64 KiB or with more
//! than 128 fields, a request line or header that does not parse) it answers with a bare
//! status line, which [`parser_error_response`] turns into a problem document too.

use crate::http_limits::{
    MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_URI_BYTES, PARSER_MAX_HEAD_BYTES,
    PARSER_MAX_HEADER_FIELDS,
};
use crate::problem::{Problem, ProblemExt};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;

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

/// The answer to send instead of `head`, when `head` is the bodiless answer the HTTP parser
/// writes itself to a request it could not read (400, 414 or 431 with `content-length: 0`; the
/// API's own answers with these codes always have a problem document): the same status line
/// and fields, with a problem document and `connection: close`.
pub(crate) fn parser_error_response(head: &[u8]) -> Option<Vec<u8>> {
    let status = [
        (b"HTTP/1.1 400 ", 400),
        (b"HTTP/1.1 414 ", 414),
        (b"HTTP/1.1 431 ", 431),
    ]
    .into_iter()
    .find_map(|(line, status)| head.starts_with(line).then_some(status))?;
    let head = std::str::from_utf8(head).ok()?.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut fields = Vec::new();
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => empty = value.trim() == "0",
            "connection" => {} // closed: said below
            "content-type" | "transfer-encoding" => return None,
            _ => fields.push(line),
        }
    }
    if !empty {
        return None;
    }
    let detail = match status {
        400 => "the request is not valid HTTP/1.1: its request line or a header field does not \
                parse"
            .to_owned(),
        414 => format!(
            "the request URI is too long to read; the host reads at most {MAX_URI_BYTES} bytes: \
             shorten the path and query"
        ),
        _ => format!(
            "the request head is over {PARSER_MAX_HEAD_BYTES} bytes or has more than \
             {PARSER_MAX_HEADER_FIELDS} header fields; the host reads at most \
             {MAX_HEADER_FIELDS} fields of {MAX_HEADER_BYTES} bytes: send fewer or smaller \
             headers (a large cookie?)"
        ),
    };
    let problem = Problem::new(StatusCode::from_u16(status).ok()?, detail);
    let body = serde_json::to_vec(&problem).ok()?;
    let mut response = format!("{status_line}\r\n");
    for field in fields {
        response.push_str(field);
        response.push_str("\r\n");
    }
    response.push_str(&format!(
        "content-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\
         x-content-type-options: nosniff\r\n\r\n",
        crate::problem::PROBLEM_JSON,
        body.len()
    ));
    let mut response = response.into_bytes();
    response.extend_from_slice(&body);
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_parsers_bare_answers_become_problem_documents() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        let answer =
            String::from_utf8(parser_error_response(bare).expect("replaced")).expect("text");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\ndate: Thu, 01 Jan 2026"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/problem+json\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{head}"
        );
        let problem: Problem = serde_json::from_str(body).expect("a problem document");
        assert_eq!(problem.status, 431);
        // The API's own answers (with a body) and other statuses pass as they are.
        for kept in [
            &b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/problem+json\r\ncontent-length: 90\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nmore",
        ] {
            assert!(parser_error_response(kept).is_none());
        }
    }

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
