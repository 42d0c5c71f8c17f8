//! `GET /instances/{id}/console`: Server-Sent Events, backlog then live, resumable with
//! `Last-Event-ID`. Each event is one console line: `id` its number, `data` the line as JSON.

use crate::api::ApiState;
use crate::auth::{Access, ReadScope};
use crate::extract::ApiPath;
use crate::problem::ApiError;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use manman_core::console::ConsoleLine;
use manman_core::id::InstanceId;
use std::convert::Infallible;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

fn event(line: &ConsoleLine) -> Event {
    Event::default()
        .id(line.seq.to_string())
        .event("line")
        .json_data(line)
        .unwrap_or_else(|_| Event::default().comment("unencodable line"))
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/console",
    tag = "instances",
    params(("id" = i64, Path, description = "the instance"), ("Last-Event-ID" = Option<u64>, Header, description = "resume after this line number")),
    responses(
        (status = 200, description = "Server-Sent Events: `event: line`, `id` the line number, `data` a ConsoleLine", body = ConsoleLine, content_type = "text/event-stream"),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn stream(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<InstanceId>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let instance = state.host.get_instance(id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let subscription = state
        .console
        .subscribe(id, after, instance.status.is_terminal());
    let mut last = subscription
        .backlog
        .last()
        .map_or(after.unwrap_or(0), |l| l.seq);
    let backlog = stream::iter(
        subscription
            .backlog
            .iter()
            .map(event)
            .map(Ok)
            .collect::<Vec<_>>(),
    );
    let live = BroadcastStream::new(subscription.live).filter_map(move |item| {
        let out = match item {
            Ok(line) if line.seq > last => {
                last = line.seq;
                Some(Ok(event(&line)))
            }
            Ok(_) => None,
            // This watcher fell behind: say so; it can resume from the last id it saw.
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Some(Ok(Event::default().event("lagged").data(n.to_string())))
            }
        };
        std::future::ready(out)
    });
    let events = backlog
        .chain(live)
        .take_until(state.shutdown.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
