//! The SSE streams (`/api/v1/events`, `/api/v1/instances/{id}/console`) cannot exhaust the host
//! and do not outlive their token: revoked tokens' streams end, streams are capped per token
//! and in all (429), and a watcher that falls behind is told how much it missed.
//!
//! Revocation and caps run on a real `HostServer` over a socket (a stream's end is the server
//! closing it); lag runs on the router with `oneshot`, whose body is read only when the test
//! reads it — a watcher as slow as the test wants.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use http_body_util::BodyExt;
use manman_core::auth::Scope;
use manman_core::bus::Bus;
use manman_core::command::{CommandOutcome, CommandResult};
use manman_core::config::ConfigSpec;
use manman_core::console::{ConsoleLine, ConsoleStream};
use manman_core::event::Event;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::{
    Authenticator, CACHE_TTL, ConsoleHub, EVENT_BUFFER, EventHub, HostService, Metrics, SigningKey,
};
use manman_core::id::{InstanceId, TokenId, WorkerId};
use manman_core::instance::NewInstance;
use manman_core::memory::{MemoryBus, MemoryStore};
use manman_core::ports::SystemClock;
use manman_core::store::Store;
use manman_core::worker::WorkerRegistration;
use manman_http::{
    ApiState, HostServer, RECHECK_EVERY, ServeOptions, SseEvent, SseParser, StreamLimits,
    StreamSlots, router,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The longest a revoked token's stream may stay open on the replica that revoked it.
const REVOKED_WITHIN: Duration = Duration::from_secs(5);

/// A host on the memory store and bus, with its store's first instance and an admin token.
struct Host {
    server: HostServer,
    instance: InstanceId,
    admin: String,
    http: reqwest::Client,
}

/// A store with one instance (created, on a registered worker) in it.
async fn store_with_instance() -> (Store, InstanceId) {
    let store = Store::from_adapter(MemoryStore::new());
    let now = Utc::now();
    let game = store
        .catalogue
        .create_game(
            &NewGameServer {
                name: "streams".into(),
                server_type: ServerType::Local {
                    path: "streams".into(),
                },
            },
            now,
        )
        .await
        .expect("game");
    let config = store
        .catalogue
        .create_config(game.id, &ConfigSpec::new("streams", "server"), now)
        .await
        .expect("config");
    let worker = store
        .workers
        .register_worker(
            &WorkerRegistration {
                name: "streams".into(),
                version: "1".into(),
                capacity: 1,
                labels: Default::default(),
                taken_up: Vec::new(),
            },
            now,
        )
        .await
        .expect("worker");
    let instance = store
        .instances
        .create_instance(&NewInstance {
            config_id: config.id,
            worker_id: worker.id,
            worker_epoch: worker.epoch,
            created_at: now,
        })
        .await
        .expect("instance");
    (store, instance.id)
}

fn memory_bus() -> Bus {
    let memory = MemoryBus::new();
    Bus::new(Arc::new(memory.clone()), Arc::new(memory))
}

/// A host serving `store` and `bus` with `limits`.
async fn start_on(store: Store, bus: Bus, instance: InstanceId, limits: StreamLimits) -> Host {
    bus.declare().await.expect("topology");
    let host = HostService::new(store, bus, Arc::new(SystemClock));
    let mut options = ServeOptions::new("127.0.0.1:0".parse().expect("addr"));
    options.streams = limits;
    let server = HostServer::start(host, options).await.expect("host");
    let admin = match server.auth().ensure_admin(None).await.expect("admin") {
        Some(secret) => secret.expose().to_owned(),
        // A second replica of the same store: the first made the admin token.
        None => String::new(),
    };
    Host {
        server,
        instance,
        admin,
        http: reqwest::Client::new(),
    }
}

async fn start(limits: StreamLimits) -> Host {
    let (store, instance) = store_with_instance().await;
    start_on(store, memory_bus(), instance, limits).await
}

impl Host {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr())
    }

    async fn token(&self, name: &str) -> (TokenId, String) {
        let (token, secret) = self
            .server
            .auth()
            .create_token(name, Scope::Read)
            .await
            .expect("token");
        (token.id, secret.expose().to_owned())
    }

    fn console_path(&self) -> String {
        format!("/api/v1/instances/{}/console", self.instance.get())
    }

    /// Opens `path` as an SSE stream with `token`: the response, whatever its status.
    async fn open(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .header(header::ACCEPT, "text/event-stream")
            .send()
            .await
            .expect("an answer")
    }

    /// Opens `path` and expects the stream to be admitted.
    async fn stream(&self, path: &str, token: &str) -> reqwest::Response {
        let response = self.open(path, token).await;
        assert_eq!(response.status(), StatusCode::OK, "{path} opens");
        response
    }
}

/// Reads `stream` until the server ends it.
async fn until_end(mut stream: reqwest::Response) {
    while let Ok(Some(_)) = stream.chunk().await {}
}

/// Whether `stream` is still open after `wait` (it sends nothing meanwhile but keep-alives).
async fn still_open(stream: &mut reqwest::Response, wait: Duration) -> bool {
    tokio::time::timeout(wait, async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await
    .is_err()
}

/// Asserts a 429 problem document with `Retry-After` whose detail names `setting`.
async fn assert_too_many(response: reqwest::Response, setting: &str) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(
        response.headers().contains_key(header::RETRY_AFTER),
        "a 429 says when to retry"
    );
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(body["status"], 429);
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(setting), "{detail:?} names {setting}");
}

#[tokio::test]
async fn a_revoked_token_ends_its_event_and_console_streams_within_5_s() {
    let host = start(StreamLimits::default()).await;
    let (revoked_id, revoked) = host.token("revoked").await;
    let (_, kept) = host.token("kept").await;
    let events = host.stream("/api/v1/events", &revoked).await;
    let console = host.stream(&host.console_path(), &revoked).await;
    let mut other = host.stream("/api/v1/events", &kept).await;

    let answer = host
        .http
        .delete(host.url(&format!("/api/v1/tokens/{}", revoked_id.get())))
        .bearer_auth(&host.admin)
        .send()
        .await
        .expect("revoke");
    assert!(answer.status().is_success(), "revoked: {}", answer.status());

    tokio::time::timeout(REVOKED_WITHIN, async {
        tokio::join!(until_end(events), until_end(console));
    })
    .await
    .expect("the revoked token's streams end within 5 s");
    assert!(
        still_open(&mut other, 2 * RECHECK_EVERY).await,
        "another token's stream stays open"
    );
    host.server.stop().await;
}

#[tokio::test]
async fn a_token_revoked_on_another_replica_ends_its_streams_once_the_cache_forgets_it() {
    let (store, instance) = store_with_instance().await;
    let bus = memory_bus();
    let first = start_on(
        store.clone(),
        bus.clone(),
        instance,
        StreamLimits::default(),
    )
    .await;
    let second = start_on(store, bus, instance, StreamLimits::default()).await;
    let (id, token) = first.token("watcher").await;
    let console = second.stream(&second.console_path(), &token).await;

    first.server.auth().revoke_token(id).await.expect("revoke");
    // The second replica remembers the token for CACHE_TTL at most, and re-checks it every
    // RECHECK_EVERY.
    tokio::time::timeout(
        CACHE_TTL + RECHECK_EVERY + Duration::from_secs(2),
        until_end(console),
    )
    .await
    .expect("the stream on the other replica ends once its cache forgets the token");
    second.server.stop().await;
    first.server.stop().await;
}

#[tokio::test]
async fn two_hundred_stream_attempts_from_one_token_meet_the_per_token_cap() {
    let host = start(StreamLimits::default()).await;
    let (_, token) = host.token("greedy").await;
    let console = host.console_path();
    let attempts = (0..200).map(|i| {
        let path = if i % 2 == 0 {
            "/api/v1/events"
        } else {
            console.as_str()
        };
        host.open(path, &token)
    });
    let answers = futures::future::join_all(attempts).await;
    let (open, refused): (Vec<_>, Vec<_>) = answers
        .into_iter()
        .partition(|r| r.status() == StatusCode::OK);
    assert_eq!(open.len(), manman_http::DEFAULT_STREAMS_PER_TOKEN);
    assert_eq!(refused.len(), 200 - manman_http::DEFAULT_STREAMS_PER_TOKEN);
    for response in refused {
        assert_too_many(response, "MANMAN_MAX_STREAMS_PER_TOKEN").await;
    }

    // The cap is the token's: another token still gets a stream.
    let (_, other) = host.token("other").await;
    let other_stream = host.stream("/api/v1/events", &other).await;

    // Streams that end give their slots back: the token gets streams again.
    drop(open);
    let reopened = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let response = host.open("/api/v1/events", &token).await;
            if response.status() == StatusCode::OK {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("closed streams give their slots back");
    drop((reopened, other_stream));
    host.server.stop().await;
}

#[tokio::test]
async fn the_total_cap_refuses_every_token_beyond_it() {
    let host = start(StreamLimits {
        per_token: 16,
        total: 3,
    })
    .await;
    let (_, a) = host.token("a").await;
    let (_, b) = host.token("b").await;
    let _a1 = host.stream("/api/v1/events", &a).await;
    let _a2 = host.stream(&host.console_path(), &a).await;
    let b1 = host.stream("/api/v1/events", &b).await;
    assert_too_many(
        host.open("/api/v1/events", &b).await,
        "MANMAN_MAX_STREAMS=3",
    )
    .await;
    assert_too_many(
        host.open(&host.console_path(), &a).await,
        "MANMAN_MAX_STREAMS=3",
    )
    .await;
    drop(b1);
    tokio::time::timeout(Duration::from_secs(10), async {
        while host.open("/api/v1/events", &b).await.status() != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a slot comes back when a stream ends");
    host.server.stop().await;
}

/// The router on its own (no socket), with hubs the test feeds.
struct Router {
    router: axum::Router,
    console: ConsoleHub,
    events: EventHub,
    instance: InstanceId,
    token: String,
    host: HostService,
}

async fn router_app() -> Router {
    let (store, instance) = store_with_instance().await;
    let bus = memory_bus();
    bus.declare().await.expect("topology");
    let host = HostService::new(store, bus, Arc::new(SystemClock));
    let auth = Authenticator::new(
        host.store().credentials.clone(),
        host.clock(),
        SigningKey::random(),
    );
    let (_, secret) = auth.create_token("slow", Scope::Read).await.expect("token");
    let console = ConsoleHub::default();
    let events = EventHub::default();
    // Connected to the bus, as on a host; the test publishes into it directly.
    let (hub, feed, stop) = (events.clone(), host.bus().clone(), CancellationToken::new());
    let token = stop.clone();
    tokio::spawn(async move { hub.run(&feed, token).await });
    let state_host = host.clone();
    let router = router(ApiState {
        host,
        console: console.clone(),
        auth,
        metrics: Metrics::new(),
        shutdown: stop,
        events: events.clone(),
        streams: StreamSlots::default(),
        dead_letters: Default::default(),
    });
    Router {
        router,
        console,
        events,
        instance,
        token: secret.expose().to_owned(),
        host: state_host,
    }
}

/// An SSE body read only as fast as the test asks.
struct SlowWatcher {
    body: Body,
    parser: SseParser,
}

impl SlowWatcher {
    /// The next `n` events (bounded wait).
    async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(n);
        tokio::time::timeout(Duration::from_secs(10), async {
            while events.len() < n {
                if let Some(event) = self.parser.next_event() {
                    events.push(event);
                    continue;
                }
                let frame = self.body.frame().await.expect("open").expect("a frame");
                if let Ok(data) = frame.into_data() {
                    self.parser.push(&data);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} events within 10 s; got {}", events.len()));
        events
    }
}

impl Router {
    async fn get(&self, path: &str) -> axum::response::Response {
        self.get_after(path, None).await
    }

    /// GET `path`, resuming after `last_event_id` when given.
    async fn get_after(&self, path: &str, last_event_id: Option<&str>) -> axum::response::Response {
        let mut request =
            Request::get(path).header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        self.router
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    async fn watch(&self, path: &str) -> SlowWatcher {
        self.watch_after(path, None).await
    }

    async fn watch_after(&self, path: &str, last_event_id: Option<&str>) -> SlowWatcher {
        let response = self.get_after(path, last_event_id).await;
        assert_eq!(response.status(), StatusCode::OK);
        SlowWatcher {
            body: response.into_body(),
            parser: SseParser::default(),
        }
    }

    async fn metric(&self, name: &str) -> u64 {
        let response = self.get("/metrics").await;
        let text = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&text).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
    }

    fn line(&self, seq: u64) -> ConsoleLine {
        ConsoleLine {
            instance_id: self.instance,
            seq,
            stream: ConsoleStream::Stdout,
            text: format!("line {seq}"),
            at: Utc::now(),
        }
    }
}

#[tokio::test]
async fn a_slow_console_watcher_is_told_how_many_lines_it_missed_and_metrics_count_them() {
    let app = router_app().await;
    app.console.push(app.line(1));
    let mut watcher = app
        .watch(&format!("/api/v1/instances/{}/console", app.instance.get()))
        .await;
    let first = watcher.take(1).await;
    assert_eq!(
        (first[0].event.as_str(), first[0].id.as_deref()),
        ("line", Some("1"))
    );

    // 3,000 lines while the watcher reads nothing: the backlog keeps the last 1,000.
    for seq in 2..=3_000 {
        app.console.push(app.line(seq));
    }
    let events = watcher.take(1 + 1_000).await;
    assert_eq!(events[0].event, "lagged");
    assert_eq!(
        events[0].id.as_deref(),
        Some("2000"),
        "the last line missed"
    );
    let lagged: Value = serde_json::from_str(&events[0].data).expect("json");
    assert_eq!(lagged["missed"], 1_999, "lines 2..=2000 were skipped");
    let seqs: Vec<u64> = events[1..]
        .iter()
        .map(|e| {
            assert_eq!(e.event, "line");
            serde_json::from_str::<ConsoleLine>(&e.data)
                .expect("a console line")
                .seq
        })
        .collect();
    assert_eq!(
        seqs,
        (2_001..=3_000).collect::<Vec<_>>(),
        "then every line, in order"
    );
    assert_eq!(
        app.metric("manman_console_lines_dropped_total").await,
        1_999
    );

    // Lines that never reached the host (the worker dropped 3001..=3004) are a gap too.
    app.console.push(app.line(3_005));
    let gap = watcher.take(2).await;
    assert_eq!(gap[0].event, "lagged");
    assert_eq!(gap[0].data, r#"{"missed":4}"#);
    assert_eq!(gap[1].id.as_deref(), Some("3005"));
    assert_eq!(
        app.metric("manman_console_lines_dropped_total").await,
        2_003
    );
}

#[tokio::test]
async fn a_slow_event_watcher_is_told_how_many_events_it_missed() {
    let app = router_app().await;
    let mut watcher = app.watch("/api/v1/events").await;
    let extra = 500;
    for n in 0..(EVENT_BUFFER + extra) {
        app.events.publish(Event::CommandResult(CommandResult {
            command_id: uuid::Uuid::new_v4(),
            worker_id: WorkerId(i64::try_from(n).expect("small")),
            outcome: CommandOutcome::Succeeded,
            detail: None,
            reported_at: Utc::now(),
        }));
    }
    let events = watcher.take(1 + EVENT_BUFFER).await;
    assert_eq!(events[0].event, "lagged");
    assert_eq!(events[0].data, format!("{{\"missed\":{extra}}}"));
    let first: Event = serde_json::from_str(&events[1].data).expect("an event");
    let Event::CommandResult(first) = first else {
        panic!("a command result");
    };
    assert_eq!(
        first.worker_id,
        WorkerId(extra as i64),
        "the oldest kept event"
    );
    assert!(events[1..].iter().all(|e| e.event == "command_result"));
    assert_eq!(
        app.metric("manman_events_dropped_total").await,
        extra as u64
    );
}

fn command_result(worker: i64) -> Event {
    Event::CommandResult(CommandResult {
        command_id: uuid::Uuid::new_v4(),
        worker_id: WorkerId(worker),
        outcome: CommandOutcome::Succeeded,
        detail: None,
        reported_at: Utc::now(),
    })
}

fn worker_of(event: &SseEvent) -> i64 {
    match serde_json::from_str::<Event>(&event.data).expect("an event") {
        Event::CommandResult(r) => r.worker_id.get(),
        other => panic!("a command result, not {other:?}"),
    }
}

#[tokio::test]
async fn an_event_watcher_that_comes_back_resumes_after_the_last_event_it_saw() {
    let app = router_app().await;
    let mut first = app.watch("/api/v1/events").await;
    for n in 1..=3 {
        app.events.publish(command_result(n));
    }
    let seen = first.take(1).await;
    let id = seen[0].id.clone().expect("events have ids");
    drop(first);

    let mut again = app.watch_after("/api/v1/events", Some(&id)).await;
    app.events.publish(command_result(4));
    let resumed = again.take(3).await;
    assert_eq!(
        resumed.iter().map(worker_of).collect::<Vec<_>>(),
        [2, 3, 4],
        "the events after the one it saw, then live"
    );

    let mut elsewhere = app
        .watch_after("/api/v1/events", Some("0123456789ab-2"))
        .await;
    app.events.publish(command_result(5));
    let events = elsewhere.take(2).await;
    assert_eq!(events[0].event, "gap", "an id of another feed: a gap, said");
    assert_eq!(worker_of(&events[1]), 5);
}

#[tokio::test]
async fn an_ended_instances_console_replays_its_kept_tail_and_ends_or_is_gone() {
    use manman_core::console::{ConsoleEnd, ConsoleTail};
    use manman_core::ports::StatusChange;
    let app = router_app().await;
    let ended = StatusChange::undelivered(
        uuid::Uuid::new_v4(),
        app.instance,
        "the worker never took it".into(),
        Utc::now(),
    );
    app.host
        .store()
        .status
        .apply_status(&ended)
        .await
        .expect("ended");
    let path = format!("/api/v1/instances/{}/console", app.instance.get());
    let gone = app.get(&path).await;
    assert_eq!(gone.status(), StatusCode::GONE, "not an empty 200");
    let body = gone.into_body().collect().await.expect("body").to_bytes();
    let problem: Value = serde_json::from_slice(&body).expect("problem+json");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no longer kept")),
        "{problem}"
    );

    let instance = app
        .host
        .instances()
        .get_instance(app.instance)
        .await
        .expect("instance");
    app.host
        .gateway()
        .keep_console_tail(
            instance.worker_id,
            app.instance,
            &ConsoleTail {
                lines: vec![app.line(1), app.line(2)],
            },
        )
        .await
        .expect("kept");
    let mut watcher = app.watch(&path).await;
    let events = watcher.take(3).await;
    assert_eq!(
        events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["line", "line", "end"]
    );
    let end: ConsoleEnd = serde_json::from_str(&events[2].data).expect("a ConsoleEnd");
    assert_eq!(end.status, manman_core::status::Status::Crashed);
    assert!(end.text.contains("undelivered"), "{}", end.text);
    assert!(
        end.text.contains("the worker never took it"),
        "{}",
        end.text
    );
    let mut resumed = app.watch_after(&path, Some("1")).await;
    let events = resumed.take(2).await;
    assert_eq!(events[0].id.as_deref(), Some("2"));
    assert_eq!(events[1].event, "end");

    let other = app
        .host
        .gateway()
        .keep_console_tail(
            manman_core::id::WorkerId(instance.worker_id.get() + 1000),
            app.instance,
            &ConsoleTail::default(),
        )
        .await;
    assert!(other.is_err(), "only its own worker hands over its tail");
}
