//! `GET /events`: every status report, command result and install progress, live, as
//! Server-Sent Events (`event` is the kind, `data` the event as JSON). Each watcher has a
//! temporary queue of its own on `manman.events`, gone when it disconnects.

use crate::api::ApiState;
use crate::auth::{Access, ReadScope};
use crate::problem::ApiError;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use manman_core::event::Event;
use manman_core::host::HostError;
use std::convert::Infallible;

#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    responses(
        (status = 200, description = "Server-Sent Events: `event` the kind, `data` the Event", body = Event, content_type = "text/event-stream"),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "the store or the bus is unavailable (with Retry-After)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn stream(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let consumer = state
        .host
        .bus()
        .watch_events()
        .await
        .map_err(HostError::from)?;
    let events = stream::unfold(consumer, |mut consumer| async move {
        loop {
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    let event = delivery.message.decode::<Event>();
                    let _ = delivery.ack().await;
                    let Ok(event) = event else { continue };
                    let sse = SseEvent::default()
                        .event(event.kind())
                        .json_data(&event)
                        .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"));
                    return Some((Ok(sse), consumer));
                }
                // A receive error is passed over: the next delivery may come.
                Some(Err(_)) => {}
                None => return None,
            }
        }
    })
    .take_until(state.shutdown.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
