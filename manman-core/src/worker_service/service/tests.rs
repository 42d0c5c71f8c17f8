//! Paused-time unit tests of the worker service: command handling (a start, a stop of an
//! unknown instance, an expired command), dedup of command ids, and the heartbeat's retry
//! policy. The host is a [`MockHostApi`] (it confirms no instance, so nothing is spawned, and it
//! fails heartbeats on demand); the bus is a [`crate::memory::MemoryBus`], watched for the
//! worker's answers.

use super::*;
use crate::command::CommandResult;
use crate::event::Event;
use crate::id::ConfigId;
use crate::ports::{ConfigBundle, Consumer, MockClock, MockHostApi, SystemClock};
use crate::process::TokioProcessRunner;
use crate::signing::BusSecret;
use crate::worker_service::LocalInstaller;
use chrono::Utc;
use std::os::unix::fs::PermissionsExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

const WORKER: WorkerId = WorkerId(7);
const EPOCH: i64 = 3;
/// Longest (virtual) wait for an answer.
const ANSWER: Duration = Duration::from_secs(30);

/// What the mocked host was asked.
#[derive(Debug, Default)]
struct Asked {
    /// Config fetches, by instance.
    fetches: Mutex<Vec<InstanceId>>,
    /// When each heartbeat came.
    heartbeats: Mutex<Vec<Instant>>,
}

/// A host that registers the worker as [`WORKER`] epoch [`EPOCH`], confirms no instance (so
/// no start spawns anything), keeps console tails, and answers the n-th heartbeat (from 0)
/// with `heartbeat(n)`.
fn mock_host(
    key: &WorkerKey,
    asked: &Arc<Asked>,
    heartbeat: impl Fn(usize) -> Result<(), HostApiError> + Send + 'static,
) -> MockHostApi {
    let registered = Registered {
        worker_id: key.worker_id(),
        epoch: key.epoch(),
        bus_key: key.bus_key().clone(),
    };
    let mut host = MockHostApi::new();
    host.expect_register()
        .returning(move |_| Ok(registered.clone()));
    let beats = Arc::clone(asked);
    host.expect_heartbeat().returning(move |_| {
        let mut at = beats.heartbeats.lock().expect("lock");
        at.push(Instant::now());
        heartbeat(at.len() - 1)
    });
    let fetches = Arc::clone(asked);
    host.expect_fetch_instance_config()
        .returning(move |_, instance| {
            fetches.fetches.lock().expect("lock").push(instance);
            Err(HostApiError::NotFound {
                what: format!("{instance}"),
            })
        });
    host.expect_keep_console_tail().returning(|_, _, _| Ok(()));
    host
}

/// A worker installing into `dir`, with its state there too.
fn worker(
    dir: &std::path::Path,
    host: MockHostApi,
    bus: &Bus,
    clock: Arc<dyn Clock>,
) -> WorkerService {
    WorkerService::new(
        WorkerSettings::new("paused", dir.join("install")),
        Arc::new(host),
        bus.clone(),
        Arc::new(LocalInstaller),
        Arc::new(TokioProcessRunner::new()),
        clock,
    )
}

/// A worker running on a memory bus with a mocked host, and a watcher of its events.
struct Running {
    bus: Bus,
    key: WorkerKey,
    asked: Arc<Asked>,
    events: Box<dyn Consumer>,
    /// Every event read so far.
    seen: Vec<Event>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<WorkerExit, WorkerError>>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// A worker on the system clock whose heartbeats all succeed.
    async fn start() -> Self {
        Self::start_with(Arc::new(SystemClock), |_| Ok(())).await
    }

    async fn start_with(
        clock: Arc<dyn Clock>,
        heartbeat: impl Fn(usize) -> Result<(), HostApiError> + Send + 'static,
    ) -> Self {
        Self::start_on(Bus::in_memory().await.expect("bus"), clock, heartbeat).await
    }

    /// A worker on `bus` (declared).
    async fn start_on(
        bus: Bus,
        clock: Arc<dyn Clock>,
        heartbeat: impl Fn(usize) -> Result<(), HostApiError> + Send + 'static,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // The servers' user (nobody, when the tests run as root) must reach the install dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let events = bus.watch_events().await.expect("watch events");
        let key = BusSecret::generate().worker_key(WORKER, EPOCH);
        let asked = Arc::new(Asked::default());
        let host = mock_host(&key, &asked, heartbeat);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(worker(dir.path(), host, &bus, clock).run(shutdown.clone()));
        Self {
            bus,
            key,
            asked,
            events,
            seen: Vec::new(),
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// Shuts the worker down and runs another in its place, with the same directories (its
    /// state too) and the same registration.
    async fn restart(&mut self) {
        self.shutdown.cancel();
        let ended = tokio::time::timeout(ANSWER, &mut self.task)
            .await
            .expect("the worker stops")
            .expect("join")
            .expect("the worker runs");
        assert_eq!(ended, WorkerExit::Shutdown);
        let host = mock_host(&self.key, &self.asked, |_| Ok(()));
        let worker = worker(self._dir.path(), host, &self.bus, Arc::new(SystemClock));
        self.shutdown = CancellationToken::new();
        self.task = tokio::spawn(worker.run(self.shutdown.clone()));
    }

    /// Sends `envelope` to the worker, sealed by the host for its registration.
    async fn send_envelope(&self, envelope: &CommandEnvelope) {
        self.bus
            .send_command(&self.key, envelope)
            .await
            .expect("send a command");
    }

    /// Sends a new command (time to live 60 s).
    async fn send(&self, command: Command) -> CommandEnvelope {
        let envelope = CommandEnvelope::new(command, "test", Utc::now());
        self.send_envelope(&envelope).await;
        envelope
    }

    /// Reads events until `found` picks one (panics after [`ANSWER`]).
    async fn wait_for<T>(&mut self, what: &str, found: impl Fn(&Event) -> Option<T>) -> T {
        if let Some(t) = self.seen.iter().find_map(&found) {
            return t;
        }
        let deadline = Instant::now() + ANSWER;
        loop {
            let delivery = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {ANSWER:?}; seen {:?}", self.seen))
                .expect("the watcher is open")
                .expect("an event");
            let event: Event = delivery.message.decode().expect("an event");
            delivery.ack().await.expect("ack");
            let picked = found(&event);
            self.seen.push(event);
            if let Some(t) = picked {
                return t;
            }
        }
    }

    /// The worker's answer to command `id`.
    async fn result_of(&mut self, id: Uuid) -> CommandResult {
        self.wait_for(&format!("answer to command {id}"), |e| match e {
            Event::CommandResult(r) if r.command_id == id => Some(r.clone()),
            _ => None,
        })
        .await
    }

    /// How many answers to command `id` were seen.
    fn answers_to(&self, id: Uuid) -> usize {
        self.seen
            .iter()
            .filter(|e| matches!(e, Event::CommandResult(r) if r.command_id == id))
            .count()
    }

    /// The first report of `instance` ending (a terminal status), with its cause.
    async fn end_of(&mut self, instance: InstanceId) -> (Status, Cause) {
        self.wait_for(&format!("the end of {instance}"), |e| match e {
            Event::Status(r)
                if r.entity == Entity::Instance(instance) && r.status.is_terminal() =>
            {
                Some((r.status, r.cause))
            }
            _ => None,
        })
        .await
    }

    fn fetches(&self) -> Vec<InstanceId> {
        self.asked.fetches.lock().expect("lock").clone()
    }

    fn heartbeats(&self) -> Vec<Instant> {
        self.asked.heartbeats.lock().expect("lock").clone()
    }

    /// Shuts the worker down; it must exit cleanly with `exit`.
    async fn stop(self, exit: WorkerExit) {
        self.shutdown.cancel();
        let ended = tokio::time::timeout(ANSWER, self.task)
            .await
            .expect("the worker stops")
            .expect("join")
            .expect("the worker runs");
        assert_eq!(ended, exit);
    }
}

#[tokio::test(start_paused = true)]
async fn a_start_is_taken_on_and_a_stop_of_an_unknown_instance_is_answered_failed() {
    let mut running = Running::start().await;
    let instance = InstanceId(11);
    let start = running
        .send(Command::Start {
            instance_id: instance,
            config_id: ConfigId(3),
            bundle: None,
        })
        .await;
    let answer = running.result_of(start.id).await;
    assert_eq!(answer.outcome, CommandOutcome::Succeeded, "{answer:?}");
    assert_eq!(answer.worker_id, WORKER);
    // Taken on: its supervisor asks the host for the config; the host does not confirm it,
    // so it ends refused without a process.
    assert_eq!(
        running.end_of(instance).await,
        (Status::Crashed, Cause::Refused)
    );
    assert_eq!(running.fetches(), [instance]);

    let unknown = InstanceId(99);
    let stop = running
        .send(Command::Stop {
            instance_id: unknown,
        })
        .await;
    let answer = running.result_of(stop.id).await;
    assert_eq!(answer.outcome, CommandOutcome::Failed, "{answer:?}");
    let detail = answer.detail.unwrap_or_default();
    assert!(
        detail.contains("is not running on this worker"),
        "says why: {detail}"
    );
    assert!(
        !running.task.is_finished(),
        "a failed command stops nothing"
    );
    running.stop(WorkerExit::Shutdown).await;
}

#[tokio::test(start_paused = true)]
async fn a_start_that_carries_its_config_goes_on_without_asking_the_host() {
    use crate::config::{ConfigSpec, GameServerConfig};
    use crate::game_server::{GameServer, ServerType};
    use crate::id::GameServerId;
    let mut running = Running::start().await;
    let instance = InstanceId(15);
    // A local game this worker does not have: the start goes as far as the install.
    let bundle = ConfigBundle {
        game: GameServer {
            id: GameServerId(4),
            name: "absent".into(),
            server_type: ServerType::Local {
                path: "games/absent".into(),
            },
            created_at: Utc::now(),
        },
        config: GameServerConfig {
            id: ConfigId(3),
            game_server_id: GameServerId(4),
            created_at: Utc::now(),
            spec: ConfigSpec::new("main", "server"),
        },
    };
    let start = running
        .send(Command::Start {
            instance_id: instance,
            config_id: ConfigId(3),
            bundle: Some(Box::new(bundle)),
        })
        .await;
    assert_eq!(
        running.result_of(start.id).await.outcome,
        CommandOutcome::Succeeded
    );
    // Not `refused` as the host's refusal to confirm it would make it: it was never asked.
    assert_eq!(
        running.end_of(instance).await,
        (Status::Crashed, Cause::InstallFailed)
    );
    assert!(running.fetches().is_empty(), "{:?}", running.fetches());
    running.stop(WorkerExit::Shutdown).await;
}

#[tokio::test(start_paused = true)]
async fn an_expired_command_is_refused_and_its_instance_ends() {
    // The worker's clock is five minutes ahead of the host's: every command (time to live
    // 60 s) has expired by the time it arrives.
    let mut clock = MockClock::new();
    clock
        .expect_now()
        .returning(|| Utc::now() + chrono::Duration::minutes(5));
    let mut running = Running::start_with(Arc::new(clock), |_| Ok(())).await;
    let instance = InstanceId(12);
    let start = running
        .send(Command::Start {
            instance_id: instance,
            config_id: ConfigId(3),
            bundle: None,
        })
        .await;
    let answer = running.result_of(start.id).await;
    assert_eq!(answer.outcome, CommandOutcome::Expired, "{answer:?}");
    assert_eq!(
        running.end_of(instance).await,
        (Status::Crashed, Cause::Refused),
        "an expired start's instance is not left `created`"
    );
    let stop = running
        .send(Command::Stop {
            instance_id: InstanceId(99),
        })
        .await;
    assert_eq!(
        running.result_of(stop.id).await.outcome,
        CommandOutcome::Expired
    );
    assert!(running.fetches().is_empty(), "nothing was acted on");
    running.stop(WorkerExit::Shutdown).await;
}

#[tokio::test(start_paused = true)]
async fn a_command_delivered_twice_is_acted_on_once() {
    let mut running = Running::start().await;
    let instance = InstanceId(13);
    let start = CommandEnvelope::new(
        Command::Start {
            instance_id: instance,
            config_id: ConfigId(3),
            bundle: None,
        },
        "test",
        Utc::now(),
    );
    running.send_envelope(&start).await;
    assert_eq!(
        running.result_of(start.id).await.outcome,
        CommandOutcome::Succeeded
    );
    running.end_of(instance).await;
    // The same command again (a redelivery, a replay): acknowledged and ignored.
    running.send_envelope(&start).await;
    // Commands are handled in order: once a later one is answered, the replay was handled.
    let later = running
        .send(Command::Stop {
            instance_id: InstanceId(98),
        })
        .await;
    running.result_of(later.id).await;
    assert_eq!(running.answers_to(start.id), 1, "answered once");
    assert_eq!(running.fetches(), [instance], "started once");
    running.stop(WorkerExit::Shutdown).await;
}

#[tokio::test(start_paused = true)]
async fn a_command_seen_before_a_restart_is_not_acted_on_after_it() {
    let mut running = Running::start().await;
    let instance = InstanceId(14);
    let start = CommandEnvelope::new(
        Command::Start {
            instance_id: instance,
            config_id: ConfigId(3),
            bundle: None,
        },
        "test",
        Utc::now(),
    );
    running.send_envelope(&start).await;
    running.result_of(start.id).await;
    running.end_of(instance).await;
    // The worker restarts; the command comes again (a replay): the ids it handled are kept in
    // its state directory.
    running.restart().await;
    running.send_envelope(&start).await;
    let later = running
        .send(Command::Stop {
            instance_id: InstanceId(98),
        })
        .await;
    running.result_of(later.id).await;
    assert_eq!(running.answers_to(start.id), 1, "answered once");
    assert_eq!(running.fetches(), [instance], "started once");
    running.stop(WorkerExit::Shutdown).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_heartbeat_is_retried_with_backoff_then_at_the_interval() {
    // The host is unavailable for three heartbeats, then answers.
    let running = Running::start_with(Arc::new(SystemClock), |n| {
        if n < 3 {
            Err(HostApiError::Unavailable {
                detail: "the host is restarting".into(),
            })
        } else {
            Ok(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let beats = running.heartbeats();
    let pauses: Vec<Duration> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    let ms = Duration::from_millis;
    // 250 ms doubling, up to the interval (2 s); back to the interval once it succeeds.
    assert!(
        pauses.len() >= 5 && pauses[..5] == [ms(250), ms(500), ms(1_000), ms(2_000), ms(2_000)],
        "heartbeat pauses: {pauses:?}"
    );
    assert!(
        !running.task.is_finished(),
        "a failed heartbeat is never fatal"
    );
    running.stop(WorkerExit::Shutdown).await;
}

#[tokio::test(start_paused = true)]
async fn a_superseded_heartbeat_stops_the_worker() {
    let running = Running::start_with(Arc::new(SystemClock), |_| {
        Err(HostApiError::Superseded {
            worker_id: WORKER,
            epoch: EPOCH,
        })
    })
    .await;
    let exit = tokio::time::timeout(ANSWER, running.task)
        .await
        .expect("the worker exits")
        .expect("join")
        .expect("the worker runs");
    assert_eq!(exit, WorkerExit::Superseded);
    assert_eq!(
        running.asked.heartbeats.lock().expect("lock").len(),
        1,
        "not retried"
    );
}

/// How long the broker takes to confirm a command result in the test below.
const RESULT_CONFIRM: Duration = Duration::from_millis(100);

#[tokio::test(start_paused = true)]
async fn a_stdin_line_is_answered_while_fifty_starts_wait_for_their_confirms() {
    let memory = crate::memory::MemoryBus::new();
    let slow = crate::worker_service::slow_confirms::SlowConfirms {
        inner: Arc::new(memory.clone()),
        kind: "command_result",
        confirm: RESULT_CONFIRM,
    };
    let bus = Bus::new(Arc::new(slow), Arc::new(memory));
    bus.declare().await.expect("topology");
    let mut running = Running::start_on(bus, Arc::new(SystemClock), |_| Ok(())).await;
    for n in 0..50 {
        running
            .send(Command::Start {
                instance_id: InstanceId(100 + n),
                config_id: ConfigId(100 + n),
                bundle: None,
            })
            .await;
    }
    let sent = Instant::now();
    let stdin = running
        .send(Command::Stdin {
            instance_id: InstanceId(1),
            line: "status".to_owned(),
        })
        .await;
    let answer = running.result_of(stdin.id).await;
    let waited = sent.elapsed();
    assert!(
        answer
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("not running")),
        "{answer:?}"
    );
    // One at a time, the line would wait for 50 confirms (5 s); in flight together (16 at a
    // time, the prefetch), for a few rounds of one.
    assert!(
        waited < RESULT_CONFIRM * 8,
        "the line waited {waited:?} behind the starts"
    );
    for n in 0..50 {
        let id = InstanceId(100 + n);
        running.end_of(id).await;
    }
    running.stop(WorkerExit::Shutdown).await;
}
