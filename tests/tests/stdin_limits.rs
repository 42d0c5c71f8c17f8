//! A stdin line is capped in size (`MAX_STDIN_LINE_BYTES`): the API refuses a longer one with a
//! 422 naming `line`, and the worker, which trusts nothing it is sent, refuses it too when it
//! reaches it some other way — nothing is written to the server or its log.

use manman_core::auth::Scope;
use manman_core::command::{Command, CommandEnvelope, CommandOutcome, MAX_STDIN_LINE_BYTES};
use manman_core::event::Event;
use manman_core::host::HostService;
use manman_core::process::TokioProcessRunner;
use manman_core::status::Status;
use manman_http::{HostServer, ServeOptions};
use manman_tests::harness::{Harness, WAIT};

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");

#[tokio::test]
async fn the_api_answers_422_naming_line_and_the_limit_for_a_line_over_it() {
    let host = HostService::in_memory().await.expect("a host in memory");
    let server = HostServer::start(
        host,
        ServeOptions::new("127.0.0.1:0".parse().expect("addr")),
    )
    .await
    .expect("serve");
    let (_, token) = server
        .auth()
        .create_token("moderator", Scope::Operate)
        .await
        .expect("token");
    let http = reqwest::Client::new();
    let send = |line: String| {
        http.post(format!("http://{}/api/v1/instances/1/stdin", server.addr()))
            .bearer_auth(token.expose())
            .json(&serde_json::json!({ "line": line }))
            .send()
    };

    let response = send("x".repeat(MAX_STDIN_LINE_BYTES + 1))
        .await
        .expect("answer");
    assert_eq!(response.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = response.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "line", "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("line") && detail.contains("4096 bytes"),
        "the detail names the field and the limit: {detail}"
    );

    // At the limit the line passes validation (and the unknown instance is what is wrong).
    let at_limit = send("x".repeat(MAX_STDIN_LINE_BYTES))
        .await
        .expect("answer");
    assert_eq!(at_limit.status(), reqwest::StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn the_worker_refuses_a_line_over_the_limit_and_writes_nothing() {
    let h = Harness::new(FAKE.as_ref()).await;
    let settings = h.settings("w");
    let worker = h
        .spawn_worker(h.worker(settings.clone(), TokioProcessRunner::new()))
        .await;
    let worker_id = h.host.workers().list_workers().await.expect("workers")[0].id;
    let config = h.config("main", |_| {}).await;
    let running = h.start(config).await;
    h.wait_status(running, Status::Running).await;
    let mut events = h.bus.watch_events().await.expect("watch");

    // Past the host's check: straight onto the worker's queue.
    let long = "y".repeat(MAX_STDIN_LINE_BYTES + 1);
    let envelope = CommandEnvelope::new(
        Command::Stdin {
            instance_id: running,
            line: long.clone(),
        },
        "test",
        chrono::Utc::now(),
    );
    h.send_sealed(worker_id, &envelope).await;
    let result = tokio::time::timeout(WAIT, async {
        loop {
            let delivery = events.next().await.expect("open").expect("ok");
            let event = delivery.message.decode::<Event>();
            delivery.ack().await.expect("ack");
            if let Ok(Event::CommandResult(result)) = event
                && result.command_id == envelope.id
            {
                return result;
            }
        }
    })
    .await
    .expect("a result for the command");
    assert_eq!(result.outcome, CommandOutcome::Failed);
    let detail = result.detail.unwrap_or_default();
    assert!(detail.contains("4096 bytes"), "{detail}");

    // The server carries on, and the long line never reached it nor its log.
    h.host
        .instances()
        .stdin(running, "still here", "test")
        .await
        .expect("stdin");
    let log = Harness::wait_log(&settings, running, "still here").await;
    assert!(!log.contains(&long), "the refused line is not in the log");
    assert_eq!(
        h.host
            .instances()
            .get_instance(running)
            .await
            .expect("get")
            .status,
        Status::Running
    );
    worker.stop().await;
}
