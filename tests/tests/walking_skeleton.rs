//! The whole system on one machine, as `manman up` runs it, driven through the HTTP API over a
//! real socket, with the fake game server as a real child process.

use futures::StreamExt;
use manman::up::{self, Running, UpOptions};
use manman_core::command::CommandState;
use manman_core::config::ConfigSpec;
use manman_core::console::{ConsoleLine, ConsoleStream};
use manman_core::host::StartRequest;
use manman_core::id::ConfigId;
use manman_core::ports::{Message, QueueSpec};
use manman_core::status::{Cause, Status};
use manman_http::{Client, ClientError};
use manman_tests::{eventually, pid_alive, wait_instance_status};
use std::time::Duration;

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");
const WAIT: Duration = Duration::from_secs(15);

struct System {
    running: Running,
    client: Client,
    _data: tempfile::TempDir,
}

async fn system() -> System {
    let data = tempfile::tempdir().expect("temp dir");
    let running = up::start(UpOptions {
        bind: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data.path().to_owned(),
        demo_executable: Some(FAKE.into()),
        worker_name: "e2e".to_owned(),
        capacity: 16,
        steamcmd: "steamcmd".into(),
        steam_credentials: Vec::new(),
        store: manman::up::StoreChoice::Memory,
    })
    .await
    .expect("manman up starts");
    let client = Client::new(&format!("http://{}", running.addr)).with_token(&running.admin.token);
    assert!(client.healthy().await, "/healthz answers");
    System {
        running,
        client,
        _data: data,
    }
}

async fn demo_config(client: &Client) -> ConfigId {
    let games = client.list_games().await.expect("games");
    let demo = games
        .iter()
        .find(|g| g.name == "demo")
        .expect("the demo game is registered");
    let configs = client.list_configs(Some(demo.id)).await.expect("configs");
    configs
        .iter()
        .find(|c| c.spec.is_default)
        .expect("a default config")
        .id
}

/// Reads console lines until one satisfies `want`.
async fn console_line(
    lines: &mut (impl futures::Stream<Item = Result<ConsoleLine, ClientError>> + Unpin),
    want: impl Fn(&ConsoleLine) -> bool,
) -> ConsoleLine {
    tokio::time::timeout(WAIT, async {
        loop {
            let line = lines
                .next()
                .await
                .expect("the console stream stays open")
                .expect("a console line");
            if want(&line) {
                return line;
            }
        }
    })
    .await
    .expect("the expected console line")
}

fn pid_of(line: &ConsoleLine) -> u32 {
    let start = line
        .text
        .find("(pid ")
        .expect("the start line names the pid")
        + 5;
    line.text[start..line.text.len() - 1]
        .parse()
        .expect("a pid")
}

#[tokio::test]
async fn start_console_stdin_stop_through_the_api() {
    let System {
        running,
        client,
        _data,
    } = system().await;
    let config_id = demo_config(&client).await;
    let started = client
        .start(&StartRequest::new(config_id))
        .await
        .expect("start");
    let id = started.instance_id;

    let ready = wait_instance_status(&client, id, Status::Running).await;
    assert!(ready.ready_at.is_some() && ready.started_at.is_some());
    let start_record = client
        .get_command(started.command_id)
        .await
        .expect("command record");
    assert_eq!(
        start_record.state,
        CommandState::Succeeded,
        "{start_record:?}"
    );

    let mut lines = Box::pin(client.console(id, None).await.expect("console"));
    let first = console_line(&mut lines, |l| {
        l.text.starts_with("Starting fake game server")
    })
    .await;
    assert_eq!(first.seq, 1, "the backlog starts at line 1");
    let pid = pid_of(&first);
    assert!(pid_alive(pid), "the game server runs as a real process");

    client.stdin(id, "hello from the api").await.expect("stdin");
    let echoed = console_line(&mut lines, |l| l.stream == ConsoleStream::Stdin).await;
    assert_eq!(echoed.text, "hello from the api");
    let answer = console_line(&mut lines, |l| l.text.starts_with("echo:")).await;
    assert_eq!(answer.text, "echo: hello from the api");
    assert!(answer.seq > echoed.seq, "lines are numbered in order");

    // Resume after the echo: only later lines come.
    let mut resumed = Box::pin(client.console(id, Some(answer.seq)).await.expect("console"));
    client.stdin(id, "second").await.expect("stdin");
    let next = console_line(&mut resumed, |_| true).await;
    assert!(next.seq > answer.seq, "resuming skips what was seen");

    let stop = client.stop(id).await.expect("stop");
    let ended = wait_instance_status(&client, id, Status::Complete).await;
    assert_eq!(
        ended.exit_code,
        Some(0),
        "the stdin line `quit` ended it cleanly"
    );
    assert!(ended.ended_at.is_some());
    eventually("the stop command to succeed", WAIT, || async {
        (client
            .get_command(stop.command_id)
            .await
            .expect("record")
            .state
            == CommandState::Succeeded)
            .then_some(())
    })
    .await;
    assert!(!pid_alive(pid), "the process is gone");
    let metrics = reqwest::get(format!("http://{}/metrics", running.addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
    };
    assert!(
        sample(r#"manman_commands_total{outcome="succeeded"}"#) >= 4.0,
        "start, two stdin lines and the stop succeeded:\n{metrics}"
    );
    assert!(sample("manman_status_events_processed_total") >= 3.0);
    assert!(sample("manman_command_latency_seconds_count") >= 4.0);
    let history = client.instance_history(id).await.expect("history");
    let statuses: Vec<Status> = history.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [
            Status::Created,
            Status::Initializing,
            Status::Running,
            Status::Complete
        ]
    );
    assert_eq!(history[3].cause, Cause::User);

    let again = client.stop(id).await.unwrap_err();
    let ClientError::Problem(problem) = again else {
        panic!("a problem document: {again:?}")
    };
    assert_eq!(
        problem.status, 409,
        "stopping an ended instance is a conflict: {problem:?}"
    );
    running.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_restart_stops_the_server_and_starts_it_again_as_the_same_instance() {
    let System {
        running,
        client,
        _data,
    } = system().await;
    let config_id = demo_config(&client).await;
    let id = client
        .start(&StartRequest::new(config_id))
        .await
        .expect("start")
        .instance_id;
    wait_instance_status(&client, id, Status::Running).await;
    let mut lines = Box::pin(client.console(id, None).await.expect("console"));
    let first = console_line(&mut lines, |l| {
        l.text.starts_with("Starting fake game server")
    })
    .await;
    let old_pid = pid_of(&first);

    let restart = client.restart(id).await.expect("restart");
    let second = console_line(&mut lines, |l| {
        l.text.starts_with("Starting fake game server")
    })
    .await;
    let new_pid = pid_of(&second);
    assert_ne!(new_pid, old_pid, "a new process");
    assert!(second.seq > first.seq, "the same console, continued");
    let instance = eventually("it runs again", WAIT, || async {
        let instance = client.get_instance(id).await.expect("get");
        (instance.status == Status::Running && instance.restart_count == 1).then_some(instance)
    })
    .await;
    assert!(!pid_alive(old_pid), "the old process is gone");
    assert!(pid_alive(new_pid));
    assert_eq!(
        (instance.exit_code, instance.exit_signal),
        (None, None),
        "running again: no exit code (the old run's is in its history)"
    );
    let record = client
        .get_command(restart.command_id)
        .await
        .expect("record");
    assert_eq!(record.state, CommandState::Succeeded, "{record:?}");
    let history = client.instance_history(id).await.expect("history");
    let steps: Vec<(Status, Cause)> = history.iter().map(|e| (e.status, e.cause)).collect();
    assert_eq!(
        steps[2..],
        [
            (Status::Running, Cause::Ready),
            (Status::Initializing, Cause::User),
            (Status::Running, Cause::Ready)
        ],
        "{history:?}"
    );
    let restarted = &history[3];
    assert!(
        restarted
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("restart 1")),
        "the restart says how the old run ended: {restarted:?}"
    );
    client.stop(id).await.expect("stop");
    wait_instance_status(&client, id, Status::Complete).await;
    running.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_crash_is_reported_with_its_exit_code_and_bad_requests_harm_nothing() {
    let System {
        running,
        client,
        _data,
    } = system().await;
    let demo = demo_config(&client).await;
    let keeper = client
        .start(&StartRequest::new(demo))
        .await
        .expect("start")
        .instance_id;
    wait_instance_status(&client, keeper, Status::Running).await;

    // A second config of the demo game, to crash.
    let game = client.list_games().await.expect("games")[0].id;
    let crashy = client
        .create_config(game, &ConfigSpec::new("crashy", "fake-game-server"))
        .await
        .expect("config");
    let victim = client
        .start(&StartRequest::new(crashy.id))
        .await
        .expect("start")
        .instance_id;
    wait_instance_status(&client, victim, Status::Running).await;
    client.stdin(victim, "crash 3").await.expect("stdin");
    let crashed = wait_instance_status(&client, victim, Status::Crashed).await;
    assert_eq!(crashed.exit_code, Some(3));
    let history = client.instance_history(victim).await.expect("history");
    let last = history.last().expect("history");
    assert_eq!(last.cause, Cause::Exited);
    assert!(
        last.detail
            .as_deref()
            .is_some_and(|d| d.contains("exit code 3")),
        "{last:?}"
    );

    // A start for a config that does not exist: 404 problem+json.
    let url = format!("http://{}/api/v1/instances", running.addr);
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&running.admin.token)
        .json(&serde_json::json!({"config_id": 999_999}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.expect("json");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("config 999999")),
        "{problem}"
    );

    // Malformed JSON and unknown fields are 4xx problems too.
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&running.admin.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&running.admin.token)
        .json(&serde_json::json!({"config_id": demo.get(), "colour": "red"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 422);
    assert!(response.text().await.expect("body").contains("colour"));

    // A malformed command straight onto the worker's queue is dead-lettered.
    let bus = running.host.bus();
    let topology = bus.topology().clone();
    let dead = bus
        .subscriber()
        .declare_queue(&QueueSpec::temporary())
        .await
        .expect("queue");
    bus.subscriber()
        .bind_queue(&dead, &topology.dead_exchange(), "")
        .await
        .expect("bind");
    let mut dead_letters = bus.subscriber().consume(&dead, 10).await.expect("consume");
    let mut garbage = Message::json(
        "command",
        &serde_json::json!({"type": "format_disk"}),
        chrono::Utc::now(),
    )
    .expect("message");
    garbage.body = b"{\"this is\": not a command".to_vec();
    let garbage_id = garbage.id;
    let worker = client.list_workers().await.expect("workers")[0].id;
    bus.publisher()
        .publish(
            &topology.commands_exchange(),
            &format!("worker.{}", worker.get()),
            garbage,
        )
        .await
        .expect("publish");
    let dead_letter = tokio::time::timeout(WAIT, dead_letters.next())
        .await
        .expect("a dead letter")
        .expect("open")
        .expect("ok");
    assert_eq!(dead_letter.message.id, garbage_id);

    // The worker and its other server carry on.
    let mut lines = Box::pin(client.console(keeper, None).await.expect("console"));
    client.stdin(keeper, "still here?").await.expect("stdin");
    console_line(&mut lines, |l| l.text == "echo: still here?").await;
    assert_eq!(
        client.get_instance(keeper).await.expect("get").status,
        Status::Running
    );

    running.stop().await.expect("clean shutdown");
    assert!(!client.healthy().await, "nothing answers after shutdown");
}

#[tokio::test]
async fn shutdown_stops_every_game_server() {
    let System {
        running,
        client,
        _data,
    } = system().await;
    let config_id = demo_config(&client).await;
    let id = client
        .start(&StartRequest::new(config_id))
        .await
        .expect("start")
        .instance_id;
    wait_instance_status(&client, id, Status::Running).await;
    let mut lines = Box::pin(client.console(id, None).await.expect("console"));
    let pid = pid_of(&console_line(&mut lines, |l| l.text.starts_with("Starting")).await);
    let host = running.host.clone();
    running.stop().await.expect("clean shutdown");
    assert!(!pid_alive(pid), "shutdown stopped the game server");
    let instance = host.instances().get_instance(id).await.expect("instance");
    assert_eq!(instance.status, Status::Complete);
    let history = host
        .instances()
        .status_history(manman_core::status::Entity::Instance(id), None, 10)
        .await
        .expect("history");
    assert_eq!(history.last().map(|e| e.cause), Some(Cause::WorkerShutdown));
}
