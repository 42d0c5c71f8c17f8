//! Headers that tell browsers what not to do with the host's answers: `X-Content-Type-Options:
//! nosniff` on every response (a JSON answer or a console line is never run as a script or a
//! page), and on the interactive docs (`/docs`) a Content Security Policy and
//! `X-Frame-Options: DENY`, so the page that holds a token cannot be framed or made to load
//! anything from elsewhere.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The Content Security Policy of `/docs`. The bundled Swagger UI loads its scripts, styles
/// and the OpenAPI document from this host and calls the API on it (`'self'`); it sets inline
/// styles (`'unsafe-inline'` for styles only: no inline script runs) and draws icons from
/// `data:` images. Nothing may frame it, and forms post only here.
pub(crate) const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The middleware for every response: `X-Content-Type-Options: nosniff`.
pub(crate) async fn nosniff(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The middleware for `/docs`: its Content Security Policy and `X-Frame-Options: DENY`.
pub(crate) async fn docs(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
