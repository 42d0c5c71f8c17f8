//! The events of the two Server-Sent Events streams, as schemas: each event as a client reads it
//! — its `event` (the kind), its `id` where it has one, and its `data`, a JSON text whose
//! schema is the `contentSchema` (`application/json`). The streams' responses name these as
//! their `text/event-stream` schema (one event).

use manman_core::console::{ConsoleEnd, ConsoleLine};
use manman_core::event::Event;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// The `data` of a `lagged` event: what the watcher will not see.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = Lagged)]
#[allow(dead_code)] // a schema: the streams write this JSON themselves
pub(crate) struct Lagged {
    /// How many lines (console) or events (event stream) were skipped.
    #[schema(minimum = 1)]
    missed: u64,
}

/// The `data` of a `gap` event: the watcher resumed after an event of an earlier feed (the host
/// restarted or lost the bus since), and missed events nobody can count.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = Gap)]
#[allow(dead_code)] // a schema: the stream writes this JSON itself
pub(crate) struct Gap {
    /// What happened, for a person.
    detail: String,
}

/// One event of `GET /api/v1/instances/{id}/console`.
#[derive(Debug)]
pub(crate) struct ConsoleStreamEvent;

/// One event of `GET /api/v1/events`.
#[derive(Debug)]
pub(crate) struct EventStreamEvent;

/// How an event is numbered: its `id`'s pattern and meaning.
type Numbering = Option<(&'static str, &'static str)>;

/// Console lines: numbered by the worker.
const LINE_NUMBER: Numbering = Some((
    "^[0-9]+$",
    "the line's number (`lagged`: the last line missed): send it back as `Last-Event-ID` to \
     resume after it",
));

/// Events: numbered in the host's feed.
const EVENT_ID: Numbering = Some((
    "^[0-9a-f]+-[0-9]+$",
    "the event's id, `{feed}-{n}`: send it back as `Last-Event-ID` to resume after it",
));

/// An SSE event of these kinds, with this JSON `data`, with an `id` (numbered) or not.
fn sse_event(description: &str, kinds: &[&str], data: &str, numbered: Numbering) -> Schema {
    let mut event = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .description(Some(description))
        .property(
            "event",
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .enum_values(Some(kinds.iter().copied())),
        )
        .required("event")
        .property(
            "data",
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .description(Some(format!("`{data}` as JSON")))
                .content_media_type("application/json")
                .content_schema(Some(Ref::from_schema_name(data))),
        )
        .required("data");
    if let Some((pattern, meaning)) = numbered {
        event = event
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .pattern(Some(pattern))
                    .description(Some(meaning)),
            )
            .required("id");
    }
    event.build().into()
}

impl PartialSchema for ConsoleStreamEvent {
    fn schema() -> RefOr<Schema> {
        let schema = OneOfBuilder::new()
            .description(Some(
                "One event of an instance's console stream: `line` (a console line, numbered), \
                 `lagged` (lines this watcher will not see, `id` the last of them), or, last, \
                 `end` (how the instance ended).",
            ))
            .item(sse_event(
                "A console line.",
                &["line"],
                "ConsoleLine",
                LINE_NUMBER,
            ))
            .item(sse_event(
                "Lines were skipped (the watcher fell behind the backlog, or they never reached \
                 the host).",
                &["lagged"],
                "Lagged",
                LINE_NUMBER,
            ))
            .item(sse_event(
                "The instance has ended, and this is how: the stream's last event.",
                &["end"],
                "ConsoleEnd",
                None,
            ))
            .build();
        RefOr::T(Schema::OneOf(schema))
    }
}

impl ToSchema for ConsoleStreamEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ConsoleLine::name().into_owned(), ConsoleLine::schema()));
        ConsoleLine::schemas(schemas);
        schemas.push((Lagged::name().into_owned(), Lagged::schema()));
        schemas.push((ConsoleEnd::name().into_owned(), ConsoleEnd::schema()));
        ConsoleEnd::schemas(schemas);
    }
}

impl PartialSchema for EventStreamEvent {
    fn schema() -> RefOr<Schema> {
        let schema = OneOfBuilder::new()
            .description(Some(
                "One event of the event stream: its kind (`status`, `command_result`, \
                 `install_progress`) with the Event and its `id`, `lagged` (events this watcher \
                 will not see), or `gap` (resumed after an event of an earlier feed: events \
                 were missed that nobody can count).",
            ))
            .item(sse_event(
                "Something happened.",
                &["status", "command_result", "install_progress"],
                "Event",
                EVENT_ID,
            ))
            .item(sse_event(
                "Events were skipped: the watcher fell a whole ring behind.",
                &["lagged"],
                "Lagged",
                None,
            ))
            .item(sse_event(
                "The watcher resumed after an event of an earlier feed (the host restarted or \
                 lost its bus since): events of that time were missed.",
                &["gap"],
                "Gap",
                None,
            ))
            .build();
        RefOr::T(Schema::OneOf(schema))
    }
}

impl ToSchema for EventStreamEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Event::name().into_owned(), Event::schema()));
        Event::schemas(schemas);
        schemas.push((Lagged::name().into_owned(), Lagged::schema()));
        schemas.push((Gap::name().into_owned(), Gap::schema()));
    }
}
