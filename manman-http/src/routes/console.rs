//! `GET /instances/{id}/console`: Server-Sent Events, backlog then live, resumable with
//! `Last-Event-ID`. Each event is one console line: `id` its number, `data` the line as JSON.
//! A watcher that falls behind the backlog's window, or lines lost before the host, get a
//! `lagged` event instead of a silent gap: `data` `{"missed":N}`, `id` the number of the last
//! line missed.
//!
//! The console of an ended instance replays the tail its worker handed over (its last 1,000
//! lines, kept in the store: after any restart, on any replica) — or, until that arrives, the
//! hub's backlog — and the stream of every instance that ended closes with an `end` event
//! saying how. When neither is kept any more, the answer is 410, not an empty stream.
//!
//! A live instance whose console this host has not seen from its start (the host restarted, or
//! lost the bus, since) replays its worker's log first: the host asks the worker for the tail
//! (a `send_console_tail` command), waits for it up to 3 s, and goes on with its own lines after
//! the tail's last.

use crate::api::ApiState;
use crate::auth::{Access, ReadScope};
use crate::extract::ApiPath;
use crate::stream_guard::{StreamGuard, StreamRefused};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use manman_core::console::{ConsoleEnd, ConsoleTail};
use manman_core::host::{ConsoleHub, ConsoleItem, Metrics, SharedLine};
use manman_core::id::InstanceId;
use manman_core::instance::Instance;
use manman_core::ports::InstanceRepository;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

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

/// The `end` event: how the instance ended.
fn end_event(end: &ConsoleEnd) -> Event {
    // A ConsoleEnd (numbers, strings, a time) always encodes.
    Event::default()
        .event("end")
        .data(serde_json::to_string(end).unwrap_or_default())
}

/// How the stream learns how the instance ended, once its lines are over.
enum Ending {
    /// It had ended when the stream began.
    Known(Option<ConsoleEnd>),
    /// It was live: read it again when its console closes.
    Ask(Arc<dyn InstanceRepository>, InstanceId),
}

impl Ending {
    async fn end(self) -> Option<ConsoleEnd> {
        match self {
            Self::Known(end) => end,
            Self::Ask(instances, id) => ConsoleEnd::of(&instances.get_instance(id).await.ok()?),
        }
    }
}

/// How long a console waits for the tail it asked a worker for.
const TAIL_WAIT: Duration = Duration::from_secs(3);

/// The lines of a live instance that this host's hub never saw (it restarted, or lost the bus,
/// since the instance started), from its worker's log: the tail kept in the store (read only
/// then), after asking the worker for a fresh one (at most every [`ASK_TAIL_EVERY`](manman_core::host::ASK_TAIL_EVERY) per instance) and waiting for
/// it a moment. `None` when the hub has seen the console from its start.
async fn earlier_lines(
    state: &ApiState,
    instance: &Instance,
    access: &Access<ReadScope>,
) -> Option<ConsoleTail> {
    if state
        .console
        .has_seen_from_start(instance.id, instance.created_at)
    {
        return None;
    }
    let kept = state
        .host
        .instances()
        .console_tail(instance.id)
        .await
        .ok()
        .flatten();
    if !state
        .console
        .should_ask_for_tail(instance.id, tokio::time::Instant::now())
    {
        return kept;
    }
    if let Err(e) = state
        .host
        .instances()
        .request_console_tail(instance, access.origin())
        .await
    {
        tracing::warn!(instance_id = instance.id.get(), error = %e, "could not ask for the console tail");
        return kept;
    }
    let deadline = tokio::time::Instant::now() + TAIL_WAIT;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(fresh) = state.host.instances().console_tail(instance.id).await
            && fresh.is_some()
            && fresh != kept
        {
            return fresh;
        }
    }
    kept
}

#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/console",
    operation_id = "stream_console",
    tag = "instances",
    params(("id" = i64, Path, description = "the instance"), ("Last-Event-ID" = Option<String>, Header, description = "resume after this line number (a value that is not a line number is ignored: the whole backlog is sent)")),
    responses(
        (status = 200, description = "Server-Sent Events, each a ConsoleStreamEvent: `event: line`, `id` the line number, `data` a ConsoleLine; `event: lagged`, `id` the last line missed, `data` a Lagged (`{\"missed\":N}`) when lines were skipped; last, once the instance has ended, `event: end`, `data` a ConsoleEnd saying how. An ended instance's console replays its last 1,000 lines, then ends.", body = crate::openapi::ConsoleStreamEvent, content_type = "text/event-stream"),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 410, description = "it has ended and its console is no longer kept (retention, or its worker was gone when it ended)", body = crate::problem::Problem, content_type = "application/problem+json"),
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
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let instance = state.host.instances().get_instance(id).await?;
    let (subscription, ending) = if instance.status.is_terminal() {
        let subscription = match state.host.instances().console_tail(id).await? {
            Some(tail) => ConsoleHub::replay(tail, after),
            None => state.console.subscribe_ended(id, after).ok_or_else(|| {
                StreamRefused::Gone(format!(
                    "{id} ended ({}), and its console is no longer kept: the host keeps the \
                     last lines of an ended instance for the retention period, when its worker \
                     hands them over as it ends (a worker that was gone then could not); the \
                     worker's log file may still hold them (docs/operations.md)",
                    instance.status
                ))
            })?,
        };
        (subscription, Ending::Known(ConsoleEnd::of(&instance)))
    } else {
        let subscription = match earlier_lines(&state, &instance, &access).await {
            Some(tail) => state.console.subscribe_after_tail(id, tail, after),
            None => state.console.subscribe(id, after),
        };
        (
            subscription,
            Ending::Ask(state.host.store().instances.clone(), id),
        )
    };
    let lines = stream::unfold(
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
    let end = stream::once(ending.end())
        .filter_map(|end| async move { end.map(|end| Ok(end_event(&end))) });
    Ok(Sse::new(guard.watch(lines.chain(end))).keep_alive(KeepAlive::default()))
}
