//! The supervisor's policies in paused tokio time, on the in-memory process runner, bus and
//! store: readiness timeout, stop escalation, restart backoff and the crash-loop window. Each
//! test asserts the timings in tokio time (so it fails when a policy breaks, not when the
//! machine is slow) and runs in a few milliseconds of real time.

use super::*;
use crate::bus::Bus;
use crate::config::{ConfigSpec, RestartMode, StopSignal};
use crate::event::Event;
use crate::game_server::{NewGameServer, ServerType};
use crate::host::{HostService, LocalHostApi, StartRequest};
use crate::memory::{MemoryProcess, MemoryProcessRunner, Script};
use crate::ports::{Consumer, ProcessSignal};
use crate::worker::WorkerRegistration;
use crate::worker_service::local_installer::LocalInstaller;
use crate::worker_service::recent_ends::RecentEnds;
use crate::worker_service::slow_confirms::SlowConfirms;
use std::collections::BTreeMap;
use tokio::task::JoinHandle;

/// How long (in tokio time) a test waits for a status report before it fails.
const PATIENCE: Duration = Duration::from_secs(3_600);

/// How the supervisor comes by its game and config, and which host it asks.
enum Given {
    /// It asks the host itself, in process ([`LocalHostApi`]), for every attempt: a start
    /// command without them.
    Fetched,
    /// A host that counts the config fetches in `fetches` (answering each with the instance's
    /// game and config, as the host would), and a start command that carries them (`carried`)
    /// or not: the command the host published, read from the worker's queue.
    Counted {
        carried: bool,
        fetches: Arc<std::sync::atomic::AtomicUsize>,
        /// What a forger did to the carried bundle on its way (nothing for the host's own).
        tamper: fn(&mut ConfigBundle),
    },
}

/// One supervised instance of the config `spec`, whose program runs `scripts` in turn.
struct Harness {
    runner: MemoryProcessRunner,
    requests: mpsc::Sender<Request>,
    events: Box<dyn Consumer>,
    instance_id: InstanceId,
    supervisor: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(spec: ConfigSpec, scripts: Vec<Script>) -> Self {
        Self::start_with_confirms(spec, scripts, Duration::ZERO).await
    }

    /// [`Self::start`], on a bus whose broker takes `confirm` to confirm each status report.
    async fn start_with_confirms(
        spec: ConfigSpec,
        scripts: Vec<Script>,
        confirm: Duration,
    ) -> Self {
        Self::launch(spec, scripts, confirm, Given::Fetched).await
    }

    /// [`Self::start`] with a start command that carries its game and config (`carried`) or
    /// not, and a host that counts the config fetches (the second value).
    async fn start_counting_fetches(
        spec: ConfigSpec,
        scripts: Vec<Script>,
        carried: bool,
    ) -> (Self, Arc<std::sync::atomic::AtomicUsize>) {
        Self::start_with_tampered_bundle(spec, scripts, carried, |_| {}).await
    }

    /// [`Self::start_counting_fetches`], the carried bundle changed by `tamper` first.
    async fn start_with_tampered_bundle(
        spec: ConfigSpec,
        scripts: Vec<Script>,
        carried: bool,
        tamper: fn(&mut ConfigBundle),
    ) -> (Self, Arc<std::sync::atomic::AtomicUsize>) {
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let given = Given::Counted {
            carried,
            fetches: Arc::clone(&fetches),
            tamper,
        };
        (
            Self::launch(spec, scripts, Duration::ZERO, given).await,
            fetches,
        )
    }

    async fn launch(
        spec: ConfigSpec,
        scripts: Vec<Script>,
        confirm: Duration,
        given: Given,
    ) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let game_dir = dir.path().join("install/games/fake");
        std::fs::create_dir_all(&game_dir).expect("the game's directory");
        std::fs::write(game_dir.join(&spec.executable), "").expect("the executable");
        let directories = super::super::directories::prepare(
            &dir.path().join("install"),
            &dir.path().join("state"),
            None,
        )
        .expect("the worker's directories");

        let host = HostService::in_memory().await.expect("a host in memory");
        let game = host
            .catalogue()
            .create_game(&NewGameServer {
                name: "fake".into(),
                server_type: ServerType::Local {
                    path: "games/fake".into(),
                },
            })
            .await
            .expect("game");
        let config = host
            .catalogue()
            .create_config(game.id, &spec)
            .await
            .expect("config");
        let registered = host
            .gateway()
            .register_worker(&WorkerRegistration {
                name: "w1".into(),
                version: "1".into(),
                capacity: 4,
                labels: BTreeMap::default(),
                taken_up: Vec::new(),
            })
            .await
            .expect("register");
        let started = host
            .instances()
            .start(&StartRequest::new(config.id), "test")
            .await
            .expect("start");
        let events = host.bus().watch_events().await.expect("watch events");
        let (api, carried) = match given {
            Given::Fetched => (
                Arc::new(LocalHostApi::new(host.clone())) as Arc<dyn HostApi>,
                None,
            ),
            Given::Counted {
                carried,
                fetches,
                tamper,
            } => {
                let bundle = published_bundle(&host, registered.worker_id).await;
                let mut api = crate::ports::MockHostApi::new();
                let answer = bundle.clone();
                api.expect_fetch_instance_config()
                    .returning(move |_, instance| {
                        assert_eq!(instance, started.instance_id, "its own instance");
                        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok(answer.clone())
                    });
                api.expect_keep_console_tail().returning(|_, _, _| Ok(()));
                let mut carried_bundle = bundle;
                tamper(&mut carried_bundle);
                (
                    Arc::new(api) as Arc<dyn HostApi>,
                    carried.then_some(carried_bundle),
                )
            }
        };

        let runner = MemoryProcessRunner::new();
        let program = directories
            .install
            .join("games/fake")
            .join(&spec.executable);
        for script in scripts {
            runner.script(&program, script);
        }
        let context = SupervisorContext {
            worker_id: registered.worker_id,
            host: api,
            installer: Arc::new(LocalInstaller),
            runner: Arc::new(runner.clone()),
            reporter: Reporter::new(
                Bus::with_topology(
                    Arc::new(SlowConfirms {
                        inner: Arc::clone(host.bus().publisher()),
                        kind: "status",
                        confirm,
                    }),
                    Arc::clone(host.bus().subscriber()),
                    host.bus().topology().clone(),
                ),
                host.clock(),
                registered.worker_key(),
            ),
            install_root: directories.install.clone(),
            log_dir: directories.state.join("logs"),
            log_rotation: LogRotation::default(),
            live_console_buffer: 1_024,
            records: ProcessRecords::new(&directories.state),
            kill_now: CancellationToken::new(),
            run_as: None,
            server_env: ServerEnvironment::new(&BTreeMap::new(), &[]).expect("an environment"),
            directories,
            ends: RecentEnds::default(),
            stopping: CancellationToken::new(),
            leave_running: Arc::default(),
        };
        let (requests, receiver) = mpsc::channel(64);
        let state = Arc::new(Mutex::new(InstanceState {
            config_id: config.id,
            status: Status::Created,
            pid: None,
            restart_count: 0,
            console_dropped: Arc::default(),
        }));
        let supervisor = Supervisor::new(started.instance_id, config.id, context, receiver, state)
            .with_carried_bundle(carried);
        Self {
            runner,
            requests,
            events,
            instance_id: started.instance_id,
            supervisor: tokio::spawn(supervisor.run()),
            _dir: dir,
        }
    }

    /// The instance's next status report.
    async fn next_status(&mut self) -> StatusReport {
        loop {
            let delivery = tokio::time::timeout(PATIENCE, self.events.next())
                .await
                .expect("a status report in time")
                .expect("the watcher is open")
                .expect("no bus error");
            let event = delivery.message.decode::<Event>();
            // Unsettled, it would come again.
            delivery.ack().await.expect("ack");
            if let Ok(Event::Status(report)) = event
                && report.entity == Entity::Instance(self.instance_id)
            {
                return report;
            }
        }
    }

    /// Reads reports until one in `status`, and answers it.
    async fn until(&mut self, status: Status) -> StatusReport {
        loop {
            let report = self.next_status().await;
            if report.status == status {
                return report;
            }
            assert!(
                !report.status.is_terminal(),
                "ended {:?} ({:?}: {:?}) before {status:?}",
                report.status,
                report.cause,
                report.detail
            );
        }
    }

    async fn ask(&self, request: impl FnOnce(Reply) -> Request) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(request(reply))
            .await
            .expect("the supervisor takes requests");
        answer.await.expect("an answer")
    }

    /// Waits until the supervisor has finished (its last report sent, its console handed over).
    async fn finished(self) -> MemoryProcessRunner {
        tokio::time::timeout(PATIENCE, self.supervisor)
            .await
            .expect("the supervisor ends")
            .expect("the supervisor did not panic");
        self.runner
    }
}

/// The game and config the start command the host published for `worker` carries.
async fn published_bundle(host: &HostService, worker: crate::id::WorkerId) -> ConfigBundle {
    let mut commands = host
        .bus()
        .consume_commands(worker, 1)
        .await
        .expect("the worker's queue");
    let delivery = tokio::time::timeout(PATIENCE, commands.next())
        .await
        .expect("a command in time")
        .expect("the queue is open")
        .expect("no bus error");
    let envelope: crate::command::CommandEnvelope = delivery.message.decode().expect("an envelope");
    delivery.ack().await.expect("ack");
    match envelope.command {
        crate::command::Command::Start {
            bundle: Some(bundle),
            ..
        } => *bundle,
        other => panic!("a start with its game and config, not {other:?}"),
    }
}

fn spec() -> ConfigSpec {
    ConfigSpec::new("main", "server")
}

fn ended_at(process: &MemoryProcess) -> Instant {
    process.ended().expect("the process ended").1
}

#[tokio::test(start_paused = true)]
async fn a_server_not_ready_in_time_is_killed_and_crashed_with_ready_timeout() {
    let mut spec = spec();
    spec.ready_pattern = Some("Server is ready".into());
    spec.ready_timeout_s = 5;
    let mut h = Harness::start(spec, vec![Script::new().stdout("loading…").hang()]).await;

    let crashed = h.until(Status::Crashed).await;
    assert_eq!(crashed.cause, Cause::ReadyTimeout);
    assert_eq!(crashed.exit_signal, Some(9));
    let runner = h.finished().await;
    assert_eq!(
        runner.spawn_count(),
        1,
        "the default policy restarts nothing"
    );
    let process = runner.last().expect("spawned");
    assert_eq!(
        process.signals_received(),
        [ProcessSignal::Kill],
        "killed at once, no graceful stop"
    );
    assert_eq!(
        process.signals()[0].at - process.spawned_at(),
        Duration::from_secs(5),
        "killed when the ready timeout ran out"
    );
}

#[tokio::test(start_paused = true)]
async fn a_ready_line_in_time_makes_it_running_and_writes_the_queued_stdin() {
    let mut spec = spec();
    spec.ready_pattern = Some("Server is ready".into());
    spec.ready_timeout_s = 5;
    let script = Script::new()
        .stdout("loading…")
        .sleep(Duration::from_millis(4_900))
        .stdout("Server is ready")
        .hang();
    let mut h = Harness::start(spec, vec![script]).await;
    h.until(Status::Initializing).await;
    let queued = h
        .ask(|reply| Request::Stdin {
            line: "say hi".into(),
            reply,
        })
        .await;
    assert_eq!(queued.as_deref(), Ok("queued until the server is ready"));
    let running = h.until(Status::Running).await;
    assert_eq!(running.cause, Cause::Ready);
    let process = h.runner.wait_for_spawn(1).await;
    assert_eq!(
        Instant::now() - process.spawned_at(),
        Duration::from_millis(4_900)
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(process.ended().is_none(), "ready in time: not killed");
    assert_eq!(process.stdin_lines(), ["say hi"], "written once ready");
    h.ask(|reply| Request::Kill { reply }).await.expect("kill");
    assert_eq!(h.until(Status::Complete).await.cause, Cause::Killed);
}

#[tokio::test(start_paused = true)]
async fn a_stop_escalates_from_the_stop_line_to_the_signal_to_sigkill_on_time() {
    let mut spec = spec();
    spec.stop = StopPolicy {
        stdin_line: Some("quit".into()),
        signal: StopSignal::Term,
        timeout_s: 30,
        signal_grace_s: 10,
    };
    // Reads nothing, shrugs off SIGTERM: only SIGKILL ends it.
    let script = Script::new()
        .stdout("up")
        .hang()
        .ignore(ProcessSignal::Term);
    let mut h = Harness::start(spec, vec![script]).await;
    h.until(Status::Running).await;
    let stop_asked = Instant::now();
    assert_eq!(
        h.ask(|reply| Request::Stop { reply }).await.as_deref(),
        Ok("stopping")
    );
    let complete = h.until(Status::Complete).await;
    assert_eq!(complete.cause, Cause::User);
    assert_eq!(complete.exit_signal, Some(9));
    let detail = complete.detail.expect("a detail");
    assert!(detail.contains("stop escalated"), "{detail}");

    let runner = h.finished().await;
    let process = runner.last().expect("spawned");
    assert_eq!(process.stdin_lines(), ["quit"], "the stop line first");
    assert_eq!(
        process.signals_received(),
        [ProcessSignal::Term, ProcessSignal::Kill],
        "then SIGTERM, then SIGKILL"
    );
    let signals = process.signals();
    assert_eq!(
        signals[0].at - stop_asked,
        Duration::from_secs(30),
        "SIGTERM after the stop line's timeout"
    );
    assert_eq!(
        signals[1].at - signals[0].at,
        Duration::from_secs(10),
        "SIGKILL after the signal's grace"
    );
    assert_eq!(ended_at(&process), signals[1].at);
    assert!(
        signals[2..]
            .iter()
            .all(|s| s.signal == ProcessSignal::Kill && !s.while_running),
        "nothing but the group's final SIGKILL follows: {signals:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_the_server_obeys_ends_at_the_stop_line() {
    let mut spec = spec();
    spec.stop.stdin_line = Some("quit".into());
    let script = Script::new().stdout("up").read_until("quit").exit(0);
    let mut h = Harness::start(spec, vec![script]).await;
    h.until(Status::Running).await;
    let stop_asked = Instant::now();
    h.ask(|reply| Request::Stop { reply }).await.expect("stop");
    let complete = h.until(Status::Complete).await;
    assert_eq!((complete.exit_code, complete.exit_signal), (Some(0), None));
    let process = h.finished().await.last().expect("spawned");
    assert_eq!(ended_at(&process), stop_asked, "no waiting");
    assert_eq!(
        process.signals_received(),
        [],
        "no signal reached a server that quit"
    );
}

/// The pause the supervisor announced in a restart's detail (`…; restart 2 in 1500 ms`).
fn announced_pause(report: &StatusReport) -> Duration {
    let detail = report.detail.as_deref().expect("a detail");
    let ms = detail
        .rsplit_once(" in ")
        .and_then(|(_, rest)| rest.strip_suffix(" ms"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("a pause in {detail:?}"));
    Duration::from_millis(ms)
}

#[tokio::test(start_paused = true)]
async fn crashes_are_restarted_after_a_growing_backoff_then_given_up_as_a_crash_loop() {
    let mut spec = spec();
    spec.restart = RestartPolicy {
        mode: RestartMode::OnCrash,
        max_restarts: 3,
        window_s: 60,
        backoff_initial_ms: 1_000,
        backoff_max_ms: 3_000,
    };
    let mut h = Harness::start(spec, vec![Script::new().stdout("up").exit(1)]).await;
    h.until(Status::Initializing).await;
    let mut pauses = Vec::new();
    for restart in 1..=3 {
        h.until(Status::Running).await;
        let report = h.until(Status::Initializing).await;
        assert_eq!(report.cause, Cause::CrashPolicy);
        assert_eq!(report.restart_count, restart);
        assert_eq!(report.exit_code, Some(1));
        pauses.push(announced_pause(&report));
    }
    h.until(Status::Running).await;
    let crashed = h.until(Status::Crashed).await;
    assert_eq!(crashed.cause, Cause::CrashLoop, "{:?}", crashed.detail);
    assert_eq!(crashed.restart_count, 3);

    let processes = h.finished().await.processes();
    assert_eq!(processes.len(), 4, "the first run and three restarts");
    for (n, pair) in processes.windows(2).enumerate() {
        assert_eq!(
            pair[1].spawned_at() - ended_at(&pair[0]),
            pauses[n],
            "restart {} waited the pause it announced",
            n + 1
        );
    }
    // Equal jitter: half of each step fixed, kept between the initial and the largest pause.
    assert_eq!(pauses[0], Duration::from_millis(1_000));
    assert!(
        (1_000..=2_000).contains(&pauses[1].as_millis()),
        "{pauses:?}"
    );
    assert!(
        (1_500..=3_000).contains(&pauses[2].as_millis()),
        "capped at backoff_max_ms: {pauses:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_crash_loop_window_slides_and_a_long_run_resets_the_count() {
    let mut spec = spec();
    spec.restart = RestartPolicy {
        mode: RestartMode::OnCrash,
        max_restarts: 2,
        window_s: 10,
        backoff_initial_ms: 1_000,
        backoff_max_ms: 1_000,
    };
    let crash = Script::new().exit(1);
    let long_run = Script::new().sleep(Duration::from_secs(20)).exit(1);
    // Two quick crashes (two restarts in the window), a run longer than the window, then
    // quick crashes again: the first two restarts have left the window, so two more are
    // allowed before the loop is given up.
    let scripts = vec![crash.clone(), crash.clone(), long_run, crash];
    let mut h = Harness::start(spec, scripts).await;
    let started = Instant::now();
    let crashed = h.until(Status::Crashed).await;
    assert_eq!(crashed.cause, Cause::CrashLoop, "{:?}", crashed.detail);
    assert_eq!(crashed.restart_count, 4);
    let processes = h.finished().await.processes();
    let spawned: Vec<Duration> = processes.iter().map(|p| p.spawned_at() - started).collect();
    let s = Duration::from_secs;
    assert_eq!(
        spawned,
        [s(0), s(1), s(2), s(23), s(24)],
        "restarts 1 s after each crash; five runs, then the loop"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_spawn_follows_the_crash_policy() {
    let mut spec = spec();
    spec.restart = RestartPolicy {
        mode: RestartMode::OnCrash,
        max_restarts: 1,
        window_s: 60,
        backoff_initial_ms: 500,
        backoff_max_ms: 500,
    };
    let scripts = vec![
        Script::fail_to_spawn("exec format error"),
        Script::new().stdout("up").hang(),
    ];
    let mut h = Harness::start(spec, scripts).await;
    let restarting = h.until(Status::Initializing).await;
    assert_eq!(restarting.cause, Cause::User);
    let restarting = h.until(Status::Initializing).await;
    assert_eq!(restarting.cause, Cause::CrashPolicy);
    assert!(
        restarting
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("exec format error")),
        "{restarting:?}"
    );
    let before = Instant::now();
    h.until(Status::Running).await;
    assert_eq!(Instant::now() - before, Duration::from_millis(500));
    assert_eq!(h.runner.spawn_attempts(), 2);
    assert_eq!(h.runner.spawn_count(), 1);
    h.ask(|reply| Request::Kill { reply }).await.expect("kill");
    h.until(Status::Complete).await;
}

#[tokio::test(start_paused = true)]
async fn the_spawn_does_not_wait_for_the_initializing_report_to_be_confirmed() {
    let confirm = Duration::from_secs(1);
    let began = Instant::now();
    let mut h = Harness::start_with_confirms(
        ConfigSpec::new("main", "server"),
        vec![Script::new().stdout("up").hang()],
        confirm,
    )
    .await;
    let process = h.runner.wait_for_spawn(1).await;
    assert!(
        process.spawned_at() - began < confirm,
        "spawned {:?} after the start: it waited for the confirm",
        process.spawned_at() - began
    );
    // Reported in their order all the same.
    assert_eq!(h.next_status().await.status, Status::Initializing);
    assert_eq!(h.next_status().await.status, Status::Running);
}

#[tokio::test(start_paused = true)]
async fn a_start_that_carries_its_config_spawns_without_asking_the_host() {
    let (mut h, fetches) =
        Harness::start_counting_fetches(spec(), vec![Script::new().stdout("up").hang()], true)
            .await;
    assert_eq!(h.until(Status::Running).await.cause, Cause::Ready);
    h.runner.wait_for_spawn(1).await;
    h.ask(|reply| Request::Stop { reply }).await.expect("stop");
    h.until(Status::Complete).await;
    h.finished().await;
    assert_eq!(
        fetches.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the config came with the command: the host was not asked"
    );
}

/// A carried bundle is checked as a fetched one is: one naming another config than the
/// command, or whose config breaks the host's rules (an executable out of the game's
/// directory), is refused — nothing spawned, nothing asked of the host.
#[tokio::test(start_paused = true)]
async fn a_carried_bundle_that_is_not_the_commands_or_breaks_the_rules_is_refused() {
    let tampers: [(&str, fn(&mut ConfigBundle)); 2] = [
        ("another config", |bundle| {
            bundle.config.id = crate::id::ConfigId(bundle.config.id.get() + 1_000);
        }),
        ("an executable out of the game's directory", |bundle| {
            bundle.config.spec.executable = "../../../bin/sh".to_owned();
        }),
    ];
    for (what, tamper) in tampers {
        let (mut h, fetches) = Harness::start_with_tampered_bundle(
            spec(),
            vec![Script::new().stdout("up").hang()],
            true,
            tamper,
        )
        .await;
        let ended = h.until(Status::Crashed).await;
        assert_eq!(ended.cause, Cause::Refused, "{what}: {ended:?}");
        let runner = h.runner.clone();
        h.finished().await;
        assert_eq!(runner.spawn_attempts(), 0, "{what}: nothing spawned");
        assert_eq!(
            fetches.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{what}: the host was not asked"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_start_without_its_config_fetches_it_from_the_host() {
    let (mut h, fetches) =
        Harness::start_counting_fetches(spec(), vec![Script::new().stdout("up").hang()], false)
            .await;
    h.until(Status::Running).await;
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    h.ask(|reply| Request::Stop { reply }).await.expect("stop");
    h.until(Status::Complete).await;
    h.finished().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_in_place_of_a_carried_start_fetches_its_config_again() {
    let scripts = vec![
        Script::new().stdout("up").read_until("quit").exit(0),
        Script::new().stdout("up again").hang(),
    ];
    let mut s = spec();
    s.stop.stdin_line = Some("quit".into());
    let (mut h, fetches) = Harness::start_counting_fetches(s, scripts, true).await;
    h.until(Status::Running).await;
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(
        h.ask(|reply| Request::Restart { reply }).await.as_deref(),
        Ok("restarting")
    );
    h.until(Status::Initializing).await;
    h.until(Status::Running).await;
    assert_eq!(h.runner.spawn_count(), 2);
    assert_eq!(
        fetches.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the second attempt asks the host, which confirms the instance is still its own"
    );
    h.ask(|reply| Request::Kill { reply }).await.expect("kill");
    h.until(Status::Complete).await;
}
