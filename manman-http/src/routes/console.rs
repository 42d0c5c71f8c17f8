//! `GET /instances/{id}/console`: Server-Sent Events, backlog then live, resumable with
//! `Last-Event-ID`. Each event is one console line: `id` its number, `data` the line as JSON.
//! A watcher that falls behind the backlog's window, or lines lost before the host, get a
//! `lagged` event instead of a silent gap: `data` `{"missed":N}`, `id` the number of the last
//! line missed.

use crate::api::ApiState;
use crate::auth::{Access, ReadScope};
use crate::extract::ApiPath;
use crate::stream_guard::{StreamGuard, StreamRefused};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream};
use manman_core::host::{ConsoleItem, Metrics, SharedLine};
use manman_core::id::InstanceId;
use std::convert::Infallible;

fn line_event(line: &SharedLine) -> Event {
    Event::default()
        .id(line.seq().to_string())
        .event("line")
        .data(line.json())
}

/// The `lagged` event for `missed` lines up to `last_missed`.
fn lagged_event(missed: u64, last_missed: u64) -> Event {
    Event::default()
        .id(last_missed.to_string())
        .event("lagged")
        .data(format!("{{\"missed\":{missed}}}"))
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/console",
    operation_id = "stream_console",
    tag = "instances",
    params(("id" = i64, Path, description = "the instance"), ("Last-Event-ID" = Option<String>, Header, description = "resume after this line number (a value that is not a line number is ignored: the whole backlog is sent)")),
    responses(
        (status = 200, description = "Server-Sent Events, each a ConsoleStreamEvent: `event: line`, `id` the line number, `data` a ConsoleLine; `event: lagged`, `id` the last line missed, `data` a Lagged (`{\"missed\":N}`) when lines were skipped", body = crate::openapi::ConsoleStreamEvent, content_type = "text/event-stream"),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "the token or the host has as many streams open as it may", body = crate::problem::Problem, content_type = "application/problem+json", headers(("Retry-After" = String, description = "seconds to wait before trying again")))
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn stream(
    access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, StreamRefused> {
    let guard = StreamGuard::admit(&state, &access.caller, &headers)?;
    let instance = state.host.get_instance(id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let subscription = state
        .console
        .subscribe(id, after, instance.status.is_terminal());
    let events = stream::unfold(
        (subscription, state.metrics),
        |(mut subscription, metrics): (_, Metrics)| async move {
            let event = match subscription.next().await? {
                ConsoleItem::Line(line) => line_event(&line),
                ConsoleItem::Lagged {
                    missed,
                    last_missed,
                } => {
                    metrics.console_lines_dropped(missed);
                    lagged_event(missed, last_missed)
                }
            };
            Some((Ok(event), (subscription, metrics)))
        },
    );
    Ok(Sse::new(guard.watch(events)).keep_alive(KeepAlive::default()))
}
