//! Accepting and serving the API's connections within [`HttpLimits`].
//!
//! `axum::serve` has no limits at all (no timeouts, no cap), so the host runs its own accept
//! loop over hyper's HTTP/1 connection: at most `max_connections` at once (the next ones wait
//! in the listen queue), each closed when its [`ConnectionDeadline`] passes, each request's
//! body timed by [`crate::body_deadline`]. `TCP_NODELAY` is set on every connection, and a
//! shutdown stops accepting and lets the connections finish what they answer.

use crate::body_deadline::BodyTimeout;
use crate::connection_deadline::{ConnectionDeadline, Wait};
use crate::http_limits::{HttpLimits, PARSER_MAX_HEAD_BYTES, PARSER_MAX_HEADER_FIELDS};
use crate::request_size::parser_error_response;
use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// At most one warning per this interval that the connection cap is reached.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` within `limits` until `shutdown`; then stops accepting, lets open
/// connections finish their requests (streams end with `shutdown` too) and returns when all
/// are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    warn_if_over_open_file_limit(limits.max_connections);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut warned_at: Option<Instant> = None;
    loop {
        if slots.available_permits() == 0
            && warned_at.is_none_or(|at| at.elapsed() >= CAP_WARNING_INTERVAL)
        {
            warned_at = Some(Instant::now());
            tracing::warn!(
                max_connections = limits.max_connections,
                "the connection cap is reached: new connections wait until one ends \
                 (MANMAN_HTTP_MAX_CONNECTIONS)"
            );
        }
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e, &shutdown).await;
                    continue;
                }
            },
        };
        // Small writes (an SSE console line, a short JSON answer) go out at once: with Nagle's
        // algorithm one waits for the peer's delayed ACK, up to 40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
        }
        connections.spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            limits,
            shutdown.clone(),
            slot,
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// File descriptors the host needs besides its API connections (listener, database pool,
/// broker, log files), counted generously.
const OTHER_OPEN_FILES: u64 = 64;

/// Warns when the connection cap does not fit under the process's open-file limit: the cap
/// would never be reached, `accept` would fail instead (and so would opening a database
/// connection or a file while the connections hold every descriptor).
fn warn_if_over_open_file_limit(max_connections: usize) {
    let Some(limit) = open_file_limit() else {
        return;
    };
    let needed = max_connections as u64 + OTHER_OPEN_FILES;
    if needed > limit {
        tracing::warn!(
            max_connections,
            open_file_limit = limit,
            "the connection cap (MANMAN_HTTP_MAX_CONNECTIONS) and the host's other files need \
             about {needed} descriptors, over the open-file limit: raise the limit (ulimit -n, \
             systemd LimitNOFILE=) or lower the cap"
        );
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` elsewhere or when
/// unlimited.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// An error from `accept`: one connection's (it went away before it was accepted) is passed
/// over; others (out of file descriptors) are logged and accepting pauses for a second, since
/// retrying at once would spin (a shutdown ends the pause).
async fn accept_failed(error: &io::Error, shutdown: &CancellationToken) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "could not accept a connection; trying again in 1 s");
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}

/// Serves one connection until the client closes it, its deadline passes, or the server shuts
/// down; `_slot` is its place under the connection cap, freed when it ends.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let deadline = Arc::new(ConnectionDeadline::new(
        Instant::now(),
        limits.header_timeout,
        limits.idle_timeout,
    ));
    let io = TokioIo::new(WatchedStream {
        stream,
        deadline: Arc::clone(&deadline),
        replacement: None,
    });
    let service = {
        let deadline = Arc::clone(&deadline);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let answering = Answering::start(Arc::clone(&deadline));
            let mut request = request.map(Body::new);
            request
                .extensions_mut()
                .insert(BodyTimeout(limits.body_timeout));
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await?;
                Ok::<_, Infallible>(response.map(|body| AnsweredBody {
                    body,
                    _answering: answering,
                }))
            }
        })
    };
    let connection = http1::Builder::new()
        // The connection's own deadline replaces hyper's header timeout, which would also cut
        // idle connections at the header timeout.
        .header_read_timeout(None)
        .max_headers(PARSER_MAX_HEADER_FIELDS)
        .max_header_size(PARSER_MAX_HEAD_BYTES)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let until = deadline.deadline();
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "a connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                // Idle connections close now; one being answered after its answer.
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = deadline.changed() => {}
            () = sleep_until(until) => match deadline.expired(Instant::now()) {
                Some(Wait::Head) => {
                    tracing::debug!(
                        %peer,
                        "closed a connection that sent no complete request head within {:?}",
                        limits.header_timeout
                    );
                    return;
                }
                Some(Wait::Idle) => {
                    tracing::trace!(%peer, "closed a connection idle for {:?}", limits.idle_timeout);
                    return;
                }
                None => {}
            },
        }
    }
}

/// Sleeps until `until`, or for ever when there is no deadline.
async fn sleep_until(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

/// A connection's stream that tells its deadline when bytes arrive, and puts a problem document
/// in the bare answer the HTTP parser writes to a request it could not read
/// ([`parser_error_response`]).
#[derive(Debug)]
struct WatchedStream {
    stream: TcpStream,
    deadline: Arc<ConnectionDeadline>,
    /// A replacement answer being written, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl WatchedStream {
    /// Writes what is left of a replacement answer; ready when none is left.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            match Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` as written when it is the parser's bare answer, to be replaced.
    fn replaces(&mut self, buf: &[u8]) -> bool {
        match parser_error_response(buf) {
            Some(replacement) => {
                self.replacement = Some((replacement, 0));
                true
            }
            None => false,
        }
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.deadline.bytes_read(Instant::now());
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_replacement(cx))?;
        if self.replaces(buf) {
            // Written as far as the parser knows; the replacement goes out on the next calls
            // (flush, shutdown) if it did not all go now.
            let _ = self.poll_replacement(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_replacement(cx))?;
        let mut filled = bufs.iter().filter(|buf| !buf.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && self.replaces(only)
        {
            let _ = self.poll_replacement(cx)?;
            return Poll::Ready(Ok(only.len()));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request being answered: from its head until its response's body is done with.
#[derive(Debug)]
struct Answering(Arc<ConnectionDeadline>);

impl Answering {
    fn start(deadline: Arc<ConnectionDeadline>) -> Self {
        deadline.request_started();
        Self(deadline)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.response_ended(Instant::now());
    }
}

/// A response body that keeps its request [`Answering`] until it is dropped (sent, or the
/// connection is gone).
#[derive(Debug)]
struct AnsweredBody {
    body: Body,
    _answering: Answering,
}

impl http_body::Body for AnsweredBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(open_file_limit().is_some_and(|limit| limit > 0));
        }
    }
}
