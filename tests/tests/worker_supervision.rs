//! The worker's supervision with real child processes (the fake game server): crash policy,
//! readiness, stop and kill, console logs, stdin before ready, shutdown, and refused commands.

use manman_core::command::{Command, CommandEnvelope, CommandOutcome, CommandState};
use manman_core::config::{RestartMode, RestartPolicy, StopPolicy};
use manman_core::event::Event;
use manman_core::host::StartRequest;
use manman_core::id::{ConfigId, InstanceId};
use manman_core::process::TokioProcessRunner;
use manman_core::status::{Cause, Status};
use manman_core::worker_service::{LogRotation, WorkerExit};
use manman_tests::harness::{Harness, WAIT, fake_pid, log_texts};
use manman_tests::{eventually, pid_alive};
use std::time::Duration;

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

fn fast_restarts(mode: RestartMode, max_restarts: u32) -> RestartPolicy {
    RestartPolicy {
        mode,
        max_restarts,
        window_s: 600,
        backoff_initial_ms: 20,
        backoff_max_ms: 100,
    }
}

#[tokio::test]
async fn a_crash_loop_restarts_with_events_in_order_then_gives_up() {
    let h = Harness::new(FAKE.as_ref()).await;
    let worker = h
        .spawn_worker(h.worker(h.settings("w"), TokioProcessRunner::new()))
        .await;
    let config = h
        .config("crashy", |c| {
            c.args = args(&["--exit-after-ms", "50", "--exit-code", "3"]);
            c.restart = fast_restarts(RestartMode::OnCrash, 2);
        })
        .await;
    let id = h.start(config).await;
    let crashed = h.wait_status(id, Status::Crashed).await;
    assert_eq!(crashed.restart_count, 2);
    assert_eq!(crashed.exit_code, Some(3));
    let history = h.history(id).await;
    let steps: Vec<(Status, Cause)> = history.iter().map(|e| (e.status, e.cause)).collect();
    use Status::{Crashed, Created, Initializing, Running};
    assert_eq!(
        steps,
        [
            (Created, Cause::Placed),
            (Initializing, Cause::User),
            (Running, Cause::Ready),
            (Initializing, Cause::CrashPolicy),
            (Running, Cause::Ready),
            (Initializing, Cause::CrashPolicy),
            (Running, Cause::Ready),
            (Crashed, Cause::CrashLoop),
        ]
    );
    assert!(
        history[3]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("exit code 3") && d.contains("restart 1")),
        "{:?}",
        history[3]
    );
    assert!(
        history[7]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("giving up")),
        "{:?}",
        history[7]
    );

    // The others are unaffected: another config starts and runs on the same worker.
    let steady = h.config("steady", |_| {}).await;
    let other = h.start(steady).await;
    h.wait_status(other, Status::Running).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_clean_exit_is_complete_and_install_failures_are_crashes_with_their_cause() {
    let h = Harness::new(FAKE.as_ref()).await;
    let worker = h
        .spawn_worker(h.worker(h.settings("w"), TokioProcessRunner::new()))
        .await;
    let clean = h
        .config("clean", |c| c.args = args(&["--exit-after-ms", "50"]))
        .await;
    let id = h.start(clean).await;
    let done = h.wait_status(id, Status::Complete).await;
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(
        h.history(id).await.last().map(|e| e.cause),
        Some(Cause::Exited)
    );

    let missing = h
        .config("missing", |c| {
            c.executable = "not-there".to_owned();
            c.restart = fast_restarts(RestartMode::OnCrash, 1);
        })
        .await;
    let id = h.start(missing).await;
    h.wait_status(id, Status::Crashed).await;
    let history = h.history(id).await;
    let causes: Vec<Cause> = history.iter().map(|e| e.cause).collect();
    assert_eq!(
        causes,
        [
            Cause::Placed,
            Cause::User,
            Cause::CrashPolicy,
            Cause::CrashLoop
        ]
    );
    assert!(
        history[2]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("not-there")),
        "{:?}",
        history[2]
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_server_that_never_gets_ready_is_a_ready_timeout_crash() {
    let h = Harness::new(FAKE.as_ref()).await;
    let settings = h.settings("w");
    let worker = h
        .spawn_worker(h.worker(settings.clone(), TokioProcessRunner::new()))
        .await;
    let config = h
        .config("slow", |c| {
            c.ready_pattern = Some("this line never comes".to_owned());
            c.ready_timeout_s = 1;
        })
        .await;
    let id = h.start(config).await;
    let log = Harness::wait_log(&settings, id, "Server is ready").await;
    let pid = fake_pid(&log);
    let crashed = h.wait_status(id, Status::Crashed).await;
    assert_eq!(crashed.exit_signal, Some(9));
    let last = h.history(id).await.pop().expect("history");
    assert_eq!(last.cause, Cause::ReadyTimeout);
    assert!(!pid_alive(pid));
    worker.stop().await;
}

#[tokio::test]
async fn stdin_sent_before_ready_arrives_in_order_once_ready() {
    let h = Harness::new(FAKE.as_ref()).await;
    let settings = h.settings("w");
    let worker = h
        .spawn_worker(h.worker(settings.clone(), TokioProcessRunner::new()))
        .await;
    let config = h
        .config("slow-start", |c| {
            c.args = args(&["--ready-delay-ms", "1500"]);
            c.ready_pattern = Some("^Server is ready$".to_owned());
        })
        .await;
    let id = h.start(config).await;
    let mut commands = Vec::new();
    for n in 1..=5 {
        commands.push(
            h.host
                .instances()
                .stdin(id, &format!("line {n}"), "test")
                .await
                .expect("stdin"),
        );
    }
    assert_ne!(
        h.host
            .instances()
            .get_instance(id)
            .await
            .expect("get")
            .status,
        Status::Running,
        "still starting"
    );
    let log = Harness::wait_log(&settings, id, "echo: line 5").await;
    let texts = log_texts(&log);
    let ready = texts
        .iter()
        .position(|t| *t == "Server is ready")
        .expect("ready line");
    let echoes: Vec<&str> = texts
        .iter()
        .copied()
        .filter(|t| t.starts_with("echo: "))
        .collect();
    assert_eq!(
        echoes,
        [
            "echo: line 1",
            "echo: line 2",
            "echo: line 3",
            "echo: line 4",
            "echo: line 5"
        ]
    );
    let first_echo = texts
        .iter()
        .position(|t| *t == "echo: line 1")
        .expect("echo");
    assert!(first_echo > ready, "delivered only once ready");
    for command in commands {
        let record = h
            .host
            .instances()
            .get_command(command)
            .await
            .expect("record");
        assert_eq!(record.state, CommandState::Succeeded, "{record:?}");
    }
    worker.stop().await;
}

#[tokio::test]
async fn an_output_flood_does_not_block_and_the_log_keeps_every_line() {
    let h = Harness::new(FAKE.as_ref()).await;
    let mut settings = h.settings("w");
    settings.log_rotation = LogRotation {
        max_bytes: 1 << 30,
        keep: 1,
    };
    settings.live_console_buffer = 64;
    let worker = h
        .spawn_worker(h.worker(settings.clone(), TokioProcessRunner::new()))
        .await;
    let config = h.config("loud", |_| {}).await;
    let id = h.start(config).await;
    h.wait_status(id, Status::Running).await;
    // A live watcher, so console lines really travel the bus.
    let mut watcher = h.bus.watch_console(Some(id)).await.expect("watch");
    h.host
        .instances()
        .stdin(id, "flood 100000", "test")
        .await
        .expect("stdin");
    h.host
        .instances()
        .stdin(id, "after the flood", "test")
        .await
        .expect("stdin");
    let log = Harness::wait_log(&settings, id, "echo: after the flood").await;
    // The server's output only (the line sent to it is in the log too, as `in`).
    let flood: Vec<u64> = log
        .lines()
        .filter(|l| l.split(' ').nth(2) == Some("out"))
        .filter_map(|l| {
            l.splitn(4, ' ')
                .nth(3)?
                .strip_prefix("flood ")
                .map(|n| n.parse().expect("number"))
        })
        .collect();
    assert_eq!(flood.len(), 100_000, "every line is in the log");
    assert!(flood.iter().copied().eq(1..=100_000), "in order");
    let seqs: Vec<u64> = log
        .lines()
        .map(|l| l.split(' ').nth(1).expect("seq").parse().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "numbered without gaps"
    );
    assert_eq!(
        h.host
            .instances()
            .get_instance(id)
            .await
            .expect("get")
            .status,
        Status::Running
    );
    let first = tokio::time::timeout(WAIT, watcher.next())
        .await
        .expect("a live line")
        .expect("open")
        .expect("ok");
    first.ack().await.expect("ack");
    worker.stop().await;
}

#[tokio::test]
async fn stop_escalates_to_sigkill_and_kill_wins_over_a_stop_in_progress() {
    let h = Harness::new(FAKE.as_ref()).await;
    let settings = h.settings("w");
    let worker = h
        .spawn_worker(h.worker(settings.clone(), TokioProcessRunner::new()))
        .await;
    let stubborn = h
        .config("stubborn", |c| {
            c.args = args(&["--ignore-sigterm"]);
            c.stop = StopPolicy {
                stdin_line: Some("please stop".to_owned()),
                timeout_s: 1,
                signal_grace_s: 1,
                ..StopPolicy::default()
            };
        })
        .await;
    let id = h.start(stubborn).await;
    h.wait_status(id, Status::Running).await;
    h.host
        .instances()
        .stdin(id, "spawn-child", "test")
        .await
        .expect("stdin");
    let log = Harness::wait_log(&settings, id, "Server is ready").await;
    let pid = fake_pid(&log);
    let log = eventually("the child's pid", WAIT, || async {
        let log = std::fs::read_to_string(Harness::log_path(&settings, id)).unwrap_or_default();
        log.contains(" child ").then_some(log)
    })
    .await;
    let child: u32 = log_texts(&log)
        .iter()
        .find_map(|t| t.strip_prefix("child "))
        .expect("child")
        .parse()
        .expect("pid");
    h.host.instances().stop(id, "test").await.expect("stop");
    let ended = h.wait_status(id, Status::Complete).await;
    assert_eq!(
        ended.exit_signal,
        Some(9),
        "SIGTERM was ignored, SIGKILL ended it"
    );
    let last = h.history(id).await.pop().expect("history");
    assert_eq!(last.cause, Cause::User);
    let detail = last.detail.unwrap_or_default();
    assert!(
        detail.contains("stop escalated")
            && detail.contains("\"please stop\"")
            && detail.contains("SIGTERM"),
        "the end says what was ignored: {detail}"
    );
    let log = std::fs::read_to_string(Harness::log_path(&settings, id)).expect("log");
    assert!(
        log_texts(&log).contains(&"please stop"),
        "the stop line the worker wrote is in the console: {log}"
    );
    assert!(
        log_texts(&log).contains(&"echo: please stop"),
        "the stop line came first"
    );
    assert!(
        log_texts(&log).contains(&"Ignoring SIGTERM"),
        "then the signal"
    );
    assert!(!pid_alive(pid));
    eventually("the server's child to be gone", WAIT, || async {
        (!pid_alive(child)).then_some(())
    })
    .await;

    // A long stop in progress is overtaken by a kill.
    let patient = h
        .config("patient", |c| {
            c.args = args(&["--ignore-sigterm"]);
            c.stop = StopPolicy {
                stdin_line: Some("ignored".to_owned()),
                timeout_s: 600,
                ..StopPolicy::default()
            };
        })
        .await;
    let id = h.start(patient).await;
    h.wait_status(id, Status::Running).await;
    h.host.instances().stop(id, "test").await.expect("stop");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.host
            .instances()
            .get_instance(id)
            .await
            .expect("get")
            .status,
        Status::Running,
        "still stopping"
    );
    h.host.instances().kill(id, "test").await.expect("kill");
    h.wait_status(id, Status::Complete).await;
    assert_eq!(
        h.history(id).await.last().map(|e| e.cause),
        Some(Cause::Killed)
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_stop_while_waiting_to_restart_ends_it_and_the_config_can_start_again() {
    let h = Harness::new(FAKE.as_ref()).await;
    let worker = h
        .spawn_worker(h.worker(h.settings("w"), TokioProcessRunner::new()))
        .await;
    let config = h
        .config("flaky", |c| {
            c.args = args(&["--exit-after-ms", "50", "--exit-code", "1"]);
            c.restart = RestartPolicy {
                backoff_initial_ms: 60_000,
                backoff_max_ms: 60_000,
                ..fast_restarts(RestartMode::OnCrash, 5)
            };
        })
        .await;
    let id = h.start(config).await;
    eventually("a restart to be scheduled", WAIT, || async {
        h.history(id)
            .await
            .iter()
            .any(|e| e.cause == Cause::CrashPolicy)
            .then_some(())
    })
    .await;
    h.host.instances().stop(id, "test").await.expect("stop");
    h.wait_status(id, Status::Complete).await;
    assert_eq!(
        h.history(id).await.last().map(|e| e.cause),
        Some(Cause::User)
    );

    // The same config starts again at once on the same worker.
    let again = h.start(config).await;
    h.wait_status(again, Status::Running).await;
    worker.stop().await;
}

#[tokio::test]
async fn shutdown_stops_twenty_servers_in_parallel_and_leaves_no_process() {
    let h = Harness::new(FAKE.as_ref()).await;
    let settings = h.settings("w");
    let worker = h
        .spawn_worker(h.worker(settings.clone(), TokioProcessRunner::new()))
        .await;
    let mut instances = Vec::new();
    for n in 0..20 {
        let config = h
            .config(&format!("server-{n}"), |c| {
                c.stop = StopPolicy {
                    stdin_line: Some("quit".to_owned()),
                    timeout_s: 5,
                    ..StopPolicy::default()
                };
            })
            .await;
        instances.push(h.start(config).await);
    }
    let mut pids = Vec::new();
    for id in &instances {
        h.wait_status(*id, Status::Running).await;
        pids.push(fake_pid(
            &Harness::wait_log(&settings, *id, "Server is ready").await,
        ));
    }
    assert!(pids.iter().all(|pid| pid_alive(*pid)));
    assert_eq!(worker.stop().await, WorkerExit::Shutdown);
    for id in &instances {
        let done = h.wait_status(*id, Status::Complete).await;
        assert_eq!(done.exit_code, Some(0), "each quit cleanly");
        assert_eq!(
            h.history(*id).await.last().map(|e| e.cause),
            Some(Cause::WorkerShutdown)
        );
    }
    assert!(pids.iter().all(|pid| !pid_alive(*pid)), "no process left");
    let workers = h.host.workers().list_workers().await.expect("workers");
    eventually("the worker to be complete", WAIT, || async {
        let w = h.host.workers().list_workers().await.expect("workers");
        (w[0].status == Status::Complete).then_some(())
    })
    .await;
    assert_eq!(workers.len(), 1);
}

#[tokio::test]
async fn commands_it_cannot_carry_out_are_failed_results_and_the_worker_carries_on() {
    let h = Harness::new(FAKE.as_ref()).await;
    let worker = h
        .spawn_worker(h.worker(h.settings("w"), TokioProcessRunner::new()))
        .await;
    let worker_id = h.host.workers().list_workers().await.expect("workers")[0].id;
    let config = h.config("main", |_| {}).await;
    let running = h.start(config).await;
    h.wait_status(running, Status::Running).await;
    let mut events = h.bus.watch_events().await.expect("watch");
    let send = |command: Command, expired: bool| {
        let mut envelope = CommandEnvelope::new(command, "test", chrono::Utc::now());
        if expired {
            envelope.expires_at = envelope.issued_at - chrono::Duration::seconds(1);
        }
        envelope
    };
    let result_of = |envelope: &CommandEnvelope| envelope.id;

    // A duplicate start of a config already running here: refused by the host (409 naming the
    // instance), no instance made.
    let refused = h
        .host
        .instances()
        .start(&StartRequest::new(config), "test")
        .await
        .expect_err("a second start of a running config");
    assert!(
        refused.to_string().contains(&running.to_string()),
        "{refused}"
    );
    // And should one reach the worker anyway (two starts at once), the worker refuses it: the
    // new instance ends crashed, refused.
    let worker_epoch = h
        .host
        .workers()
        .get_worker(worker_id)
        .await
        .expect("worker")
        .epoch;
    let duplicate = h
        .host
        .store()
        .instances
        .create_instance(&manman_core::instance::NewInstance {
            config_id: config,
            worker_id,
            worker_epoch,
            created_at: chrono::Utc::now(),
        })
        .await
        .expect("instance")
        .id;
    h.send_sealed(
        worker_id,
        &send(
            Command::Start {
                instance_id: duplicate,
                config_id: config,
                bundle: None,
            },
            false,
        ),
    )
    .await;
    h.wait_status(duplicate, Status::Crashed).await;
    assert_eq!(
        h.history(duplicate).await.last().map(|e| e.cause),
        Some(Cause::Refused)
    );

    let unknown = send(
        Command::Stop {
            instance_id: InstanceId(999_999),
        },
        false,
    );
    let multiline = send(
        Command::Stdin {
            instance_id: running,
            line: "a\nb".to_owned(),
        },
        false,
    );
    let expired = send(
        Command::Stdin {
            instance_id: running,
            line: "late".to_owned(),
        },
        true,
    );
    let unknown_config = send(
        Command::Start {
            instance_id: InstanceId(999_998),
            config_id: ConfigId(999_998),
            bundle: None,
        },
        false,
    );
    let wanted = [
        result_of(&unknown),
        result_of(&multiline),
        result_of(&expired),
        result_of(&unknown_config),
    ];
    for envelope in [&unknown, &multiline, &expired, &unknown_config, &unknown] {
        // No bus-side expiry: the worker itself must notice the expired one.
        h.send_sealed(worker_id, envelope).await;
    }
    let mut results = Vec::new();
    let collect = async {
        while results.len() < 5 {
            let delivery = events.next().await.expect("open").expect("ok");
            if let Ok(Event::CommandResult(result)) = delivery.message.decode::<Event>()
                && wanted.contains(&result.command_id)
            {
                results.push(result);
            }
            delivery.ack().await.expect("ack");
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), collect).await;
    assert_eq!(
        results.len(),
        4,
        "one result per command id, the redelivered one ignored: {results:?}"
    );
    let outcome = |id| {
        results
            .iter()
            .find(|r| r.command_id == id)
            .map(|r| (r.outcome, r.detail.clone().unwrap_or_default()))
    };
    let (o, detail) = outcome(unknown.id).expect("unknown");
    assert_eq!(o, CommandOutcome::Failed);
    assert!(detail.contains("not running on this worker"), "{detail}");
    let (o, detail) = outcome(multiline.id).expect("multiline");
    assert_eq!(o, CommandOutcome::Failed);
    assert!(detail.contains("one line"), "{detail}");
    assert_eq!(
        outcome(expired.id).expect("expired").0,
        CommandOutcome::Expired
    );
    assert_eq!(
        outcome(unknown_config.id).expect("start").0,
        CommandOutcome::Succeeded,
        "taken on; it fails in its supervisor"
    );

    // The worker and its server carry on.
    assert_eq!(
        h.host
            .instances()
            .get_instance(running)
            .await
            .expect("get")
            .status,
        Status::Running
    );
    h.host
        .instances()
        .stdin(running, "still here", "test")
        .await
        .expect("stdin");
    assert_eq!(worker.stop().await, WorkerExit::Shutdown);
}
