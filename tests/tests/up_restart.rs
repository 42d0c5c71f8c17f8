//! `manman up` keeps its data: stopped and started again on the same data dir, it shows the same
//! games, configs and instance history (SQLite in `<data dir>/manman.db`).

use manman::up::{self};
use manman_core::auth::Scope;
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::StartRequest;
use manman_core::status::Status;
use manman_http::{Client, NewToken};
use manman_tests::{up_options, wait_instance_status};

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");

#[tokio::test]
async fn a_restart_on_the_same_data_dir_finds_everything() {
    let data = tempfile::tempdir().expect("dir");
    let first = up::start(up_options(data.path(), FAKE))
        .await
        .expect("first start");
    assert!(
        first.admin.created,
        "the first start creates the admin token"
    );
    let client = Client::new(&format!("http://{}", first.addr)).with_token(&first.admin.token);
    let reader = client
        .create_token(&NewToken {
            name: "dashboard".into(),
            scope: Scope::Read,
        })
        .await
        .expect("a read token");
    let extra = client
        .create_game(&NewGameServer {
            name: "extra".into(),
            server_type: ServerType::Local {
                path: "games/demo".into(),
            },
        })
        .await
        .expect("game");
    let config = client
        .create_config(extra.id, &ConfigSpec::new("main", "fake-game-server"))
        .await
        .expect("config");
    let id = client
        .start(&StartRequest::new(config.id))
        .await
        .expect("start")
        .instance_id;
    wait_instance_status(&client, id, Status::Running).await;
    client.stop(id).await.expect("stop");
    wait_instance_status(&client, id, Status::Complete).await;
    let history_before = client.instance_history(id).await.expect("history");
    let first_token = first.admin.token.clone();
    first.stop().await.expect("clean stop");
    assert!(data.path().join("manman.db").exists());

    let second = up::start(up_options(data.path(), FAKE))
        .await
        .expect("second start");
    assert!(!second.admin.created, "the kept admin token is used again");
    assert_eq!(second.admin.token, first_token);
    let url = format!("http://{}", second.addr);
    let dashboard = Client::new(&url).with_token(&reader.secret);
    assert_eq!(
        dashboard
            .list_games()
            .await
            .expect("the read token still works")
            .len(),
        2
    );
    let listed = Client::new(&url)
        .with_token(&second.admin.token)
        .list_tokens()
        .await
        .expect("the admin token still works");
    assert!(
        listed
            .iter()
            .any(|t| t.name == "dashboard" && t.revoked_at.is_none())
    );
    let client = Client::new(&url).with_token(&second.admin.token);
    let games: Vec<String> = client
        .list_games()
        .await
        .expect("games")
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(
        games,
        ["demo", "extra"],
        "the same games, the demo not added twice"
    );
    let configs = client.list_configs(Some(extra.id)).await.expect("configs");
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].spec, config.spec);
    let instance = client
        .get_instance(id)
        .await
        .expect("the instance is still known");
    assert_eq!(instance.status, Status::Complete);
    assert_eq!(
        client.instance_history(id).await.expect("history"),
        history_before
    );
    let workers = client.list_workers().await.expect("workers");
    assert_eq!(workers.len(), 1, "the same worker, registered again");
    assert_eq!(workers[0].epoch, 2);
    second.stop().await.expect("clean stop");
}

/// Every event of a console stream that ends by itself (an ended instance's), or the problem.
async fn console_events(
    url: &str,
    token: &str,
    id: manman_core::id::InstanceId,
    after: Option<u64>,
) -> Result<Vec<manman_http::SseEvent>, (u16, String)> {
    let mut request = reqwest::Client::new()
        .get(format!("{url}/api/v1/instances/{}/console", id.get()))
        .bearer_auth(token);
    if let Some(after) = after {
        request = request.header("last-event-id", after.to_string());
    }
    let response = tokio::time::timeout(std::time::Duration::from_secs(30), request.send())
        .await
        .expect("answered")
        .expect("sent");
    let status = response.status().as_u16();
    let body = tokio::time::timeout(std::time::Duration::from_secs(30), response.text())
        .await
        .expect("an ended instance's console ends")
        .expect("body");
    if status != 200 {
        return Err((status, body));
    }
    let mut parser = manman_http::SseParser::default();
    parser.push(body.as_bytes());
    Ok(std::iter::from_fn(|| parser.next_event()).collect())
}

fn texts(events: &[manman_http::SseEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "line")
        .map(|e| {
            let line: manman_core::console::ConsoleLine =
                serde_json::from_str(&e.data).expect("a console line");
            line.text
        })
        .collect()
}

fn end_of(events: &[manman_http::SseEvent]) -> manman_core::console::ConsoleEnd {
    let last = events.last().expect("events");
    assert_eq!(last.event, "end", "the stream closes with how it ended");
    serde_json::from_str(&last.data).expect("a ConsoleEnd")
}

#[tokio::test]
async fn the_console_of_an_instance_that_ended_before_a_restart_is_replayed_after_it() {
    let data = tempfile::tempdir().expect("dir");
    let first = up::start(up_options(data.path(), FAKE))
        .await
        .expect("first start");
    let token = first.admin.token.clone();
    let client = Client::new(&format!("http://{}", first.addr)).with_token(&token);
    let demo = client
        .list_games()
        .await
        .expect("games")
        .into_iter()
        .find(|g| g.name == "demo")
        .expect("the demo game");
    let config = client.list_configs(Some(demo.id)).await.expect("configs")[0].id;
    let stopped = client
        .start(&StartRequest::new(config))
        .await
        .expect("start")
        .instance_id;
    wait_instance_status(&client, stopped, Status::Running).await;
    client
        .stdin(stopped, "hello before the restart")
        .await
        .expect("stdin");
    client.stop(stopped).await.expect("stop");
    wait_instance_status(&client, stopped, Status::Complete).await;
    let running = client
        .start(&StartRequest::new(config))
        .await
        .expect("start")
        .instance_id;
    wait_instance_status(&client, running, Status::Running).await;
    client
        .stdin(running, "still running at the restart")
        .await
        .expect("stdin");
    // Its echo is in the log before the restart.
    let url = format!("http://{}", first.addr);
    let live_before = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let lines = texts(
                &console_events_live(&url, &token, running)
                    .await
                    .unwrap_or_default(),
            );
            if lines
                .iter()
                .any(|l| l == "echo: still running at the restart")
            {
                return lines;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the echo arrives");
    first
        .stop()
        .await
        .expect("clean stop: the running instance ends");

    let second = up::start(up_options(data.path(), FAKE))
        .await
        .expect("second start");
    let url = format!("http://{}", second.addr);

    let events = console_events(&url, &token, stopped, None)
        .await
        .expect("the console of an instance that ended before the restart");
    let lines = texts(&events);
    assert!(
        lines.iter().any(|l| l == "Server is ready"),
        "its output: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "hello before the restart"),
        "the line sent to it, as an `in` line: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "echo: hello before the restart"),
        "{lines:?}"
    );
    let end = end_of(&events);
    assert_eq!(end.status, Status::Complete);
    assert!(end.text.contains("complete"), "{}", end.text);

    let events = console_events(&url, &token, running, None)
        .await
        .expect("the console of the instance the restart stopped");
    let lines = texts(&events);
    for line in &live_before {
        assert!(
            lines.contains(line),
            "{line:?} kept across the restart: {lines:?}"
        );
    }
    let end = end_of(&events);
    assert!(end.status.is_terminal());
    assert!(
        end.text.starts_with(&format!("{running} ")),
        "says which instance and how: {}",
        end.text
    );

    // Resuming after a line replays only what follows it.
    let ids: Vec<u64> = events
        .iter()
        .filter(|e| e.event == "line")
        .filter_map(|e| e.id.as_deref()?.parse().ok())
        .collect();
    let resumed = console_events(&url, &token, running, Some(ids[0]))
        .await
        .expect("resumed");
    let resumed_ids: Vec<u64> = resumed
        .iter()
        .filter(|e| e.event == "line")
        .filter_map(|e| e.id.as_deref()?.parse().ok())
        .collect();
    assert_eq!(resumed_ids, ids[1..]);
    assert_eq!(end_of(&resumed).status, end.status);
    second.stop().await.expect("clean stop");
}

/// The lines of a live console so far: the stream is read for a moment, then dropped.
async fn console_events_live(
    url: &str,
    token: &str,
    id: manman_core::id::InstanceId,
) -> Option<Vec<manman_http::SseEvent>> {
    let mut response = reqwest::Client::new()
        .get(format!("{url}/api/v1/instances/{}/console", id.get()))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    let mut parser = manman_http::SseParser::default();
    let mut events = Vec::new();
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(std::time::Duration::from_millis(300), response.chunk()).await
    {
        parser.push(&chunk);
        events.extend(std::iter::from_fn(|| parser.next_event()));
    }
    Some(events)
}
