//! A request's body must arrive within the body timeout: a body trickled byte by byte ends
//! the request with 408 problem+json (and the connection), instead of holding a handler and a
//! connection for as long as the client likes.
//!
//! The deadline covers the whole body, not the gap between two of its bytes: a per-read
//! timeout is defeated by sending one byte just before each timeout.

use crate::problem::{Problem, ProblemExt};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The body timeout of the connection a request came on: put in the request's extensions by
/// the server (see [`crate::HttpLimits::body_timeout`]). A request without it (a router called
/// without the host's server, as in tests) has no body deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyTimeout(pub(crate) Duration);

/// The middleware: times the request's body from now (its head is in) and answers 408 when
/// it was late, whatever the handler made of the failed read.
pub(crate) async fn enforce(request: Request, next: Next) -> Response {
    let Some(&BodyTimeout(timeout)) = request.extensions().get::<BodyTimeout>() else {
        return next.run(request).await;
    };
    if http_body::Body::is_end_stream(request.body()) {
        // Nothing to wait for (a GET, say).
        return next.run(request).await;
    }
    let late = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + timeout;
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            body,
            deadline,
            sleep: None,
            late: Arc::clone(&late),
        })
    });
    let response = next.run(request).await;
    if !late.load(Ordering::Relaxed) {
        return response;
    }
    let mut response = Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request body did not arrive within {} ms of its headers: send the whole body \
             at once (MANMAN_HTTP_BODY_TIMEOUT_MS on the host sets the limit)",
            timeout.as_millis()
        ),
    )
    .into_response();
    // What is left of the body would be read as the next request: the connection ends.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Why a body read failed: its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyLate;

/// A request body that fails once its deadline passes.
#[derive(Debug)]
struct DeadlineBody {
    body: Body,
    deadline: Instant,
    /// Armed at the first read that has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
    late: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.late.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(BodyLate))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
