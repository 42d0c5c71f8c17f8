//! `GET /events`: every status report, command result and install progress, live, as
//! Server-Sent Events (`event` is the kind, `data` the event as JSON). The host receives the
//! events once and every watcher reads them from its [`EventHub`](manman_core::host::EventHub);
//! a watcher that falls too far behind gets a `lagged` event (`data` `{"missed":N}`) and the
//! events after the gap. When the host loses the bus the stream ends (the client reconnects
//! and knows it may have missed events). Each event has an `id`: a watcher that reconnects with
//! it as `Last-Event-ID` gets the events after it that the host still holds (the last 1,024),
//! then the live ones; an id of an earlier feed (the host restarted or lost the bus since) gets
//! a `gap` event first (`data` `{"detail":…}`): events were missed that nobody can count.

use crate::api::ApiState;
use crate::auth::{Access, ReadScope};
use crate::stream_guard::{StreamGuard, StreamRefused};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::{self, Stream};
use manman_core::host::{EventItem, HostError, Metrics};
use std::convert::Infallible;
use std::time::Duration;

/// How long a request waits for the host's event feed to connect to the bus (at the host's
/// start, or while it reconnects) before it is answered 503.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "stream_events",
    tag = "events",
    params(("Last-Event-ID" = Option<String>, Header, description = "resume after this event (its `id`)")),
    responses(
        (status = 200, description = "Server-Sent Events, each an EventStreamEvent: `event` the kind, `id` the event's id (send it back as Last-Event-ID to resume after it), `data` the Event; `event: lagged`, `data` a Lagged (`{\"missed\":N}`) when events were skipped; `event: gap`, `data` a Gap, when the id resumed after is of an earlier feed", body = crate::openapi::EventStreamEvent, content_type = "text/event-stream"),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "the token or the host has as many streams open as it may", body = crate::problem::Problem, content_type = "application/problem+json", headers(("Retry-After" = String, description = "seconds to wait before trying again"))),
        (status = 503, description = "the host's event feed is not connected to the bus (with Retry-After)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn stream(
    access: Access<ReadScope>,
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, StreamRefused> {
    let guard = StreamGuard::admit(&state, &access.caller, &headers)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let subscription = state
        .events
        .subscribe(CONNECT_WAIT, resume)
        .await
        .ok_or_else(|| {
            HostError::unavailable(
                "the host's event feed is not connected to the message bus; retry in a few \
                 seconds (the host reconnects by itself)",
            )
        })?;
    let events = stream::unfold(
        (subscription, state.metrics),
        |(mut subscription, metrics): (_, Metrics)| async move {
            let sse = match subscription.next().await? {
                EventItem::Event(event) => SseEvent::default()
                    .id(event.id())
                    .event(event.event().kind())
                    .data(event.json()),
                EventItem::Gap => SseEvent::default().event("gap").data(
                    "{\"detail\":\"the host restarted or lost its message bus since the event \
                     resumed after: events of that time were missed\"}",
                ),
                EventItem::Lagged { missed } => {
                    metrics.events_dropped(missed);
                    SseEvent::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{missed}}}"))
                }
            };
            Some((Ok(sse), (subscription, metrics)))
        },
    );
    Ok(Sse::new(guard.watch(events)).keep_alive(KeepAlive::default()))
}
