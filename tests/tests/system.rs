//! System tests: the real `manman-host` and three `manman-worker` processes on PostgreSQL and
//! RabbitMQ (a database and a vhost of each test's own), driven through the HTTP API.

use chrono::Utc;
use futures::StreamExt;
use manman_core::bus::Bus;
use manman_core::config::{RestartMode, RestartPolicy};
use manman_core::host::StartRequest;
use manman_core::id::InstanceId;
use manman_core::ports::Message;
use manman_core::status::{Cause, Status};
use manman_core::topology::worker_routing_key;
use manman_http::ClientError;
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_tests::system::{Programs, System, WAIT};
use manman_tests::{eventually, wait_instance_status};
use std::sync::Arc;

const PROGRAMS: Programs<'static> = Programs {
    host: env!("CARGO_BIN_EXE_e2e-host"),
    worker: env!("CARGO_BIN_EXE_e2e-worker"),
    fake: env!("CARGO_BIN_EXE_e2e-fake-game-server"),
    steamcmd: Some(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manman-steam/tests/fixtures/fake-steamcmd"
    )),
    shim: None,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_gives_up_while_the_other_servers_run_on() {
    let Some(system) = System::start("system_crash_loop", PROGRAMS, 3, 4).await else {
        return;
    };
    let client = &system.client;
    let steady = system.config("steady", |_| {}).await;
    let crashy = system
        .config("crashy", |spec| {
            spec.args = ["--exit-after-ms", "100", "--exit-code", "3"]
                .map(String::from)
                .to_vec();
            spec.restart = RestartPolicy {
                mode: RestartMode::OnCrash,
                max_restarts: 3,
                window_s: 60,
                backoff_initial_ms: 50,
                backoff_max_ms: 200,
            };
        })
        .await;
    let mut steady_ids = Vec::new();
    for worker in ["w1", "w2", "w3"] {
        steady_ids.push(system.start_on(steady, worker).await);
    }
    for id in &steady_ids {
        wait_instance_status(client, *id, Status::Running).await;
    }
    let looping = system.start_on(crashy, "w2").await;
    wait_instance_status(client, looping, Status::Crashed).await;
    let history = client.instance_history(looping).await.expect("history");
    assert_eq!(
        history.last().map(|e| e.cause),
        Some(Cause::CrashLoop),
        "{history:#?}"
    );
    let restarts = history
        .iter()
        .filter(|e| e.cause == Cause::CrashPolicy)
        .count();
    assert_eq!(
        restarts, 3,
        "restarted max_restarts times, then gave up: {history:#?}"
    );
    let ended = client.get_instance(looping).await.expect("get");
    assert_eq!(ended.exit_code, Some(3));
    for id in &steady_ids {
        let instance = client.get_instance(*id).await.expect("get");
        assert_eq!(
            (instance.status, instance.restart_count),
            (Status::Running, 0),
            "{id} is unaffected"
        );
    }
    for id in steady_ids {
        client.stop(id).await.expect("stop");
        wait_instance_status(client, id, Status::Complete).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_and_the_system_keeps_serving() {
    let Some(system) = System::start("system_hostile", PROGRAMS, 3, 4).await else {
        return;
    };
    let client = &system.client;
    let config = system.config("main", |_| {}).await;
    let id = system.start_on(config, "w1").await;
    wait_instance_status(client, id, Status::Running).await;
    let worker = client.get_instance(id).await.expect("get").worker_id;

    // Straight onto RabbitMQ: malformed and oversized messages to the worker's command queue
    // and to the host's events.
    let rabbit = RabbitBus::connect(&RabbitSettings::new(&system.amqp_url))
        .await
        .expect("broker");
    let bus = Bus::new(Arc::new(rabbit.clone()), Arc::new(rabbit.clone()));
    let topology = bus.topology().clone();
    let mut dead = bus.consume_dead_letters(64).await.expect("dead letters");
    let raw = |kind: &str, body: Vec<u8>| Message {
        id: uuid::Uuid::new_v4(),
        kind: kind.to_owned(),
        timestamp: Utc::now(),
        correlation_id: None,
        expires_at: None,
        body,
        seal: None,
    };
    let hostile = [
        (
            topology.commands_exchange(),
            worker_routing_key(worker),
            raw("command", b"{not json".to_vec()),
        ),
        (
            topology.commands_exchange(),
            worker_routing_key(worker),
            raw(
                "command",
                br#"{"id":"x","command":{"type":"self_destruct"}}"#.to_vec(),
            ),
        ),
        (
            topology.commands_exchange(),
            worker_routing_key(worker),
            raw("command", vec![b'A'; 2 * 1024 * 1024]),
        ),
        (
            topology.events_exchange(),
            String::new(),
            raw("status", b"[1,2,3]".to_vec()),
        ),
        (
            topology.events_exchange(),
            String::new(),
            raw("status", vec![0xff; 1024 * 1024]),
        ),
    ];
    let ids: Vec<uuid::Uuid> = hostile.iter().map(|(_, _, m)| m.id).collect();
    for (exchange, key, message) in hostile {
        bus.publisher()
            .publish(&exchange, &key, message)
            .await
            .expect("publish");
    }
    let mut dead_lettered = Vec::new();
    tokio::time::timeout(WAIT, async {
        while dead_lettered.len() < ids.len() {
            let delivery = dead.next().await.expect("a dead letter").expect("ok");
            if ids.contains(&delivery.message.id) {
                dead_lettered.push(delivery.message.id);
            }
            delivery.ack().await.expect("ack");
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "every hostile message dead-lettered: {} of {}",
            dead_lettered.len(),
            ids.len()
        )
    });

    // Hostile API input: 4xx problems.
    let escape = manman_core::config::ConfigSpec::new("escape", "../../../bin/sh");
    let game = client.list_games().await.expect("games")[0].id;
    let refused = client.create_config(game, &escape).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Problem(p) if p.status == 422),
        "{refused:?}"
    );
    let huge = "x".repeat(70 * 1024);
    let refused = client.stdin(id, &huge).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Problem(p) if p.status == 413),
        "{refused:?}"
    );

    // Still serving: the server answers, a new one starts, both stop.
    let mut console = Box::pin(client.console(id, None).await.expect("console"));
    client.stdin(id, "still here").await.expect("stdin");
    tokio::time::timeout(WAIT, async {
        while let Some(line) = console.next().await {
            if line.expect("line").text == "echo: still here" {
                return;
            }
        }
        panic!("the console ended");
    })
    .await
    .expect("the server still answers");
    let other = system.start_on(config, "w3").await;
    wait_instance_status(client, other, Status::Running).await;
    for id in [id, other] {
        client.stop(id).await.expect("stop");
        wait_instance_status(client, id, Status::Complete).await;
    }
    assert!(
        std::fs::metadata(system.log("w1")).is_ok(),
        "the worker logged to its file"
    );
    rabbit.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_connections_cut_while_instances_start_give_503s_then_everything_recovers() {
    let Some(system) = System::start("system_db_cut", PROGRAMS, 3, 8).await else {
        return;
    };
    let client = &system.client;
    let mut configs = Vec::new();
    for i in 0..9 {
        configs.push(system.config(&format!("c{i}"), |_| {}).await);
    }
    // Cut every connection of the host to its database, again and again, for two seconds.
    let admin_url = system.database.admin_url().to_owned();
    let name = system.database.name().to_owned();
    let cutter = tokio::spawn(async move {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("admin");
        let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut cuts = 0_u64;
        while std::time::Instant::now() < until {
            let cut: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&name)
            .fetch_all(&mut admin)
            .await
            .expect("terminate");
            cuts += cut.len() as u64;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        cuts
    });
    // Meanwhile: start every config (a 503 is retried, as a client should), and read.
    let mut unavailable = 0;
    let mut started = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        let worker = format!("w{}", 1 + i % 3);
        loop {
            match client
                .start(&StartRequest {
                    config_id: *config,
                    worker: Some(worker.clone()),
                    labels: Default::default(),
                })
                .await
            {
                Ok(s) => {
                    started.push(s.instance_id);
                    break;
                }
                Err(ClientError::Problem(p)) if p.status == 503 => {
                    unavailable += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("a start failed otherwise than 503: {e}"),
            }
        }
        match client.list_instances(&Default::default()).await {
            Err(ClientError::Problem(p)) if p.status == 503 => unavailable += 1,
            Err(e) => panic!("a read failed otherwise than 503: {e}"),
            Ok(_) => {}
        }
    }
    let cuts = cutter.await.expect("cutter");
    assert!(cuts > 0, "connections were cut");
    eprintln!("{cuts} connections cut, {unavailable} answers 503");
    // Recovered: every instance gets to `running`, none is left without its status.
    for id in &started {
        wait_instance_status(client, *id, Status::Running).await;
        let history = client.instance_history(*id).await.expect("history");
        assert_eq!(
            history.iter().map(|e| e.status).collect::<Vec<_>>(),
            [Status::Created, Status::Initializing, Status::Running],
            "{id}: {history:#?}"
        );
    }
    // A start answered 503 after its instance was created left that instance `crashed`
    // (cause `undelivered`): said, not left `created`.
    for instance in client
        .list_instances(&Default::default())
        .await
        .expect("list")
    {
        if started.contains(&instance.id) {
            continue;
        }
        let history = client.instance_history(instance.id).await.expect("history");
        assert_eq!(instance.status, Status::Crashed, "{history:#?}");
        assert_eq!(
            history.last().map(|e| e.cause),
            Some(Cause::Undelivered),
            "{history:#?}"
        );
    }
    for id in started {
        client.stop(id).await.expect("stop");
        wait_instance_status(client, id, Status::Complete).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_connections_closed_mid_stream_lose_no_command_and_run_none_twice() {
    let Some(system) = System::start("system_broker_cut", PROGRAMS, 3, 4).await else {
        return;
    };
    let client = &system.client;
    let config = system.config("main", |_| {}).await;
    let id = system.start_on(config, "w2").await;
    wait_instance_status(client, id, Status::Running).await;

    const LINES: usize = 1_000;
    let mut commands = Vec::with_capacity(LINES);
    for i in 0..LINES {
        if i == LINES / 3 || i == 2 * LINES / 3 {
            system
                .vhost
                .close_all_connections("a broker restart, for the test");
        }
        // The host may answer 503 while it reconnects: the client retries, as it should.
        let accepted = loop {
            match client.stdin(id, &format!("line {i}")).await {
                Ok(accepted) => break accepted,
                Err(ClientError::Problem(p)) if p.status == 503 => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("line {i}: {e}"),
            }
        };
        commands.push(accepted.command_id);
    }
    // Every command ends succeeded or expired: none stays pending or delivered.
    let mut succeeded = std::collections::HashSet::new();
    for (i, command) in commands.iter().enumerate() {
        let state = eventually(&format!("command {i} to end"), WAIT, || async {
            let record = client.get_command(*command).await.ok()?;
            record.state.is_final().then_some(record.state)
        })
        .await;
        assert!(
            matches!(
                state,
                manman_core::command::CommandState::Succeeded
                    | manman_core::command::CommandState::Expired
            ),
            "line {i}: {state}"
        );
        if state == manman_core::command::CommandState::Succeeded {
            succeeded.insert(i);
        }
    }
    // The server saw each succeeded line exactly once, and no other line: what it answered is
    // read from its console log on the worker's disk (the live console stream is not what this
    // test is about, and a broker cut may leave a gap in it).
    client.stdin(id, "the end").await.expect("stdin");
    let path = system.console_log("w2", id);
    let log = eventually("the server to answer the last line", WAIT, || async {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        log.lines()
            .any(|l| l.ends_with(" out echo: the end"))
            .then_some(log)
    })
    .await;
    let mut echoed = std::collections::HashMap::<usize, usize>::new();
    for line in log.lines() {
        if let Some((_, n)) = line.split_once(" out echo: line ") {
            *echoed.entry(n.parse().expect("number")).or_default() += 1;
        }
    }
    let twice: Vec<_> = echoed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "lines run twice: {twice:?}");
    let seen: std::collections::HashSet<usize> = echoed.keys().copied().collect();
    assert_eq!(
        seen, succeeded,
        "the lines that ran are exactly the succeeded commands"
    );
    eprintln!(
        "{} of {LINES} succeeded, {} expired",
        succeeded.len(),
        LINES - succeeded.len()
    );
    client.stop(id).await.expect("stop");
    wait_instance_status(client, id, Status::Complete).await;
}

/// The game servers the process with `pid` runs: its children (each in a process group of its
/// own, so a worker's children are exactly its servers).
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // After the parenthesised name: state, then the parent's pid.
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace())
            .into_iter()
            .flatten();
        let state = fields.next();
        let parent = fields.next().and_then(|p| p.parse::<u32>().ok());
        if parent == Some(pid) && !matches!(state, Some("Z" | "X")) {
            children.push(child);
        }
    }
    children
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_of_200_servers_leaves_the_database_and_the_process_table_in_agreement() {
    const SERVERS: usize = 200;
    let Some(system) = System::start("system_soak", PROGRAMS, 3, 80).await else {
        return;
    };
    let client = &system.client;
    let mut configs = Vec::with_capacity(SERVERS);
    for i in 0..SERVERS {
        configs.push(system.config(&format!("s{i}"), |_| {}).await);
    }
    let worker_of = |i: usize| format!("w{}", 1 + i % 3);
    // Start them all, 16 requests at a time.
    let mut current: Vec<InstanceId> = futures::stream::iter(configs.iter().enumerate())
        .map(|(i, config)| {
            let system = &system;
            async move { system.start_on(*config, &worker_of(i)).await }
        })
        .buffered(16)
        .collect()
        .await;
    for id in &current {
        wait_instance_status(client, *id, Status::Running).await;
    }

    // Random operations for a bounded time: stdin, restart, stop and start again, kill and
    // start again.
    let mut rng = fastrand::Rng::with_seed(7);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut operations = 0;
    while std::time::Instant::now() < until {
        let i = rng.usize(..SERVERS);
        let id = current[i];
        let instance = client.get_instance(id).await.expect("get");
        if instance.status != Status::Running {
            continue;
        }
        match rng.u8(..4) {
            0 => drop(client.stdin(id, "soak").await.expect("stdin")),
            1 => drop(client.restart(id).await.expect("restart")),
            2 | 3 => {
                if rng.bool() {
                    client.stop(id).await.expect("stop");
                } else {
                    client.kill(id).await.expect("kill");
                }
                wait_instance_status(client, id, Status::Complete).await;
                current[i] = system.start_on(configs[i], &worker_of(i)).await;
            }
            _ => unreachable!(),
        }
        operations += 1;
    }
    eprintln!("{operations} random operations");
    for id in &current {
        wait_instance_status(client, *id, Status::Running).await;
    }

    // The database, the workers' process tables and each other agree.
    let all = {
        let mut all = Vec::new();
        let mut filter = manman_core::instance::InstanceFilter::default();
        loop {
            let page = client.list_instances(&filter).await.expect("list");
            let Some(last) = page.last() else { break };
            filter.after = Some(last.id);
            all.extend(page);
        }
        all
    };
    let workers = client.list_workers().await.expect("workers");
    for (n, daemon) in system.workers.iter().enumerate() {
        let name = format!("w{}", n + 1);
        let worker = workers.iter().find(|w| w.name == name).expect("worker");
        let running = all
            .iter()
            .filter(|i| i.worker_id == worker.id && i.status == Status::Running)
            .count();
        let active = all
            .iter()
            .filter(|i| i.worker_id == worker.id && i.status.is_active())
            .count();
        assert_eq!(active, running, "{name}: every active instance is running");
        let processes = children_of(daemon.0.id()).len();
        assert_eq!(
            processes, running,
            "{name}: {processes} server processes, {running} instances running in the database"
        );
    }
    let running: Vec<InstanceId> = all
        .iter()
        .filter(|i| i.status == Status::Running)
        .map(|i| i.id)
        .collect();
    let mut expected = current.clone();
    expected.sort();
    assert_eq!(running, expected, "exactly the current instances run");

    // Everything stops; no process is left.
    futures::stream::iter(current.iter())
        .for_each_concurrent(16, |id| async move {
            client.stop(*id).await.expect("stop");
        })
        .await;
    for id in &current {
        wait_instance_status(client, *id, Status::Complete).await;
    }
    for daemon in &system.workers {
        assert!(
            children_of(daemon.0.id()).is_empty(),
            "no server left behind"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_lifecycle_on_every_worker() {
    let Some(system) = System::start("system_lifecycle", PROGRAMS, 3, 4).await else {
        return;
    };
    let client = &system.client;
    let mut events = Box::pin(client.events().await.expect("events"));
    // A Steam game: SteamCMD installs it, with progress; the installed server exits 0.
    let steam = client
        .create_game(&manman_core::game_server::NewGameServer {
            name: "valheim".into(),
            server_type: manman_core::game_server::ServerType::Steam { app_id: 896660 },
        })
        .await
        .expect("game");
    let installed = client
        .create_config(
            steam.id,
            &manman_core::config::ConfigSpec::new("main", "server.sh"),
        )
        .await
        .expect("config")
        .id;
    // The fake game server: ready on a line, echoes, stops on `quit`.
    let fake = system
        .config("main", |spec| {
            spec.ready_pattern = Some("Server is ready".into());
        })
        .await;
    for worker in ["w1", "w2", "w3"] {
        let id = system.start_on(installed, worker).await;
        wait_instance_status(client, id, Status::Complete).await;
        let history = client.instance_history(id).await.expect("history");
        assert_eq!(
            history.iter().map(|e| e.cause).collect::<Vec<_>>(),
            [Cause::Placed, Cause::User, Cause::Ready, Cause::Exited],
            "{worker}: {history:#?}"
        );
        tokio::time::timeout(WAIT, async {
            while let Some(event) = events.next().await {
                if let Ok(manman_core::event::Event::InstallProgress(p)) = event
                    && p.instance_id == id
                    && p.progress.percent.is_some()
                {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{worker}: install progress with a percentage on the events"));

        let id = system.start_on(fake, worker).await;
        wait_instance_status(client, id, Status::Running).await;
        let mut console = Box::pin(client.console(id, None).await.expect("console"));
        let first = console.next().await.expect("a line").expect("ok");
        let pid = manman_tests::harness::fake_pid(&first.text);
        client
            .stdin(id, &format!("hello {worker}"))
            .await
            .expect("stdin");
        let expected = format!("echo: hello {worker}");
        tokio::time::timeout(WAIT, async {
            while let Some(line) = console.next().await {
                if line.expect("line").text == expected {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{worker}: the echo on the console"));
        client.stop(id).await.expect("stop");
        wait_instance_status(client, id, Status::Complete).await;
        let ended = client.get_instance(id).await.expect("get");
        assert_eq!(
            ended.exit_code,
            Some(0),
            "{worker}: stopped by its stop line"
        );
        assert!(
            !manman_tests::pid_alive(pid),
            "{worker}: the process is gone"
        );
    }
}

/// `/events` carries what the store recorded: a `running` seen on the stream is what `GET`
/// answers at once, for 100 starts on the real deployment (host on PostgreSQL, a worker
/// process, RabbitMQ).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_seen_on_events_is_already_what_the_store_answers() {
    const STARTS: usize = 100;
    let Some(system) = System::start("system_events_truth", PROGRAMS, 1, STARTS as u32).await
    else {
        return;
    };
    let client = &system.client;
    let mut configs = Vec::with_capacity(STARTS);
    for i in 0..STARTS {
        configs.push(system.config(&format!("t{i}"), |_| {}).await);
    }
    let events = client.events().await.expect("events");
    futures::pin_mut!(events);
    let started: Vec<InstanceId> = futures::stream::iter(configs)
        .map(|config| {
            let system = &system;
            async move { system.start_on(config, "w1").await }
        })
        .buffered(16)
        .collect()
        .await;
    let mut running = std::collections::HashSet::new();
    let mut stale = Vec::new();
    tokio::time::timeout(WAIT * 4, async {
        while running.len() < STARTS {
            let event = events
                .next()
                .await
                .expect("the stream stays open")
                .expect("an event");
            let manman_core::event::Event::Status(report) = event else {
                continue;
            };
            let manman_core::status::Entity::Instance(id) = report.entity else {
                continue;
            };
            if report.status != Status::Running || !started.contains(&id) {
                continue;
            }
            let stored = client.get_instance(id).await.expect("get");
            if stored.status != Status::Running {
                stale.push((id, stored.status));
            }
            running.insert(id);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {STARTS} seen running", running.len()));
    assert!(
        stale.is_empty(),
        "a `running` on /events that the store did not hold yet: {stale:?}"
    );
}

/// How long after their start the 50 other servers of
/// [`a_stdin_line_is_echoed_before_fifty_other_starts_are_all_running`] say they are ready.
const OTHERS_READY_AFTER_MS: u64 = 3_000;

/// A stdin line is not held behind other instances' starts, on the real deployment (host on
/// PostgreSQL, one worker process, RabbitMQ): with 50 starts of other configs fired at once and
/// all of them accepted — their commands are in the worker's queue ahead of the line — a line
/// sent to a running instance is echoed on its console before the last of the 50 is `running`,
/// and all 50 get there. The system version of the worker service's unit test
/// `a_stdin_line_is_answered_while_fifty_starts_wait_for_their_confirms`.
///
/// What is compared is the order in which the test sees two things arrive — the echo on the
/// console stream, the last `running` on `/events` — each stamped when it arrives by a task
/// reading its stream, never a time limit. The 50 become `running` only once ready, which their
/// servers say [`OTHERS_READY_AFTER_MS`] after they start: a start still in progress, as an
/// install would be. (With starts ready at spawn, the order was a race on a loaded machine: the
/// 50 were all `running` within about 330 ms, as long as an echo took under that load.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdin_line_is_echoed_before_fifty_other_starts_are_all_running() {
    const OTHERS: usize = 50;
    let Some(system) = System::start("system_stdin_starts", PROGRAMS, 1, OTHERS as u32 + 1).await
    else {
        return;
    };
    let client = &system.client;
    let talker = system.config("talker", |_| {}).await;
    let mut others = Vec::with_capacity(OTHERS);
    for i in 0..OTHERS {
        let config = system
            .config(&format!("other{i}"), |spec| {
                spec.args = vec![
                    "--ready-delay-ms".to_owned(),
                    OTHERS_READY_AFTER_MS.to_string(),
                ];
                spec.ready_pattern = Some("^Server is ready$".to_owned());
            })
            .await;
        others.push(config);
    }

    let a = system.start_on(talker, "w1").await;
    wait_instance_status(client, a, Status::Running).await;
    let mut console = Box::pin(client.console(a, None).await.expect("console"));
    tokio::time::timeout(WAIT, console.next())
        .await
        .unwrap_or_else(|_| panic!("{a}: its first console line"))
        .expect("a line")
        .expect("ok");
    // For the figures: how long an echo takes with nothing else going on.
    let alone_at = tokio::time::Instant::now();
    client.stdin(a, "alone").await.expect("stdin");
    tokio::time::timeout(WAIT, async {
        while let Some(next) = console.next().await {
            if next.expect("a console line").text == "echo: alone" {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{a}: no echo of \"alone\""));
    let alone = alone_at.elapsed();

    // Each stream is read by a task of its own, which stamps what it sees when it arrives.
    let line = "are you there";
    let echo = format!("echo: {line}");
    let echoed = tokio::spawn(async move {
        while let Some(next) = console.next().await {
            if next.expect("a console line").text == echo {
                return tokio::time::Instant::now();
            }
        }
        panic!("{a}: the console stream ended before the echo");
    });
    let (running_tx, mut running_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut events = Box::pin(client.events().await.expect("events"));
    let watcher = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Ok(manman_core::event::Event::Status(report)) = event
                && report.status == Status::Running
                && let manman_core::status::Entity::Instance(id) = report.entity
                && running_tx.send((id, tokio::time::Instant::now())).is_err()
            {
                return;
            }
        }
    });

    // All 50 requests at once; the line is sent once every start is accepted.
    let fired_at = tokio::time::Instant::now();
    let started: Vec<InstanceId> =
        futures::future::join_all(others.iter().map(|config| system.start_on(*config, "w1"))).await;
    let sent_at = tokio::time::Instant::now();
    client.stdin(a, line).await.expect("stdin");

    let mut last_running = std::collections::HashMap::with_capacity(OTHERS);
    tokio::time::timeout(WAIT * 4, async {
        while last_running.len() < OTHERS {
            let (id, at) = running_rx
                .recv()
                .await
                .expect("the events stream stays open");
            if started.contains(&id) {
                last_running.insert(id, at);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {OTHERS} seen running", last_running.len()));
    watcher.abort();
    let last_running_at = *last_running.values().max().expect("50 running");
    let echo_at = tokio::time::timeout(WAIT, echoed)
        .await
        .unwrap_or_else(|_| panic!("{a}: no echo of {line:?} on its console"))
        .expect("the console reader");
    let first_running_at = *last_running.values().min().expect("50 running");
    eprintln!(
        "an echo alone: {:.1} ms; the 50 starts accepted in {:.1} ms; after the line was sent: \
         echo {:.1} ms, the first of the 50 running {:.1} ms, the last {:.1} ms",
        alone.as_secs_f64() * 1000.0,
        millis_since(fired_at, sent_at),
        millis_since(sent_at, echo_at),
        millis_since(sent_at, first_running_at),
        millis_since(sent_at, last_running_at),
    );
    assert!(
        echo_at < last_running_at,
        "{a}'s echo came {} ms after the last of the 50 starts was running: the line was held \
         behind them",
        millis_since(last_running_at, echo_at)
    );
    let still_running = client.get_instance(a).await.expect("get");
    assert_eq!(still_running.status, Status::Running, "{a} runs on");
}

/// Milliseconds from `origin` to `at`, negative when `at` came first.
fn millis_since(origin: tokio::time::Instant, at: tokio::time::Instant) -> f64 {
    if at >= origin {
        (at - origin).as_secs_f64() * 1000.0
    } else {
        -(origin - at).as_secs_f64() * 1000.0
    }
}
